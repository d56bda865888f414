"""Agreement between the two spaces' answers, and caption space's lexical check. Pure functions.

Beside the analogy maths (:mod:`pipeline.vectors`, :mod:`pipeline.analogy`): they read the answers
that :func:`pipeline.analogy.solve_space` found and measure them; no wording (the sentences about these
numbers are :func:`pipeline.explain.agreement_summary`) and no models.

* :func:`knn_intersection` (ids, ids, k) -> (measure, common ids): faiss' ``knn_intersection_measure``.
* :func:`space_agreement` (image SpaceResult, caption SpaceResult | None, caption vectors, labelled)
  -> dict: same item, same label, top-k overlap, caption similarity of the two answers.
* :func:`pair_agreement` (SpaceResult | None, SpaceResult | None, labelled) -> dict and
  :func:`word_agreement` (image, caption, word SpaceResult | None, labelled) -> dict: word space
  compared with the other two.
* :func:`repeats_c` (answer caption, C's caption, C's label) -> (what, phrase) | None, and
  :func:`lexical_check` (top Hit | None, C's AnalogyInput) -> the caption-space measurements
  ``repeats_c``, ``repeats_c_what``, ``repeats_c_phrase`` (recorded by ``solve_space``).
"""
from __future__ import annotations

import re

import numpy as np

from .vectors import rounded


def knn_intersection(ids1: list[int], ids2: list[int], k: int) -> tuple[float, list[int]]:
    """faiss ``knn_intersection_measure`` for one query: |top-k(1) ∩ top-k(2)| / k, and the common ids
    in the order of ``ids1``. ``ids1``, ``ids2``: gallery ids, best first; k <= 0 gives (0.0, [])."""
    if k <= 0:
        return 0.0, []
    second = set(ids2[:k])
    common = [i for i in ids1[:k] if i in second]
    return len(common) / k, common


def space_agreement(image_space, caption_space, caption_vectors: np.ndarray | None, labelled: bool) -> dict:
    """How the image-space and caption-space answers compare.

    ``image_space``, ``caption_space``: :class:`pipeline.analogy.SpaceResult` (caption_space None when
    the gallery has no captions); ``caption_vectors``: the gallery's (N, D) float32 L2-normalised
    caption vectors, or None; ``labelled``: whether the gallery's items carry labels.

    Returns ``{"same_item": bool, "same_label": bool | None (None where the gallery or the answers
    have no labels), "top_k_overlap": {"k", "measure", "common_ids"}, "caption_similarity": cos of the
    two answers' caption vectors, "image_answer": id, "caption_answer": id}``, floats rounded as the
    JSON carries them; every field is None when there is no caption space or a space has no answer.
    """
    empty = {"same_item": None, "same_label": None, "top_k_overlap": None, "caption_similarity": None,
             "image_answer": None, "caption_answer": None}
    if caption_space is None or image_space.top is None or caption_space.top is None:
        return empty
    image_top, caption_top = image_space.top, caption_space.top
    same_label = None
    if labelled and image_top.label and caption_top.label:
        same_label = image_top.label == caption_top.label
    k = min(len(image_space.results), len(caption_space.results))
    measure, common = knn_intersection([h.id for h in image_space.results], [h.id for h in caption_space.results], k)
    similarity = None
    if caption_vectors is not None:
        similarity = rounded(np.clip(np.dot(caption_vectors[image_top.id], caption_vectors[caption_top.id]), -1, 1))
    return {"same_item": image_top.id == caption_top.id, "same_label": same_label,
            "top_k_overlap": {"k": k, "measure": rounded(measure), "common_ids": common},
            "caption_similarity": similarity, "image_answer": image_top.id, "caption_answer": caption_top.id}


def pair_agreement(first, second, labelled: bool) -> dict | None:
    """Two spaces' answers compared: ``{"same_item", "same_label", "top_k_overlap": {"k", "measure",
    "common_ids"}}`` as in :func:`space_agreement`; None when either space is missing or has no answer."""
    if first is None or second is None or first.top is None or second.top is None:
        return None
    same_label = None
    if labelled and first.top.label and second.top.label:
        same_label = first.top.label == second.top.label
    k = min(len(first.results), len(second.results))
    measure, common = knn_intersection([h.id for h in first.results], [h.id for h in second.results], k)
    return {"same_item": first.top.id == second.top.id, "same_label": same_label,
            "top_k_overlap": {"k": k, "measure": rounded(measure), "common_ids": common}}


def word_agreement(image_space, caption_space, word_space, labelled: bool) -> dict:
    """Word space against the other two (items' answers): ``{"image_word": pair, "caption_word": pair,
    "all_same_item": bool | None, "all_same_label": bool | None}`` (pairs from :func:`pair_agreement`;
    the "all" fields None unless all three spaces answered)."""
    image_word = pair_agreement(image_space, word_space, labelled)
    caption_word = pair_agreement(caption_space, word_space, labelled)
    both = image_word is not None and caption_word is not None
    same_label = None
    if both and image_word["same_label"] is not None and caption_word["same_label"] is not None:
        same_label = image_word["same_label"] and caption_word["same_label"]
    return {"image_word": image_word, "caption_word": caption_word,
            "all_same_item": (image_word["same_item"] and caption_word["same_item"]) if both else None,
            "all_same_label": same_label}


# --- the lexical check --------------------------------------------------------------------------


def _contains_phrase(text: str, phrase: str) -> bool:
    """Case-insensitive whole-word (word-boundary) occurrence of ``phrase`` in ``text``."""
    phrase = " ".join(phrase.split())
    if not phrase:
        return False
    pattern = r"(?<!\w)" + r"\s+".join(re.escape(w) for w in phrase.split(" ")) + r"(?!\w)"
    return re.search(pattern, text, flags=re.IGNORECASE) is not None


def repeats_c(answer_caption: str | None, c_caption: str | None, c_label: str | None) -> tuple[str, str] | None:
    """The caption-space lexical cheat: does the answer's caption repeat C's caption or C's label?

    Returns ``("caption", C's caption)`` or ``("label", C's label)`` for the first that the answer's
    caption contains (case-insensitive, on word boundaries), else None.
    """
    if not answer_caption:
        return None
    for what, phrase in (("caption", c_caption), ("label", c_label)):
        if phrase and _contains_phrase(answer_caption, phrase):
            return what, phrase
    return None


def lexical_check(top, c_input) -> dict:
    """The lexical check of a caption-space answer as measurements: ``repeats_c`` (bool),
    ``repeats_c_what`` ("caption" | "label" | None), ``repeats_c_phrase`` (str | None).

    ``top``: the top :class:`pipeline.analogy.Hit` (None when every item was excluded); ``c_input``:
    C's :class:`pipeline.analogy.AnalogyInput` (its ``caption`` and ``label`` are read).
    """
    found = repeats_c(top.caption if top else None, c_input.caption, c_input.label)
    return {"repeats_c": found is not None, "repeats_c_what": found[0] if found else None,
            "repeats_c_phrase": found[1] if found else None}
