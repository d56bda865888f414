"""Sentence embeddings of a fixed list of texts, computed once and cached on disk.

A vocabulary (ImageNet class names, attribute words, ...) is embedded with the caption model once;
the vectors are stored under ``<cache_dir>/vocabulary/<label>-<model>-<digest>.npy`` with a JSON
manifest beside it (the texts, the model, the file's SHA-256). The digest covers the model name and
every text, so a changed vocabulary or model gets a new file; a damaged file fails its checksum and is
recomputed; an unwritable cache only costs recomputing next time. Writes are atomic
(:mod:`pipeline.storage`). Results are also kept in memory for the process.
"""
from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import Callable

import numpy as np

from . import vectors as vec
from .errors import CacheError
from .storage import read_array, read_json, safe_filename, write_array, write_json

_MEMORY: dict[tuple[str, str], np.ndarray] = {}
_LOCK = threading.Lock()


def texts_digest(text_model: str, texts: list[str]) -> str:
    """SHA-256 (hex) of the model name and the texts, in order."""
    return hashlib.sha256("\n".join([text_model, *texts]).encode("utf-8")).hexdigest()


def cached_embeddings(embed: Callable[[list[str]], np.ndarray], texts: list[str], text_model: str,
                      cache_dir: Path, label: str) -> np.ndarray:
    """``(len(texts), D)`` float32 L2-normalised embeddings of ``texts``.

    embed: texts -> (N, D) float32 vectors (e.g. ``Models.embed_texts``), called only on a cache miss.
    text_model: the name of the model ``embed`` runs (part of the cache key).
    label: a short name for the file (``[A-Za-z0-9_.-]``), e.g. ``"offset-terms"``.
    """
    digest = texts_digest(text_model, texts)
    key = (str(Path(cache_dir).resolve()), digest)
    with _LOCK:  # one thread embeds, the others wait for its result
        if key not in _MEMORY:
            _MEMORY[key] = _load_or_embed(embed, texts, text_model, Path(cache_dir), label, digest)
        return _MEMORY[key]


def _load_or_embed(embed, texts, text_model, cache_dir: Path, label: str, digest: str) -> np.ndarray:
    base = cache_dir / "vocabulary" / f"{label}-{safe_filename(text_model)}-{digest[:16]}"
    try:
        meta = read_json(base.with_suffix(".json"))
        cached = read_array(base.with_suffix(".npy"), meta["sha256"], mmap=False)
        if meta.get("texts") == texts and meta.get("text_model") == text_model and cached.shape[0] == len(texts):
            return vec.l2_normalize(cached)
    except (CacheError, KeyError, TypeError):
        pass
    vectors = np.asarray(embed(list(texts)), dtype=np.float32)
    try:
        checksum = write_array(base.with_suffix(".npy"), vectors)
        write_json(base.with_suffix(".json"), {"texts": texts, "text_model": text_model, "sha256": checksum})
    except CacheError:
        pass
    return vec.l2_normalize(vectors)


def forget_in_memory() -> None:
    """Drop the copies kept in memory (the next call reads the disk cache, as a new process would)."""
    with _LOCK:
        _MEMORY.clear()
