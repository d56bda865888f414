"""The offset named: what B - A asks for, and what the answer's move D - C did, in classes and words.

Definitions (DESIGN.md section 7):

* **Image space, pooled layer.** The classifier's head is ``logits = W p + bias`` (W: (1000, P)), so a
  pooled offset maps exactly to a logit change, ``W (p_B - p_A) = logits(B) - logits(A)``. The analogy
  runs on L2-normalised vectors, so by default the offset named is ``W (b - a)`` of the normalised
  pooled vectors (the vectors actually used; ``basis`` says which). Terms: the ImageNet classes with
  the largest positive entries (toward) and the most negative (away), scored by their logit change.
* **Image space, logits and probs layers.** The vectors are already in class coordinates: the offset's
  entries are the classes' changes. Given raw logits, the offset is the logit difference
  ``logits(B) - logits(A)`` (for probs it ranks classes as ``log(p_B / p_A)`` does: the two differ by
  one constant); else the difference of the space's normalised vectors.
* **Caption space.** Terms are the vocabulary entries (ImageNet class names and the visual attribute
  words of ``prompts/attributes.json``) whose unit embedding has the largest cosine with the unit
  offset ``(b - a) / |b - a|`` (toward) and the smallest (away); the score is that cosine.
* **Alignment** of the answer's move: ``cos(b - a, d - c)`` in the space where the terms are named
  (for the pooled layer: of the logit changes ``W (b - a)`` and ``W (d - c)``). **Along**: how far
  D - C goes where B - A points, ``(d - c) . (b - a) / |b - a|^2`` in that space (1: as far as asked).

Everything here takes and returns numpy arrays and dataclasses; the vocabulary's embeddings come from
the caption model through a callable (``Models.embed_texts``) and are cached on disk
(:mod:`pipeline.embedding_cache`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from . import vectors as vec
from .embedding_cache import cached_embeddings
from .labels import imagenet_classes
from .wording import prompts, why

#: Terms listed toward and away, for B - A and for D - C.
TERMS_K = 5

IMAGE_LAYER_SPACES = ("image:pooled", "image:logits", "image:probs")


@dataclass(frozen=True)
class Term:
    """One named direction: ``term`` (class name or attribute phrase), ``score`` (logit change, class
    coordinate change or cosine: see the ``basis`` of its :class:`OffsetTerms`), ``kind`` (``class``
    or ``attribute``)."""

    term: str
    score: float
    kind: str = "class"

    def as_dict(self) -> dict:
        return {"term": self.term, "score": round(float(self.score), 6), "kind": self.kind}


@dataclass
class OffsetTerms:
    """The named offset of one space (the issue's ``offset_terms`` object).

    toward / away: terms of B - A, strongest first (positive scores / negative scores, at most
    :data:`TERMS_K` each). answer_toward / answer_away: the same for D - C (empty without an answer).
    alignment: cos(b - a, d - c) where the terms live (None without an answer or with a zero offset).
    along: (d - c) . (b - a) / |b - a|^2 there (None likewise). basis: key of ``prompts/why.json``
    ``offsets.bases`` saying what the scores are; basis_text: that wording. sentence: one line.
    """

    space: str
    basis: str
    toward: list[Term]
    away: list[Term]
    answer_toward: list[Term] = field(default_factory=list)
    answer_away: list[Term] = field(default_factory=list)
    alignment: float | None = None
    along: float | None = None
    sentence: str = ""

    @property
    def basis_text(self) -> str:
        return why("offsets")["bases"][self.basis]

    def as_dict(self) -> dict:
        r = lambda x: None if x is None else round(float(x), 6)  # noqa: E731
        return {"toward": [t.as_dict() for t in self.toward], "away": [t.as_dict() for t in self.away],
                "answer_toward": [t.as_dict() for t in self.answer_toward],
                "answer_away": [t.as_dict() for t in self.answer_away],
                "alignment": r(self.alignment), "along": r(self.along),
                "space": self.space, "basis": self.basis, "basis_text": self.basis_text, "sentence": self.sentence}


# --- the core: scores over named coordinates -> terms ----------------------------------------------


def rank_terms(scores: np.ndarray, names: Sequence[str], kinds: Sequence[str] | None = None,
               k: int = TERMS_K) -> tuple[list[Term], list[Term]]:
    """(toward, away): the ``k`` names with the largest positive scores, and the ``k`` with the most
    negative, strongest first (ties: lower index first). ``scores``: (V,) any float dtype, one per
    name; zero and NaN scores are never named."""
    scores = np.nan_to_num(np.asarray(scores, dtype=np.float64), nan=0.0)
    if scores.shape != (len(names),):
        raise ValueError(f"scores must have shape ({len(names)},), got {scores.shape}")
    kinds = kinds if kinds is not None else ["class"] * len(names)
    top, _ = vec.top_k(scores, k)  # best first, ties to the lower index
    bottom, _ = vec.top_k(-scores, k)
    toward = [Term(names[i], float(scores[i]), kinds[i]) for i in top if scores[i] > 0]
    away = [Term(names[i], float(scores[i]), kinds[i]) for i in bottom if scores[i] < 0]
    return toward, away


#: A vector whose squared norm is at most this is zero (no direction): B = A, or D = C.
ZERO = 1e-12


def _cos(u: np.ndarray, v: np.ndarray) -> float | None:
    uu, vv = float(u @ u), float(v @ v)
    if uu <= ZERO or vv <= ZERO:
        return None
    return float(np.clip((u @ v) / np.sqrt(uu * vv), -1.0, 1.0))


def name_offsets(space: str, basis: str, offset: np.ndarray, move: np.ndarray | None, scores_of: Callable,
                 names: Sequence[str], kinds: Sequence[str] | None = None, k: int = TERMS_K) -> OffsetTerms:
    """Terms of an offset and of the answer's move in one space.

    offset, move: (M,) float64 vectors in the coordinates where the terms live (``move`` None: no
    answer). scores_of: vector -> (V,) score per name. Alignment and along are measured on
    ``offset`` and ``move`` themselves.
    """
    offset = np.asarray(offset, dtype=np.float64)
    toward, away = rank_terms(scores_of(offset), names, kinds, k)
    result = OffsetTerms(space, basis, toward, away)
    if move is not None:
        move = np.asarray(move, dtype=np.float64)
        result.answer_toward, result.answer_away = rank_terms(scores_of(move), names, kinds, k)
        result.alignment = _cos(offset, move)
        squared = float(offset @ offset)
        result.along = float(move @ offset / squared) if result.alignment is not None else None
    result.sentence = offset_sentence(result, zero=float(offset @ offset) <= ZERO,
                                      has_answer=move is not None)
    return result


# --- image space ----------------------------------------------------------------------------------


def class_names() -> list[str]:
    """The 1,000 ImageNet class names (first WordNet lemma), in class order (index = logit)."""
    return [c.name for c in imagenet_classes()]


def pooled_offset_terms(weight: np.ndarray, a, b, c, d=None, *, normalised: bool = True,
                        k: int = TERMS_K, space: str = "image:pooled") -> OffsetTerms:
    """Name a pooled-space offset by the classes whose logits it changes most.

    weight: (1000, P) float32 classifier head (``Models.classifier_head().weight``).
    a, b, c, d: (P,) pooled activations of A, B, C and the answer D (d None: no answer).
    normalised: True (default) L2-normalises them first, as the analogy does, and names
        ``W (b - a)`` of the unit vectors (basis ``image:pooled``); False names the raw offset,
        ``W (p_B - p_A) = logits(B) - logits(A)`` exactly (basis ``image:pooled:raw``).
    Scores are logit changes; alignment is cos(W (b - a), W (d - c)).
    """
    a, b, c = (np.asarray(v, dtype=np.float64) for v in (a, b, c))
    d = None if d is None else np.asarray(d, dtype=np.float64)
    if normalised:
        a, b, c = (vec.l2_normalize(v).astype(np.float64) for v in (a, b, c))
        d = None if d is None else vec.l2_normalize(d).astype(np.float64)
    w = np.asarray(weight, dtype=np.float32)  # a float32 product: no float64 copy of W per question
    if w.ndim != 2 or w.shape[1] != a.shape[0]:
        raise ValueError(f"weight must have shape (classes, {a.shape[0]}), got {w.shape}")
    change = lambda x: (w @ x.astype(np.float32)).astype(np.float64)  # noqa: E731
    move = None if d is None else change(d - c)
    return name_offsets(space, "image:pooled" if normalised else "image:pooled:raw", change(b - a), move,
                        lambda x: x, class_names(), None, k)


def class_offset_terms(a, b, c, d=None, *, basis: str = "logits", k: int = TERMS_K,
                       space: str = "image:logits") -> OffsetTerms:
    """Name an offset of vectors in class coordinates ((1000,) each: raw logits, or the normalised
    logits / probabilities of the image:logits / image:probs spaces), taken as given. ``basis``:
    ``logits`` (raw logits: scores are logit differences), ``image:logits`` or ``image:probs``."""
    a, b, c = (np.asarray(v, dtype=np.float64) for v in (a, b, c))
    if a.shape != (1000,):
        raise ValueError(f"class-coordinate vectors must have shape (1000,), got {a.shape}")
    move = None if d is None else np.asarray(d, dtype=np.float64) - c
    return name_offsets(space, basis, b - a, move, lambda x: x, class_names(), None, k)


def image_offset_terms(space: str, a, b, c, d=None, *, weight: np.ndarray | None = None,
                       raw_logits: np.ndarray | None = None, k: int = TERMS_K) -> OffsetTerms:
    """The named offset of an image space (a key of :data:`IMAGE_LAYER_SPACES`).

    a, b, c, d: (D,) the space's vectors as the analogy used them (L2-normalised; d None: no answer).
    weight: (1000, P) classifier head, required for ``image:pooled``.
    raw_logits: optional (4, 1000) (or (3, 1000) without an answer) raw logits of A, B, C, D; for
        ``image:logits`` and ``image:probs`` the offset is then the logit difference (basis
        ``logits``), else the difference of the space's own vectors.
    """
    if space == "image:pooled":
        if weight is None:
            raise ValueError("image:pooled needs the classifier head's weight")
        return pooled_offset_terms(weight, a, b, c, d, k=k, space=space)
    if space not in IMAGE_LAYER_SPACES:
        raise ValueError(f"unknown image space {space!r}: choose one of {', '.join(IMAGE_LAYER_SPACES)}")
    if raw_logits is not None:
        rows = np.asarray(raw_logits, dtype=np.float64)
        return class_offset_terms(rows[0], rows[1], rows[2], rows[3] if d is not None and len(rows) > 3 else None,
                                  basis="logits", k=k, space=space)
    return class_offset_terms(a, b, c, d, basis=space, k=k, space=space)


# --- caption space ---------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def attribute_phrases() -> tuple[str, ...]:
    """The visual attribute words and phrases of ``prompts/attributes.json``, in file order, unique."""
    groups = prompts("attributes")["groups"]
    return tuple(dict.fromkeys(p for group in groups.values() for p in group))


def vocabulary_terms() -> tuple[list[str], list[str]]:
    """(terms, kinds): the ImageNet class names (unique, class order) then the attribute phrases not
    already among them; kinds ``class`` / ``attribute``."""
    terms = list(dict.fromkeys(class_names()))
    known = set(terms)
    attributes = [p for p in attribute_phrases() if p not in known]
    return terms + attributes, ["class"] * len(terms) + ["attribute"] * len(attributes)


@dataclass(frozen=True)
class WordVocabulary:
    """terms: V strings; kinds: V of ``class`` / ``attribute``; vectors: (V, D) float32 unit
    embeddings by ``text_model``."""

    terms: list[str]
    kinds: list[str]
    vectors: np.ndarray
    text_model: str


def word_vocabulary(embed: Callable[[list[str]], np.ndarray], text_model: str, cache_dir: Path) -> WordVocabulary:
    """The offset vocabulary embedded with the caption model (``embed``: texts -> (N, D) vectors,
    e.g. ``Models.embed_texts``; ``text_model``: its name, e.g. the gallery's
    ``captions.text_model``), cached on disk under ``cache_dir/vocabulary`` and in memory."""
    terms, kinds = vocabulary_terms()
    vectors = cached_embeddings(embed, terms, text_model, cache_dir, "offset-terms")
    return WordVocabulary(terms, kinds, vectors, text_model)


def caption_offset_terms(vocabulary: WordVocabulary, a, b, c, d=None, *, k: int = TERMS_K,
                         space: str = "caption") -> OffsetTerms:
    """Name a caption-space offset by the vocabulary entries most aligned with it.

    a, b, c, d: (D,) caption embeddings of A, B, C and the answer (normalised inside, as the analogy
    uses them; d None: no answer). Scores: cos(entry, (b - a) / |b - a|) in [-1, 1]; the answer's
    terms likewise with d - c. Alignment is cos(b - a, d - c) of the normalised caption vectors.
    """
    a, b, c = (vec.l2_normalize(np.asarray(v, dtype=np.float32)).astype(np.float64) for v in (a, b, c))
    if a.shape != (vocabulary.vectors.shape[1],):
        raise ValueError(f"caption vectors must have shape ({vocabulary.vectors.shape[1]},), got {a.shape}")
    move = None if d is None else vec.l2_normalize(np.asarray(d, dtype=np.float32)).astype(np.float64) - c
    units = vocabulary.vectors.astype(np.float64)

    def cosines(x: np.ndarray) -> np.ndarray:
        norm = float(np.linalg.norm(x))
        return units @ (x / norm) if norm * norm > ZERO else np.zeros(len(units))

    return name_offsets(space, "caption", b - a, move, cosines, vocabulary.terms, vocabulary.kinds, k)


# --- wording ---------------------------------------------------------------------------------------


def _terms_text(toward: list[Term], away: list[Term]) -> str:
    words = why("offsets")
    parts = ([words["term_toward"].format(term=t.term) for t in toward[:words["sentence_toward"]]]
             + [words["term_away"].format(term=t.term) for t in away[:words["sentence_away"]]])
    return words["term_separator"].join(parts) or words["nothing"]


def offset_sentence(terms: OffsetTerms, zero: bool = False, has_answer: bool = True) -> str:
    """"B - A asks for +Arabian camel, -valley; the answer moved +otter, -sea lion (alignment 0.120)."
    from the templates of ``prompts/why.json`` (``offsets``)."""
    words = why("offsets")
    if zero:
        return words["sentence_zero_offset"]
    asked = _terms_text(terms.toward, terms.away)
    if not has_answer:
        return words["sentence_no_answer"].format(asked=asked)
    if terms.alignment is None:  # d - c is zero: the answer has C's vector
        return words["sentence_answer_is_c"].format(asked=asked)
    alignment = "?" if terms.alignment is None else prompts("why")["number_format"].format(terms.alignment)
    return words["sentence"].format(asked=asked, moved=_terms_text(terms.answer_toward, terms.answer_away),
                                    alignment=alignment)
