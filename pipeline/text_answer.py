"""The text answer: the caption-space query answered in words.

The sentence nearest to the caption-space query (scored with the report's method) in a vocabulary of
the 1,000 ImageNet class names worded as captions and the gallery's own captions.

* :func:`class_caption_texts` (labels captioner) -> the class captions; :func:`class_vocabulary`
  (models, cache dir, text model) -> (texts, (M, D) vectors), embedded once per text model and kept on
  disk under ``<cache_dir>/vocabulary/`` (:mod:`pipeline.embedding_cache`).
* :func:`vocabulary` (models, cache dir, captions, previous) -> :class:`Vocabulary`: the class
  captions plus one gallery's captions. Its owner keeps it with those captions (the
  :class:`pipeline.explorer.Explorer` holds the one of its current gallery) and passes it back as
  ``previous``: it is reused while the captions object is the same, its class part while the text
  model is.
* :func:`text_answer` (vocabulary, gallery, inputs, method, eps) -> the report's ``text_answer`` dict.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import vectors as vec
from .embedding_cache import cached_embeddings
from .explain import templates
from .labels import imagenet_classes


def _norm_text(text: str) -> str:
    return " ".join(text.lower().split())


def class_caption_texts(labels_captioner) -> list[str]:
    """The 1,000 ImageNet class names as captions, worded as the labels captioner words a confident
    prediction ("a photo of a tiger cat"), in class order, duplicates (two "crane"s) removed."""
    texts = [labels_captioner.caption_one([(c.name, 1.0)]) for c in imagenet_classes()]
    return list(dict.fromkeys(texts))


def class_vocabulary(models, cache_dir: Path, text_model: str) -> tuple[list[str], np.ndarray]:
    """ImageNet class captions (M texts) and their sentence embeddings ``(M, D)`` float32, L2-normalised,
    embedded with ``models.embed_texts`` once per text model and wording
    (:func:`pipeline.embedding_cache.cached_embeddings`: checksummed on disk under
    ``<cache_dir>/vocabulary/``, and kept in memory)."""
    texts = class_caption_texts(models.labels_captioner)
    return texts, cached_embeddings(models.embed_texts, texts, text_model, cache_dir, "imagenet-classes")


@dataclass
class Vocabulary:
    """The text answer's vocabulary for one gallery's captions: ImageNet class captions first
    (positions 0..M-1), then the gallery's captions that are not already there (positions M..M+G-1),
    deduplicated case-insensitively.

    captions: the gallery's :class:`pipeline.gallery.Captions` it was built for; text_model: the
    sentence model of the class vectors; class_texts: M texts; class_vectors: (M, D) float32
    L2-normalised; gallery_rows: (G,) int64, the gallery item whose caption sits at position M + g (the
    first item with that text); positions: normalised text -> position.
    """

    captions: object
    text_model: str
    class_texts: list[str]
    class_vectors: np.ndarray
    gallery_rows: np.ndarray
    positions: dict[str, int]

    def __len__(self) -> int:
        return len(self.class_texts) + len(self.gallery_rows)

    def text(self, position: int) -> str:
        """The sentence at ``position``."""
        n = len(self.class_texts)
        return self.class_texts[position] if position < n else self.captions.texts[int(self.gallery_rows[position - n])]

    def source(self, position: int) -> str:
        """Where the sentence at ``position`` comes from, in words (``prompts/explain.json``)."""
        names = templates()["vocabulary"]["sources"]
        return names["class"] if position < len(self.class_texts) else names["caption"]


def vocabulary(models, cache_dir: Path, captions, previous: Vocabulary | None = None) -> Vocabulary:
    """The :class:`Vocabulary` of a gallery's ``captions`` (:class:`pipeline.gallery.Captions`).

    ``previous`` is returned as it is when it was built for this same captions object; its class
    captions and vectors are reused when they are of the same text model (:func:`class_vocabulary`
    otherwise). The gallery part takes one pass over the captions.
    """
    if previous is not None and previous.captions is captions:
        return previous
    if previous is not None and previous.text_model == captions.text_model:
        class_texts, class_vectors = previous.class_texts, previous.class_vectors
    else:
        class_texts, class_vectors = class_vocabulary(models, cache_dir, captions.text_model)
    positions = {_norm_text(t): i for i, t in enumerate(class_texts)}
    rows = []
    for row, text in enumerate(captions.texts):
        norm = _norm_text(text)
        if norm not in positions:
            positions[norm] = len(class_texts) + len(rows)
            rows.append(row)
    return Vocabulary(captions, captions.text_model, class_texts, class_vectors, np.asarray(rows, dtype=np.int64),
                      positions)


def text_answer(vocab: Vocabulary, gallery, inputs, method: str, eps: float) -> dict | None:
    """The caption-space query answered in words.

    The caption vectors (D,) of A, B, C (``inputs``: :class:`pipeline.analogy.AnalogyInput`) score
    every sentence of ``vocab`` (the :func:`vocabulary` of ``gallery``'s captions) with ``method`` and
    3CosMul's ``eps`` (the same formula as the gallery's caption space; gallery captions are scored
    from the caption index, so nothing big is copied); sentences equal to an input's caption are left
    out. Returns ``{"text", "source": "imagenet class" | "gallery caption", "score", "top": [{"text",
    "source", "score"}, ...], "method", "vocabulary": {"imagenet_classes": M, "gallery_captions": G}}``
    (``text_answer_top_k`` rows in ``top``, scores rounded as the JSON carries them), or None when an
    input has no caption vector or every sentence was left out.
    """
    if any("caption" not in inp.vectors for inp in inputs):
        return None
    a, b, c = (inp.vectors["caption"] for inp in inputs)
    sims = np.concatenate([vec.input_similarities(vocab.class_vectors, a, b, c),
                           gallery.index("caption").similarities(np.stack([a, b, c]), vocab.gallery_rows)])
    scores = vec.method_scores(sims, vec.gram_matrix(a, b, c), method, eps)
    excluded = {vocab.positions[_norm_text(inp.caption)] for inp in inputs
                if inp.caption and _norm_text(inp.caption) in vocab.positions}
    ids, values = vec.top_k(scores, int(templates()["text_answer_top_k"]), exclude=sorted(excluded))
    if len(ids) == 0:
        return None
    top = [{"text": vocab.text(int(i)), "source": vocab.source(int(i)), "score": vec.rounded(v)}
           for i, v in zip(ids, values)]
    return {"text": top[0]["text"], "source": top[0]["source"], "score": top[0]["score"], "top": top,
            "method": method, "vocabulary": {"imagenet_classes": len(vocab.class_texts),
                                             "gallery_captions": len(vocab.gallery_rows)}}
