"""Exact top answers of many word analogies at once, every method and baseline.

Scoring every one of N words with every method for every question is Q x N x 7 formula evaluations
(19,544 x 300,000 x 7 for the Google benchmark). This module gets the same exact answers from batched
matrix products and the formulas of :mod:`pipeline.vectors` on a few candidate rows per question:

1. **Lists.** For a set of query vectors, :func:`top_rows` runs ``unit @ queries.T`` in blocks and
   keeps, per query, every row whose dot product is at least its ``depth``-th best minus
   :data:`MARGIN`; every row left out has a dot product below the list's ``cut``. Lists are made for
   the linear queries b - a + c (3CosAdd), b + c (IGNORE-A, MULTIPLY) and a - b + c (ADD-OPPOSITE) per
   question, and c (ONLY-C, PairDirection) and b - a (PairDirection) once per distinct C or (A, B).
2. **Candidates.** A question's candidates are the union of its lists, each scored with
   :func:`pipeline.vectors.method_scores` (the product's own formulas).
3. **Certificates.** A linear method ranks by the dot product with its own query, so its list holds
   its best ``depth`` rows. For MULTIPLY and PairDirection, the lists' cuts bound the score of every row
   outside them (:func:`outside_bound`); when the ``need``-th best candidate scores above that bound,
   the candidates' best ``need`` rows are the exact best. Otherwise the question is scored over all N
   rows, and so is 3CosMul always (a large s(d,b) s(d,c) / s(d,a) does not need a large dot product
   with any one query, so no list bounds it usefully).

Rows are ranked as :func:`pipeline.vectors.top_k` ranks (higher score first, ties to the lower row),
so every answer is the one scoring all N rows gives, up to the float32 rounding of the dot products:
two rows whose scores differ by less than about 1e-6 may come out in either order, as they may between
two BLAS calls of different shapes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from pipeline import vectors as vec

Progress = Callable[[int], None]
"""progress(n): n more queries done."""

#: Methods that rank by the dot product with one query vector (their list holds their best rows).
LINEAR_METHODS = ("3cosadd", "ignore-a", "add-opposite", "only-c")
#: Dot products of float32 unit vectors are within ~1e-6 of the exact value: a list keeps every row
#: within this of its depth-th best, so the exact top ``depth`` is always inside it.
MARGIN = 1e-4


def _kth_per_query(rows, queries, values, count: int, k: int) -> np.ndarray:
    """For hits (row, query, value) of ``count`` queries, each query's k-th best value (every query
    has at least k hits), and the hits sorted by query then best first."""
    order = np.lexsort((-values, queries))
    rows, queries, values = rows[order], queries[order], values[order]
    starts = np.searchsorted(queries, np.arange(count))
    return values[starts + k - 1], (rows, queries, values, starts)


def top_rows(unit: np.ndarray, queries: np.ndarray, depth: int, block: int = 4096, chunk: int = 512,
             progress: Progress | None = None) -> tuple[list[np.ndarray], np.ndarray]:
    """Per query, the rows of ``unit`` with the largest dot products.

    Args:
        unit: ``(N, D)`` float32 rows (unit length for cosines).
        queries: ``(Q, D)`` query vectors (any length).
        depth: how many best rows each list must hold (capped at N).
        block, chunk: rows and queries per matrix product (memory ~ 4 * block * chunk bytes).

    Returns:
        ``(rows, cuts)``: ``rows[j]`` the sorted int64 rows whose dot with query j is at least
        ``cuts[j]``; ``cuts[j]`` is the ``depth``-th best dot minus :data:`MARGIN` (-inf when
        depth >= N), so every row not in ``rows[j]`` has a dot below ``cuts[j]``.

    The first rows (the most frequent words) give each query a first cut; rows below the running cut
    are dropped as the blocks go by, and the cut is raised to the ``depth``-th best hit so far
    whenever the hits pile up, so the work is one matrix product and one comparison per row.
    """
    unit = np.asarray(unit, dtype=np.float32)
    queries = np.asarray(queries, dtype=np.float32)
    n = len(unit)
    depth = min(depth, n)
    rows_out: list[np.ndarray] = []
    cuts = np.empty(len(queries), dtype=np.float64)
    first = min(n, max(4 * block, 16 * depth))
    for start in range(0, len(queries), chunk):
        q = np.ascontiguousarray(queries[start:start + chunk].T)  # (D, Qc)
        count = q.shape[1]
        tile = unit[:first] @ q  # (R, Qc)
        cut = np.partition(tile, first - depth, axis=0)[first - depth] - MARGIN
        r, j = np.nonzero(tile >= cut)
        hits = [(r, j, tile[r, j])]
        pending = len(r)
        for b in range(first, n, block):
            tile = unit[b:b + block] @ q
            r, j = np.nonzero(tile >= cut)
            if len(r):
                hits.append((r + b, j, tile[r, j]))
                pending += len(r)
            if pending > 4 * depth * count:  # raise the cuts to the depth-th best so far, drop the rest
                r, j, v = (np.concatenate(x) for x in zip(*hits))
                kth, _ = _kth_per_query(r, j, v, count, depth)
                cut = np.maximum(cut, kth - MARGIN)
                keep = v >= cut[j]
                hits, pending = [(r[keep], j[keep], v[keep])], int(np.count_nonzero(keep))
        r, j, v = (np.concatenate(x) for x in zip(*hits))
        kth, (r, j, v, starts) = _kth_per_query(r, j, v, count, depth)
        ends = np.append(starts[1:], len(r))
        for i in range(count):
            final = float(kth[i]) - MARGIN if depth < n else -np.inf
            cuts[start + i] = final
            ri, vi = r[starts[i]:ends[i]], v[starts[i]:ends[i]]
            rows_out.append(np.sort(ri[vi >= final]).astype(np.int64))
        if progress:
            progress(count)
    return rows_out, cuts


def distinct_top_rows(unit, keys: np.ndarray, make_query, depth: int,
                      progress: Progress | None = None) -> tuple[list[np.ndarray], np.ndarray]:
    """:func:`top_rows` for queries that depend only on ``keys`` (Q, k) int rows: each distinct key
    is searched once (``make_query(distinct_keys) -> (K, D)``), results mapped back to the Q."""
    distinct, inverse = np.unique(keys, axis=0, return_inverse=True)
    rows, cuts = top_rows(unit, make_query(distinct), depth, progress=progress)
    inverse = inverse.reshape(-1)
    return [rows[i] for i in inverse], cuts[inverse]


def _pairwise_crossings(lines: list[tuple[float, float]], low: float, high: float) -> set[float]:
    """Where any two lines ``v = intercept + slope * s`` (given as (slope, intercept)) cross in [low, high]."""
    out = set()
    for i, (m1, c1) in enumerate(lines):
        for m2, c2 in lines[i + 1:]:
            if m1 != m2 and low <= (c2 - c1) / (m1 - m2) <= high:
                out.add((c2 - c1) / (m1 - m2))
    return out


def cosmul_bound(cuts: dict[float, float], far_a_cut: float, eps: float) -> float:
    """Upper bound of 3CosMul for rows outside the lists of b + c - t a (``cuts[t]``) and of -a.

    With x, y, z a row's cosines with a, b, c, s = (cos + 1) / 2 and p = s_y + s_z: outside the list
    of b + c - t a, y + z - t x < cut, i.e. p < 1 + (cut - t) / 2 + t s_x; outside -a's list,
    s_x > (1 - far_a_cut) / 2. 3CosMul = s_y s_z / (s_x + eps) <= p^2 / (4 (s_x + eps)); on each piece of
    the lower envelope of the lines p is linear in s_x and p^2 / (s_x + eps) first falls then rises, so
    its maximum over s_x is at a crossing of two lines or an end of the interval.
    """
    low = min(max((1.0 - far_a_cut) / 2.0, 0.0), 1.0)
    lines = [(t, 1.0 + (cut - t) / 2.0) for t, cut in cuts.items()]
    points = {low, 1.0} | _pairwise_crossings(lines, low, 1.0)

    def envelope(sx: float) -> float:
        return max(min(c + m * sx for m, c in lines), 0.0)

    return max(envelope(sx) ** 2 / (4.0 * (sx + eps)) for sx in points)


def pairdirection_bound(cuts: dict[float, float], c_cut: float, gram: np.ndarray) -> float:
    """Upper bound of PairDirection for rows outside the lists of b - a + t c (``cuts[t]``) and of c.

    With x, y, z a row's cosines with a, b, c: outside the list of b - a + t c, y - x < cut - t z;
    outside c's list, z < c_cut. PairDirection = (y - x - k) / (sqrt(2 - 2 z) |b - a|) with
    k = G[c,b] - G[c,a], so it is at most h(z) = (min_t(cut - t z) - k) / (sqrt(2 - 2 z) |b - a|) for
    z in [-1, c_cut]. On a piece where the minimum is cut - t z, h' vanishes only at
    1 - z = (cut - k - t) / t; the maximum is there, at a crossing of two lines, or at an end.
    """
    offset = float(np.sqrt(max(gram[0, 0] + gram[1, 1] - 2.0 * gram[0, 1], 0.0)))
    if offset ** 2 < vec.ZERO_SQ_NORM:
        return 0.0  # every row scores 0
    high = min(c_cut, 1.0 - vec.SAME_AS_C_SQ_NORM / 2.0)  # rows nearer C score -1 (C itself)
    k = float(gram[2, 1] - gram[2, 0])
    lines = [(-t, cut - k) for t, cut in cuts.items()]  # numerator bound: (cut - k) - t z
    points = {-1.0, high} | _pairwise_crossings(lines, -1.0, high)
    points |= {1.0 - (c - t) / t for m, c in lines for t in [-m] if t > 0 and -1.0 <= 1.0 - (c - t) / t <= high}
    return min(1.0, max(min(c + m * z for m, c in lines) / (np.sqrt(2.0 - 2.0 * z) * offset) for z in points))


@dataclass
class Ranked:
    """Per question and method, the best rows (exact order), at least ``need`` of them.

    rows[method][q]: int64 rows best first. fallbacks[method]: questions that were scored over all N
    rows because no certificate held. candidates: mean candidates per question.
    """

    rows: dict[str, list[np.ndarray]]
    fallbacks: dict[str, int]
    candidates: float


#: The per-question lists (query coefficients of a, b, c) and which methods use them.
QUESTION_LISTS = {"add": (-1.0, 1.0, 1.0), "ignore": (0.0, 1.0, 1.0), "opposite": (1.0, -1.0, 1.0),
                  "cosmul": (-2.0, 1.0, 1.0), "pair": (-1.0, 1.0, 0.5)}
LISTS_OF = {"3cosadd": ("add",), "ignore-a": ("ignore",), "add-opposite": ("opposite",), "only-c": ("c",),
            "multiply": ("ignore",), "3cosmul": ("ignore", "add", "cosmul", "far_a"),
            "pairdirection": ("offset", "pair", "add", "c")}


def outside_bound(method: str, cuts: dict[str, float], gram: np.ndarray, eps: float) -> float:
    """An upper bound of ``method``'s score for every row outside all of a question's lists
    (``cuts``: each list's cut for the question). Linear methods: -inf (their own list holds their best
    rows). MULTIPLY = s_y s_z <= ((2 + y + z) / 4)^2 with y + z < cut[ignore]."""
    if method in LINEAR_METHODS:
        return -np.inf
    if method == "multiply":
        return ((2.0 + max(cuts["ignore"], -2.0)) / 4.0) ** 2
    if method == "3cosmul":
        return cosmul_bound({0.0: cuts["ignore"], 1.0: cuts["add"], 2.0: cuts["cosmul"]}, cuts["far_a"], eps)
    if method == "pairdirection":
        return pairdirection_bound({0.0: cuts["offset"], 0.5: cuts["pair"], 1.0: cuts["add"]}, cuts["c"], gram)
    raise ValueError(f"unknown method {method!r}")


def rank_questions(unit: np.ndarray, abc: np.ndarray, methods: tuple[str, ...], need: np.ndarray,
                   eps: float = 1e-3, depth: int = 128, word_depth: int = 256,
                   progress: Progress | None = None) -> Ranked:
    """The exact best ``need[q]`` rows of every question under every method.

    Args:
        unit: ``(N, D)`` float32 unit rows (the restricted vocabulary).
        abc: ``(Q, 3)`` int rows of each question's A, B, C (rows of ``unit``).
        methods: names from :data:`pipeline.vectors.ALL_METHODS`.
        need: ``(Q,)`` how many best rows to return per question (<= depth).
        eps: 3CosMul's constant. depth: depth of the per-question lists (:data:`QUESTION_LISTS`);
            word_depth: of the lists made once per distinct C (c), A (-a) or (A, B) pair (b - a).
        progress: called with the number of queries (list searches, then questions) done.
    """
    unit = np.asarray(unit, dtype=np.float32)
    abc = np.asarray(abc, dtype=np.int64)
    a, b, c = (unit[abc[:, i]] for i in range(3))
    wanted = {name for m in methods for name in LISTS_OF[m]}
    lists, cuts = {}, {}
    for name, (x, y, z) in QUESTION_LISTS.items():
        if name in wanted:
            lists[name], cuts[name] = top_rows(unit, x * a + y * b + z * c, depth, progress=progress)
    per_word = {"c": (abc[:, 2:3], lambda k: unit[k[:, 0]]), "far_a": (abc[:, :1], lambda k: -unit[k[:, 0]]),
                "offset": (abc[:, :2], lambda k: unit[k[:, 1]] - unit[k[:, 0]])}
    for name, (keys, make_query) in per_word.items():
        if name in wanted:
            lists[name], cuts[name] = distinct_top_rows(unit, keys, make_query, word_depth, progress)

    out = {m: [] for m in methods}
    fallbacks = dict.fromkeys(methods, 0)
    total_candidates = 0
    for q in range(len(abc)):
        rows = np.unique(np.concatenate([lst[q] for lst in lists.values()]))
        total_candidates += len(rows)
        va, vb, vc = a[q], b[q], c[q]
        sims = vec.input_similarities(unit[rows], va, vb, vc)
        gram = vec.gram_matrix(va, vb, vc)
        question_cuts = {name: float(cut[q]) for name, cut in cuts.items()}
        k = int(need[q])
        all_sims = None
        for m in methods:
            ids, values = vec.top_k(vec.method_scores(sims, gram, m, eps), k)
            bound = outside_bound(m, question_cuts, gram, eps)
            # (equal first and last scores: a degenerate query, e.g. b - a + c = 0, ties every row)
            if len(ids) == k and float(values[-1]) > bound + 1e-6 and values[0] != values[-1]:
                out[m].append(rows[ids])
                continue
            fallbacks[m] += 1  # no certificate: score every row
            all_sims = vec.input_similarities(unit, va, vb, vc) if all_sims is None else all_sims
            out[m].append(vec.top_k(vec.method_scores(all_sims, gram, m, eps), k)[0])
        if progress and (q + 1) % 256 == 0:
            progress(256)
    return Ranked(out, fallbacks, total_candidates / max(len(abc), 1))
