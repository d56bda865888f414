"""The one seam that loads models. Everything outside ``pipeline.models`` takes and returns numpy
arrays, PIL images and dataclasses; only here are torch, transformers, sentence-transformers and
onnxruntime imported (lazily: importing this package loads nothing).

:class:`Models` holds the models for one :class:`~pipeline.config.Settings`, loads each on first use,
and serialises calls into each model with a lock, so that ONNX sessions, tokenizers and torch modules
are never used from two threads at once (the Gradio app runs handlers on a thread pool).
"""
from __future__ import annotations

import threading
from functools import cached_property

import numpy as np
from PIL import Image

from ..config import Settings


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when torch sees a GPU, else ``cpu``; other values pass through (``cuda``
    without a GPU raises ValueError with a plain message)."""
    if device == "cpu":
        return "cpu"
    import torch

    has_cuda = torch.cuda.is_available()
    if device == "cuda" and not has_cuda:
        raise ValueError("--device cuda was asked for, but torch sees no GPU here. Use --device cpu or auto.")
    return "cuda" if has_cuda else "cpu"


class Models:
    """Lazily loaded models for one Settings. Attributes load on first access:

    ``classifier`` (convnet, pooled + logits), ``text_embedder`` (sentence-transformers),
    ``labels_captioner`` (templates over ImageNet labels), ``blip()`` (BLIP, may raise
    CaptionerUnavailable), ``word_vectors`` (GloVe 6B 50-d as a :class:`pipeline.words.WordVectors`,
    memory-mapped; may raise WordVectorsUnavailable).
    """

    def __init__(self, settings: Settings):
        self.settings = settings
        self._locks = {name: threading.Lock() for name in ("classifier", "text", "blip", "load")}
        self._blip = None

    @cached_property
    def device(self) -> str:
        return resolve_device(self.settings.device)

    @cached_property
    def classifier(self):
        from .convnet import load_classifier

        with self._locks["load"]:
            return load_classifier(self.settings.backbone, self.device, self.settings.cache_dir)

    @cached_property
    def text_embedder(self):
        from .text import TextEmbedder

        with self._locks["load"]:
            return TextEmbedder(self.settings.text_model, device=self.device)

    @cached_property
    def word_vectors(self):
        from ..words import WordVectors
        from .glove import NAME, load_glove

        with self._locks["load"]:
            glove = load_glove(self.settings.cache_dir)
            return WordVectors(glove.words, glove.vectors, name=NAME)

    @cached_property
    def labels_captioner(self):
        from .captioners import LabelsCaptioner

        return LabelsCaptioner()

    def blip(self):
        """The BLIP captioner (loaded once); raises CaptionerUnavailable where it cannot load."""
        from .captioners import BlipCaptioner

        with self._locks["load"]:
            if self._blip is None:
                self._blip = BlipCaptioner(self.settings.blip_model, device=self.device,
                                           max_new_tokens=self.settings.blip_max_new_tokens)
            return self._blip

    # --- numpy in, numpy out --------------------------------------------------------------------

    def classify(self, images: list[Image.Image]):
        """Pooled activations and logits for RGB images: ``run_classifier(preprocess(images))``."""
        return self.run_classifier(self.classifier.preprocess(images) if images else None)

    def run_classifier(self, batch: np.ndarray | None):
        """Run the convnet on a preprocessed (N, 3, 224, 224) float32 batch (None: no images), in
        slices of ``settings.batch_size``, each under the convnet's lock.

        Returns a ConvnetOutput: pooled (N, P) float32, logits (N, 1000) float32, not normalised.
        """
        from .convnet import ConvnetOutput

        classifier = self.classifier
        n = 0 if batch is None else len(batch)
        parts = []
        for start in range(0, n, self.settings.batch_size):
            with self._locks["classifier"]:
                parts.append(classifier.run(batch[start:start + self.settings.batch_size]))
        if not parts:
            return ConvnetOutput(np.zeros((0, classifier.pooled_dim), np.float32), np.zeros((0, 1000), np.float32))
        return ConvnetOutput(np.concatenate([p.pooled for p in parts]), np.concatenate([p.logits for p in parts]))

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        """(N, D) float32 L2-normalised sentence embeddings (D = 384 for MiniLM)."""
        embedder = self.text_embedder
        with self._locks["text"]:
            return embedder.encode(list(texts))

    def blip_captions(self, images: list[Image.Image]) -> list[str]:
        blip = self.blip()
        with self._locks["blip"]:
            return blip.caption(images)
