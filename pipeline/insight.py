"""Why an answer is what it is (issue 11): one solved space -> its ``offset_terms``, ``geometry``,
``expected`` and ``near_duplicate_threshold`` fields; the class-activation maps of A, B, C, D; the
figures in a folder.

Each piece lives in its own module (:mod:`pipeline.offsets`, :mod:`pipeline.geometry`,
:mod:`pipeline.ground_truth`, :mod:`pipeline.thresholds`, :mod:`pipeline.models.heatmaps`,
:mod:`pipeline.figures`); this module only feeds them a gallery, the models, the inputs and a
:class:`pipeline.analogy.SpaceResult`, and is what ``scripts/bench_explain.py`` times.

* :func:`report_insight` (gallery, models, report) -> the four fields of each space (what
  :meth:`pipeline.explorer.Explorer.explained` adds to every explained report: tens of ms);
* :func:`report_heatmaps` (gallery, models, report, load_image) -> SimilarityMaps of A, B, C, D
  (seconds: only on request);
* :func:`report_figures` (folder, report JSON, maps) -> the PNGs written, by name;
* :func:`prepare` (gallery, models, spaces): the one-time parts, before the first question.
"""
from __future__ import annotations

import threading
import weakref
from pathlib import Path

import numpy as np

from . import figures, geometry, ground_truth, offsets, thresholds
from . import vectors as vec
from .errors import AnalogyError
from .models.heatmaps import TARGET_NAMES, question_targets
from .wording import why

#: C's nearest neighbours drawn in the geometry picture.
NEIGHBOURS = 5
#: A report's space keys -> their name in figure files (``geometry-<name>.png``).
SPACE_FIGURES = {"image_space": "image", "caption_space": "caption"}

_LAYOUTS: "weakref.WeakKeyDictionary[object, ground_truth.LayoutIndex]" = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def layout_index(gallery) -> ground_truth.LayoutIndex:
    """The gallery's :class:`pipeline.ground_truth.LayoutIndex`, kept with the gallery object."""
    with _LOCK:
        if gallery not in _LAYOUTS:
            _LAYOUTS[gallery] = ground_truth.LayoutIndex([item.path for item in gallery.items])
        return _LAYOUTS[gallery]


def offset_terms(gallery, models, inputs, space: str, answer_id: int | None) -> offsets.OffsetTerms:
    """The named offset of one space: ``inputs`` are A, B, C (:class:`pipeline.analogy.AnalogyInput`)."""
    a, b, c = (inp.vectors[space] for inp in inputs)
    d = None if answer_id is None else gallery.vectors(space)[answer_id]
    if space == "caption":
        vocabulary = offsets.word_vocabulary(models.embed_texts, gallery.captions.text_model, gallery.settings.cache_dir)
        return offsets.caption_offset_terms(vocabulary, a, b, c, d)
    weight = models.classifier_head().weight if space == "image:pooled" else None
    ids = [inp.item_id for inp in inputs] + ([] if answer_id is None else [answer_id])
    raw = np.asarray(gallery.logits[ids]) if all(i is not None for i in ids) else None
    return offsets.image_offset_terms(space, a, b, c, d, weight=weight, raw_logits=raw)


def judge_answer(gallery, inputs, result, wanted: tuple[list[int], str] | None) -> ground_truth.Expected | None:
    """A solved space ``result`` judged against ``wanted`` ((ids, layout) of the expected answers, as
    :func:`pipeline.ground_truth.expected_ids` gives; None: the gallery cannot tell, and neither can
    this). Every item is scored with the result's method and with ONLY-C, the excluded ones left out."""
    if wanted is None:
        return None
    space = result.space
    vectors = gallery.vectors(space)
    a, b, c = (inp.vectors[space] for inp in inputs)
    excluded = [e["id"] for e in result.excluded] if result.exclude else []
    return ground_truth.judge(wanted, vec.analogy_scores(vectors, a, b, c, result.method, gallery.settings.cosmul_eps),
                              vec.analogy_scores(vectors, a, b, c, "only-c"), excluded)


