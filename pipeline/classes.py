"""Questions about classes: A, B and C are classes of a labelled gallery, each represented in a
space by its centroid, and the answer is a class.

A class centroid is the mean of the class's L2-normalised vectors, L2-normalised again (the 2017
talk's representation, and the one the evaluation's ``reproduce-2017`` suite uses: this module is
where both get it). The answer among class centroids uses the methods, baselines and exclusion (of the
three input classes) of DESIGN.md section 2, through :mod:`pipeline.row_answers`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .errors import AnalogyError
from .row_answers import ROLES, RowAnswer, answer_among_rows


def class_sums(vectors: np.ndarray, labels: Sequence[str]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Per class, the sum of its items' vectors.

    Args:
        vectors: ``(N, D)`` item vectors (rows L2-normalised for centroids).
        labels: N class labels (strings).

    Returns:
        ``(classes, y, sums)``: the sorted distinct labels, the ``(N,)`` int64 class index of each item,
        and the ``(C, D)`` float64 sum of each class's vectors.
    """
    vectors = np.asarray(vectors, dtype=np.float64)
    if vectors.ndim != 2 or len(vectors) != len(labels):
        raise ValueError(f"{len(vectors)} vectors but {len(labels)} labels")
    classes = sorted(set(labels))
    index = {c: i for i, c in enumerate(classes)}
    y = np.array([index[label] for label in labels], dtype=np.int64)
    sums = np.zeros((len(classes), vectors.shape[1]))
    np.add.at(sums, y, vectors)
    return classes, y, sums


def unit_rows(x: np.ndarray) -> np.ndarray:
    """``x`` (2-D) with each row scaled to unit L2 norm in float64; all-zero rows stay zero."""
    x = np.asarray(x, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


def class_centroids(vectors: np.ndarray, labels: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """Per class, the mean of its items' (normalised) vectors, L2-normalised again.

    Args:
        vectors: ``(N, D)`` item vectors of one space, rows L2-normalised (float32).
        labels: N class labels (strings); items without a label must be left out by the caller.

    Returns:
        ``(classes, centroids)``: the sorted distinct labels and a ``(C, D)`` float32 array whose row i
        is the unit-length centroid of ``classes[i]``.
    """
    classes, _, sums = class_sums(vectors, labels)
    return classes, unit_rows(sums).astype(np.float32)


@dataclass
class ClassAnswer:
    """A : B :: C : ? among class centroids. ``classes`` names the rows of ``answer`` (a
    :class:`~pipeline.row_answers.RowAnswer`); ``inputs`` are the three input classes (A, B, C)."""

    inputs: list[str]
    classes: list[str]
    answer: RowAnswer

    @property
    def top_class(self) -> str | None:
        return self.answer.top_name(self.classes)

    def as_dict(self) -> dict:
        """``{"kind": "class", "class", "score", "top": [{"class", "score"}], "baselines",
        "without_exclusion", "method", "exclude", "inputs": [{"role", "class"}], "candidates"}`` (see
        :meth:`pipeline.row_answers.RowAnswer.named`)."""
        return {"kind": "class", **self.answer.named(self.classes, "class"),
                "inputs": [{"role": r, "class": c} for r, c in zip(ROLES, self.inputs)],
                "candidates": len(self.classes)}


def class_answer(classes: Sequence[str], centroids: np.ndarray, a: str, b: str, c: str,
                 method: str = "3cosadd", exclude: bool = True, top_k: int = 5, eps: float = 1e-3) -> ClassAnswer:
    """Answer a : b :: c : ? among class centroids (inputs and answers are class labels).

    Args:
        classes, centroids: from :func:`class_centroids` (C labels, ``(C, D)`` unit rows).
        a, b, c: three labels from ``classes`` (exact match; raises AnalogyError naming the unknown ones).
        method, exclude, top_k, eps: as in :func:`pipeline.row_answers.answer_among_rows`; exclusion
            removes the three input classes.
    """
    index = {name: i for i, name in enumerate(classes)}
    unknown = [name for name in (a, b, c) if name not in index]
    if unknown:
        raise AnalogyError(f"no class named {', '.join(repr(u) for u in unknown)} in this gallery; "
                           f"its classes are its items' labels (e.g. {', '.join(list(classes)[:3])})")
    rows = [index[a], index[b], index[c]]
    answer = answer_among_rows(centroids, *(centroids[r] for r in rows),
                               input_rows={role: [r] for role, r in zip(ROLES, rows)},
                               method=method, exclude=exclude, top_k=top_k, eps=eps)
    return ClassAnswer([a, b, c], list(classes), answer)
