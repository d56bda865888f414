"""The near-duplicate threshold of each space, calibrated from the gallery.

One fixed cosine (0.95) cannot serve every space: in caption space two right answers that differ by
one word ("a photo of a tabby cat" / "a black and white photo of a tabby cat") are at cosine 0.96,
while in image space two different photos rarely pass 0.85. The rule measures each gallery in each
space with the yardstick the offset size already uses, the typical nearest-neighbour distance:

    t = median, over items, of the distance |x - y| from an item's unit vector x to its nearest
        other distinct item's y (exact or numerically identical vectors, cos >= 1 - 1e-6, are skipped:
        a copy says nothing about how far apart different items are);
    near-duplicate of C:  |d - c| < RATIO * t   (RATIO = 1/2: closer than half the usual gap)
                      <=> cos(d, c) > 1 - (RATIO * t)^2 / 2,  clipped to [LOW, HIGH] = [0.85, 0.995].

The clip keeps the rule sane at the extremes: below cosine 0.85 nothing counts as a near-duplicate,
and above 0.995 everything does, whatever the gallery.

Deterministic: the items measured are all N when N <= ``sample`` (2,000), else a seeded sample
(``numpy.random.default_rng(seed)``); each one's neighbours come from the space's FAISS index
(:meth:`pipeline.index.VectorIndex.search`, top ``k``): O(sample * k) memory. On an exact (flat)
index the copies are collapsed first (``numpy.unique``, an exact index over the distinct rows), so the
measurement is :meth:`pipeline.gallery.Gallery.typical_nn_distance`'s, in O(sample * N * D) time; an
approximate index gives an upper bound of each distance, as
:meth:`pipeline.index.VectorIndex.typical_nn_distance` does (an item whose top ``k`` holds only copies
is left out).

Once per gallery: :func:`gallery_calibration` keeps each space's calibration with the gallery object
(in memory) and in its store beside the space's other measurements (:mod:`pipeline.space_stats`,
checksummed, keyed by what the space's vectors are made from and by the rule's constants: a damaged
or stale entry is recomputed, never used), so questions only read it.
"""
from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass

import numpy as np

from .index import VectorIndex
from .space_stats import measured
from .wording import prompts, why

RATIO = 0.5
LOW, HIGH = 0.85, 0.995
SAMPLE = 2000
SEED = 0
K = 10
DUPLICATE_COS = 1.0 - 1e-6


@dataclass
class ThresholdCalibration:
    """threshold: the near-duplicate cosine for this space; typical_nn_distance: t of the rule;
    nn_cosine_percentiles: {"50", "90", "95", "99", "100"} of the measured nearest-distinct-neighbour
    cosines; items_measured: how many items had a distinct neighbour among their top k;
    share_with_near_duplicate: the share of those whose nearest distinct neighbour is above the
    threshold (items that have a near-duplicate in the gallery); clipped: the rule's value was outside
    [LOW, HIGH]."""

    space: str
    threshold: float
    typical_nn_distance: float
    nn_cosine_percentiles: dict
    items_measured: int
    share_with_near_duplicate: float
    clipped: bool

    def as_dict(self) -> dict:
        r = lambda x: round(float(x), 6)  # noqa: E731
        return {"space": self.space, "threshold": r(self.threshold), "typical_nn_distance": r(self.typical_nn_distance),
                "nn_cosine_percentiles": {k: r(v) for k, v in self.nn_cosine_percentiles.items()},
                "items_measured": self.items_measured, "share_with_near_duplicate": r(self.share_with_near_duplicate),
                "clipped": self.clipped, "rule": rule_text()}


    @classmethod
    def from_dict(cls, data: dict) -> "ThresholdCalibration":
        """The inverse of :meth:`as_dict` (``rule`` is wording, not data, and is left out)."""
        return cls(str(data["space"]), float(data["threshold"]), float(data["typical_nn_distance"]),
                   {str(k): float(v) for k, v in data["nn_cosine_percentiles"].items()}, int(data["items_measured"]),
                   float(data["share_with_near_duplicate"]), bool(data["clipped"]))


def rule_text() -> str:
    return why("thresholds")["rule"].format(low=LOW, high=HIGH)


