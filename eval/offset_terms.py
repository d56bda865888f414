"""What the arithmetic meant, for the ``transforms`` suite: per transform and space, the terms most often
named for b - a (does greyscale read as "black and white" in caption space, and as what in class
space?), and how often D - C agrees with B - A (alignment > 0).

The terms and the alignment are the product's own (:mod:`pipeline.offsets`, DESIGN.md section 7),
computed for all questions at once: every gallery item gets its coordinates in the space where the
terms live (:func:`term_space`), offsets are differences of those coordinates (each definition is
linear in the offset), and each question's terms are its :data:`TOP_TERMS` strongest toward and away.

* ``image:pooled``: coordinates ``W x`` of the L2-normalised pooled vectors x (W: the classifier
  head), so b - a is named by its logit change ``W (b - a)``;
* ``image:logits`` / ``image:probs``: the raw logits (the product names these spaces' offsets of gallery
  items by the logit difference ``logits(B) - logits(A)``);
* ``caption``: the normalised caption vectors; a term's score is the cosine of its embedding (class
  names and the attribute words of ``prompts/attributes.json``) with the unit offset.

Alignment: cos(b - a, d - c) in those coordinates, for D the right answer t(y) (do different photos
move the same way?) and for D the answer of 3CosAdd with the inputs excluded; a D with C's own vector
(no move: the product's alignment is None) does not count as agreeing.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Callable

import numpy as np

from pipeline import offsets

from .report import md_table, pct

TOP_TERMS = 3  # strongest terms of each question's b - a that count as "named"
LISTED = 3  # most frequent terms listed per transform and space
DIRECTIONS = ("toward", "away")


@dataclass
class TermSpace:
    """coords: (N, M) float32 per gallery item, offsets are their differences; names / kinds: the V
    terms; scores: (Q, M) offsets -> (Q, V) float64 term scores; basis: key of why.json's bases."""

    coords: np.ndarray
    names: list[str]
    kinds: list[str]
    scores: Callable[[np.ndarray], np.ndarray]
    basis: str


def term_space(gallery, models, space: str) -> TermSpace:
    """The coordinates where ``space``'s offsets are named (see the module docstring)."""
    if space == "caption":
        vocabulary = offsets.word_vocabulary(models.embed_texts, gallery.captions.text_model, gallery.settings.cache_dir)
        units = vocabulary.vectors.astype(np.float64)

        def cosines(rows: np.ndarray) -> np.ndarray:
            norms = np.linalg.norm(rows, axis=1, keepdims=True)
            return np.where(norms > 0, rows / np.where(norms > 0, norms, 1.0), 0.0) @ units.T

        return TermSpace(gallery.vectors("caption"), vocabulary.terms, vocabulary.kinds, cosines, "caption")
    names = offsets.class_names()
    if space == "image:pooled":
        weight = np.asarray(models.classifier_head().weight, dtype=np.float32)
        return TermSpace(gallery.vectors(space) @ weight.T, names, ["class"] * len(names), lambda rows: rows,
                         "image:pooled")
    return TermSpace(np.asarray(gallery.logits, dtype=np.float32), names, ["class"] * len(names), lambda rows: rows,
                     "logits")


def named_terms(scores: np.ndarray, k: int = TOP_TERMS) -> tuple[np.ndarray, np.ndarray]:
    """(toward, away): (Q, k) term indices of each row's k largest positive and k most negative scores,
    strongest first, -1 where fewer are positive (negative); ties to the lower index, as
    :func:`pipeline.offsets.rank_terms` orders them."""
    scores = np.nan_to_num(np.asarray(scores, dtype=np.float64), nan=0.0)
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    bottom = np.argsort(scores, axis=1, kind="stable")[:, :k]
    rows = np.arange(len(scores))[:, None]
    return np.where(scores[rows, top] > 0, top, -1), np.where(scores[rows, bottom] < 0, bottom, -1)


def transform_masks(transform: np.ndarray, transforms: list[str]) -> dict[str, np.ndarray]:
    """{transform name: (Q,) bool of its questions, "all": every question}; ``transform``: (Q,) index
    into ``transforms``."""
    masks = {name: transform == k for k, name in enumerate(transforms)}
    masks["all"] = np.ones(len(transform), dtype=bool)
    return masks


