"""Everything a question about gallery items reads, computed when the gallery is built.

A question whose A, B and C are gallery items needs no model: labels, captions and vectors are in the
gallery's store. It still reads things that are made on first use: the FAISS index of each space and
its measurements (typical nearest-neighbour distance, :mod:`pipeline.space_stats`; the near-duplicate
calibration, :func:`pipeline.thresholds.gallery_calibration`), the sentence embeddings of the text answer's class captions
(:func:`pipeline.text_answer.class_vocabulary`) and of the offset vocabulary
(:func:`pipeline.offsets.word_vocabulary`), the convnet's head (:meth:`Models.classifier_head`) and GloVe's
word vectors (:attr:`Models.word_vectors`, whose word list is cached on first use).
:func:`prepare_questions` makes them all, with progress, so that the first question after
``gallery build`` is as fast as the later ones and loads no model. Each step reads its cache when it
is already there, so preparing a prepared gallery costs a few reads.
"""
from __future__ import annotations

import time
from typing import Callable

from . import offsets, thresholds
from .errors import WordVectorsUnavailable
from .gallery import IMAGE_SPACES
from .models.convnet import EFFICIENTNET_NAMES
from .progress import PREPARING, Progress


def question_steps(explorer) -> list[tuple[str, Callable[[], object]]]:
    """(name, step) for everything a question on ``explorer``'s open gallery reads (see the module
    docstring), in the order :func:`prepare_questions` runs them."""
    gallery = explorer.require_gallery()
    models, settings = explorer.models, explorer.settings
    spaces = list(IMAGE_SPACES) + (["caption"] if gallery.captions is not None else [])
    steps: list[tuple[str, Callable[[], object]]] = []
    for space in spaces:
        steps += [(f"index {space}", lambda s=space: gallery.index(s)),
                  (f"typical distance {space}", lambda s=space: gallery.typical_nn_distance(s)),
                  (f"near-duplicate threshold {space}", lambda s=space: thresholds.gallery_calibration(gallery, s))]
    if gallery.captions is not None:
        steps += [("class captions' embeddings", explorer.text_vocabulary),
                  ("offset words' embeddings", lambda: offsets.word_vocabulary(
                      models.embed_texts, gallery.captions.text_model, settings.cache_dir))]
    if settings.backbone in EFFICIENTNET_NAMES:
        steps.append(("classifier head", models.classifier_head))
    steps.append(("word vectors", lambda: _word_vectors(models)))
    return steps


def _word_vectors(models):
    """GloVe's vectors (their word list is written to the cache on first use), or None where the package
    is not installed (word space then says so beside each answer)."""
    try:
        return models.word_vectors
    except WordVectorsUnavailable:
        return None


def prepare_questions(explorer, progress: Progress | None = None) -> dict:
    """Run :func:`question_steps` for ``explorer``'s open gallery, reporting to ``progress``.
    Returns {"steps": how many, "seconds": float}."""
    progress = progress or (lambda done, total, what: None)
    steps = question_steps(explorer)
    started = time.perf_counter()
    progress(0, len(steps), PREPARING)
    for done, (_, step) in enumerate(steps, 1):
        step()
        progress(done, len(steps), PREPARING)
    return {"steps": len(steps), "seconds": round(time.perf_counter() - started, 3)}