def threshold_for_distance(typical_nn_distance: float, ratio: float = RATIO) -> float:
    """The rule: ``clip(1 - (ratio * t)^2 / 2, LOW, HIGH)`` for a typical nearest-neighbour distance t."""
    return float(np.clip(1.0 - (ratio * float(typical_nn_distance)) ** 2 / 2.0, LOW, HIGH))


def nearest_distinct_cosines(index, sample: int = SAMPLE, seed: int = SEED, k: int = K) -> np.ndarray:
    """(M,) float64 cosine of each measured item with its nearest other distinct item (M <= sample:
    items whose top ``k`` holds only copies are left out). ``index``: a
    :class:`pipeline.index.VectorIndex` (rows L2-normalised)."""
    if index.exact:  # copies collapsed first, as Gallery.typical_nn_distance does (k need not cover them)
        distinct = np.unique(np.asarray(index.vectors, dtype=np.float32), axis=0)
        if len(distinct) < len(index):

            index = VectorIndex.build(distinct, kind="flat")
    n = len(index)
    if n < 2:
        return np.zeros(0)
    rows = np.arange(n) if n <= sample else np.sort(np.random.default_rng(seed).choice(n, size=sample, replace=False))
    found = index.search(np.asarray(index.vectors[rows], dtype=np.float32), min(n, k + 1))
    ids, scores = found.ids, found.scores.astype(np.float64)
    usable = (ids >= 0) & (ids != rows[:, None]) & (scores < DUPLICATE_COS)
    has = usable.any(axis=1)
    first = np.argmax(usable, axis=1)  # results are best first: the first usable one is the nearest
    return scores[np.arange(len(rows)), first][has]


def calibrate(index, space: str = "", sample: int = SAMPLE, seed: int = SEED, k: int = K) -> ThresholdCalibration:
    """The near-duplicate threshold of one space of a gallery (see the module docstring)."""
    cosines = nearest_distinct_cosines(index, sample, seed, k)
    if len(cosines) == 0:
        return ThresholdCalibration(space, HIGH, 0.0, {}, 0, 0.0, True)
    distances = np.sqrt(np.maximum(0.0, 2.0 - 2.0 * cosines))
    t = float(np.median(distances))
    raw = 1.0 - (RATIO * t) ** 2 / 2.0
    threshold = threshold_for_distance(t)
    percentiles = {str(q): float(np.percentile(cosines, q)) for q in (50, 90, 95, 99, 100)}
    return ThresholdCalibration(space, threshold, t, percentiles, int(len(cosines)),
                                float(np.mean(cosines > threshold)), not LOW <= raw <= HIGH)


def threshold_sentence(calibration: dict, space_name: str) -> str:
    """One line about a calibration dict (:meth:`ThresholdCalibration.as_dict`)."""
    words, number = why("thresholds"), prompts("why")["number_format"]
    return words["sentence"].format(space_name=space_name, threshold=number.format(calibration["threshold"]),
                                    rule_short=words["rule_short"],
                                    typical_nn_distance=number.format(calibration["typical_nn_distance"]))


# --- once per gallery ------------------------------------------------------------------------------

#: What a kept calibration depends on besides the space's vectors: the rule and its constants.
RULE_IDENTITY = {"rule": "near-duplicate", "version": 1, "constants": [RATIO, LOW, HIGH, SAMPLE, SEED, K]}
_BY_GALLERY: "weakref.WeakKeyDictionary[object, dict[str, ThresholdCalibration]]" = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def gallery_calibration(gallery, space: str) -> ThresholdCalibration:
    """The calibrated near-duplicate threshold of one space of a gallery
    (:class:`pipeline.gallery.Gallery`): kept with the gallery object, and in its store with the
    space's other measurements (:func:`pipeline.space_stats.measured`, under the identity of the
    space's vectors and :data:`RULE_IDENTITY`: a damaged or stale entry is computed again by
    :func:`calibrate` on the space's index). Thread-safe; computed at most once per gallery object
    and space."""
    with _LOCK:
        known = _BY_GALLERY.setdefault(gallery, {})
        if space not in known:
            identity = {**gallery.space_identity(space), **RULE_IDENTITY}
            # kept as its JSON dict (values rounded), so that every process uses the very same threshold
            stored = measured(gallery.store, space, identity, "near_duplicate_calibration",
                              lambda: calibrate(gallery.index(space), space).as_dict())
            known[space] = ThresholdCalibration.from_dict(stored)
        return known[space]
