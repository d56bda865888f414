"""Metric functions of the evaluation suites: pure numpy in, numpy or plain Python out.

Conventions shared with :mod:`pipeline.vectors`:

* vectors are L2-normalised rows of float32 arrays; similarity is the dot product (= cosine);
* ranking is "higher score first, ties broken by the lower id" (the rule of
  :func:`pipeline.vectors.top_k`), and a rank is 1-based;
* exclusion removes candidate ids from the ranking altogether (they neither win nor push others down).

Everything here is deterministic; nothing draws random numbers.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import numpy as np

from pipeline.classes import class_centroids, class_sums, unit_rows  # noqa: F401 (class_centroids re-exported)

Progress = Callable[[int, int], None]
"""progress(done, total) for long loops."""


# --- ranks and accuracy at k ---------------------------------------------------------------------


def target_rank(scores: np.ndarray, target: int, exclude: Iterable[int] = ()) -> int:
    """1-based rank of ``target`` among the candidates not excluded.

    Args:
        scores: ``(N,)`` scores, higher is better.
        target: the id whose rank is wanted, in ``[0, N)``; must not be excluded.
        exclude: ids removed from the ranking.

    Returns:
        ``1 + #{i not excluded: s_i > s_t or (s_i == s_t and i < t)}``, the position
        :func:`pipeline.vectors.top_k` would give ``target`` with the same exclusion.
    """
    scores = np.asarray(scores, dtype=np.float64)
    target = int(target)
    if not 0 <= target < len(scores):
        raise ValueError(f"target {target} out of range [0, {len(scores)})")
    keep = np.ones(len(scores), dtype=bool)
    excluded = np.asarray(list(exclude), dtype=np.int64)
    if excluded.size:
        if target in set(excluded.tolist()):
            raise ValueError(f"target {target} is excluded; its rank is undefined")
        keep[excluded] = False
    s_t = scores[target]
    ids = np.arange(len(scores))
    ahead = (scores > s_t) | ((scores == s_t) & (ids < target))
    return int(np.count_nonzero(ahead & keep)) + 1


def accuracy_at_k(ranks: Sequence[int] | np.ndarray, k: int) -> float:
    """Share of questions whose right answer is ranked within the top ``k`` (ranks are 1-based).

    Returns a float in [0, 1]; NaN for no questions.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    ranks = np.asarray(ranks)
    if ranks.size == 0:
        return float("nan")
    return float(np.mean(ranks <= k))


def shares(flags: dict[str, np.ndarray | Sequence[bool]]) -> dict[str, float]:
    """Mean of each boolean array (the share of questions where a flag holds); NaN when empty."""
    out = {}
    for name, values in flags.items():
        values = np.asarray(values, dtype=bool)
        out[name] = float(values.mean()) if values.size else float("nan")
    return out


def topk_classification(logits: np.ndarray, targets: np.ndarray, ks: Sequence[int] = (1, 5)) -> dict[int, float]:
    """Top-k accuracy of a classifier: share of rows whose target index is among the k largest logits.

    Ties are broken like :func:`target_rank` (a tied class with a lower index counts as ahead).
    """
    logits = np.asarray(logits, dtype=np.float64)
    targets = np.asarray(targets, dtype=np.int64)
    if logits.ndim != 2 or len(logits) != len(targets):
        raise ValueError(f"logits (N, C) and targets (N,) must agree, got {logits.shape} and {targets.shape}")
    if len(targets) == 0:
        return {k: float("nan") for k in ks}
    rows = np.arange(len(targets))
    t = logits[rows, targets][:, None]
    ids = np.arange(logits.shape[1])[None, :]
    ranks = 1 + np.count_nonzero((logits > t) | ((logits == t) & (ids < targets[:, None])), axis=1)
    return {k: accuracy_at_k(ranks, k) for k in ks}


# --- class centroids and the nearest-centroid model ----------------------------------------------


# class_centroids (and its helpers) live in pipeline.classes, shared with questions about classes;
# M.class_centroids stays available here for the suites.


