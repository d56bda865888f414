"""Analogy maths in pure numpy: A : B :: C : D scored over a gallery of vectors.

Definitions follow DESIGN.md section 2. In each space every vector is L2-normalised first; a, b, c are
the inputs and d is a candidate from the gallery.

=================  ==========================================================
method             score of candidate d
=================  ==========================================================
``3cosadd``        cos(d, b - a + c)
``3cosmul``        s(d,b) * s(d,c) / (s(d,a) + eps), s = (cos + 1) / 2
``pairdirection``  cos(d - c, b - a)
``only-c``         cos(d, c)
``ignore-a``       cos(d, b + c)
``add-opposite``   cos(d, c - (b - a))
``multiply``       s(d,b) * s(d,c)
=================  ==========================================================

Every score is a function of three numbers per candidate, ``cos(d,a)``, ``cos(d,b)``, ``cos(d,c)``
(see :func:`input_similarities`), plus the 3x3 Gram matrix of the normalised a, b, c
(see :func:`gram_matrix`). For unit vectors:

* ``d . (x a + y b + z c) = x cos(d,a) + y cos(d,b) + z cos(d,c)`` and
  ``|x a + y b + z c|^2 = q^T G q`` with ``q = (x, y, z)``, so every "cos(d, query)" method is exact
  without forming the query;
* ``|d - c|^2 = 2 - 2 cos(d,c)`` and ``(d - c) . (b - a) = cos(d,b) - cos(d,a) - G[c,b] + G[c,a]``,
  which gives PairDirection.

So one ``(N, D) @ (D, 3)`` product scores every method, and a big gallery can be scored on any subset of
its rows. Scores are the exact values of the formulas (not merely rank-equivalent).

Degenerate cases (a squared norm below ``ZERO_SQ_NORM`` counts as zero):

* a zero query vector (for example ``b - a + c = 0``) gives a score of 0 to every candidate;
* PairDirection with ``b == a`` (zero offset) gives 0 to every candidate;
* PairDirection for a candidate with ``d == c`` (``|d - c| ~ 0``, direction undefined) gives -1.0, the
  lowest possible cosine, so such a candidate always ranks last.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np

ROLES = ("A", "B", "C")  # the inputs of A : B :: C : ?, in order
METHODS = ("3cosadd", "3cosmul", "pairdirection")
BASELINES = ("only-c", "ignore-a", "add-opposite", "multiply")
ALL_METHODS = METHODS + BASELINES

#: A squared norm below this counts as zero (zero query, zero offset, candidate equal to c).
ZERO_SQ_NORM = 1e-6

#: PairDirection: a candidate whose |d - c|^2 = 2 - 2 cos(d, c) is below this is C itself (direction
#: undefined, score -1). Wider than ZERO_SQ_NORM because cosines come from float32 products, where
#: cos(c, c) can come out as 0.999999 (|d - c|^2 = 2e-6): this catches cos(d, c) >= 1 - 1e-5.
SAME_AS_C_SQ_NORM = 2e-5

#: Decimals of every float a report's JSON carries (scores, cosines, measurements): see :func:`rounded`.
JSON_DECIMALS = 6

# Coefficients (x, y, z) of the query x*a + y*b + z*c for the methods that are "cos(d, query)".
_QUERY_COEFFICIENTS = {
    "3cosadd": (-1.0, 1.0, 1.0),  # b - a + c
    "only-c": (0.0, 0.0, 1.0),  # c
    "ignore-a": (0.0, 1.0, 1.0),  # b + c
    "add-opposite": (1.0, -1.0, 1.0),  # c - (b - a) = a - b + c
}

# Row/column order of the Gram matrix and of the similarity columns.
_A, _B, _C = 0, 1, 2


def l2_normalize(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """L2-normalise ``x`` along ``axis``.

    Args:
        x: array of any shape and numeric dtype, e.g. one vector ``(D,)`` or a matrix ``(N, D)``.
        axis: the axis that holds the vector components.

    Returns:
        A new float32 array of the same shape, each vector of unit L2 norm. All-zero vectors stay
        all-zero (no NaN); the input is never modified.
    """
    x = np.array(x, dtype=np.float32, copy=True)
    x64 = x.astype(np.float64)
    # what np.linalg.norm(x64, axis=axis, keepdims=True) computes, without its argument handling
    # (called for every small vector of a question, where that handling was most of the time)
    norms = np.sqrt(np.add.reduce(x64 * x64, axis=axis, keepdims=True))
    safe = np.where(norms > 0.0, norms, 1.0)
    x /= safe.astype(np.float32)
    return x


def _as_vector(v, name: str) -> np.ndarray:
    """``v`` as a 1-D float32 array, or ValueError."""
    v = np.asarray(v, dtype=np.float32)
    if v.ndim != 1:
        raise ValueError(f"{name} must be a 1-D vector, got shape {v.shape}")
    return v


def _normalized_inputs(a, b, c) -> np.ndarray:
    """The L2-normalised a, b, c stacked as a (3, D) float32 array (rows a, b, c)."""
    a, b, c = _as_vector(a, "a"), _as_vector(b, "b"), _as_vector(c, "c")
    if not (a.shape == b.shape == c.shape):
        raise ValueError(f"a, b, c must have the same length, got {a.shape}, {b.shape}, {c.shape}")
    return l2_normalize(np.stack([a, b, c]), axis=1)


def gram_matrix(a, b, c) -> np.ndarray:
    """The 3x3 Gram matrix of the L2-normalised inputs.

    Args:
        a, b, c: vectors of shape ``(D,)``, any numeric dtype, normalised inside (need not be unit).

    Returns:
        ``(3, 3)`` float64 array ``G`` with ``G[i, j] = x_i . x_j`` for ``x = (a, b, c)`` normalised
        (rows and columns in the order a, b, c). The diagonal is 1 (0 for an all-zero input).
    """
    abc = _normalized_inputs(a, b, c).astype(np.float64)
    return abc @ abc.T


def input_similarities(vectors: np.ndarray, a, b, c) -> np.ndarray:
    """Cosine of every gallery vector with each of the inputs.

    Args:
        vectors: ``(N, D)`` float32 gallery, rows already L2-normalised (other dtypes are converted;
            rows are not renormalised here). Any subset of a gallery's rows may be passed.
        a, b, c: vectors of shape ``(D,)``, any numeric dtype, normalised inside.

    Returns:
        ``(N, 3)`` float32 array, columns ``[cos(d,a), cos(d,b), cos(d,c)]``, clipped to [-1, 1].
    """
    vectors = np.asarray(vectors, dtype=np.float32)
    abc = _normalized_inputs(a, b, c)
    if vectors.ndim != 2 or vectors.shape[1] != abc.shape[1]:
        raise ValueError(f"vectors must have shape (N, {abc.shape[1]}), got {vectors.shape}")
    sims = (vectors @ abc.T).astype(np.float32, copy=False)
    return np.clip(sims, -1.0, 1.0, out=sims)


def _check_method(method: str) -> None:
    if method not in ALL_METHODS:
        raise ValueError(f"unknown method {method!r}: choose one of {', '.join(ALL_METHODS)}")


def _query_cosine(sims: np.ndarray, gram: np.ndarray, coefficients) -> np.ndarray:
    """cos(d, x a + y b + z c) for every candidate; 0 everywhere when the query is ~zero."""
    q = np.asarray(coefficients, dtype=np.float64)
    query_sq_norm = float(q @ gram @ q)
    if query_sq_norm < ZERO_SQ_NORM:
        return np.zeros(len(sims), dtype=np.float64)
    return (sims @ q) / np.sqrt(query_sq_norm)


def _pair_direction(sims: np.ndarray, gram: np.ndarray) -> np.ndarray:
    """cos(d - c, b - a) for every candidate (degenerate cases as in the module docstring)."""
    offset_sq_norm = gram[_A, _A] + gram[_B, _B] - 2.0 * gram[_A, _B]
    if offset_sq_norm < ZERO_SQ_NORM:
        return np.zeros(len(sims), dtype=np.float64)
    s_a, s_b, s_c = sims[:, _A], sims[:, _B], sims[:, _C]
    dot = s_b - s_a - gram[_C, _B] + gram[_C, _A]
    candidate_sq_norm = np.maximum(2.0 - 2.0 * s_c, 0.0)
    undefined = candidate_sq_norm < SAME_AS_C_SQ_NORM
    safe_norm = np.sqrt(np.where(undefined, 1.0, candidate_sq_norm))
    scores = dot / (safe_norm * np.sqrt(offset_sq_norm))
    return np.where(undefined, -1.0, scores)


def method_scores(sims: np.ndarray, gram: np.ndarray, method: str, eps: float = 1e-3) -> np.ndarray:
    """Score every candidate with one method or baseline (higher is better).

    Args:
        sims: ``(N, 3)`` array of ``[cos(d,a), cos(d,b), cos(d,c)]`` from :func:`input_similarities`
            (candidates L2-normalised); clipped to [-1, 1] here.
        gram: ``(3, 3)`` Gram matrix of the normalised a, b, c from :func:`gram_matrix`.
        method: one of :data:`ALL_METHODS`.
        eps: 3CosMul's denominator constant, must be > 0 (ignored by the other methods).

    Returns:
        ``(N,)`` float32 array, the exact value of the method's formula for each candidate (cosine
        methods are clipped to [-1, 1]). Degenerate cases are described in the module docstring.

    Raises:
        ValueError: unknown method, bad shapes or ``eps <= 0``.
    """
    _check_method(method)
    sims = np.array(sims, dtype=np.float64)  # a copy, clipped in place
    np.clip(sims, -1.0, 1.0, out=sims)
    gram = np.asarray(gram, dtype=np.float64)
    if sims.ndim != 2 or sims.shape[1] != 3:
        raise ValueError(f"sims must have shape (N, 3), got {sims.shape}")
    if gram.shape != (3, 3):
        raise ValueError(f"gram must have shape (3, 3), got {gram.shape}")

    if method in _QUERY_COEFFICIENTS:
        scores = np.clip(_query_cosine(sims, gram, _QUERY_COEFFICIENTS[method]), -1.0, 1.0)
    elif method == "pairdirection":
        scores = np.clip(_pair_direction(sims, gram), -1.0, 1.0)
    else:  # 3cosmul, multiply: products of shifted cosines s = (cos + 1) / 2 in [0, 1]
        shifted = (sims + 1.0) / 2.0
        scores = shifted[:, _B] * shifted[:, _C]
        if method == "3cosmul":
            if not eps > 0:
                raise ValueError(f"eps must be > 0, got {eps}")
            scores = scores / (shifted[:, _A] + eps)
    return scores.astype(np.float32)


def analogy_scores(vectors: np.ndarray, a, b, c, method: str, eps: float = 1e-3) -> np.ndarray:
    """Score every gallery row as the answer to a : b :: c : ?.

    Args:
        vectors: ``(N, D)`` float32 gallery, rows already L2-normalised.
        a, b, c: ``(D,)`` input vectors, normalised inside.
        method: one of :data:`ALL_METHODS`.
        eps: 3CosMul's denominator constant.

    Returns:
        ``(N,)`` float32 scores, higher is better; see :func:`method_scores`.
    """
    sims = input_similarities(vectors, a, b, c)
    return method_scores(sims, gram_matrix(a, b, c), method, eps=eps)


def _best_first_order(scores: np.ndarray, at_least: int | None = None) -> np.ndarray:
    """Ids sorted best first: higher score first, ties by lower id, NaN scores last.

    With ``at_least``, only a prefix of the full order is returned, holding at least that many ids
    (every id tied with the last one kept is included, so the prefix equals the full order's).
    Selecting first keeps top-k over a large gallery O(N) instead of a full sort.
    """
    scores = np.asarray(scores)
    if scores.ndim != 1:
        raise ValueError(f"scores must be 1-D, got shape {scores.shape}")
    keys = -scores.astype(np.float64)  # NaN stays NaN and sorts last
    if at_least is not None and at_least < len(keys) // 4:
        finite = np.where(np.isnan(keys), np.inf, keys)
        cutoff = np.partition(finite, at_least)[at_least]  # value of the (at_least+1)-th best
        candidates = np.flatnonzero(finite <= cutoff)
        # A stable sort of the candidates (in increasing id order) keeps tied ids increasing.
        return candidates[np.argsort(keys[candidates], kind="stable")]
    # A stable sort of the negated scores keeps tied ids in increasing order; NaN sorts last.
    return np.argsort(keys, kind="stable")


def _best_one(scores: np.ndarray, excluded: np.ndarray) -> int | None:
    """``top_k(scores, 1, excluded)``'s id by one pass: the highest score not excluded, the lowest id
    among ties; where only NaN scores are left, the lowest such id; None when every id is excluded."""
    values = scores.astype(np.float64)
    left = ~np.isnan(values)
    left[excluded] = False
    if left.any():
        best = values[left].max()
        return int(np.flatnonzero(left & (values == best))[0])
    nan_left = np.isnan(values)
    nan_left[excluded] = False
    found = np.flatnonzero(nan_left)
    return int(found[0]) if found.size else None


def top_k(scores: np.ndarray, k: int, exclude: Iterable[int] = ()) -> tuple[np.ndarray, np.ndarray]:
    """The k best candidates.

    Args:
        scores: ``(N,)`` scores, higher is better (NaN counts as worst).
        k: how many to return (>= 0); capped at the number of candidates not excluded.
        exclude: ids (row positions in ``scores``) never returned; each must be in ``[0, N)``.

    Returns:
        ``(ids, values)``: int64 ids and their float32 scores, best first, ties broken by lower id.
    """
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    excluded = np.asarray(list(exclude), dtype=np.int64)
    n = np.asarray(scores).shape[0] if np.ndim(scores) == 1 else -1
    if excluded.size and (excluded.min() < 0 or excluded.max() >= n):
        raise ValueError(f"exclude ids must lie in [0, {n}), got {excluded.tolist()}")
    if k == 1 and n > 0:  # the best alone (each baseline's answer): one pass, no partition
        best = _best_one(np.asarray(scores), excluded)
        ids = np.asarray([] if best is None else [best], dtype=np.int64)
        return ids, np.asarray(scores, dtype=np.float32)[ids]
    order = _best_first_order(scores, k + excluded.size)
    if excluded.size:
        order = order[~np.isin(order, excluded)]
    ids = order[:k].astype(np.int64)
    return ids, np.asarray(scores, dtype=np.float32)[ids]


def ranks(scores: np.ndarray, ids: Iterable[int]) -> list[int]:
    """1-based rank of each id among all scores (rank 1 = what ``top_k(scores, 1)`` returns).

    Args:
        scores: ``(N,)`` scores, higher is better; same ordering and tie rule as :func:`top_k`
            (ties broken by lower id, NaN last), with nothing excluded.
        ids: row positions in ``scores``, each in ``[0, N)``.

    Returns:
        A list of ints, one rank per id, in the order given. Counted, not sorted: O(N) per id (an id's
        rank is 1 + the scores better than its own + the equal ones at lower ids; NaN after all others).
    """
    scores = np.asarray(scores)
    if scores.ndim != 1:
        raise ValueError(f"scores must be 1-D, got shape {scores.shape}")
    keys = scores.astype(np.float64)
    nan = np.isnan(keys)
    not_nan = len(keys) - int(np.count_nonzero(nan))
    result = []
    for i in ids:
        i = int(i)
        if not 0 <= i < len(keys):
            raise ValueError(f"id {i} out of range [0, {len(keys)})")
        if nan[i]:
            result.append(not_nan + int(np.count_nonzero(nan[:i])) + 1)
        else:
            result.append(int(np.count_nonzero(keys > keys[i])) + int(np.count_nonzero(keys[:i] == keys[i])) + 1)
    return result


def rounded(x) -> float:
    """A number (Python or numpy scalar) as a report's JSON carries it: a float rounded to JSON_DECIMALS."""
    return round(float(x), JSON_DECIMALS)


def offset_consistency(a, b, c, d) -> float:
    """cos(b - a, d - c) of the L2-normalised vectors: does D - C repeat B - A's direction?

    Args:
        a, b, c, d: ``(D,)`` vectors of any numeric dtype, normalised inside.

    Returns:
        A float in [-1, 1]; 0.0 when either difference is ~zero (squared norm below ``ZERO_SQ_NORM``).
    """
    a, b, c, d = (l2_normalize(_as_vector(v, n)).astype(np.float64) for v, n in zip((a, b, c, d), "abcd"))
    u, v = b - a, d - c
    uu, vv = float(u @ u), float(v @ v)
    if uu < ZERO_SQ_NORM or vv < ZERO_SQ_NORM:
        return 0.0
    return float(np.clip((u @ v) / np.sqrt(uu * vv), -1.0, 1.0))


def offset_norm(a, b) -> float:
    """|b - a| of the L2-normalised vectors (0 to 2), the size of the analogy's offset.

    Args:
        a, b: ``(D,)`` vectors of any numeric dtype, normalised inside.
    """
    a = l2_normalize(_as_vector(a, "a")).astype(np.float64)
    b = l2_normalize(_as_vector(b, "b")).astype(np.float64)
    return float(np.linalg.norm(b - a))


def typical_nn_distance(vectors: np.ndarray, sample: int = 2000, seed: int = 0) -> float:
    """Median Euclidean distance from an item to its nearest other item.

    Used as the yardstick for :func:`offset_norm` ("is |b - a| bigger than the distance between
    neighbours?"). An item's exact duplicate is another item, at distance 0.

    Args:
        vectors: ``(N, D)`` gallery, rows L2-normalised (float32 expected), N >= 2.
        sample: when N exceeds this, the median is taken over ``sample`` rows drawn without replacement
            by ``numpy.random.default_rng(seed)``; their nearest neighbours are still searched among
            all N rows.
        seed: seed of that draw.

    Returns:
        The median nearest-other-item distance, a float >= 0.
    """
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2:
        raise ValueError(f"vectors must have shape (N, D), got {vectors.shape}")
    n = len(vectors)
    if n < 2:
        raise ValueError("typical_nn_distance needs at least 2 vectors")
    if sample < 1:
        raise ValueError(f"sample must be >= 1, got {sample}")
    if n > sample:
        rows = np.sort(np.random.default_rng(seed).choice(n, size=sample, replace=False))
    else:
        rows = np.arange(n)

    sq_norms = np.einsum("ij,ij->i", vectors, vectors)
    distances = np.empty(len(rows), dtype=np.float64)
    chunk = max(1, min(len(rows), 2**26 // n))  # bounds the (chunk, N) distance block in memory
    for start in range(0, len(rows), chunk):
        batch = rows[start:start + chunk]
        # Squared distances up to float32 rounding, enough to find the nearest other item ...
        sq = sq_norms[batch, None] + sq_norms[None, :] - 2.0 * (vectors[batch] @ vectors.T)
        sq[np.arange(len(batch)), batch] = np.inf  # the item itself is not its neighbour
        nearest = np.argmin(sq, axis=1)
        # ... whose distance is then computed exactly (so duplicates give exactly 0).
        diff = vectors[batch].astype(np.float64) - vectors[nearest].astype(np.float64)
        distances[start:start + len(batch)] = np.linalg.norm(diff, axis=1)
    return float(np.median(distances))
