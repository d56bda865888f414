"""The geometry of one question, in numbers: where a, b, c, the query, the answer, the top-k and C's
nearest neighbours sit, projected onto a plane that contains c and the offset direction.

The plane goes through the origin and is spanned by the orthonormal pair

* ``e1 = c`` (the L2-normalised c: the x axis is "how much like C"), and
* ``e2`` = the part of ``b - a`` orthogonal to c, normalised (the y axis is "how far along the offset").

So c, b - a, and every point of the form ``x c + y (b - a)`` (3CosAdd's query ``b - a + c``,
ADD-OPPOSITE's ``c - (b - a)``) project exactly, and the arrows A -> B and C -> query are drawn at their
true length and direction. Where ``b - a`` is zero or parallel to c, ``e2`` comes from the answer's move
``d - c`` instead, else from any direction orthogonal to c (``plane`` says which).

Other points lose their components outside the plane; ``preserved`` says how much of the distances the
picture keeps: the mean, over every pair of distinct drawn points, of (distance in the plane) / (true
distance), in [0, 1] (a projection never lengthens a distance). 1 means the picture is exact.

All vectors are (D,) or (N, D) float arrays of one space; they are L2-normalised here, as the analogy
uses them. Output is a :class:`Geometry` whose ``as_dict()`` is the issue's ``geometry`` JSON object;
:mod:`pipeline.figures` draws the PNG from that dict alone.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

from . import vectors as vec
from .wording import prompts, why

POINT_ROLES = ("A", "B", "C", "query", "answer", "top", "neighbour")

#: The query point x a + y b + z c of each method that has one (coefficients on the normalised a, b,
#: c). PairDirection has none; its nearest analogue c + (b - a) is drawn (and said to be an analogue).
QUERY_COEFFICIENTS = {
    "3cosadd": (-1.0, 1.0, 1.0),
    "only-c": (0.0, 0.0, 1.0),
    "ignore-a": (0.0, 1.0, 1.0),
    "add-opposite": (1.0, -1.0, 1.0),
    "pairdirection": (-1.0, 1.0, 1.0),
}

#: A direction whose squared norm (after removing its part along c) is at most this is no direction.
ZERO = 1e-12


@dataclass(frozen=True)
class Point:
    """A drawn point: ``role`` one of :data:`POINT_ROLES`, ``id`` its gallery id (None for the query and
    for inputs not in the gallery), ``x``, ``y`` its coordinates in the plane."""

    role: str
    id: int | None
    x: float
    y: float

    def as_dict(self) -> dict:
        return {"role": self.role, "id": self.id, "x": round(float(self.x), 6), "y": round(float(self.y), 6)}


@dataclass
class Geometry:
    """plane_kind: ``offset`` | ``answer`` | ``any`` (see module doc); preserved: mean distance ratio
    in [0, 1]; points: A, B, C, the query (when the method has one), the answer, the rest of the top-k,
    C's neighbours, each gallery id drawn once (first role wins, in :data:`POINT_ROLES` order); method: the
    analogy method; nn_radius: the typical nearest-neighbour distance drawn around C (None: not
    given); offset_norm: |b - a|."""

    plane_kind: str
    preserved: float
    points: list[Point]
    method: str
    nn_radius: float | None = None
    offset_norm: float = 0.0
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        words = why("geometry")
        return {"plane": words["planes"][self.plane_kind], "plane_kind": self.plane_kind,
                "preserved": round(float(self.preserved), 6), "preserved_text": words["preserved"],
                "points": [p.as_dict() for p in self.points], "method": self.method,
                "query_text": words["queries"].get(self.method, ""),
                "nn_radius": None if self.nn_radius is None else round(float(self.nn_radius), 6),
                "offset_norm": round(float(self.offset_norm), 6), **self.extra}


def _unit(x: np.ndarray) -> np.ndarray:
    """``x`` (D,) as float64 of unit length (all-zero stays zero)."""
    x = np.asarray(x, dtype=np.float64)
    norm = float(np.linalg.norm(x))
    return x / norm if norm > 0 else x


def _orthogonal_part(v: np.ndarray, e1: np.ndarray) -> np.ndarray | None:
    """v minus its component along the unit e1, normalised; None when nothing is left."""
    rest = v - (v @ e1) * e1
    sq = float(rest @ rest)
    return rest / np.sqrt(sq) if sq > ZERO else None


def plane_basis(c: np.ndarray, offset: np.ndarray, fallback: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, str]:
    """(e1, e2, kind): orthonormal (D,) float64 axes of the drawing plane. e1 = unit c; e2 from
    ``offset`` (kind ``offset``), else from ``fallback`` (the answer's move, kind ``answer``), else
    the coordinate axis least aligned with c, orthogonalised (kind ``any``)."""
    e1 = _unit(c)
    if not float(e1 @ e1) > 0:
        raise ValueError("c is a zero vector: there is no plane to draw")
    for direction, kind in ((offset, "offset"), (fallback, "answer")):
        if direction is not None:
            e2 = _orthogonal_part(np.asarray(direction, dtype=np.float64), e1)
            if e2 is not None:
                return e1, e2, kind
    axis = np.zeros_like(e1)
    axis[int(np.argmin(np.abs(e1)))] = 1.0
    return e1, _orthogonal_part(axis, e1), "any"


def preserved_ratio(points: np.ndarray, projected: np.ndarray) -> float:
    """Mean over pairs i < j with a nonzero true distance of |P_i - P_j| / |p_i - p_j|, for (M, D)
    ``points`` and their (M, 2) ``projected`` coordinates; 1.0 when there is no such pair."""
    points = np.asarray(points, dtype=np.float64)
    projected = np.asarray(projected, dtype=np.float64)
    i, j = np.triu_indices(len(points), k=1)
    true = np.linalg.norm(points[i] - points[j], axis=1)
    flat = np.linalg.norm(projected[i] - projected[j], axis=1)
    keep = true > np.sqrt(ZERO)
    if not keep.any():
        return 1.0
    return float(np.clip(np.mean(flat[keep] / true[keep]), 0.0, 1.0))


def query_point(a: np.ndarray, b: np.ndarray, c: np.ndarray, method: str) -> np.ndarray | None:
    """The method's query point x a + y b + z c of the unit a, b, c (not normalised, so that
    C -> query is the offset itself for 3CosAdd); None for methods without one (3CosMul, MULTIPLY)."""
    coefficients = QUERY_COEFFICIENTS.get(method)
    if coefficients is None:
        return None
    x, y, z = coefficients
    return x * _unit(a) + y * _unit(b) + z * _unit(c)


def question_geometry(a, b, c, *, method: str = "3cosadd", vectors: np.ndarray | None = None,
                      answer: int | None = None, top: Iterable[int] = (), neighbours: Iterable[int] = (),
                      input_ids: Sequence[int | None] = (None, None, None),
                      nn_distance: float | None = None) -> Geometry:
    """Project one question onto the plane of c and the offset (see the module docstring).

    a, b, c: (D,) vectors of the inputs in one space (normalised here).
    vectors: (N, D) the gallery's vectors in that space (rows L2-normalised), needed for ``answer``,
        ``top`` and ``neighbours`` (gallery ids: the top-1 answer, the top-k, C's nearest neighbours
        e.g. from :func:`neighbour_ids`).
    input_ids: gallery ids of A, B, C (None for uploads), so that they are not drawn twice.
    nn_distance: the gallery's typical nearest-neighbour distance in the space (``nn_radius``).
    """
    if method not in vec.ALL_METHODS:
        raise ValueError(f"unknown method {method!r}: choose one of {', '.join(vec.ALL_METHODS)}")
    a, b, c = _unit(a), _unit(b), _unit(c)
    rows: list[tuple[str, int | None, np.ndarray]] = [
        ("A", input_ids[0], a), ("B", input_ids[1], b), ("C", input_ids[2], c)]
    query = query_point(a, b, c, method)
    if query is not None:
        rows.append(("query", None, query))
    seen = {i for i in input_ids if i is not None}
    answer_vector = None
    for role, ids in (("answer", [] if answer is None else [answer]), ("top", top), ("neighbour", neighbours)):
        for item in ids:
            item = int(item)
            if item in seen:
                continue
            if vectors is None:
                raise ValueError("gallery vectors are needed to draw the answer, the top-k and the neighbours")
            seen.add(item)
            v = _unit(vectors[item])
            rows.append((role, item, v))
            if role == "answer":
                answer_vector = v
    e1, e2, kind = plane_basis(c, b - a, None if answer_vector is None else answer_vector - c)
    stacked = np.stack([r[2] for r in rows])
    projected = np.stack([stacked @ e1, stacked @ e2], axis=1)
    points = [Point(role, item, float(x), float(y)) for (role, item, _), (x, y) in zip(rows, projected)]
    extra = {}
    if query is not None and nn_distance is not None:
        # Does the query leave C's neighbourhood? (the circle of the figure, in the full space)
        extra["query_outside_circle"] = bool(np.linalg.norm(query - c) > nn_distance)
    return Geometry(kind, preserved_ratio(stacked, projected), points, method, nn_distance,
                    float(np.linalg.norm(b - a)), extra)


def neighbour_ids(index, c: np.ndarray, k: int = 5, exclude: Iterable[int] = ()) -> list[int]:
    """Gallery ids of C's ``k`` nearest neighbours by cosine, best first, skipping ``exclude`` (C's own
    id, the other inputs). ``index``: the space's :class:`pipeline.index.VectorIndex` (its ``search``)."""
    exclude = {int(i) for i in exclude}
    found = index.search(np.asarray(c, dtype=np.float32)[None, :], min(len(index), k + len(exclude))).ids[0]
    return [int(i) for i in found if i >= 0 and int(i) not in exclude][:k]


def geometry_sentence(geometry: dict) -> str:
    """One line about a geometry dict: the plane, how much it preserves, and the query."""
    number = prompts("why")["number_format"]
    return why("geometry")["sentence"].format(plane=geometry["plane"], preserved=number.format(geometry["preserved"]),
                                              query=geometry["query_text"])
