"""Right or wrong, when the gallery knows the answer (DESIGN.md section 7, "Ground truth").

An item is an expected answer of A : B :: C : ? when

* the gallery has a two-factor layout of relative paths (file suffixes ignored) and the question
  follows it:
  - ``subject/variant`` (the embedded default gallery, ``coffee/greyscale.jpg``): the last path part
    is the variant, the rest the subject. A and B share a subject in two different variants, C has
    another subject; expected: C's subject in B's variant (coffee : greyscale coffee :: cat ->
    ``cat/greyscale``);
  - ``variant/subject`` (the transform folders of ``eval transforms``: ``original/x.jpg``,
    ``greyscale/x.jpg``): the first part is the variant, the rest the subject, same rule;
* or the caller gives the expected ids (``given``), which then win.

The layouts are tried in that order and the first with at least one expected item is used; a gallery
without such a layout (imagen's flat folder) has no ground truth, and :func:`judge` returns None.

:func:`judge` compares a space's ranking with the expected items: ``correct`` (the top-1 answer is
expected), ``only_c_correct`` (ONLY-C's top-1 is expected too: then the question cannot tell whether
the arithmetic helped) and ``rank`` (1-based rank of the best-ranked expected item among the items not
excluded; the same order and tie rule as :func:`pipeline.vectors.top_k`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Iterable, Sequence

import numpy as np

from . import vectors as vec
from .wording import why

LAYOUTS = ("subject/variant", "variant/subject")


@dataclass
class Expected:
    """The issue's ``expected`` object for one space: ``ids`` (gallery ids of the expected answers,
    sorted), ``correct``, ``only_c_correct``, ``rank``; ``layout``: how the ids were found (a key of
    :data:`LAYOUTS` or ``given``); ``best``: the best-ranked expected id (None when all are excluded),
    ``score``: its score under the method, ``only_c_rank``: the best expected rank under ONLY-C."""

    ids: list[int]
    correct: bool
    only_c_correct: bool
    rank: int
    layout: str
    best: int | None = None
    score: float | None = None
    only_c_rank: int = 0

    def as_dict(self) -> dict:
        return {"ids": list(self.ids), "correct": self.correct, "only_c_correct": self.only_c_correct,
                "rank": self.rank, "layout": self.layout, "layout_text": why("ground_truth")["layouts"][self.layout],
                "best": self.best, "score": None if self.score is None else round(float(self.score), 6),
                "only_c_rank": self.only_c_rank}


def _split(path: str, layout: str) -> tuple[str, str] | None:
    """(subject, variant) of a relative path under a layout, suffix ignored; None if it has one part."""
    parts = PurePosixPath(path).with_suffix("").parts
    if len(parts) < 2:
        return None
    if layout == "subject/variant":
        return "/".join(parts[:-1]), parts[-1]
    return "/".join(parts[1:]), parts[0]


class LayoutIndex:
    """The gallery's items by (subject, variant) under each layout, built on first use with one pass
    over the paths (then a question's expected items are found in O(1)). ``paths``: every gallery
    item's relative path (forward slashes), by id."""

    def __init__(self, paths: Sequence[str]):
        self.paths = paths
        self._by_layout: dict[str, dict[tuple[str, str], list[int]]] = {}

    def items(self, layout: str, key: tuple[str, str]) -> list[int]:
        """Ids of the items whose path splits into ``key`` = (subject, variant) under ``layout``."""
        if layout not in self._by_layout:
            table: dict[tuple[str, str], list[int]] = {}
            for i, path in enumerate(self.paths):
                split = _split(path, layout)
                if split is not None:
                    table.setdefault(split, []).append(i)
            self._by_layout[layout] = table
        return self._by_layout[layout].get(key, [])


def expected_ids(paths: Sequence[str] | LayoutIndex, inputs: Sequence[str | None],
                 given: Iterable[int] | None = None) -> tuple[list[int], str] | None:
    """(ids, layout) of the expected answers, or None when the gallery cannot tell.

    paths: every gallery item's relative path (forward slashes), by id, or their :class:`LayoutIndex`
        (kept with the gallery, so that each question costs O(1) instead of a pass over the paths).
    inputs: the relative paths of A, B, C in the gallery (None for an upload: no layout applies).
    given: expected ids from the caller (used as they are, layout ``given``; an empty list is None).
    """
    if given is not None:
        ids = sorted({int(i) for i in given})
        return (ids, "given") if ids else None
    if len(inputs) != 3 or any(p is None for p in inputs):
        return None
    index = paths if isinstance(paths, LayoutIndex) else LayoutIndex(paths)
    for layout in LAYOUTS:
        a, b, c = (_split(p, layout) for p in inputs)
        if a is None or b is None or c is None:
            continue
        if a[0] != b[0] or a[1] == b[1] or c[0] == a[0]:
            continue
        ids = index.items(layout, (c[0], b[1]))
        if ids:
            return list(ids), layout
    return None


def _rank_among(scores: np.ndarray, target_ids: Sequence[int], excluded: set[int]) -> tuple[int, int | None]:
    """(rank, id): 1-based rank of the best of ``target_ids`` among the rows not in ``excluded``, in
    :func:`pipeline.vectors.top_k`'s order (higher score first, ties to the lower id, NaN last), and
    that target; (0, None) when every target is excluded. Its rank among all rows
    (:func:`pipeline.vectors.ranks`) less the excluded rows ranked above it."""
    targets = [int(t) for t in target_ids if t not in excluded]
    if not targets:
        return 0, None
    excluded_ranks = vec.ranks(scores, sorted(excluded))
    return min((rank - sum(1 for e in excluded_ranks if e < rank), t)
               for t, rank in zip(targets, vec.ranks(scores, targets)))


def judge(expected: tuple[list[int], str] | None, scores: np.ndarray, only_c_scores: np.ndarray,
          exclude: Iterable[int] = ()) -> Expected | None:
    """Is a space's answer right? None when ``expected`` is None (the gallery cannot tell).

    expected: (ids, layout) from :func:`expected_ids`.
    scores: (N,) the method's scores of every gallery item (higher is better).
    only_c_scores: (N,) ONLY-C's scores, cos(d, c).
    exclude: gallery ids excluded from the answers (the inputs, when exclusion is on).
    Cost: O(N) per expected id.
    """
    if expected is None:
        return None
    ids, layout = expected
    excluded = {int(i) for i in exclude}
    rank, best = _rank_among(scores, ids, excluded)
    only_c_rank, _ = _rank_among(only_c_scores, ids, excluded)
    score = None if best is None else float(scores[best])
    return Expected(list(ids), rank == 1, only_c_rank == 1, rank, layout, best, score, only_c_rank)


def ground_truth_sentences(expected: dict | None, space_name: str, names: dict[int, str],
                           only_c_name: str | None = None) -> list[str]:
    """Sentences about an ``expected`` dict (:meth:`Expected.as_dict`) of one space: right or wrong,
    then whether ONLY-C was right too ("this question cannot tell whether the arithmetic helped").
    ``names``: how to write gallery ids (e.g. their paths); ``only_c_name``: ONLY-C's answer."""
    if expected is None:
        return []
    words = why("ground_truth")
    listed = ", ".join(names.get(i, f"#{i}") for i in expected["ids"])
    if expected["correct"]:
        lines = [words["correct"].format(space_name=space_name, expected=listed)]
    else:
        lines = [words["wrong"].format(space_name=space_name, expected=listed, rank=expected["rank"])]
    if expected["only_c_correct"]:
        lines.append(words["undecidable"])
    elif expected["correct"] and only_c_name:
        lines.append(words["arithmetic_helped"].format(only_c=only_c_name))
    return lines