@dataclass
class CentroidLOO:
    """Leave-one-out nearest-centroid classification.

    classes: sorted labels; truth, predicted: ``(N,)`` class indices; scores: ``(N, C)`` cosines of
    each item with every centroid, its own class's centroid computed without it (-inf when the item
    is alone in its class); accuracy: share predicted == truth.
    """

    classes: list[str]
    truth: np.ndarray
    predicted: np.ndarray
    scores: np.ndarray
    accuracy: float

    def top(self, item: int, k: int = 3) -> list[tuple[str, float]]:
        order = np.argsort(-self.scores[item], kind="stable")[:k]
        return [(self.classes[i], float(self.scores[item, i])) for i in order]


def nearest_centroid_loo(vectors: np.ndarray, labels: Sequence[str]) -> CentroidLOO:
    """Leave-one-out accuracy of the nearest-centroid model (cosine to unit-length centroids).

    Each item is scored against every class centroid (the mean of the class's normalised vectors,
    renormalised); for its own class the centroid is recomputed without the item. The prediction is
    the best class, ties to the lower class index (classes sorted by label). An item that is the only
    one of its class cannot be predicted right (its own-class score is -inf).
    """
    vectors = np.asarray(vectors, dtype=np.float64)
    classes, y, sums = class_sums(vectors, labels)
    counts = np.bincount(y, minlength=len(classes))
    scores = vectors @ unit_rows(sums).T  # (N, C)
    own = sums[y] - vectors  # the own-class sum without the item
    own_norm = np.linalg.norm(own, axis=1)
    alone = (counts[y] <= 1) | (own_norm <= 1e-12)
    own_cos = np.einsum("ij,ij->i", vectors, own) / np.where(alone, 1.0, own_norm)
    rows = np.arange(len(y))
    scores[rows, y] = np.where(alone, -np.inf, own_cos)
    predicted = np.argmax(scores, axis=1)
    accuracy = float(np.mean(predicted == y)) if len(y) else float("nan")
    return CentroidLOO(classes, y, predicted, scores.astype(np.float32), accuracy)


# --- all ordered triples of centroids ------------------------------------------------------------


@dataclass
class TripleAnswers:
    """3CosAdd over all ordered triples (a, b, c) of distinct items of a small set (class centroids).

    The question is a : b :: c : ?, the query b - a + c (the talk's x + y - z with x = b, y = c,
    z = a), and the answer the item nearest to it by cosine (for unit-length items the same as by
    Euclidean distance, since |q|, the query's norm, is the same for every candidate). Arrays are
    ``(n, n, n)`` indexed ``[a, b, c]``; entries with a repeated item are invalid (``valid`` False,
    ids -1, scores NaN).

    nearest: the answer with nothing excluded (any of the n items, a, b, c included).
    nearest_excluded: the answer with a, b, c excluded ("the standard cheat").
    score_excluded: cos(nearest_excluded, b - a + c).
    only_c: the ONLY-C answer with a, b, c excluded: c's nearest other item not in {a, b}.
    ignore_a: the IGNORE-A answer with a, b, c excluded: the item nearest to b + c not in {a, b, c}.
    gram: the ``(n, n)`` Gram matrix of the items (cosines).
    """

    nearest: np.ndarray
    nearest_excluded: np.ndarray
    score_excluded: np.ndarray
    only_c: np.ndarray
    ignore_a: np.ndarray
    valid: np.ndarray
    gram: np.ndarray

    @property
    def n(self) -> int:
        return self.gram.shape[0]

    def role_counts(self) -> dict[str, int]:
        """How many valid triples have their (unexcluded) nearest item equal to a, b, c, or another."""
        a, b, c = _open_grid(self.n)
        v = self.valid
        nearest = self.nearest
        counts = {"a": int(np.count_nonzero(v & (nearest == a))),
                  "b": int(np.count_nonzero(v & (nearest == b))),
                  "c": int(np.count_nonzero(v & (nearest == c)))}
        counts["other"] = int(np.count_nonzero(v)) - counts["a"] - counts["b"] - counts["c"]
        return counts

    def verdict_flags(self, threshold: float) -> dict[str, np.ndarray]:
        """DESIGN.md's verdicts on the excluded answer d of every valid triple, as flat boolean arrays
        (one entry per valid triple): ``input`` (the unexcluded nearest is a, b or c), ``only-c``,
        ``ignore-a``, ``near-duplicate`` (cos(d, c) > threshold), ``genuine`` (none of these)."""
        a, b, c = _open_grid(self.n)
        v = self.valid
        d = np.where(v, self.nearest_excluded, 0)
        flags = {
            "input": ((self.nearest == a) | (self.nearest == b) | (self.nearest == c))[v],
            "only-c": (d == self.only_c)[v],
            "ignore-a": (d == self.ignore_a)[v],
            "near-duplicate": (self.gram[d, c] > threshold)[v],
        }
        flags["genuine"] = ~(flags["input"] | flags["only-c"] | flags["ignore-a"] | flags["near-duplicate"])
        return flags

    def verdicts(self, a: int, b: int, c: int, threshold: float) -> list[str]:
        """The verdict list of one triple, in the order of :data:`pipeline.analogy.VERDICTS`."""
        d = int(self.nearest_excluded[a, b, c])
        out = []
        if int(self.nearest[a, b, c]) in (a, b, c):
            out.append("input")
        if d == int(self.only_c[a, b, c]):
            out.append("only-c")
        if d == int(self.ignore_a[a, b, c]):
            out.append("ignore-a")
        if self.gram[d, c] > threshold:
            out.append("near-duplicate")
        return out or ["genuine"]


