"""The one module that talks to FAISS.

A :class:`VectorIndex` holds L2-normalised float32 vectors (N, D), row id = gallery position, and a
FAISS index over them with inner product (= cosine). ``search`` answers top-k queries through FAISS;
``similarities`` gives exact cosines for all rows (or a candidate subset) from the stored matrix, which
is what the analogy maths needs (every method is a function of cos(d, a), cos(d, b), cos(d, c)).

Index kinds, and which one ``kind="auto"`` picks (numbers from ``scripts/bench_scale.py`` on 2 shared
cores, synthetic vectors, "analogy" = one ``solve_space`` call; the README's "Scale" section has more):

``flat``  exact ``IndexFlatIP``, up to :data:`FLAT_MAX_ITEMS` items. The analogy scores every row: about
          1 ms per 1,000 items at 1280 dims (102 ms at 100k), so the 50 ms target is missed past ~45k.
``pq``    ``IndexPQFastScan`` (4-bit product quantizer, :func:`pq_subquantizers`: 80 bytes a 1280-d
          vector), whose top ``rerank`` rows per query are re-scored exactly from the stored vectors.
          At 1M x 1280: 27 s to build and tune, recall@10 0.9965 with rerank 640, analogy p50 19.9 ms
          (exact: 1464 ms), every benchmark analogy answered as by exact search.

IVF-Flat and HNSW were measured and lost; they live with the benchmark (``scripts/bench_lib.py``), as a
subclass of :class:`VectorIndex` (see its docstring for the hooks).

For an approximate kind, ``build`` measures recall@10 against exact search on seeded analogy-style
queries (:func:`sample_queries`), tunes its search parameter to the smallest setting whose recall
reaches :data:`RECALL_GOAL`, and records both in ``info`` (and so in the saved manifest). The analogy
path never trusts an approximate index for scores: it asks it for candidate rows
(:meth:`VectorIndex.candidates`) and scores those rows exactly.

Indexes are saved beside a JSON manifest (what they index, kind, dims, library versions, a checksum of
the index file, the recall measurement). :func:`load_index` refuses a file that does not match what the
caller expects, with :class:`StaleIndexError`, so that a stale index is rebuilt, never silently used.
"""
from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
from threadpoolctl import ThreadpoolController

from . import vectors as vec
from .errors import StaleIndexError
from .images import file_sha256
from .storage import atomic_write_bytes, fsync_file, replacing

FAISS_VERSION = faiss.__version__

#: ``kind="auto"`` builds an exact flat index up to this many items and a pq index above it: about
#: 42 ms for an analogy on the exact path on 2 cores, under the 50 ms target (see the module doc).
FLAT_MAX_ITEMS = 40_000
#: The recall@10 an approximate index must reach on the build-time sample (the product's target) ...
RECALL_TARGET = 0.95
#: ... and the recall the tuning aims at. Higher than the target: an analogy needs the true top rows
#: of five queries at once (one per method and baseline) to give exactly the exact answers.
RECALL_GOAL = 0.99
RECALL_K = 10
RECALL_QUERIES = 200
RECALL_SEED = 0

PQ_TRAIN_ROWS = 65_536  # seeded rows the product quantizer is trained on
PQ_MAX_RERANK = 5_120  # the most rows a pq query re-scores exactly (bounds latency and memory)

# A (N, D) x (D, 3) product is memory-bound and small below this many rows: one BLAS thread does it
# in about 1 ms at N = 1,000, while OpenBLAS's thread pool on 2 busy cores took 5-12 ms (measured
# with scripts/bench_gallery.py while other work ran; threadpoolctl's limit costs about 20 us).
SINGLE_THREAD_ROWS = 200_000
_BLAS = ThreadpoolController()
# FAISS searches of a handful of queries (an analogy asks 5-7) run on one OpenMP thread: at 1M items a
# pq search of 5 queries took 15 ms on one thread against 25-32 ms on two busy cores, where the
# threads' barriers wait for the scheduler (at 30k items: 0.5 ms against 8 ms).
SINGLE_THREAD_QUERIES = 16


@dataclass
class SearchResult:
    """scores: (Q, k) float32 cosines, best first; ids: (Q, k) int64 row ids, -1 where fewer exist."""

    scores: np.ndarray
    ids: np.ndarray


