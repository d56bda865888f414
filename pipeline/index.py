"""The one module that talks to FAISS.

A :class:`VectorIndex` holds L2-normalised float32 vectors (N, D), row id = gallery position, and a
FAISS index over them with inner product (= cosine). ``search`` answers top-k queries through FAISS;
``similarities`` gives exact cosines for all rows (or a candidate subset) from the stored matrix, which
is what the analogy maths needs (every method is a function of cos(d, a), cos(d, b), cos(d, c)).

Indexes are saved beside a JSON manifest (what they index, dims, library versions, a checksum of the
index file). :func:`load_index` refuses a file that does not match what the caller expects, with
:class:`StaleIndexError`, so that a stale index is rebuilt, never silently used.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
from threadpoolctl import ThreadpoolController

from .storage import atomic_write_bytes

INDEX_KINDS = ("flat",)


# A (N, D) x (D, 3) product is memory-bound and small below this many rows: one BLAS thread does it
# in about 1 ms at N = 1,000, while OpenBLAS's thread pool on 2 busy cores took 5-12 ms (measured
# with scripts/bench_gallery.py while other work ran; threadpoolctl's limit costs about 20 us).
SINGLE_THREAD_ROWS = 200_000
_BLAS = ThreadpoolController()


class StaleIndexError(RuntimeError):
    """A saved index does not match the vectors it is meant to index (or is damaged)."""


@dataclass
class SearchResult:
    """scores: (Q, k) float32 cosines, best first; ids: (Q, k) int64 row ids, -1 where fewer exist."""

    scores: np.ndarray
    ids: np.ndarray


class VectorIndex:
    """Cosine search over L2-normalised float32 vectors.

    vectors: (N, D) float32, rows L2-normalised (checked); may be a read-only memory map.
    kind: ``flat`` (exact ``IndexFlatIP``).
    """

    def __init__(self, vectors: np.ndarray, faiss_index: faiss.Index, kind: str):
        self.vectors = vectors
        self.faiss_index = faiss_index
        self.kind = kind

    @classmethod
    def build(cls, vectors: np.ndarray, kind: str = "flat") -> "VectorIndex":
        vectors = _as_unit_float32(vectors)
        if kind not in INDEX_KINDS:
            raise ValueError(f"unknown index kind {kind!r}: choose one of {', '.join(INDEX_KINDS)}")
        index = faiss.IndexFlatIP(vectors.shape[1])
        if len(vectors):
            index.add(np.ascontiguousarray(vectors))
        return cls(vectors, index, kind)

    def __len__(self) -> int:
        return self.vectors.shape[0]

    @property
    def dim(self) -> int:
        return self.vectors.shape[1]

    def search(self, queries: np.ndarray, k: int) -> SearchResult:
        """Top-k rows by cosine for each query; queries (Q, D) or (D,) are L2-normalised here."""
        queries = _as_unit_float32(np.atleast_2d(queries), check=False)
        k = max(1, min(k, len(self)))
        scores, ids = self.faiss_index.search(queries, k)
        return SearchResult(scores.astype(np.float32), ids.astype(np.int64))

    def similarities(self, queries: np.ndarray, ids: np.ndarray | None = None) -> np.ndarray:
        """Exact cosines (R, Q) float32 between rows (all, or ``ids``) and L2-normalised queries (Q, D)."""
        queries = np.ascontiguousarray(_as_unit_float32(np.atleast_2d(queries), check=False).T)
        rows = self.vectors if ids is None else self.vectors[np.asarray(ids, dtype=np.int64)]
        if len(rows) <= SINGLE_THREAD_ROWS:
            with _BLAS.limit(limits=1, user_api="blas"):
                return np.asarray(rows @ queries, dtype=np.float32)
        return np.asarray(rows @ queries, dtype=np.float32)

    def save(self, path: Path, manifest: dict) -> None:
        """Write the FAISS index to ``path`` and ``manifest`` (plus kind, dims, versions, checksum)
        to ``path.json``, each atomically, manifest last."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = faiss.serialize_index(self.faiss_index).tobytes()
        atomic_write_bytes(path, data)
        full = dict(manifest, **self._identity(), sha256=hashlib.sha256(data).hexdigest())
        atomic_write_bytes(path.with_suffix(path.suffix + ".json"), json.dumps(full, indent=1).encode())

    def _identity(self) -> dict:
        return {"kind": self.kind, "n": len(self), "dim": self.dim, "faiss": faiss.__version__}


def load_index(path: Path, vectors: np.ndarray, expect: dict) -> VectorIndex:
    """Load the index saved at ``path`` for ``vectors`` (N, D), if its manifest matches ``expect``.

    Raises StaleIndexError (message says what differs) when the file is missing, damaged (checksum),
    built by another FAISS version, for other dims or item count, or when any key of ``expect``
    (model, layer, items digest, ...) differs.
    """
    path = Path(path)
    meta_path = path.with_suffix(path.suffix + ".json")
    if not path.exists() or not meta_path.exists():
        raise StaleIndexError(f"no saved index at {path}")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as exc:
        raise StaleIndexError(f"index manifest {meta_path.name} is unreadable ({exc})") from exc
    wanted = dict(expect, n=int(vectors.shape[0]), dim=int(vectors.shape[1]), faiss=faiss.__version__)
    for key, value in wanted.items():
        if meta.get(key) != value:
            raise StaleIndexError(f"index {path.name} is stale: {key} is {meta.get(key)!r}, expected {value!r}")
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != meta.get("sha256"):
        raise StaleIndexError(f"index {path.name} is damaged (checksum mismatch)")
    index = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
    if index.ntotal != vectors.shape[0] or index.d != vectors.shape[1]:
        raise StaleIndexError(f"index {path.name} holds {index.ntotal}x{index.d}, expected {vectors.shape}")
    return VectorIndex(_as_unit_float32(vectors), index, meta["kind"])


def _as_unit_float32(vectors: np.ndarray, check: bool = True) -> np.ndarray:
    """float32 view/copy of (N, D) vectors; with ``check`` assert rows are unit length (or zero),
    else normalise them."""
    vectors = np.asarray(vectors)
    if vectors.ndim != 2:
        raise ValueError(f"expected a 2-D array of vectors, got shape {vectors.shape}")
    if vectors.dtype != np.float32:
        vectors = vectors.astype(np.float32)
    norms = np.linalg.norm(vectors, axis=1)
    if check:
        bad = ~(np.isclose(norms, 1.0, atol=1e-3) | (norms == 0))
        if bad.any():
            raise ValueError(f"{int(bad.sum())} vectors are not L2-normalised (first at row {int(np.argmax(bad))})")
        return vectors
    return vectors / np.maximum(norms, 1e-12)[:, None]
