"""Word space: GloVe word vectors, phrase vectors for labels, and the free word analogy.

DESIGN.md section 7. :class:`WordVectors` is modelled on gensim's ``KeyedVectors``: ``keys`` in row
order (GloVe's: most frequent first), the raw vectors, unit rows computed once, case-insensitive
lookup (gensim's rule: a word matches the first, i.e. most frequent, row whose key has the same
``str.upper()``), and :meth:`WordVectors.restrict_vocab` for the first N rows.

A label of several words ("domestic cat") is the L2-normalised mean of its words' unit vectors; the
words GloVe lacks are reported (:class:`Phrase`). An item's words are its human label where the gallery
has one, else the classifier's top-1 class name (:func:`item_words` says which). The free word analogy
(:func:`word_analogy`) answers A : B :: C : ? over the first N words (``Settings.word_vocab_size``,
30,000 by default) with the methods, baselines and exclusion of DESIGN.md section 2
(:mod:`pipeline.row_answers`, scores from :mod:`pipeline.vectors`).

Everything here is numpy in, numpy and dataclasses out; the vectors are loaded by
:func:`pipeline.models.glove.load_glove` (``Models.word_vectors`` wraps them in a :class:`WordVectors`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from typing import Iterable, Sequence

import numpy as np

from . import vectors as vec
from .errors import AnalogyError, SettingsError
from .row_answers import ROLES, RowAnswer, answer_among_rows


class WordVectors:
    """Word vectors: ``keys`` (N words, row order) and ``vectors`` ((N, D), any float dtype, e.g. a
    read-only memory map; never modified). ``unit`` is the (N, D) float32 array of L2-normalised rows,
    computed on first use and shared with every :meth:`restrict_vocab` view."""

    def __init__(self, keys: Sequence[str], vectors: np.ndarray, name: str = "glove-6b-50d",
                 unit: np.ndarray | None = None):
        if np.ndim(vectors) != 2 or len(keys) != len(vectors):
            raise ValueError(f"{len(keys)} keys but vectors of shape {np.shape(vectors)}")
        self.keys = list(keys)
        self.vectors = vectors
        self.name = name
        self._views: dict[int, WordVectors] = {}  # restrict_vocab's views, by size
        self._rows_found: dict[str, int | None] = {}  # upper-cased word -> row, filled by look_up
        if unit is not None:
            self.__dict__["unit"] = unit

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    @cached_property
    def unit(self) -> np.ndarray:
        """``(N, D)`` float32, each row of unit L2 norm (all-zero rows stay zero)."""
        return vec.l2_normalize(self.vectors, axis=1)

    def unit_rows(self, rows: Sequence[int]) -> np.ndarray:
        """``unit[rows]`` ((len(rows), D) float32), without normalising every row when ``unit`` has
        not been computed yet (each row is normalised on its own, so the values are the same)."""
        rows = np.asarray(rows, dtype=np.int64)
        if "unit" in self.__dict__:
            return self.unit[rows]
        return vec.l2_normalize(np.asarray(self.vectors[rows]), axis=1)

    @cached_property
    def folded_keys(self) -> list[str]:
        """``[key.upper() for key in keys]``, made in one pass over the joined keys (keys hold no
        line breaks; upper-casing never makes one)."""
        folded = "\n".join(self.keys).upper().split("\n")
        if len(folded) != len(self.keys):
            folded = [k.upper() for k in self.keys]
        return folded

    def index_of(self, word: str) -> int | None:
        """The row of ``word``, case-insensitively: the first row whose key has the same
        ``str.upper()`` (gensim's ``case_insensitive`` rule); None when no key matches. A linear
        search (a few ms at most for 400,000 keys): no table is built for a handful of lookups."""
        folded = str(word).upper()
        if folded in self._rows_found:
            return self._rows_found[folded]
        try:
            return self.folded_keys.index(folded)
        except ValueError:
            return None

    def look_up(self, words: Iterable[str]) -> None:
        """Find all of ``words`` in one pass over the keys and remember their rows (or that they are
        not keys), so that :meth:`index_of` then answers them at once: a gallery's labels are a few
        hundred words, each of which :meth:`index_of` alone would search the 400,000 keys for."""
        wanted = {str(word).upper() for word in words} - self._rows_found.keys()
        if not wanted:
            return
        found: dict[str, int | None] = dict.fromkeys(wanted)
        for row, key in enumerate(self.folded_keys):
            if key in found and found[key] is None:
                found[key] = row  # the first row with that upper case, as index_of
        self._rows_found.update(found)

    def __contains__(self, word: str) -> bool:
        return self.index_of(word) is not None

    def vector(self, word: str) -> np.ndarray:
        """The unit vector of ``word`` ((D,) float32); KeyError when it is not a key."""
        row = self.index_of(word)
        if row is None:
            raise KeyError(word)
        return self.unit[row]

    @cached_property
    def folded_index(self) -> dict[str, int]:
        """Upper-cased key -> its first row: the table behind :meth:`index_of` for many lookups
        (gensim's ``ok_vocab``; about 0.3 s to build for 400,000 keys)."""
        folded = self.folded_keys
        return dict(zip(reversed(folded), range(len(folded) - 1, -1, -1)))  # dict() keeps the last value

    def canonical_rows(self) -> np.ndarray:
        """``(N,)`` int64: for each row, the row its key resolves to under :meth:`index_of` (itself,
        or an earlier row whose key has the same upper case, e.g. "ﬁrst" -> "first")."""
        first = self.folded_index
        return np.fromiter((first[k] for k in self.folded_keys), dtype=np.int64, count=len(self.keys))

    def restrict_vocab(self, n: int) -> "WordVectors":
        """The first ``n`` rows (the ``n`` most frequent words in GloVe's order), sharing arrays. The
        view is kept: asked again, the same view (whose ``unit`` rows are normalised once) is returned."""
        n = int(n)
        if not 1 <= n <= len(self):
            raise SettingsError(f"the vocabulary size must be from 1 to {len(self):,} (the words in "
                                f"{self.name}), got {n:,}")
        if n == len(self):
            return self
        view = self._views.get(n)
        if view is None:
            unit = self.__dict__["unit"][:n] if "unit" in self.__dict__ else None
            view = WordVectors(self.keys[:n], self.vectors[:n], self.name, unit)
            if "folded_keys" in self.__dict__:
                view.__dict__["folded_keys"] = self.folded_keys[:n]
            self._views[n] = view
        return view


# --- phrases and items' words ------------------------------------------------------------------

_SEPARATORS = re.compile(r"[\s_,;/]+")
_EDGE_PUNCTUATION = "()[]{}\"'.:!?"


def split_words(text: str) -> list[str]:
    """The words of a label: split on white space, underscores, commas, semicolons and slashes, with
    brackets, quotes and end punctuation stripped ("bow_tie" -> ["bow", "tie"])."""
    words = (w.strip(_EDGE_PUNCTUATION) for w in _SEPARATORS.split(str(text)))
    return [w for w in words if w]


@dataclass
class Phrase:
    """A text as a word-space vector.

    text: as given. words: the GloVe keys used (in order; a hyphenated token GloVe lacks counts as its
    parts when GloVe has every part). rows: their rows. missing: the tokens GloVe lacks. vector: the
    L2-normalised mean of the words' unit vectors, ``(D,)`` float32, or None when no word is known.
    """

    text: str
    words: list[str]
    rows: list[int]
    missing: list[str]
    vector: np.ndarray | None

    def as_dict(self) -> dict:
        return {"text": self.text, "words": self.words, "missing": self.missing}


def phrase(words: WordVectors, text: str) -> Phrase:
    """The word-space vector of ``text`` (a word or a label of several words), see :class:`Phrase`."""
    used, rows, missing = [], [], []
    for token in split_words(text):
        row = words.index_of(token)
        if row is not None:
            found = [row]
        else:
            parts = [words.index_of(p) for p in token.split("-") if p] if "-" in token else []
            found = parts if parts and None not in parts else []
        if not found:
            missing.append(token)
        for r in found:
            used.append(words.keys[r])
            rows.append(int(r))
    vector = vec.l2_normalize(words.unit_rows(rows).mean(axis=0)) if rows else None
    return Phrase(str(text), used, rows, missing, vector)


@dataclass
class ItemWords:
    """An item's words: ``text``, and ``source``: ``"label"`` (the gallery's human label) or
    ``"classifier"`` (the classifier's top-1 ImageNet class name, used where there is no label)."""

    text: str
    source: str


def item_words(label: str | None, top1_class: str) -> ItemWords:
    """The words of one item: its human label when it has one, else the classifier's top-1 name."""
    if label is not None and str(label).strip():
        return ItemWords(str(label), "label")
    return ItemWords(str(top1_class), "classifier")


@dataclass
class ItemWordVectors:
    """Word space of a gallery's items.

    vectors: ``(N, D)`` float32, row i the unit phrase vector of item i, all-zero where the item has
    no word vector; has_vector: ``(N,)`` bool (an item without one must never be an answer in word
    space: exclude ``np.flatnonzero(~has_vector)``); words: each item's :class:`ItemWords`; phrases:
    each item's :class:`Phrase` (words used and missing).
    """

    vectors: np.ndarray
    has_vector: np.ndarray
    words: list[ItemWords]
    phrases: list[Phrase]


def item_word_vectors(words: WordVectors, labels: Sequence[str | None],
                      top1_classes: Sequence[str]) -> ItemWordVectors:
    """Word-space vectors of N items from their labels (None where an item has none) and the
    classifier's top-1 class names (each distinct text is looked up once)."""
    if len(labels) != len(top1_classes):
        raise ValueError(f"{len(labels)} labels but {len(top1_classes)} top-1 classes")
    item = [item_words(label, top1) for label, top1 in zip(labels, top1_classes)]
    texts = list(dict.fromkeys(w.text for w in item))
    words.look_up(part for text in texts for token in split_words(text) for part in (token, *token.split("-")))
    by_text = {text: phrase(words, text) for text in texts}
    phrases = [by_text[w.text] for w in item]
    out = np.zeros((len(item), words.dim), dtype=np.float32)
    has_vector = np.array([p.vector is not None for p in phrases], dtype=bool)
    for i in np.flatnonzero(has_vector):
        out[i] = phrases[i].vector
    return ItemWordVectors(out, has_vector, item, phrases)


# --- the free word analogy ---------------------------------------------------------------------


@dataclass
class WordAnswer:
    """A : B :: C : ? over the first ``vocab_size`` words.

    inputs: the three :class:`Phrase` (A, B, C). keys: the candidate words (row order). answer: the
    :class:`~pipeline.row_answers.RowAnswer` over them (its rows index ``keys``).
    """

    inputs: list[Phrase]
    keys: list[str]
    answer: RowAnswer

    @property
    def word(self) -> str | None:
        return self.answer.top_name(self.keys)

    def as_dict(self) -> dict:
        """``{"word", "score", "top": [{"word", "score"}], "without_exclusion": {"word", "score",
        "winner", "input_ranks"}, "baselines": {method: {"word", "score"}}, "method", "exclude",
        "inputs": [{"role", "text", "words", "missing"}], "vocab_size"}`` (see
        :meth:`pipeline.row_answers.RowAnswer.named`)."""
        return {**self.answer.named(self.keys, "word"),
                "inputs": [{"role": role, **p.as_dict()} for role, p in zip(ROLES, self.inputs)],
                "vocab_size": len(self.keys)}


def word_analogy(words: WordVectors, a: str | Phrase, b: str | Phrase, c: str | Phrase,
                 method: str = "3cosadd", vocab_size: int = 30_000, exclude: bool = True, top_k: int = 5,
                 eps: float = 1e-3, strict: bool = False) -> WordAnswer:
    """Answer a : b :: c : ? among the first ``vocab_size`` words of ``words``.

    Args:
        words: the whole vocabulary; inputs are looked up in all of it (a rare word may be asked about),
            answers come from its first ``vocab_size`` rows.
        a, b, c: a word, a label of several words, or a :class:`Phrase` (an item's words).
        method: one of :data:`pipeline.vectors.ALL_METHODS`; exclude: leave out every word of the
            inputs; top_k: answers wanted; eps: 3CosMul's constant.
        strict: raise AnalogyError when any input word is unknown (the ``words`` command), instead of
            using the known words of a phrase and reporting the rest as missing.

    Raises:
        AnalogyError naming the unknown words, when an input has no known word (or, with ``strict``,
        any word is unknown); SettingsError for a bad ``vocab_size``.
    """
    inputs = [x if isinstance(x, Phrase) else phrase(words, x) for x in (a, b, c)]
    unknown = [w for p in inputs for w in p.missing] if strict else [
        w for p in inputs if p.vector is None for w in (p.missing or [p.text])]
    if unknown:
        raise AnalogyError(f"not in {words.name}'s {len(words):,} words: {', '.join(map(repr, unknown))}. "
                           "Check the spelling, or use another word")
    candidates = words.restrict_vocab(vocab_size)
    n = len(candidates)
    input_rows = {role: [r for r in p.rows if r < n] for role, p in zip(ROLES, inputs)}
    answer = answer_among_rows(candidates.unit, *(p.vector for p in inputs), input_rows=input_rows,
                               method=method, exclude=exclude, top_k=top_k, eps=eps)
    return WordAnswer(inputs, candidates.keys, answer)
