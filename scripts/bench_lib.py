"""What the scale benchmark (``scripts/bench_scale.py``) and its tests need, and the product does not:
synthetic vectors shaped like convnet features, and the two index kinds that were measured and lost.

The product's indexes are ``flat`` and ``pq`` (:mod:`pipeline.index`). :class:`BenchIndex` adds, on
the same :class:`pipeline.index.VectorIndex` (same search, candidates, recall tuning, save and load):

``ivf``   ``IndexIVFFlat`` (spherical k-means, nlist ~ 4 sqrt(N)). At 100k x 1280: 38 s to build,
          nprobe 64 for recall@10 0.9955, analogy p50 20.6 ms (pq: 4.6 ms), 41 of 43 analogies as
          exact. At 1M (nlist 4000, on an earlier, finer-clustered synthetic set) 240 s to train, 130 s
          to fill and only 0.79 recall@10 at nprobe 128: analogy queries such as ``b - a + c`` mix
          three regions of the space, so their neighbours spread over many cells.
``hnsw``  ``IndexHNSWFlat`` (M=32). At 100k x 1280: 78 s to build (more than linear in N: far over
          15 minutes expected at 1M on 2 cores), efSearch 512 for recall@10 0.994, analogy p50 29.8 ms.

(2 cores shared with other work; "analogy" = one ``solve_space`` call, as in :mod:`pipeline.index`.)
"""
from __future__ import annotations

import math

import faiss
import numpy as np

from pipeline.index import VectorIndex, add_in_chunks, seeded_rows

HNSW_M = 32
HNSW_EF_CONSTRUCTION = 40
IVF_TRAIN_PER_LIST = 40  # k-means training points per inverted list (faiss warns below 39)


class BenchIndex(VectorIndex):
    """:class:`pipeline.index.VectorIndex` with the kinds ``ivf`` and ``hnsw`` besides ``flat`` and
    ``pq``; ``info["params"]`` holds nlist/nprobe (ivf) or M/efConstruction/efSearch (hnsw)."""

    FAISS_TYPES = {**VectorIndex.FAISS_TYPES, "ivf": faiss.IndexIVFFlat, "hnsw": faiss.IndexHNSWFlat}
    SEARCH_PARAMS = {**VectorIndex.SEARCH_PARAMS, "ivf": "nprobe", "hnsw": "efSearch"}

    @classmethod
    def _make(cls, kind: str, vectors: np.ndarray, seed: int) -> tuple[faiss.Index, dict]:
        n, dim = vectors.shape
        if kind == "ivf":
            nlist = ivf_nlist(n)
            index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
            index.cp.spherical = True  # centroids on the unit sphere, as the data
            index.train(np.ascontiguousarray(vectors[seeded_rows(n, min(n, IVF_TRAIN_PER_LIST * nlist), seed)]))
            add_in_chunks(index, vectors)
            return index, {"nlist": nlist}
        if kind == "hnsw":
            index = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
            add_in_chunks(index, vectors)
            return index, {"M": HNSW_M, "efConstruction": HNSW_EF_CONSTRUCTION}
        return super()._make(kind, vectors, seed)

    def _tuning_ladder(self) -> list[int]:
        if self.kind == "ivf":
            nlist = self.faiss_index.nlist
            return sorted({min(nlist, v) for v in (8, 16, 32, 64, 128, 256, 512, 1024, nlist)})
        if self.kind == "hnsw":
            return [64, 128, 256, 512, 1024, 2048]
        return super()._tuning_ladder()

    def _set_search_param(self, value: int) -> None:
        if self.kind == "ivf":
            self.faiss_index.nprobe = int(value)
        elif self.kind == "hnsw":
            self.faiss_index.hnsw.efSearch = int(value)
        else:
            super()._set_search_param(value)

    def _get_search_param(self) -> int:
        if self.kind == "ivf":
            return self.faiss_index.nprobe
        if self.kind == "hnsw":
            return self.faiss_index.hnsw.efSearch
        return super()._get_search_param()


#: Every kind the benchmark can build, the product's first.
ALL_KINDS = tuple(BenchIndex.FAISS_TYPES)


def ivf_nlist(n: int) -> int:
    """Inverted lists for ``n`` vectors: about 4 sqrt(n), at most n / 39 (enough training points)."""
    return int(max(1, min(round(4 * math.sqrt(n)), n // 39)))


def clustered_unit_vectors(n: int, dim: int, seed: int = 0, per_cluster: int = 100, max_clusters: int = 1000,
                           rank: int = 128, chunk: int = 65_536) -> np.ndarray:
    """(n, dim) float32 synthetic unit vectors shaped like convnet features, for tests and benchmarks.

    Each row is ``0.5 m + 0.6 c_k + 0.6 (z W) + noise``, normalised: a mean direction m shared by all
    (real pooled features have one: imagen's mean row has norm 0.45), one of
    min(max_clusters, n / per_cluster) random cluster centres c_k (a photo collection has a bounded
    number of concepts, ImageNet-1k's 1000 by default, with more photos of each as it grows), a
    within-cluster part in a ``rank``-dimensional subspace with a decaying spectrum, and isotropic
    noise. On 1280 dims: a median cosine of about 0.19 between random rows and about 0.58 to the
    nearest neighbour at 10k-300k rows (imagen's 1,000 pooled features: 0.19 and 0.52).
    Generated in chunks (no float64 copy), deterministic for a seed.
    """
    rng = np.random.default_rng(seed)

    def unit(a):
        return a / np.linalg.norm(a, axis=-1, keepdims=True)

    clusters = max(2, min(max_clusters, n // per_cluster))
    mean = unit(rng.standard_normal(dim, dtype=np.float32))
    centres = unit(rng.standard_normal((clusters, dim), dtype=np.float32))
    basis = unit(rng.standard_normal((rank, dim), dtype=np.float32))
    spectrum = np.arange(1, rank + 1, dtype=np.float32) ** -0.5
    spectrum /= np.linalg.norm(spectrum)
    out = np.empty((n, dim), np.float32)
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        members = rng.integers(0, clusters, m)
        within = (rng.standard_normal((m, rank), dtype=np.float32) * spectrum) @ basis
        rows = 0.5 * mean + 0.6 * centres[members] + 0.6 * within
        rows += rng.standard_normal((m, dim), dtype=np.float32) * np.float32(0.6 / np.sqrt(dim))
        out[start:start + m] = unit(rows)
    return out