class VectorIndex:
    """Cosine search over L2-normalised float32 vectors.

    vectors: (N, D) float32, rows L2-normalised (checked); may be a read-only memory map.
    kind: ``flat`` (exact ``IndexFlatIP``) or ``pq`` (``IndexPQFastScan`` + exact re-rank); see the
    module docstring.
    info: what the build measured and chose: ``exact``, ``recall_at_10`` (1.0 for flat),
    ``recall_queries``, ``recall_seed``, ``recall_target``, ``recall_target_met``, ``params``
    (pq: M, nbits and the tuned rerank), ``build_seconds``.

    A subclass may add approximate kinds (entries in :attr:`FAISS_TYPES`, :attr:`SEARCH_PARAMS`; its own
    :meth:`_make` and search-parameter methods); :func:`load_index` takes the subclass to load them."""

    #: kind -> the FAISS class an index of that kind holds (:func:`load_index` checks it).
    FAISS_TYPES: dict[str, type] = {"flat": faiss.IndexFlatIP, "pq": faiss.IndexPQFastScan}
    #: approximate kind -> the name of its tuned search parameter in ``info["params"]``.
    SEARCH_PARAMS: dict[str, str] = {"pq": "rerank"}

    def __init__(self, vectors: np.ndarray, faiss_index: faiss.Index, kind: str, info: dict | None = None):
        self.vectors = vectors
        self.faiss_index = faiss_index
        self.kind = kind
        self.rerank = 0  # pq: rows fetched per query from the codes and re-scored exactly (tuned)
        self.info = dict(info or {"exact": kind == "flat", "recall_at_10": 1.0 if kind == "flat" else None})

    @classmethod
    def build(cls, vectors: np.ndarray, kind: str = "auto", *, seed: int = RECALL_SEED,
              recall_queries: int = RECALL_QUERIES) -> "VectorIndex":
        """Index ``vectors`` (N, D) L2-normalised; ``kind`` a key of :attr:`FAISS_TYPES` or ``auto``
        (flat up to :data:`FLAT_MAX_ITEMS` items, else pq). Approximate kinds are tuned and their
        recall@10 measured on ``recall_queries`` queries drawn with ``seed`` (see module doc)."""
        vectors = _as_unit_float32(vectors)
        kind = choose_kind(len(vectors)) if kind == "auto" else kind
        if kind not in cls.FAISS_TYPES:
            raise ValueError(f"unknown index kind {kind!r}: choose one of auto, {', '.join(cls.FAISS_TYPES)}")
        started = time.perf_counter()
        n, dim = vectors.shape
        if kind == "flat":
            index = faiss.IndexFlatIP(dim)
            add_in_chunks(index, vectors)
            return cls(vectors, index, kind, {"exact": True, "recall_at_10": 1.0,
                                              "build_seconds": round(time.perf_counter() - started, 3)})
        if n < 2:
            raise ValueError(f"an {kind} index needs at least 2 vectors, got {n}; use kind='flat'")
        index, params = cls._make(kind, vectors, seed)
        built = cls(vectors, index, kind, {"exact": False, "params": params})
        built._tune(seed, recall_queries)
        built.info["build_seconds"] = round(time.perf_counter() - started, 3)
        return built

    @classmethod
    def _make(cls, kind: str, vectors: np.ndarray, seed: int) -> tuple[faiss.Index, dict]:
        """The FAISS index of the approximate ``kind`` over ``vectors`` (N, D) unit float32, trained on
        rows drawn with ``seed`` and filled, with its build parameters (for ``info["params"]``)."""
        n, dim = vectors.shape
        m = pq_subquantizers(dim)
        index = faiss.IndexPQFastScan(dim, m, 4, faiss.METRIC_INNER_PRODUCT)
        # 160 tiny k-means (16 centroids in 8 dims): 1 s on one thread, 2-15 s on two busy cores
        with _faiss_threads(0):
            index.train(np.ascontiguousarray(vectors[seeded_rows(n, min(n, PQ_TRAIN_ROWS), seed)]))
        add_in_chunks(index, vectors)
        return index, {"M": m, "nbits": 4}

    # --- tuning and recall ----------------------------------------------------------------------

    def _tune(self, seed: int, n_queries: int) -> None:
        """Smallest search parameter of :meth:`_tuning_ladder` whose measured recall@10 reaches
        RECALL_GOAL (the last one tried when none does)."""
        queries = sample_queries(self.vectors, n_queries, seed)
        exact = exact_search(self.vectors, queries, RECALL_K)
        for value in self._tuning_ladder():
            self._set_search_param(value)
            recall = recall_at_k(self.search(queries, RECALL_K).ids, exact, RECALL_K)
            if recall >= RECALL_GOAL:
                break
        self.info.update(recall_at_10=round(float(recall), 4), recall_queries=int(len(queries)),
                         recall_seed=int(seed), recall_target=RECALL_TARGET,
                         recall_target_met=bool(recall >= RECALL_TARGET))
        self.info["params"].update(self._search_param())

    def _tuning_ladder(self) -> list[int]:
        """pq: the rerank values to try, doubling; never more than PQ_MAX_RERANK rows a query (past
        that the target counts as missed)."""
        ladder = (40, 80, 160, 320, 640, 1280, 2560, PQ_MAX_RERANK)
        return [v for v in ladder if v < len(self)] + ([len(self)] if len(self) <= PQ_MAX_RERANK else [])

    def _set_search_param(self, value: int) -> None:
        self.rerank = int(value)  # pq's; flat has none

    def _get_search_param(self) -> int:
        return self.rerank

    def _search_param(self) -> dict:
        """``{name: value}`` of the kind's tuned search parameter; ``{}`` for flat."""
        name = self.SEARCH_PARAMS.get(self.kind)
        return {name: int(self._get_search_param())} if name else {}

    def measure_recall(self, queries: np.ndarray | None = None, k: int = RECALL_K, seed: int = RECALL_SEED,
                       n_queries: int = RECALL_QUERIES) -> float:
        """recall@k of :meth:`search` against exact search over the same vectors, on ``queries`` (Q, D)
        or on :func:`sample_queries` drawn with ``seed``. 1.0 for a flat index (up to float ties)."""
        if queries is None:
            queries = sample_queries(self.vectors, n_queries, seed)
        queries = _as_unit_float32(np.atleast_2d(queries), check=False)
        return recall_at_k(self.search(queries, k).ids, exact_search(self.vectors, queries, k), k)

    # --- queries --------------------------------------------------------------------------------

    @property
    def exact(self) -> bool:
        """True when ``search`` is exact (flat): the analogy path then scores every row."""
        return self.kind == "flat"

    def __len__(self) -> int:
        return self.vectors.shape[0]

    @property
    def dim(self) -> int:
        return self.vectors.shape[1]

    def search(self, queries: np.ndarray, k: int) -> SearchResult:
        """Top-k rows by cosine for each query; queries (Q, D) or (D,) are L2-normalised here.
        On an approximate index some true neighbours may be missing (see ``info["recall_at_10"]``);
        the scores returned are exact cosines of the rows returned (the indexes store full vectors)."""
        queries = _as_unit_float32(np.atleast_2d(queries), check=False)
        if queries.shape[1] != self.dim:
            raise ValueError(f"queries have {queries.shape[1]} dims, the index {self.dim}")
        k = max(1, min(int(k), len(self)))
        if self.kind != "pq":
            with _faiss_threads(len(queries)):
                scores, ids = self.faiss_index.search(queries, k)
            return SearchResult(scores.astype(np.float32), ids.astype(np.int64))
        # pq: the codes rank every row approximately; the top max(k, rerank) are re-scored exactly.
        fetched = self._fetch(queries, k)
        scores = np.full((len(queries), k), -np.inf, np.float32)
        ids = np.full((len(queries), k), -1, np.int64)
        block = max(1, 4_000_000 // max(1, fetched.shape[1] * self.dim))  # bounds the gathered rows
        for start in range(0, len(queries), block):
            rows = fetched[start:start + block]
            safe = np.where(rows >= 0, rows, 0)
            exact = np.einsum("qfd,qd->qf", np.asarray(self.vectors[safe.ravel()]).reshape(*safe.shape, -1),
                              queries[start:start + block])
            exact = np.where(rows >= 0, exact, -np.inf)
            order = np.argsort(-exact, axis=1, kind="stable")[:, :k]
            scores[start:start + block] = np.take_along_axis(exact, order, axis=1)
            ids[start:start + block] = np.take_along_axis(rows, order, axis=1)
        ids[~np.isfinite(scores)] = -1
        return SearchResult(scores, ids)

    def _fetch(self, queries: np.ndarray, k: int) -> np.ndarray:
        """pq: (Q, max(k, rerank)) int64 ids ranked by the quantized codes (-1 past the end)."""
        with _faiss_threads(len(queries)):
            _, ids = self.faiss_index.search(queries, int(min(len(self), max(k, self.rerank))))
        return ids.astype(np.int64)

    def candidates(self, queries: np.ndarray, k: int, include=()) -> np.ndarray:
        """Sorted unique int64 row ids: the union of the top-k rows of every query (Q, D), plus the
        ids in ``include``. Queries that are all zeros (e.g. ``b - a`` with ``a == b``) are skipped.
        On a pq index, the union of the max(k, rerank) rows the codes rank first (a superset of what
        :meth:`search` would re-rank, so the caller's exact scoring sees at least as much)."""
        queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        nonzero = queries[np.linalg.norm(queries, axis=1) > 1e-6]
        parts = [np.asarray(list(include), dtype=np.int64)]
        if len(nonzero):
            nonzero = _as_unit_float32(nonzero, check=False)
            ids = self._fetch(nonzero, k) if self.kind == "pq" else self.search(nonzero, k).ids
            parts.append(ids[ids >= 0])
        return np.unique(np.concatenate(parts))

    def similarities(self, queries: np.ndarray, ids: np.ndarray | None = None) -> np.ndarray:
        """Exact cosines (R, Q) float32 between rows (all, or ``ids``) and L2-normalised queries (Q, D)."""
        queries = np.ascontiguousarray(_as_unit_float32(np.atleast_2d(queries), check=False).T)
        rows = self.vectors if ids is None else self.vectors[np.asarray(ids, dtype=np.int64)]
        if len(rows) <= SINGLE_THREAD_ROWS:
            with _BLAS.limit(limits=1, user_api="blas"):
                return np.asarray(rows @ queries, dtype=np.float32)
        return np.asarray(rows @ queries, dtype=np.float32)

    def typical_nn_distance(self, sample: int = 2000, seed: int = 0, k: int = 10) -> float:
        """Median Euclidean distance from an item to its nearest other *distinct* item (exact
        duplicates say nothing about how far apart different items are; see
        :func:`pipeline.vectors.typical_nn_distance`). Flat: exact, over the distinct rows.
        Approximate: for ``sample`` seeded rows, the nearest row with a different vector among the
        index's top ``k`` (an upper bound per row; with recall@10 above 0.95 nearly always the true
        one), at a small fraction of the exact cost on a large gallery."""
        n = len(self)
        if self.exact:
            distinct = np.unique(np.asarray(self.vectors), axis=0)
            return vec.typical_nn_distance(distinct, sample=sample, seed=seed) if len(distinct) >= 2 else 0.0
        rows = seeded_rows(n, min(n, sample), seed)
        ids = self.search(np.asarray(self.vectors[rows]), k).ids
        distances = []
        for row, found in zip(rows, ids):
            own = np.asarray(self.vectors[row], np.float64)
            for other in found[found >= 0]:
                diff = own - np.asarray(self.vectors[int(other)], np.float64)
                if diff.any():
                    distances.append(float(np.linalg.norm(diff)))
                    break
        return float(np.median(distances)) if distances else 0.0

    # --- persistence ----------------------------------------------------------------------------

    def save(self, path: Path, manifest: dict) -> None:
        """Write the FAISS index to ``path`` and ``manifest`` (plus kind, dims, versions, checksum,
        the build's measurements) to ``path.json``, each atomically, manifest last. The index is
        written straight to a temporary file (no in-memory copy), then renamed. Raises CacheError."""
        path = Path(path)
        with replacing(path) as tmp:
            try:
                faiss.write_index(self.faiss_index, tmp)
            except RuntimeError as exc:  # faiss reports write errors (a full disk) as RuntimeError
                raise OSError(str(exc).splitlines()[0]) from exc
            fsync_file(tmp)
            digest = file_sha256(tmp)
        full = dict(manifest, **self._identity(), info=self.info, sha256=digest)
        atomic_write_bytes(path.with_suffix(path.suffix + ".json"), json.dumps(full, indent=1).encode())

    def _identity(self) -> dict:
        return {"kind": self.kind, "n": len(self), "dim": self.dim, "faiss": FAISS_VERSION}


def load_index(path: Path, vectors: np.ndarray, expect: dict,
               index_class: type[VectorIndex] = VectorIndex) -> VectorIndex:
    """Load the index saved at ``path`` for ``vectors`` (N, D), if its manifest matches ``expect``, as
    an ``index_class`` (which says what kinds exist: :attr:`VectorIndex.FAISS_TYPES`).

    Raises StaleIndexError (message says what differs) when the file is missing, damaged (checksum),
    built by another FAISS version, for other dims or item count, of an unknown kind, or when any key
    of ``expect`` (model, layer, items digest, ``kind`` if given, ...) differs.
    """
    path = Path(path)
    meta_path = path.with_suffix(path.suffix + ".json")
    if not path.exists() or not meta_path.exists():
        raise StaleIndexError(f"no saved index at {path}")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as exc:
        raise StaleIndexError(f"index manifest {meta_path.name} is unreadable ({exc})") from exc
    if not isinstance(meta, dict):
        raise StaleIndexError(f"index manifest {meta_path.name} is not a JSON object")
    wanted = dict(expect, n=int(vectors.shape[0]), dim=int(vectors.shape[1]), faiss=FAISS_VERSION)
    for key, value in wanted.items():
        if meta.get(key) != value:
            raise StaleIndexError(f"index {path.name} is stale: {key} is {meta.get(key)!r}, expected {value!r}")
    kind = meta.get("kind")
    if kind not in index_class.FAISS_TYPES:
        raise StaleIndexError(f"index {path.name} is of unknown kind {kind!r}")
    try:
        digest = file_sha256(path)
    except OSError as exc:
        raise StaleIndexError(f"index {path.name} is unreadable ({exc})") from exc
    if digest != meta.get("sha256"):
        raise StaleIndexError(f"index {path.name} is damaged (checksum mismatch)")
    try:
        index = faiss.read_index(str(path))
    except RuntimeError as exc:
        raise StaleIndexError(f"index {path.name} is damaged ({str(exc).splitlines()[0][:120]})") from exc
    if index.ntotal != vectors.shape[0] or index.d != vectors.shape[1]:
        raise StaleIndexError(f"index {path.name} holds {index.ntotal}x{index.d}, expected {vectors.shape}")
    if not isinstance(index, index_class.FAISS_TYPES[kind]):
        raise StaleIndexError(f"index {path.name} says {kind} but holds a {type(index).__name__}")
    info = meta.get("info") if isinstance(meta.get("info"), dict) else {}
    loaded = index_class(_as_unit_float32(vectors), index, kind, info or None)
    search_param = (info.get("params") or {}).get(index_class.SEARCH_PARAMS.get(kind, ""))
    if search_param:
        loaded._set_search_param(search_param)
    return loaded


# --- helpers (numpy in, numpy out) ----------------------------------------------------------------


def choose_kind(n: int) -> str:
    """What ``kind="auto"`` builds for ``n`` items: flat up to :data:`FLAT_MAX_ITEMS`, else pq."""
    return "flat" if n <= FLAT_MAX_ITEMS else "pq"


def pq_subquantizers(dim: int) -> int:
    """Sub-quantizers of the pq kind (4 bits each): dim / 8 for wide vectors (160, 80 bytes a code,
    for 1280-d), but at least 128 where ``dim`` allows (3 dims each for 384-d: with dim / 8 there,
    recall@10 0.99 needed re-ranking 5,120 rows a query at 100k items); the largest divisor of
    ``dim`` not above that target."""
    target = max(1, dim // 8, min(128, dim // 2))
    return next(m for m in range(target, 0, -1) if dim % m == 0)


def sample_queries(vectors: np.ndarray, n: int = RECALL_QUERIES, seed: int = RECALL_SEED) -> np.ndarray:
    """(n, D) float32 unit analogy-style queries from seeded random triples of rows (a, b, c):
    in turn ``b - a + c``, ``b + c``, ``c - (b - a)`` and ``c`` itself (zero queries replaced by c)."""
    rng = np.random.default_rng(seed)
    size = len(vectors)
    triples = (n + 3) // 4
    ids = rng.integers(0, size, (triples, 3))
    a, b, c = (np.asarray(vectors[ids[:, j]], dtype=np.float32) for j in range(3))
    queries = np.stack([b - a + c, b + c, c - (b - a), c], axis=1).reshape(-1, vectors.shape[1])[:n]
    norms = np.linalg.norm(queries, axis=1)
    fallback = np.repeat(c, 4, axis=0)[:n]
    queries = np.where(norms[:, None] > 1e-6, queries / np.maximum(norms, 1e-12)[:, None], fallback)
    return np.ascontiguousarray(queries, dtype=np.float32)


def exact_search(vectors: np.ndarray, queries: np.ndarray, k: int, chunk: int = 262_144) -> np.ndarray:
    """(Q, k) int64 ids of the exact top-k rows by inner product, scanning ``vectors`` in chunks (a
    memory map is never loaded whole)."""
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    k = min(k, len(vectors))
    best_scores = np.full((len(queries), 0), -np.inf, np.float32)
    best_ids = np.zeros((len(queries), 0), np.int64)
    for start in range(0, len(vectors), chunk):
        block = np.ascontiguousarray(vectors[start:start + chunk], dtype=np.float32)
        scores, ids = faiss.knn(queries, block, min(k, len(block)), metric=faiss.METRIC_INNER_PRODUCT)
        best_scores = np.concatenate([best_scores, scores], axis=1)
        best_ids = np.concatenate([best_ids, ids + start], axis=1)
        order = np.argsort(-best_scores, axis=1, kind="stable")[:, :k]
        best_scores = np.take_along_axis(best_scores, order, axis=1)
        best_ids = np.take_along_axis(best_ids, order, axis=1)
    return best_ids


def recall_at_k(found: np.ndarray, exact: np.ndarray, k: int = RECALL_K) -> float:
    """Mean over queries of |found[:k] & exact[:k]| / |exact[:k]| (ids; -1 never counts)."""
    found, exact = np.atleast_2d(found), np.atleast_2d(exact)
    if found.shape[0] != exact.shape[0]:
        raise ValueError(f"found has {found.shape[0]} queries, exact {exact.shape[0]}")
    total = 0.0
    for f, e in zip(found[:, :k], exact[:, :k]):
        e = set(int(i) for i in e if i >= 0)
        total += len(e & set(int(i) for i in f if i >= 0)) / max(1, len(e))
    return total / max(1, len(found))


def _faiss_threads(queries: int):
    """One OpenMP thread for a small search (see SINGLE_THREAD_QUERIES), else FAISS's default."""
    return _BLAS.limit(limits=1, user_api="openmp") if queries <= SINGLE_THREAD_QUERIES else contextlib.nullcontext()


def seeded_rows(n: int, size: int, seed: int) -> np.ndarray:
    """``size`` distinct row numbers of ``n``, drawn with ``seed``, sorted (int64)."""
    return np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False))


