"""Sentence embeddings without torch: a BERT sentence-transformers directory (the bundled
MiniLM, or one `pluralism policies tune` wrote) converted once to a GGUF in the cache and run on
llama.cpp. Texts are tokenised here with the directory's own tokenizer.json, cut as
sentence-transformers cuts them, so the vectors match its to a cosine of 0.9999. Weights stay
F16: Q8_0 measured a minimum cosine of 0.9987, enough to reorder close rules.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from pluralism._cache import cache_root, clean_stale_temps, publish_file, source_key
from pluralism._threads import resolve_threads
from pluralism.errors import InputError, ModelError

# Part of every cache key: a change to the conversion below must not reuse an older file.
CONVERTER_VERSION = 1
_MODULES = {"Transformer", "Pooling", "Normalize"}  # what llama.cpp reproduces; Dense etc. not
_POOLING_FLAGS = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls"}
SLOTS = 8  # texts batched per decode: ~10% more throughput than 1 at one thread, 16 no more
CHUNK = 64  # texts per llama.cpp request: a long job (a policy's rules) leaves gaps for prompts

Vectors = npt.NDArray[np.float32]


@dataclass(frozen=True)
class BertSpec:
    config: dict[str, Any]
    pooling: str  # "mean" or "cls"
    max_seq_length: int
    lower_case: bool
    pooling_config: Path


def _json(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else {}


def _pooling(path: Path) -> str:
    cfg = _json(path)
    mode = cfg.get("pooling_mode")  # sentence-transformers >= 6; flags before it
    if mode is None:
        on = [k for k, v in cfg.items() if k.startswith("pooling_mode") and v]
        mode = _POOLING_FLAGS.get(on[0], on[0]) if len(on) == 1 else "+".join(on) or "none"
    if mode not in ("mean", "cls"):
        raise ValueError(f"its pooling is {mode!r}; llama.cpp runs mean or cls pooling only")
    return str(mode)


def _read_spec(model_dir: Path) -> BertSpec:
    """The directory's spec; a `ValueError` saying why it is not one llama.cpp can run."""
    config_file = model_dir / "config.json"
    if not model_dir.is_dir() or not config_file.is_file():
        raise ValueError("it has no config.json")
    config = _json(config_file)
    if config.get("model_type") != "bert":
        raise ValueError(f"its model_type is {config.get('model_type')!r}, not 'bert'")
    if config.get("hidden_act", "gelu") != "gelu":
        raise ValueError(f"its activation is {config.get('hidden_act')!r}, not gelu")
    if config.get("position_embedding_type", "absolute") != "absolute":
        raise ValueError("its position embeddings are not absolute")
    if not (model_dir / "tokenizer.json").is_file():
        raise ValueError("it has no tokenizer.json")
    pooling_dir = "1_Pooling"
    modules_file = model_dir / "modules.json"
    if modules_file.is_file():
        modules = json.loads(modules_file.read_text(encoding="utf-8"))
        kinds = [str(m.get("type", "")).rsplit(".", 1)[-1] for m in modules]
        if not set(kinds) <= _MODULES or kinds[:1] != ["Transformer"]:
            raise ValueError(f"its modules are {kinds}; llama.cpp runs {sorted(_MODULES)}")
        pooling_dir = next((m["path"] for m in modules if m["type"].endswith("Pooling")), "")
    pooling_config = model_dir / pooling_dir / "config.json"
    if not pooling_dir or not pooling_config.is_file():
        raise ValueError("it has no pooling config (1_Pooling/config.json)")
    # Where sentence-transformers reads its cut-off: its own config, else the tokenizer's (6.x).
    st_file, tok_file = model_dir / "sentence_bert_config.json", model_dir / "tokenizer_config.json"
    st = _json(st_file) if st_file.is_file() else {}
    tok = _json(tok_file) if tok_file.is_file() else {}
    limit = int(config.get("max_position_embeddings", 512))
    max_len = st.get("max_seq_length") or tok.get("model_max_length")
    max_len = min(int(max_len), limit) if isinstance(max_len, int | float) else limit
    return BertSpec(
        config, _pooling(pooling_config), max_len, bool(st.get("do_lower_case")), pooling_config
    )


_SPEC_ERRORS = (OSError, ValueError, KeyError, TypeError, AttributeError)


