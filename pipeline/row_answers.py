"""A : B :: C : ? answered among the rows of one matrix of unit vectors: a word vocabulary (word
space) or a gallery's class centroids (questions about classes).

Every score comes from :mod:`pipeline.vectors` (DESIGN.md section 2): the method ranks the rows, each
baseline gives its own top row, exclusion removes the rows that *are* the inputs (a word, the words of
a phrase, a class), and the result also says what would win with nothing excluded and where each input
ranks. Callers name the rows (:mod:`pipeline.words`, :mod:`pipeline.classes`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from . import vectors as vec
from .errors import AnalogyError

ROLES = vec.ROLES


@dataclass
class RowAnswer:
    """The answer among the rows of a candidate matrix; rows are 0-based row positions.

    method, exclude: as asked. top: ``(row, score)`` best first, the ``excluded`` rows left out when
    ``exclude``. baselines: each baseline's top ``(row, score)`` under the same exclusion (None when
    nothing is left). excluded: the input rows (what exclusion removes, whether or not it was on).
    without_exclusion: ``row`` and ``score`` of the winner with nothing excluded, ``winner`` (the role
    whose row that is: "A", "B", "C", or None) and ``input_ranks`` (per role, the 1-based rank of the
    input's best row among all rows, nothing excluded; None when the input has no row here).
    """

    method: str
    exclude: bool
    top: list[tuple[int, float]]
    baselines: dict[str, tuple[int, float] | None]
    excluded: list[int]
    without_exclusion: dict

    def top_name(self, names: Sequence[str]) -> str | None:
        """``names[row]`` of the best row (None when every row was excluded)."""
        return names[self.top[0][0]] if self.top else None

    def named(self, names: Sequence[str], key: str) -> dict:
        """The answer with rows replaced by ``names[row]`` under ``key`` (e.g. "word"), scores rounded to
        6 decimals: ``{key, "score", "top": [{key, "score"}], "baselines": {method: {key, "score"} or
        None}, "without_exclusion": {key, "score", "winner", "input_ranks"}, "method", "exclude"}``."""

        def named(pair):
            return None if pair is None else {key: names[pair[0]], "score": round(pair[1], 6)}

        wo = self.without_exclusion
        first = named(self.top[0]) if self.top else {key: None, "score": None}
        return {**first, "top": [named(p) for p in self.top],
                "baselines": {m: named(p) for m, p in self.baselines.items()},
                "without_exclusion": {key: names[wo["row"]], "score": round(wo["score"], 6),
                                      "winner": wo["winner"], "input_ranks": wo["input_ranks"]},
                "method": self.method, "exclude": self.exclude}


def answer_among_rows(candidates: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray,
                      input_rows: dict[str, list[int]], method: str = "3cosadd", exclude: bool = True,
                      top_k: int = 5, eps: float = 1e-3) -> RowAnswer:
    """Score every row of ``candidates`` as the answer to a : b :: c : ?.

    Args:
        candidates: ``(N, D)`` float32, rows L2-normalised (all-zero rows allowed: they score as the
            formulas give for cos = 0).
        a, b, c: ``(D,)`` input vectors, normalised inside.
        input_rows: per role ("A", "B", "C") the candidate rows that are that input (empty when the
            input is not among the candidates); these are excluded when ``exclude``.
        method: one of :data:`pipeline.vectors.ALL_METHODS`.
        exclude: leave the input rows out of ``top`` and the baselines.
        top_k: answers wanted (>= 1).
        eps: 3CosMul's constant.

    Returns:
        A :class:`RowAnswer`. Cost: one ``(N, D) @ (D, 3)`` product, O(N) per method and one full sort
        for the inputs' ranks.
    """
    if method not in vec.ALL_METHODS:
        raise AnalogyError(f"unknown method {method!r}: choose one of {', '.join(vec.ALL_METHODS)}")
    if top_k < 1:
        raise AnalogyError(f"top k must be at least 1, got {top_k}")
    sims = vec.input_similarities(candidates, a, b, c)
    gram = vec.gram_matrix(a, b, c)
    scores = {m: vec.method_scores(sims, gram, m, eps) for m in dict.fromkeys([method, *vec.BASELINES])}
    excluded = sorted({int(r) for role in ROLES for r in input_rows.get(role, ())})
    skip = excluded if exclude else []

    def best(method_scores: np.ndarray, k: int) -> list[tuple[int, float]]:
        ids, values = vec.top_k(method_scores, k, exclude=skip)
        return [(int(i), float(s)) for i, s in zip(ids, values)]

    top = best(scores[method], top_k)
    baselines = {name: next(iter(best(scores[name], 1)), None) for name in vec.BASELINES}
    (winner_row,), (winner_score,) = vec.top_k(scores[method], 1)
    winner = next((role for role in ROLES if int(winner_row) in input_rows.get(role, ())), None)
    ranks = {}
    order_ranks = dict(zip(excluded, vec.ranks(scores[method], excluded))) if excluded else {}
    for role in ROLES:
        rows = input_rows.get(role, ())
        ranks[role] = min(order_ranks[int(r)] for r in rows) if rows else None
    without = {"row": int(winner_row), "score": float(winner_score), "winner": winner, "input_ranks": ranks}
    return RowAnswer(method, exclude, top, baselines, excluded, without)
