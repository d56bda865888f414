"""Questions about classes in the product: A, B and C are labels of a labelled gallery.

Each input class is, in every space (image at a layer, caption, word), the centroid of its items'
vectors (:func:`pipeline.classes.class_centroids`, the evaluation's own). The question is answered
among the class centroids (:func:`pipeline.classes.class_answer`, as the 2017 talk did) and among the
gallery's items (:func:`pipeline.row_answers.answer_among_rows`), with the same methods, baselines and
exclusion (of the items or centroids of the three input classes) as photo questions, and the verdicts
of DESIGN.md section 2 (:func:`row_verdicts`). Word space also gets the free word analogy of the three
labels over GloVe's vocabulary.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .classes import class_answer, class_centroids
from .errors import AnalogyError
from .gallery import Gallery
from .gallery import space_key
from .row_answers import ROLES, RowAnswer, answer_among_rows
from .words import word_analogy


def row_verdicts(answer: RowAnswer, candidates: np.ndarray, c: np.ndarray, threshold: float) -> list[str]:
    """DESIGN.md's verdicts on a row answer's top-1 (as :func:`pipeline.analogy.verdicts_for`):
    ``input`` (an input row wins without exclusion), ``only-c`` / ``ignore-a`` (that baseline's top is
    the same row), ``near-duplicate`` (cos(answer, c) above ``threshold``), else ``genuine``."""
    if not answer.top:
        return []
    top = answer.top[0][0]
    verdicts = ["input"] if answer.without_exclusion["winner"] is not None else []
    for name in ("only-c", "ignore-a"):
        if answer.baselines.get(name) and answer.baselines[name][0] == top:
            verdicts.append(name)
    if float(np.dot(candidates[top], c)) > threshold:
        verdicts.append("near-duplicate")
    return verdicts or ["genuine"]


class CentroidCache:
    """Class centroids of one gallery per space, made on first use (thread-safe)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._gallery: Gallery | None = None
        self._spaces: dict[str, tuple[list[str], np.ndarray, list[int]]] = {}

    def get(self, gallery: Gallery, space: str, vectors: np.ndarray) -> tuple[list[str], np.ndarray, list[int]]:
        """``(classes, centroids, labelled_ids)`` of ``space`` (``vectors``: the gallery's (N, D) unit
        rows in that space; only labelled items count)."""
        with self._lock:
            if self._gallery is not gallery:
                self._gallery, self._spaces = gallery, {}
            if space not in self._spaces:
                ids = [item.id for item in gallery.items if item.label]
                classes, centroids = class_centroids(np.asarray(vectors)[ids], [gallery.items[i].label for i in ids])
                self._spaces[space] = (classes, centroids, ids)
            return self._spaces[space]


def check_classes(gallery: Gallery, labels: Sequence[str]) -> list[str]:
    """The three labels as the gallery spells them (case- and underscore-insensitive), or AnalogyError
    naming the unknown ones (and saying when the gallery has no labels at all)."""
    known = {}
    for item in gallery.items:
        if item.label:
            known.setdefault(_folded(item.label), item.label)
    if not known:
        raise AnalogyError("this gallery has no labels, so it has no classes: ask about photos instead "
                           "(labels come from file names <wnid>_<id>_<label>.jpg or labels.csv)")
    unknown = [label for label in labels if _folded(label) not in known]
    if unknown:
        raise AnalogyError(f"no class named {', '.join(map(repr, unknown))} in this gallery; its classes are its "
                           f"items' labels (e.g. {', '.join(sorted(known.values())[:3])})")
    return [known[_folded(label)] for label in labels]


def _folded(label: str) -> str:
    return " ".join(str(label).replace("_", " ").split()).casefold()