def _open_grid(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Index arrays of shapes (n,1,1), (1,n,1), (1,1,n) that broadcast to an [a, b, c] grid."""
    idx = np.arange(n)
    return idx[:, None, None], idx[None, :, None], idx[None, None, :]


def _first_not_in(candidates: np.ndarray, banned: list[np.ndarray]) -> np.ndarray:
    """Along the last axis of ``candidates`` (ids best first), the first id equal to none of
    ``banned`` (arrays broadcastable to candidates.shape[:-1]); -1 when every candidate is banned."""
    shape = np.broadcast_shapes(candidates.shape[:-1], *(np.shape(b) for b in banned))
    candidates = np.broadcast_to(candidates, shape + candidates.shape[-1:])
    ok = np.ones(candidates.shape, dtype=bool)
    for ban in banned:
        ok &= candidates != np.asarray(ban)[..., None]
    first = np.argmax(ok, axis=-1)
    chosen = np.take_along_axis(candidates, first[..., None], axis=-1)[..., 0]
    return np.where(ok.any(axis=-1), chosen, -1)


def _best_ids(scores: np.ndarray, k: int) -> np.ndarray:
    """The k best ids along the last axis, best first, ties to the lower id."""
    k = min(k, scores.shape[-1])
    return np.argsort(-scores, axis=-1, kind="stable")[..., :k]


def triple_answers(items: np.ndarray, progress: Progress | None = None) -> TripleAnswers:
    """3CosAdd answers for all ordered triples of distinct rows of ``items`` (see :class:`TripleAnswers`).

    Vectorised: with G = items @ items.T, the query's dot product with candidate w is
    G[b, w] - G[a, w] + G[c, w], so for each a one ``(n, n, n)`` block scores every (b, c, w) at once.
    Ties go to the lower id, as in :func:`pipeline.vectors.top_k`. Memory: about 4 n^3 bytes per block
    (32 MB for n = 200) plus the outputs (about 11 n^3 bytes).

    Args:
        items: ``(n, D)`` unit-length rows (e.g. class centroids), n >= 4 for excluded answers to exist.
        progress: optional callback progress(done, total) over the n blocks.
    """
    x = np.asarray(items, dtype=np.float64)
    if x.ndim != 2 or len(x) < 3:
        raise ValueError(f"items must have shape (n >= 3, D), got {x.shape}")
    n = len(x)
    gram = x @ x.T
    g32 = gram.astype(np.float32)
    idx = np.arange(n)
    dtype = np.int16 if n < 2**15 else np.int32
    nearest = np.full((n, n, n), -1, dtype=dtype)
    nearest_excluded = np.full((n, n, n), -1, dtype=dtype)
    score_excluded = np.full((n, n, n), np.nan, dtype=np.float32)
    bb, cc = np.meshgrid(idx, idx, indexing="ij")
    pair_ok = bb != cc
    # b + c part, shared by every a: (n, n, n) float32
    plus = g32[:, None, :] + g32[None, :, :]
    for a in range(n):
        s = plus - g32[a][None, None, :]  # s[b, c, w] = G[b,w] + G[c,w] - G[a,w]
        valid = pair_ok & (bb != a) & (cc != a)
        nearest[a] = np.where(valid, np.argmax(s, axis=2), -1)
        s[:, :, a] = -np.inf
        s[idx, :, idx] = -np.inf  # w == b
        s[:, idx, idx] = -np.inf  # w == c
        if n > 3:
            d = np.argmax(s, axis=2)
            dots = np.take_along_axis(s, d[..., None], axis=2)[..., 0].astype(np.float64)
            q_sq = 3.0 + 2.0 * gram[bb, cc] - 2.0 * gram[a, bb] - 2.0 * gram[a, cc]
            with np.errstate(invalid="ignore", divide="ignore"):
                cos = np.where(q_sq > 1e-12, dots / np.sqrt(np.maximum(q_sq, 1e-12)), 0.0)
            nearest_excluded[a] = np.where(valid, d, -1)
            score_excluded[a] = np.where(valid, cos, np.nan)
        if progress:
            progress(a + 1, n)
    # ONLY-C with a, b, c excluded: c's best neighbours other than c, first not in {a, b}
    g_no_self = gram.copy()
    g_no_self[idx, idx] = -np.inf
    nn = _best_ids(g_no_self, 3)  # (n, 3)
    a3, b3, c3 = _open_grid(n)
    only_c = _first_not_in(nn.astype(dtype)[c3], [a3, b3]).astype(dtype)
    # IGNORE-A with a, b, c excluded: for each (b, c), best w for b + c other than b, c; first not a
    h = (gram[:, None, :] + gram[None, :, :])
    h[idx, :, idx] = -np.inf
    h[:, idx, idx] = -np.inf
    top = _best_ids(h, 3).astype(dtype)  # (n, n, 3) indexed [b, c]
    del h
    ignore_a = _first_not_in(top[None, :, :, :], [a3]).astype(dtype)
    valid_all = (a3 != b3) & (a3 != c3) & (b3 != c3)
    only_c = np.where(valid_all, only_c, -1).astype(dtype)
    ignore_a = np.where(valid_all, ignore_a, -1).astype(dtype)
    return TripleAnswers(nearest, nearest_excluded, score_excluded, only_c, ignore_a, valid_all, gram)


def best_triples(answers: TripleAnswers, top_n: int = 10,
                 distinct_pairs: bool = False) -> list[tuple[int, int, int, int, float]]:
    """The ``top_n`` best analogies by excluded 3CosAdd score: (a, b, c, d, score), best first.

    b - a + c is symmetric in b and c, so (a, b, c) and (a, c, b) have the same answer and score;
    each such pair is listed once, in the orientation where d is nearer to c (ties: lower c).
    Ties in score go to the lower (a, b, c) in C order. With ``distinct_pairs`` only the best
    analogy of each unordered answer pair {c, d} is kept (the list then shows different answers
    rather than one close pair such as flute and oboe behind many different a and b).
    """
    scores = np.where(answers.valid, answers.score_excluded, -np.inf).ravel()
    n = answers.n
    out, seen, pairs = [], set(), set()
    order = np.argsort(-scores.astype(np.float64), kind="stable")
    for flat in order:
        if not np.isfinite(scores[flat]) or len(out) >= top_n:
            break
        a, b, c = np.unravel_index(flat, (n, n, n))
        a, b, c = int(a), int(b), int(c)
        key = (a, min(b, c), max(b, c))
        if key in seen:
            continue
        seen.add(key)
        d = int(answers.nearest_excluded[a, b, c])
        g = answers.gram
        if g[d, b] > g[d, c] or (g[d, b] == g[d, c] and b < c):
            b, c = c, b
        if distinct_pairs:
            pair = (min(c, d), max(c, d))
            if pair in pairs:
                continue
            pairs.add(pair)
        out.append((a, b, c, d, float(scores[flat])))
    return out


def score_rank(answers: TripleAnswers, a: int, b: int, c: int) -> tuple[int, int]:
    """Where triple (a, b, c) lands among all valid ordered triples by excluded 3CosAdd score:
    (1-based rank with ties counted ahead, number of valid triples)."""
    s = answers.score_excluded[a, b, c]
    scores = answers.score_excluded[answers.valid]
    return int(np.count_nonzero(scores > s)) + 1, int(scores.size)


def answer_rank(items: np.ndarray, a: int, b: int, c: int, expected: int) -> int:
    """1-based rank of ``expected`` among the items not in {a, b, c} by cos(d, b - a + c)."""
    x = np.asarray(items, dtype=np.float64)
    q = x[b] - x[a] + x[c]
    return target_rank(x @ q, expected, exclude=[a, b, c])
