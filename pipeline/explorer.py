"""The product's front door: one object that the CLI, the app and the evaluation share.

An :class:`Explorer` holds settings, the lazily loaded models, the current gallery and the text
answer's vocabulary of that gallery's captions, and answers questions with dataclasses: ``labels``
(what the classifier sees), ``caption``, and ``analogy`` (an :class:`AnalogyReport`, assembled here
from its parts: each space's answer (:func:`pipeline.analogy.solve_space`), the text answer
(:mod:`pipeline.text_answer`), the agreement (:mod:`pipeline.agreement`) and the explanation in words
(:mod:`pipeline.explain`)).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from . import default_gallery
from .agreement import space_agreement, word_agreement
from .analogy import AnalogyInput, SpaceResult, prepare_inputs, solve_space
from .captions import caption_external, labels_captions
from .config import Settings
from .errors import AnalogyError
from .explain import agreement_summary, explanation
from .errors import WordVectorsUnavailable
from .gallery import BuildStats, Gallery, Progress, build_gallery, space_key
from .images import load_image
from .insight import report_heatmaps, report_insight
from .labels import LabelScore, top_labels
from .models import Models
from .models.captioners import resolve_captioner
from .text_answer import Vocabulary, text_answer, vocabulary
from .class_questions import CentroidCache, ClassQuestionReport, ask_classes
from .word_space import GalleryWordsCache, WordSpaceReport, word_space
from .thresholds import gallery_calibration


@dataclass
class AnalogyReport:
    """Everything about one question A : B :: C : ?.

    image_space / caption_space: :class:`SpaceResult` (caption_space None when the gallery has no
    captions). expected: gallery ids of the right answers given with the question (None: the
    gallery's layout decides, if it can). text_answer: the nearest sentence to the caption-space query
    in a vocabulary of class names and gallery captions. agreement: how the two spaces compare.
    insight: per space key (``image_space``, ``caption_space``) the fields of
    :func:`pipeline.insight.space_insight` (``offset_terms``, ``geometry``, ``expected``,
    ``near_duplicate_threshold``), merged into that space's JSON. explanation: chat messages
    [{"role": "assistant", "content": str}].
    """

    inputs: list[AnalogyInput]
    method: str
    layer: str
    exclude: bool
    top_k: int
    image_space: SpaceResult
    caption_space: SpaceResult | None
    gallery: dict
    expected: list[int] | None = None
    text_answer: dict | None = None
    agreement: dict | None = None
    insight: dict | None = None
    explanation: list[dict] = field(default_factory=list)
    word_space: WordSpaceReport | None = None  # None where GloVe is not installed

    def space_dict(self, key: str) -> dict | None:
        """``image_space`` / ``caption_space`` as JSON, with its insight fields when explained."""
        result = getattr(self, key)
        if result is None:
            return None
        return {**result.as_dict(), **(self.insight or {}).get(key, {})}

    def as_dict(self) -> dict:
        return {
            "question": {"A": self.inputs[0].name, "B": self.inputs[1].name, "C": self.inputs[2].name,
                         "method": self.method, "layer": self.layer, "exclude": self.exclude, "top_k": self.top_k,
                         "expected": self.expected},
            "gallery": self.gallery,
            "inputs": [inp.as_dict() for inp in self.inputs],
            "image_space": self.space_dict("image_space"),
            "caption_space": self.space_dict("caption_space"),
            "word_space": self.word_space.as_dict() if self.word_space else None,
            "text_answer": self.text_answer,
            "agreement": self.agreement,
            "explanation": self.explanation,
        }


class Explorer:
    """Settings + models + one gallery. Thread-safe for queries; model calls are serialised inside
    :class:`pipeline.models.Models`."""

    def __init__(self, settings: Settings | None = None, models=None):
        self.settings = settings or Settings.from_env()
        self.models = models or Models(self.settings)
        self.gallery: Gallery | None = None
        self.build_stats: BuildStats | None = None
        self._lock = threading.Lock()
        self._vocabulary: Vocabulary | None = None  # the text answer's, for the gallery's current captions
        self._vocabulary_lock = threading.Lock()
        self._gallery_words = GalleryWordsCache()  # word space of the current gallery, made once
        self._centroids = CentroidCache()  # class centroids of the current gallery, per space
        self.announcements: list[str] = []  # fallbacks and other things the user must be told

    # --- gallery ---------------------------------------------------------------------------------

    def open_gallery(self, root: Path | str | None = None, progress: Progress | None = None,
                     with_captions: bool = True, **build_options) -> Gallery:
        """Build or load the gallery of ``root`` (None: the embedded default gallery).
        ``build_options`` go to :func:`pipeline.gallery.build_gallery` (``engine``, ``address``)."""
        if root is None:
            root = default_gallery.materialize(default_gallery.default_gallery_dir(self.settings.cache_dir))
        with self._lock:
            self.gallery, self.build_stats = build_gallery(Path(root), self.settings, self.models, progress,
                                                           with_captions=with_captions, **build_options)
        spaces = [space_key("image", self.settings.layer)] + (["caption"] if self.gallery.captions else [])
        for space in spaces:  # the near-duplicate thresholds: calibrated once per gallery, here
            gallery_calibration(self.gallery, space)
        return self.gallery

    def require_gallery(self) -> Gallery:
        if self.gallery is None:
            self.open_gallery()
        return self.gallery  # type: ignore[return-value]

    def gallery_info(self) -> dict:
        g = self.require_gallery()
        captions = g.captions
        return {
            "root": str(g.root), "items": len(g), "backbone": self.models.classifier_name,
            "captioners": sorted(set(captions.captioners)) if captions else [],
            "caption_announcement": captions.announcement if captions else None,
            "text_model": captions.text_model if captions else None,
            "is_default": g.root == default_gallery.default_gallery_dir(self.settings.cache_dir).resolve(),
        }

    # --- questions -------------------------------------------------------------------------------

    def labels(self, images: list, k: int = 5) -> list[list[LabelScore]]:
        """Top-k ImageNet labels for image files (or gallery refs), best first; the files that are
        not gallery items go through the convnet in one batch."""
        gallery = self.gallery
        logits: list = [None] * len(images)
        pending = []
        for i, ref in enumerate(images):
            item = gallery.find(ref) if gallery is not None else None
            if item is not None:
                logits[i] = gallery.logits[item]
            else:
                pending.append((i, self.load(ref)))
        if pending:
            computed = self.models.classify([image for _, image in pending]).logits
            for (i, _), row in zip(pending, computed):
                logits[i] = row
        return top_labels(np.stack(logits), k) if logits else []

    def load(self, ref):
        """An image file decoded safely under this explorer's limits (see pipeline.images.load_image)."""
        return load_image(ref, max_pixels=self.settings.max_pixels, max_bytes=self.settings.max_file_bytes)

    def analogy(self, refs: list, method: str = "3cosadd", layer: str | None = None, exclude: bool = True,
                top_k: int | None = None, explain: bool = True, expected: list | None = None) -> AnalogyReport:
        """Answer A : B :: C : ? in image space (``layer``) and caption space; with ``explain`` (the
        default) also the text answer, the agreement, why (:mod:`pipeline.insight`) and the
        explanation (:meth:`explained`). ``expected``: the right answers (gallery ids or paths), when
        the caller knows them; else the gallery's layout decides where it can."""
        gallery = self.require_gallery()
        layer = layer or self.settings.layer
        top_k = top_k or self.settings.top_k
        expected_ids = self.expected_ids(expected)
        inputs = prepare_inputs(gallery, self.models, list(refs))
        image = solve_space(gallery, inputs, space_key("image", layer), method, exclude, top_k)
        caption = solve_space(gallery, inputs, "caption", method, exclude, top_k) if gallery.captions else None
        report = AnalogyReport(inputs, method, layer, exclude, top_k, image, caption, self.gallery_info(), expected_ids,
                               word_space=self.word_space(inputs, method, exclude, top_k))
        return self.explained(report) if explain else report

    def expected_ids(self, refs: list | None) -> list[int] | None:
        """Gallery ids of expected answers given as ids or paths (None: none given); AnalogyError for
        a reference that is not a gallery item."""
        if refs is None:
            return None
        gallery = self.require_gallery()
        ids = []
        for ref in refs:
            found = gallery.find(ref)
            if found is None:
                raise AnalogyError(f"expected answer {ref!r} is not a gallery item: give its id or its path in the gallery")
            ids.append(found)
        return sorted(set(ids))

    def word_space(self, inputs: list[AnalogyInput], method: str, exclude: bool,
                   top_k: int) -> WordSpaceReport | None:
        """The question in word space (:func:`pipeline.word_space.word_space`): among the gallery's
        items' words and over GloVe's first ``Settings.word_vocab_size`` words. None, with the reason
        in ``announcements``, where the GloVe package is not installed."""
        try:
            vocabulary = self.models.word_vectors
        except WordVectorsUnavailable as exc:
            if str(exc) not in self.announcements:
                self.announcements.append(str(exc))
            return None
        words = self._gallery_words.get(self.require_gallery(), vocabulary)
        return word_space(words, vocabulary, inputs, method, exclude, top_k, self.settings.word_vocab_size)

    def class_analogy(self, labels: list[str], method: str = "3cosadd", layer: str | None = None,
                      exclude: bool = True, top_k: int | None = None) -> ClassQuestionReport:
        """A : B :: C : ? where A, B, C are classes (labels) of the gallery, answered among class
        centroids and among items in each space (:func:`pipeline.class_questions.ask_classes`)."""
        gallery = self.require_gallery()
        try:
            vocabulary = self.models.word_vectors
            words = self._gallery_words.get(gallery, vocabulary)
        except WordVectorsUnavailable:
            vocabulary = words = None
        return ask_classes(gallery, self._centroids, labels, method, layer or self.settings.layer, exclude,
                           top_k or self.settings.top_k, self.gallery_info(), words, vocabulary,
                           self.settings.word_vocab_size)

    def explained(self, report: AnalogyReport, insight: bool = True) -> AnalogyReport:
        """A copy of ``report`` (its spaces solved) with ``text_answer`` (None without caption space),
        ``agreement``, with ``insight`` (the default) the fields of :func:`pipeline.insight.report_insight`,
        and ``explanation`` filled in; ``report`` itself is not changed."""
        text = self.text_answer(report.inputs, report.method) if report.caption_space is not None else None
        report = replace(report, text_answer=text, agreement=self.agreement(report))
        if insight:
            report = replace(report, insight=self.insight(report))
        return replace(report, explanation=explanation(report.as_dict()))

    def insight(self, report: AnalogyReport) -> dict:
        """Why, per space of ``report`` (:func:`pipeline.insight.report_insight`): the offset named,
        the geometry in numbers, right or wrong, the calibrated near-duplicate threshold."""
        return report_insight(self.require_gallery(), self.models, report)

    def heatmaps(self, report: AnalogyReport):
        """Where the network looks in A, B, C and the image-space answer D (seconds on a CPU):
        :func:`pipeline.insight.report_heatmaps`."""
        return report_heatmaps(self.require_gallery(), self.models, report, self.load)

    def agreement(self, report: AnalogyReport) -> dict:
        """How the report's spaces compare: :func:`pipeline.agreement.space_agreement`'s dict (image and
        caption), ``word``: word space against both (:func:`pipeline.agreement.word_agreement`), and their
        ``summary`` in words (:func:`pipeline.explain.agreement_summary`)."""
        gallery = self.require_gallery()
        caption_vectors = gallery.vectors("caption") if gallery.captions is not None else None
        measured = space_agreement(report.image_space, report.caption_space, caption_vectors, gallery.labelled)
        caption = report.caption_space.as_dict() if report.caption_space is not None else None
        word_answer = report.word_space.space if report.word_space is not None else None
        word = word_agreement(report.image_space, report.caption_space, word_answer, gallery.labelled)
        return {**measured, "summary": agreement_summary(measured, report.image_space.as_dict(), caption, word),
                "word": word}

    def text_answer(self, inputs: list[AnalogyInput], method: str) -> dict | None:
        """The caption-space query of ``inputs`` answered in words with ``method``
        (:func:`pipeline.text_answer.text_answer`); None when the gallery has no captions."""
        gallery = self.require_gallery()
        if gallery.captions is None:
            return None
        return text_answer(self.text_vocabulary(), gallery, inputs, method, self.settings.cosmul_eps)

    def text_vocabulary(self) -> Vocabulary:
        """The text answer's vocabulary for the gallery's current captions: built on first use and kept
        here with those captions (rebuilt when the gallery's captions change; the class captions'
        vectors come from the disk cache or are embedded once, one thread at a time)."""
        gallery = self.require_gallery()
        with self._vocabulary_lock:
            self._vocabulary = vocabulary(self.models, self.settings.cache_dir, gallery.captions, self._vocabulary)
            return self._vocabulary

    def caption(self, images: list) -> list[dict]:
        """Caption image files (or gallery refs): [{"image", "caption", "captioner"}]. Gallery items
        keep their gallery caption; other images get the gallery's captioner where it runs on single
        images (BLIP), else the classifier's labels."""
        gallery = self.gallery
        rows, pending = [None] * len(images), []
        for i, ref in enumerate(images):
            item = gallery.find(ref) if gallery is not None else None
            if item is not None and gallery.captions is not None:
                rows[i] = {"image": str(ref), "caption": gallery.captions.texts[item],
                           "captioner": gallery.captions.captioners[item]}
            else:
                pending.append((i, self.load(ref)))
        if pending:
            pics = [p[1] for p in pending]
            logits = self.models.classify(pics).logits
            if gallery is not None and self.settings.captioner in ("auto", "file"):
                texts = caption_external(gallery, self.models, pics, logits)
            else:
                texts = self._caption_without_gallery(pics, logits)
            for (i, _), (text, name) in zip(pending, texts):
                rows[i] = {"image": str(images[i]), "caption": text, "captioner": name}
        return rows  # type: ignore[return-value]

    def _caption_without_gallery(self, images, logits) -> list[tuple[str, str]]:
        requested = "auto" if self.settings.captioner == "file" else self.settings.captioner
        chosen, announcement = resolve_captioner(
            requested, n_items=len(images), device=self.models.device, file_captions_available=False,
            blip_model=self.settings.blip_model, blip_cpu_item_limit=self.settings.blip_cpu_item_limit,
            try_blip=self.models.blip)
        if announcement:
            self.announcements.append(announcement)
        if chosen == "blip":
            return [(t, self.models.blip().name) for t in self.models.blip_captions(images)]
        return [(t, "labels") for t in labels_captions(self.models, logits)]