def _cosines(u: np.ndarray, w: np.ndarray) -> np.ndarray:
    u, w = u.astype(np.float64), w.astype(np.float64)
    norms = np.linalg.norm(u, axis=1) * np.linalg.norm(w, axis=1)
    return np.where(norms > 0, np.einsum("ij,ij->i", u, w) / np.where(norms > 0, norms, 1.0), np.nan)


def summarise_terms(terms: TermSpace, ids: np.ndarray, answers: np.ndarray, masks: dict[str, np.ndarray]) -> dict:
    """Per transform (``masks``: name -> (Q,) bool, e.g. ``all``): the :data:`LISTED` terms most often
    among the top :data:`TOP_TERMS` toward / away of b - a, with the share of questions naming each,
    and the share with alignment > 0 (and the mean alignment) for D = the right answer and for D =
    ``answers`` (Q,) gallery ids (3CosAdd's). ``ids``: (Q, 4) gallery ids of A, B, C and the right answer."""
    a, b, c, d = ids.T
    offset = terms.coords[b].astype(np.float64) - terms.coords[a]
    named = dict(zip(DIRECTIONS, named_terms(terms.scores(offset))))
    alignment = {"right": _cosines(offset, terms.coords[d].astype(np.float64) - terms.coords[c]),
                 "3cosadd": _cosines(offset, terms.coords[answers].astype(np.float64) - terms.coords[c])}
    out = {"basis": terms.basis, "top_terms": TOP_TERMS, "transforms": {}}
    for name, mask in masks.items():
        count = int(mask.sum())
        entry = {"questions": count}
        for direction in DIRECTIONS:
            counted = Counter(int(i) for i in named[direction][mask].ravel() if i >= 0)
            entry[direction] = [{"term": terms.names[i], "kind": terms.kinds[i], "share": n / count}
                                for i, n in sorted(counted.items(), key=lambda item: (-item[1], item[0]))[:LISTED]]
        for which, values in alignment.items():
            chosen = values[mask]
            entry[f"alignment_positive_{which}"] = float(np.mean(chosen > 0)) if count else None
            entry[f"alignment_mean_{which}"] = float(np.nanmean(chosen)) if count and np.isfinite(chosen).any() else None
        out["transforms"][name] = entry
    return out


def _listed(entries: list[dict]) -> str:
    return ", ".join(f"{e['term']} ({pct(e['share'], 0)})" for e in entries) or "-"


def markdown(per_space: dict, space_names: dict[str, str], transforms: list[str]) -> str:
    """The report's section: one table row per space and transform, then what it means."""
    rows = []
    for space, summary in per_space.items():
        for t in transforms + ["all"]:
            e = summary["transforms"][t]
            rows.append([space_names.get(space, space), t, _listed(e["toward"]), _listed(e["away"]),
                         pct(e["alignment_positive_right"]), pct(e["alignment_positive_3cosadd"])])
    table = md_table(["space", "transform", "b - a toward (share of questions)", "away from",
                      "D - C agrees with B - A (right answer)", "(3CosAdd's answer)"], rows, align="llllrr")
    notes = (f"A term is named for a question when it is among the {TOP_TERMS} strongest of its b - a (toward or "
             "away); the share is of that transform's questions. Terms are the product's (DESIGN.md section 7): "
             "ImageNet classes by logit change W (b - a) in pooled space, by logit difference in the logits and "
             "probs spaces, class names and attribute words by cosine in caption space. 'Agrees' is alignment "
             "cos(b - a, d - c) > 0 in those coordinates (a D with C's own vector does not move, so does not agree), "
             "for D the right answer t(y) and for D 3CosAdd's answer with the inputs excluded.")
    return table + "\n\n" + notes + "\n\n" + _meaning(per_space, space_names, transforms)


def _meaning(per_space: dict, space_names: dict[str, str], transforms: list[str]) -> str:
    """**What this means**: the most named term of each transform per space, and the agreement."""
    parts = []
    for space, summary in per_space.items():
        said = [f"{t} as {e['toward'][0]['term']} ({pct(e['toward'][0]['share'], 0)})"
                for t in transforms if (e := summary["transforms"][t])["toward"]]
        every = summary["transforms"]["all"]
        parts.append(f"In {space_names.get(space, space)}, b - a most often reads: " + "; ".join(said)
                     + f". D - C agrees with B - A in {pct(every['alignment_positive_right'])} of questions for the "
                       f"right answer, {pct(every['alignment_positive_3cosadd'])} for 3CosAdd's answer.")
    return "**What this means.** " + " ".join(parts)