def spec_or_error(model_dir: Path) -> BertSpec:
    try:
        return _read_spec(model_dir)
    except _SPEC_ERRORS as exc:
        raise InputError(
            f"embedder {model_dir} is not a BERT sentence-transformers model llama.cpp can run "
            f"({exc}); pass a directory like the bundled MiniLM or one `pluralism policies tune` "
            f"wrote, or install the train extra (`pip install 'pluralism[train]'`) to run other "
            f"models with sentence-transformers."
        ) from exc


def is_bert_dir(path: str | Path) -> bool:
    """Whether `path` is a BERT sentence-transformers directory that llama.cpp can run."""
    try:
        _read_spec(Path(path))
    except _SPEC_ERRORS:
        return False
    return True


def _vocab(tokenizer: dict[str, Any]) -> tuple[list[str], set[int]]:
    model = tokenizer.get("model", {})
    if model.get("type") != "WordPiece":
        raise ValueError(f"its tokenizer is {model.get('type')!r}, not WordPiece")
    ids: dict[str, int] = model["vocab"]
    vocab = sorted(ids, key=ids.__getitem__)
    if [ids[t] for t in vocab] != list(range(len(vocab))):
        raise ValueError("its vocabulary ids are not 0..n-1")
    special = {int(a["id"]) for a in tokenizer.get("added_tokens", []) if a.get("special")}
    return vocab, special


def _write_gguf(model_dir: Path, spec: BertSpec, out: Path) -> None:
    import gguf
    from safetensors.numpy import load_file

    cfg = spec.config
    n_layers = int(cfg["num_hidden_layers"])
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.BERT, n_layers)
    tensors = load_file(str(model_dir / "model.safetensors"))
    vocab, special = _vocab(_json(model_dir / "tokenizer.json"))
    w = gguf.GGUFWriter(str(out), "bert")
    w.add_name(model_dir.name)
    w.add_context_length(int(cfg["max_position_embeddings"]))
    w.add_embedding_length(int(cfg["hidden_size"]))
    w.add_feed_forward_length(int(cfg["intermediate_size"]))
    w.add_block_count(n_layers)
    w.add_head_count(int(cfg["num_attention_heads"]))
    w.add_layer_norm_eps(float(cfg.get("layer_norm_eps", 1e-12)))
    w.add_causal_attention(False)
    w.add_pooling_type(gguf.PoolingType.MEAN if spec.pooling == "mean" else gguf.PoolingType.CLS)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)

    # llama.cpp's WPM vocab marks word starts with a phantom space, as SentencePiece does; the
    # text is tokenised here, but llama.cpp will not load a model without a vocabulary.
    def phantom(tok: str) -> str:
        if tok.startswith("[") and tok.endswith("]"):
            return tok
        return tok[2:] if tok.startswith("##") else "\u2581" + tok

    w.add_tokenizer_model("bert")
    w.add_tokenizer_pre("default")
    w.add_token_list([phantom(t) for t in vocab])
    normal, control = gguf.TokenType.NORMAL, gguf.TokenType.CONTROL
    w.add_token_types([control if i in special else normal for i in range(len(vocab))])
    w.add_token_type_count(int(cfg.get("type_vocab_size", 2)))
    ids = {t: i for i, t in enumerate(vocab)}
    w.add_bos_token_id(ids["[CLS]"])
    w.add_sep_token_id(ids["[SEP]"])
    w.add_unk_token_id(ids["[UNK]"])
    w.add_pad_token_id(ids.get("[PAD]", 0))
    w.add_add_bos_token(True)
    w.add_add_sep_token(True)
    written = 0  # every BERT tensor must be there: 5 embedding ones and 16 per layer
    for key, value in tensors.items():
        name = names.get_name(key.removeprefix("bert."), try_suffixes=(".weight", ".bias"))
        if name is None:  # position_ids, the pooler: unused for sentence embeddings
            continue
        # Matrices in F16 (the tables of positions and token types stay F32, as llama.cpp's
        # own converter leaves them); vectors in F32.
        big = value.ndim == 2 and not name.startswith(("token_types", "position_embd"))
        w.add_tensor(name, np.ascontiguousarray(value.astype(np.float16 if big else np.float32)))
        written += 1
    if written != 5 + 16 * n_layers:
        raise ValueError(f"its weights name {written} of {5 + 16 * n_layers} BERT tensors")
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def bert_gguf(model_dir: Path, cache_dir: str | Path | None = None) -> Path:
    """The GGUF of the BERT sentence-transformers model in `model_dir`, converted on first use
    into `<cache>/models/<dirname>-<key>.gguf` and reused while its source files are unchanged.
    """
    return _converted(Path(model_dir), spec_or_error(Path(model_dir)), cache_dir)