def class_space(gallery: Gallery, classes: list[str], centroids: np.ndarray, labelled_ids: list[int],
                vectors: np.ndarray, labels: list[str], method: str, exclude: bool, top_k: int,
                space: str) -> dict:
    """One space of a class question: ``{"space", "among_classes": ClassAnswer dict + "verdicts",
    "among_items": {"item", "score", "top": [{"item", "label", "score"}], "baselines",
    "without_exclusion", "verdicts", "excluded_items"}}``; ``None`` for a space where an input class
    has no vector (all-zero centroid: no item of it has words)."""
    settings = gallery.settings
    index = {name: i for i, name in enumerate(classes)}
    a, b, c = (centroids[index[label]] for label in labels)
    if not all(np.any(v) for v in (a, b, c)):
        return None
    among_classes = class_answer(classes, centroids, *labels, method=method, exclude=exclude, top_k=top_k,
                                 eps=settings.cosmul_eps)
    classes_out = {**among_classes.as_dict(),
                   "verdicts": row_verdicts(among_classes.answer, centroids, c, settings.near_duplicate_threshold)}
    members = {role: [i for i in labelled_ids if gallery.items[i].label == label] for role, label in zip(ROLES, labels)}
    items = answer_among_rows(vectors, a, b, c, input_rows=members, method=method, exclude=exclude, top_k=top_k,
                              eps=settings.cosmul_eps)
    paths = [item.path for item in gallery.items]
    items_out = items.named(paths, "item")
    for hit in [items_out, *items_out["top"], *(h for h in items_out["baselines"].values() if h)]:
        hit["label"] = gallery.items[gallery.find(hit["item"])].label if hit.get("item") else None
    items_out["verdicts"] = row_verdicts(items, vectors, c, settings.near_duplicate_threshold)
    items_out["excluded_items"] = len(items.excluded) if exclude else 0
    return {"space": space, "among_classes": classes_out, "among_items": items_out}


@dataclass
class ClassQuestionReport:
    """A question about classes: ``labels`` (A, B, C as the gallery spells them), ``spaces`` (space key
    -> :func:`class_space` dict or None), ``word_answer`` (the free word analogy's dict or None)."""

    labels: list[str]
    method: str
    layer: str
    exclude: bool
    top_k: int
    spaces: dict[str, dict | None]
    word_answer: dict | None
    gallery: dict

    def as_dict(self) -> dict:
        a, b, c = self.labels
        return {"question": {"A": a, "B": b, "C": c, "kind": "classes", "method": self.method, "layer": self.layer,
                             "exclude": self.exclude, "top_k": self.top_k},
                "gallery": self.gallery,
                "inputs": [{"role": r, "kind": "class", "class": label} for r, label in zip(ROLES, self.labels)],
                "image_space": self.spaces.get("image"), "caption_space": self.spaces.get("caption"),
                "word_space": ({**self.spaces["word"], "word_answer": self.word_answer}
                               if self.spaces.get("word") else None)}


def ask_classes(gallery: Gallery, centroids: CentroidCache, labels: Sequence[str], method: str, layer: str,
                exclude: bool, top_k: int, gallery_info: dict, words=None, vocabulary=None,
                vocab_size: int = 30_000) -> ClassQuestionReport:
    """Answer the class question ``labels`` (A, B, C) in image space (``layer``), caption space (when
    the gallery has captions) and word space (``words``: the gallery's
    :class:`pipeline.word_space.GalleryWords`, with ``vocabulary`` the GloVe
    :class:`pipeline.words.WordVectors`; skipped when None)."""
    if len(labels) != 3:
        raise AnalogyError(f"a question about classes needs three classes A, B, C; got {len(labels)}")
    labels = check_classes(gallery, labels)
    spaces = {"image": space_key("image", layer)}
    if gallery.captions is not None:
        spaces["caption"] = "caption"
    out: dict[str, dict | None] = {}
    for name, key in spaces.items():
        vectors = gallery.vectors(key)
        out[name] = class_space(gallery, *centroids.get(gallery, key, vectors), vectors, labels, method, exclude,
                                top_k, key)
    word_answer = None
    if words is not None:
        out["word"] = class_space(gallery, *centroids.get(gallery, "word", words.items.vectors), words.items.vectors,
                                  labels, method, exclude, top_k, "word")
        if out["word"] is not None:
            word_answer = word_analogy(vocabulary, *labels, method=method, vocab_size=vocab_size, exclude=exclude,
                                       top_k=top_k, eps=gallery.settings.cosmul_eps).as_dict()
    return ClassQuestionReport(list(labels), method, layer, exclude, top_k, out, word_answer, gallery_info)