def space_insight(gallery, models, inputs, result, expected: list[int] | None = None) -> dict:
    """The issue's per-space fields for a solved space ``result`` (a SpaceResult):
    ``offset_terms``, ``geometry``, ``expected`` (None when the gallery cannot tell; ``expected``:
    ids given by the caller) and ``near_duplicate_threshold`` (with its ``calibration``)."""
    space = result.space
    a, b, c = (inp.vectors[space] for inp in inputs)
    top = result.results[0].id if result.results else None
    input_ids = [inp.item_id for inp in inputs]
    known = [i for i in input_ids if i is not None]
    vectors = gallery.vectors(space)
    neighbours = geometry.neighbour_ids(gallery.index(space), c, NEIGHBOURS, exclude=known)
    drawn = geometry.question_geometry(
        a, b, c, method=result.method, vectors=vectors, answer=top, top=[h.id for h in result.results],
        neighbours=neighbours, input_ids=input_ids, nn_distance=gallery.typical_nn_distance(space))
    wanted = ground_truth.expected_ids(layout_index(gallery),
                                       [None if i is None else gallery.items[i].path for i in input_ids], expected)
    judged = judge_answer(gallery, inputs, result, wanted)
    if judged is not None:
        judged = judged.as_dict()
        judged["paths"] = [gallery.items[i].path for i in judged["ids"]]
    calibration = thresholds.gallery_calibration(gallery, space)
    return {"offset_terms": offset_terms(gallery, models, inputs, space, top).as_dict(),
            "geometry": drawn.as_dict(),
            "expected": judged,
            "near_duplicate_threshold": round(calibration.threshold, 6),
            "near_duplicate_calibration": calibration.as_dict()}


def report_insight(gallery, models, report) -> dict:
    """:func:`space_insight` of each solved space of an :class:`pipeline.explorer.AnalogyReport`
    (with the expected ids it was asked with): ``{"image_space": fields, "caption_space": fields}``
    (a space without a result is left out)."""
    spaces = {key: getattr(report, key) for key in SPACE_FIGURES}
    return {key: space_insight(gallery, models, report.inputs, result, report.expected)
            for key, result in spaces.items() if result is not None}


def question_heatmaps(gallery, models, inputs, answer_id: int, load_image):
    """Grad-CAM maps of A, B, C and the answer D toward the 3CosAdd query and toward C (pooled space):
    a :class:`pipeline.models.heatmaps.SimilarityMaps` with N = 4. ``load_image``: path -> RGB image
    (e.g. ``Explorer.load``); an uploaded input is read from its ``source``."""

    sources = [gallery.path(inp.item_id) if inp.item_id is not None else inp.source for inp in inputs]
    images = [load_image(s) for s in sources] + [load_image(gallery.path(answer_id))]
    a, b, c = (inp.vectors["image:pooled"] for inp in inputs)
    return models.similarity_maps(images, question_targets(a, b, c), TARGET_NAMES)


def report_heatmaps(gallery, models, report, load_image):
    """:func:`question_heatmaps` of a report, D being its image-space answer; an AnalogyError when
    there is no answer (every item excluded)."""
    top = report.image_space.top
    if top is None:
        raise AnalogyError("there is no image-space answer D (every gallery item was excluded), so no heatmaps")
    return question_heatmaps(gallery, models, report.inputs, top.id, load_image)


def report_figures(folder: Path, data: dict, maps=None) -> dict[str, str]:
    """:func:`write_figures` of a report's JSON ``data`` (``AnalogyReport.as_dict()``, its geometry
    filled in): each space's picture drawn from that JSON's ``geometry``, and the heatmaps ``maps``."""
    geometries = {name: data[key]["geometry"] for key, name in SPACE_FIGURES.items()
                  if data.get(key) and data[key].get("geometry")}
    return write_figures(folder, geometries, maps)


def heatmap_pngs(maps) -> dict[str, bytes]:
    """PNG bytes per role (A, B, C, D) of :class:`pipeline.models.heatmaps.SimilarityMaps`: each
    image beside its overlays, one per target."""
    words = why("heatmaps")["targets"]
    pngs = {}
    for i, role in enumerate("ABCD"[:len(maps.maps)]):
        panels = [(f"toward {words[t]}", maps.maps[i, j]) for j, t in enumerate(maps.targets)]
        pngs[role] = figures.heatmap_png(maps.crops[i], panels, role)
    return pngs


def write_figures(folder: Path, geometries: dict[str, dict], maps=None) -> dict[str, str]:
    """Write ``geometry-<space>.png`` for each ``{"image": geometry dict, "caption": ...}`` and, with
    ``maps`` (SimilarityMaps of A, B, C, D), ``heatmap-<A|B|C|D>.png``; returns {name: path}."""
    written = {}
    for name, drawn in geometries.items():
        path = figures.write_png(Path(folder) / f"geometry-{name}.png", figures.geometry_png(drawn, title=f"{name} space"))
        written[f"geometry-{name}"] = str(path)
    for role, png in (heatmap_pngs(maps) if maps is not None else {}).items():
        written[f"heatmap-{role}"] = str(figures.write_png(Path(folder) / f"heatmap-{role}.png", png))
    return written