def add_in_chunks(index: faiss.Index, vectors: np.ndarray, chunk: int = 65_536) -> None:
    """Add rows in chunks, so that a memory-mapped matrix is never copied whole."""
    for start in range(0, len(vectors), chunk):
        index.add(np.ascontiguousarray(vectors[start:start + chunk], dtype=np.float32))


def _as_unit_float32(vectors: np.ndarray, check: bool = True, chunk: int = 65_536) -> np.ndarray:
    """float32 view/copy of (N, D) vectors; with ``check`` assert rows are unit length (or zero),
    else normalise them. Norms are computed in chunks (no float64 copy of a large matrix)."""
    vectors = np.asarray(vectors)
    if vectors.ndim != 2:
        raise ValueError(f"expected a 2-D array of vectors, got shape {vectors.shape}")
    if vectors.dtype != np.float32:
        vectors = vectors.astype(np.float32)
    if check:
        for start in range(0, len(vectors), chunk):
            norms = np.linalg.norm(vectors[start:start + chunk], axis=1)
            bad = ~(np.isclose(norms, 1.0, atol=1e-3) | (norms == 0))
            if bad.any():
                raise ValueError(f"{int(bad.sum())} vectors are not L2-normalised "
                                 f"(first at row {start + int(np.argmax(bad))})")
        return vectors
    norms = np.linalg.norm(vectors, axis=1)
    return vectors / np.maximum(norms, 1e-12)[:, None]
