"""Word space in the product's analogy report: the question asked of the gallery's items' words.

Each gallery item's word vector is the GloVe phrase vector of its words (its human label, else the
classifier's top-1 class name: :func:`pipeline.words.item_word_vectors`); an item whose words GloVe
lacks has no vector and is never an answer. :class:`GalleryWords` holds them for one gallery (made once
per gallery, see :func:`gallery_words`), with a flat FAISS index and the typical nearest-neighbour
distance, so that :func:`pipeline.analogy.solve_space` answers in word space exactly as in the other
spaces (same methods, baselines, exclusion, verdicts and measurements) through
:class:`WordSpaceGallery`. :func:`word_space` adds the free word analogy over GloVe's vocabulary
(:func:`pipeline.words.word_analogy`) and each input's words.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, replace

import numpy as np

from . import vectors as vec
from .analogy import AnalogyInput, SpaceResult, solve_space
from .gallery import Gallery
from .index import VectorIndex
from .labels import imagenet_classes
from .thresholds import threshold_for_distance
from .words import ItemWordVectors, Phrase, WordVectors, item_word_vectors, item_words, phrase, word_analogy

#: The space key of word space in reports and in :class:`WordSpaceGallery`.
WORD_SPACE = "word"


@dataclass
class GalleryWords:
    """Word space of one gallery: ``items`` (:class:`pipeline.words.ItemWordVectors`, row i is item i),
    ``index`` (flat, exact, over ``items.vectors``; all-zero rows for items without words),
    ``never`` (int64 ids of the items without a word vector) and ``typical_nn_distance`` (median
    distance between distinct word vectors, as :func:`pipeline.vectors.typical_nn_distance`)."""

    gallery: Gallery
    items: ItemWordVectors
    index: VectorIndex
    never: np.ndarray
    typical_nn_distance: float
    near_duplicate_threshold: float


def gallery_words(gallery: Gallery, words: WordVectors) -> GalleryWords:
    """The word space of ``gallery``'s items: labels where the gallery has them, else the classifier's
    top-1 class (one argmax over the cached logits). Cost: O(N) plus one lookup per distinct text."""
    names = [c.name for c in imagenet_classes()]
    top1 = [names[int(i)] for i in np.argmax(np.asarray(gallery.logits), axis=1)] if len(gallery) else []
    items = item_word_vectors(words, [item.label for item in gallery.items], top1)
    distinct = np.unique(items.vectors[items.has_vector], axis=0)
    typical = vec.typical_nn_distance(distinct) if len(distinct) >= 2 else 0.0
    # items sharing a label share a word vector, so the rule reads the distinct vectors' typical distance
    return GalleryWords(gallery, items, VectorIndex.build(items.vectors, kind="flat"),
                        np.flatnonzero(~items.has_vector).astype(np.int64), float(typical),
                        threshold_for_distance(float(typical)))


class GalleryWordsCache:
    """One :class:`GalleryWords` per gallery object, made on first use (thread-safe)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._current: GalleryWords | None = None

    def get(self, gallery: Gallery, words: WordVectors) -> GalleryWords:
        with self._lock:
            if self._current is None or self._current.gallery is not gallery:
                self._current = gallery_words(gallery, words)
            return self._current


class WordSpaceGallery:
    """A gallery seen in word space, for :func:`pipeline.analogy.solve_space`: the gallery's items,
    captions and settings, with the word vectors, index and typical distance of :class:`GalleryWords`
    for any space key."""

    def __init__(self, words: GalleryWords):
        self._words = words
        self.settings = words.gallery.settings
        self.items = words.gallery.items
        self.captions = words.gallery.captions

    def vectors(self, space: str) -> np.ndarray:
        return self._words.items.vectors

    def index(self, space: str) -> VectorIndex:
        return self._words.index

    def typical_nn_distance(self, space: str) -> float:
        return self._words.typical_nn_distance


@dataclass
class InputWords:
    """One input's words: ``source`` "label" or "classifier", and its :class:`pipeline.words.Phrase`."""

    role: str
    source: str
    phrase: Phrase

    def as_dict(self) -> dict:
        return {"role": self.role, "source": self.source, **self.phrase.as_dict(),
                "has_vector": self.phrase.vector is not None}


def input_words(words: GalleryWords, vocabulary: WordVectors, inputs: list[AnalogyInput]) -> list[InputWords]:
    """Each input's words: a gallery item's own (as in :class:`GalleryWords`); an uploaded image's are
    the classifier's top-1 class name."""
    out = []
    for inp in inputs:
        if inp.item_id is not None:
            out.append(InputWords(inp.role, words.items.words[inp.item_id].source, words.items.phrases[inp.item_id]))
        else:
            own = item_words(None, inp.labels[0].name if inp.labels else inp.label or "")
            out.append(InputWords(inp.role, own.source, phrase(vocabulary, own.text)))
    return out


@dataclass
class WordSpaceReport:
    """Word space of one question: ``space`` (the answer among the gallery's items, a
    :class:`pipeline.analogy.SpaceResult`, None when an input has no word vector), ``word_answer``
    (the free word analogy's dict, :meth:`pipeline.words.WordAnswer.as_dict`, or None), ``inputs``
    (each input's words) and ``missing_inputs`` (the roles without a word vector)."""

    space: SpaceResult | None
    word_answer: dict | None
    inputs: list[InputWords]
    missing_inputs: list[str]

    def as_dict(self) -> dict:
        """The ``image_space`` fields (None when there is no answer among items), plus
        ``word_answer``, ``inputs`` ([{"role", "source", "text", "words", "missing", "has_vector"}]),
        ``missing_inputs`` and ``without_word_vectors`` (how many items have none)."""
        base = self.space.as_dict() if self.space is not None else {
            "space": WORD_SPACE, "results": [], "excluded": [], "without_exclusion": None, "baselines": {},
            "verdicts": [], "measurements": {}}
        return {**base, "word_answer": self.word_answer, "inputs": [i.as_dict() for i in self.inputs],
                "missing_inputs": self.missing_inputs}


def word_space(words: GalleryWords, vocabulary: WordVectors, inputs: list[AnalogyInput], method: str,
               exclude: bool, top_k: int, vocab_size: int) -> WordSpaceReport:
    """A : B :: C : ? in word space: among the gallery's items (the ones with a word vector, inputs
    excluded as in every space) and over GloVe's first ``vocab_size`` words (inputs' words excluded).
    An input without a word vector leaves both answers None (its role is in ``missing_inputs``)."""
    own = input_words(words, vocabulary, inputs)
    missing = [w.role for w in own if w.phrase.vector is None]
    if missing:
        return WordSpaceReport(None, None, own, missing)
    with_words = [_with_word_vector(inp, w.phrase.vector) for inp, w in zip(inputs, own)]
    space = solve_space(WordSpaceGallery(words), with_words, WORD_SPACE, method, exclude, top_k,  # type: ignore[arg-type]
                        threshold=words.near_duplicate_threshold, never=words.never)
    answer = word_analogy(vocabulary, *(w.phrase for w in own), method=method, vocab_size=vocab_size,
                          exclude=exclude, top_k=top_k, eps=words.gallery.settings.cosmul_eps)
    return WordSpaceReport(space, answer.as_dict(), own, [])


def _with_word_vector(inp: AnalogyInput, vector: np.ndarray) -> AnalogyInput:
    """``inp`` with its word vector under :data:`WORD_SPACE` (the other spaces' vectors kept)."""
    return replace(inp, vectors={**inp.vectors, WORD_SPACE: vector})