def _converted(model_dir: Path, spec: BertSpec, cache_dir: str | Path | None) -> Path:
    weights = model_dir / "model.safetensors"
    if not weights.is_file():
        raise InputError(
            f"embedder {model_dir} has no model.safetensors; llama.cpp converts only safetensors "
            f"weights: save the model again with sentence-transformers (it writes safetensors)."
        )
    sources = [model_dir / "config.json", weights, model_dir / "tokenizer.json"]
    digest = f"{source_key(*sources, spec.pooling_config)}:{CONVERTER_VERSION}".encode()
    key = hashlib.sha256(digest).hexdigest()[:12]
    target = cache_root(cache_dir) / "models" / f"{model_dir.name}-{key}.gguf"
    if target.is_file():
        return target
    clean_stale_temps(target.parent)
    try:
        return publish_file(target, lambda tmp: _write_gguf(model_dir, spec, tmp))
    except Exception as exc:  # whatever damaged weights or tokenizer make the readers raise
        raise InputError(
            f"embedder {model_dir} could not be converted for llama.cpp ({exc}); check that "
            f"it is a complete BERT sentence-transformers directory."
        ) from exc


class LlamaEmbedder:
    """A BERT sentence-transformers model on llama.cpp (the bundled MiniLM for `path=None`).

    Thread-safe: llama.cpp queues concurrent requests and batches them across its slots.
    """

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        threads: int | None = None,
        cache_dir: str | Path | None = None,
    ) -> None:
        from tokenizers import Tokenizer

        from pluralism.embedding import _fingerprint, minilm_path
        from pluralism.models._llama import start_server

        target = Path(path) if path is not None else minilm_path()
        spec = spec_or_error(target)
        gguf_file = _converted(target, spec, cache_dir)
        # The id keys rule vectors cached on disk and in Redis: the bundled model keeps its
        # name, a directory gets its name and contents (not its path), as replicas must agree.
        self.model_id = (
            "all-MiniLM-L6-v2" if path is None else f"{target.name}#{_fingerprint(target)}"
        )
        self.dim = int(spec.config["hidden_size"])
        self.max_seq_length = spec.max_seq_length
        self._lower = spec.lower_case
        self._tokenizer = Tokenizer.from_file(str(target / "tokenizer.json"))
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(spec.max_seq_length)  # as sentence-transformers cuts
        # The whole of each text must fit one micro-batch: BERT attends both ways.
        ubatch = max(512, spec.max_seq_length)
        try:
            self._server: Any = start_server(
                gguf_file,
                threads=resolve_threads(threads),
                slots=SLOTS,
                ctx=SLOTS * spec.max_seq_length,
                batch=max(2048, ubatch),
                ubatch=ubatch,
                embedding=True,
                pooling=spec.pooling,
            )
        except RuntimeError as exc:
            raise ModelError(
                f"llama.cpp could not load the embedder {target} from {gguf_file} ({exc}); "
                f"delete that file to convert the model again."
            ) from exc
        # One request before the embedder is handed out: an xllamacpp server dropped before
        # its first request can hang in its destructor (seen with xllamacpp 2026.10).
        self._encode([""])

    def encode(self, texts: Sequence[str]) -> Vectors:
        """L2-normalised float32 rows, one per text."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        parts = [self._encode(texts[i : i + CHUNK]) for i in range(0, len(texts), CHUNK)]
        return parts[0] if len(parts) == 1 else np.concatenate(parts).astype(np.float32)

    def _encode(self, texts: Sequence[str]) -> Vectors:
        from pluralism.models._llama import raise_for_error

        batch = [t.lower() for t in texts] if self._lower else list(texts)
        ids = [e.ids for e in self._tokenizer.encode_batch(batch)]
        result = self._server.handle_embeddings({"input": ids})
        raise_for_error(result, self.model_id)
        data = sorted(result.get("data", []), key=lambda d: int(d["index"]))
        rows = np.asarray([d["embedding"] for d in data], dtype=np.float32)
        if rows.shape != (len(batch), self.dim):
            raise ModelError(
                f"The local embedder {self.model_id} returned {rows.shape} vectors for "
                f"{len(batch)} texts of dimension {self.dim}."
            )
        rows /= np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
        return rows
