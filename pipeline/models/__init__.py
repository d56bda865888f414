"""The one seam that loads models. Everything outside ``pipeline.models`` takes and returns numpy
arrays, PIL images and dataclasses; only here are torch, transformers, sentence-transformers and
onnxruntime imported (lazily: importing this package loads none of them; each loads with the first
model that needs it).

:class:`Models` holds the models for one :class:`~pipeline.config.Settings`, loads each on first use,
and serialises calls into each model with a lock, so that ONNX sessions, tokenizers and torch modules
are never used from two threads at once (the Gradio app runs handlers on a thread pool).
"""
from __future__ import annotations

import importlib.util
import os
import re
import sys
import threading
from functools import cached_property
from pathlib import Path

import numpy as np
from PIL import Image

from ..config import Settings
from ..errors import BackboneUnavailable, SettingsError
from .captioners import BlipCaptioner, LabelsCaptioner
from .convnet import (EFFICIENTNET_NAMES, ConvnetOutput, center_crop_array, efficientnet_input, efficientnet_model_key,
                      load_classifier, onnx_classifier_name)
from .head import classifier_head, efficientnet_head
from ..words import WordVectors
from .glove import NAME, load_glove
from .heatmaps import SimilarityCAM
from .text import TextEmbedder


def nvidia_driver_present() -> bool:
    """False where this machine surely has no CUDA GPU, so ``auto`` needs no torch to say ``cpu``:
    Linux without an NVIDIA driver (no ``/proc/driver/nvidia/version``, ``/dev/nvidiactl``, nor
    WSL's ``/dev/dxg``), or macOS. True elsewhere (then torch is asked)."""
    if sys.platform == "darwin":
        return False
    if sys.platform.startswith("linux"):
        return any(os.path.exists(p) for p in ("/proc/driver/nvidia/version", "/dev/nvidiactl", "/dev/dxg"))
    return True


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when torch sees a GPU, else ``cpu``; other values pass through (``cuda``
    without a GPU raises SettingsError with a plain message). ``auto`` is ``cpu`` without importing
    torch where no GPU can be used: a torch built without GPU support (:func:`torch_build_has_gpu`) or
    a machine without an NVIDIA driver (:func:`nvidia_driver_present`)."""
    if device == "cpu" or (device == "auto" and not (torch_build_has_gpu() and nvidia_driver_present())):
        return "cpu"
    # deferred: torch takes seconds to import; the CPU path (onnxruntime) never needs it
    import torch

    has_cuda = torch.cuda.is_available()
    if device == "cuda" and not has_cuda:
        raise SettingsError("--device cuda was asked for, but torch sees no GPU here. Use --device cpu or auto.")
    return "cuda" if has_cuda else "cpu"


def torch_build_has_gpu() -> bool:
    """Whether the installed torch was built for a GPU (CUDA or ROCm), read from ``torch/version.py``
    (``torch.version.cuda`` / ``.hip``) without importing torch, which takes seconds. False without
    torch; True when the file cannot be read (then torch itself is asked)."""
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return False
    try:
        text = (Path(next(iter(spec.submodule_search_locations))) / "version.py").read_text(encoding="utf-8")
    except (OSError, StopIteration, ValueError):
        return True
    found = dict(re.findall(r"^(cuda|hip)\b[^=\n]*=\s*(.*?)\s*$", text, re.MULTILINE))
    if set(found) != {"cuda", "hip"}:
        return True
    return any(value != "None" for value in found.values())


class Models:
    """Lazily loaded models for one Settings. Attributes load on first access:

    ``classifier`` (convnet, pooled + logits), ``text_embedder`` (onnxruntime on a CPU,
    sentence-transformers on CUDA or where the model cannot run through onnxruntime),
    ``labels_captioner`` (templates over ImageNet labels), ``blip()`` (BLIP, may raise
    CaptionerUnavailable), ``word_vectors`` (GloVe 6B 50-d as a :class:`pipeline.words.WordVectors`,
    memory-mapped; may raise WordVectorsUnavailable). ``classifier_key`` and ``classifier_name`` say
    which convnet it is without loading it where the weights file tells (the packaged EfficientNet; its
    name on the CPU), so that a gallery answered from its cache loads no model.
    """

    def __init__(self, settings: Settings):
        self.settings = settings
        self._locks = {name: threading.Lock() for name in ("classifier", "text", "blip", "load", "cam")}
        self._blip = None
        self._cam = None

    @cached_property
    def device(self) -> str:
        return resolve_device(self.settings.device)

    @cached_property
    def classifier(self):
        with self._locks["load"]:
            return load_classifier(self.settings.backbone, self.device, self.settings.cache_dir)

    @cached_property
    def classifier_key(self) -> str:
        """``classifier.model_key`` (the cache key of a gallery's vectors), without loading the
        packaged EfficientNet (a loaded classifier is asked itself)."""
        if "classifier" not in self.__dict__ and self.settings.backbone in EFFICIENTNET_NAMES:
            return efficientnet_model_key(self.settings.backbone)
        return self.classifier.model_key

    @property
    def classifier_name(self) -> str:
        """``classifier.name`` (what runs where), without loading the packaged EfficientNet on the CPU."""
        if "classifier" not in self.__dict__ and self.settings.backbone in EFFICIENTNET_NAMES and self.device == "cpu":
            return onnx_classifier_name(self.settings.backbone)
        return self.classifier.name

    @cached_property
    def text_embedder(self):
        with self._locks["load"]:
            return TextEmbedder(self.settings.text_model, device=self.device, cache_dir=self.settings.cache_dir)

    @cached_property
    def word_vectors(self):
        with self._locks["load"]:
            glove = load_glove(self.settings.cache_dir)
            return WordVectors(glove.words, glove.vectors, name=NAME)

    @cached_property
    def labels_captioner(self):
        return LabelsCaptioner()

    def blip(self):
        """The BLIP captioner (loaded once); raises CaptionerUnavailable where it cannot load."""
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
        classifier = self.classifier
        n = 0 if batch is None else len(batch)
        parts = []
        for start in range(0, n, self.settings.batch_size):
            with self._locks["classifier"]:
                parts.append(classifier.run(batch[start:start + self.settings.batch_size]))
        if not parts:
            return ConvnetOutput(np.zeros((0, classifier.pooled_dim), np.float32), np.zeros((0, 1000), np.float32))
        return ConvnetOutput(np.concatenate([p.pooled for p in parts]), np.concatenate([p.logits for p in parts]))

    def classifier_head(self):
        """The convnet's last layer as numpy (:class:`pipeline.models.head.ClassifierHead`: weight
        (1000, P), bias (1000,) float32); cached on disk for the packaged weights, so the ONNX path
        reads it without torch, and without loading the convnet)."""
        if self.settings.backbone in EFFICIENTNET_NAMES:
            return efficientnet_head(self.settings.backbone, self.settings.cache_dir)
        return classifier_head(self.classifier, self.settings.cache_dir)

    def similarity_maps(self, images: list[Image.Image], targets: np.ndarray, names: tuple[str, ...] | None = None):
        """Grad-CAM maps of each RGB image's similarity to each target vector of pooled space (T, P)
        (:mod:`pipeline.models.heatmaps`, torch EfficientNet-Lite, loaded on first use): a
        SimilarityMaps with maps (N, T, 7, 7) in [0, 1], similarities (N, T), crops (N, 224, 224, 3)."""
        if self.settings.backbone not in EFFICIENTNET_NAMES:
            raise BackboneUnavailable(f"heatmaps need the {EFFICIENTNET_NAMES[0]} backbone, not {self.settings.backbone!r}")
        with self._locks["load"]:
            if self._cam is None:
                self._cam = SimilarityCAM(self.settings.backbone, self.device)
        batch = efficientnet_input(images)
        with self._locks["cam"]:
            result = self._cam.maps(batch, targets, names)
        result.crops = np.stack([center_crop_array(image) for image in images])
        return result

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        """(N, D) float32 L2-normalised sentence embeddings (D = 384 for MiniLM)."""
        embedder = self.text_embedder
        with self._locks["text"]:
            return embedder.encode(list(texts))

    def blip_captions(self, images: list[Image.Image]) -> list[str]:
        blip = self.blip()
        with self._locks["blip"]:
            return blip.caption(images)
