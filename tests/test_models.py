"""The model seam with the real packaged weights: ONNX export and cache, ONNX = torch, ResNet loading."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from pipeline.config import Settings
from pipeline.labels import imagenet_classes, top_labels
from pipeline.models import Models, resolve_device
from pipeline.models.convnet import (BackboneUnavailable, OnnxEfficientNet, TorchEfficientNet,
                                     center_crop_array, efficientnet_input, load_classifier)


@pytest.fixture(scope="module")
def photos():
    import skimage.data

    return [Image.fromarray(getattr(skimage.data, n)()).convert("RGB") for n in ("coffee", "chelsea", "astronaut", "rocket")]


def test_imagenet_classes_are_in_standard_order():
    classes = imagenet_classes()
    assert len(classes) == 1000
    assert (classes[0].wnid, classes[0].name) == ("n01440764", "tench")
    assert classes[967].name == "espresso" and classes[999].name == "toilet tissue"


def test_preprocessing_shapes_and_range(photos):
    batch = efficientnet_input(photos[:2])
    assert batch.shape == (2, 3, 224, 224) and batch.dtype == np.float32
    assert -1.0 <= batch.min() and batch.max() <= 1.0
    # extreme aspect ratios still give a full crop
    assert center_crop_array(Image.new("RGB", (20000, 1))).shape == (224, 224, 3)
    assert center_crop_array(Image.new("RGB", (1, 1))).shape == (224, 224, 3)


def test_onnx_matches_torch_and_is_cached(photos, settings):
    onnx = load_classifier("efficientnet-lite0", "cpu", settings.cache_dir)
    assert isinstance(onnx, OnnxEfficientNet) and onnx.onnx_path.exists()
    stamp = onnx.onnx_path.stat().st_mtime_ns
    again = OnnxEfficientNet("efficientnet-lite0", settings.cache_dir)
    assert again.onnx_path == onnx.onnx_path and onnx.onnx_path.stat().st_mtime_ns == stamp  # reused
    torch_model = TorchEfficientNet("efficientnet-lite0", device="cpu")
    assert torch_model.model_key == onnx.model_key
    a, b = onnx(photos), torch_model(photos)
    assert a.pooled.shape == (4, 1280) and a.logits.shape == (4, 1000)
    np.testing.assert_allclose(a.pooled, b.pooled, atol=2e-3, rtol=1e-3)
    np.testing.assert_allclose(a.logits, b.logits, atol=2e-3, rtol=1e-3)
    assert [r[0].name for r in top_labels(a.logits, 1)] == [r[0].name for r in top_labels(b.logits, 1)]
    assert top_labels(a.logits, 1)[0][0].name == "espresso"


def test_models_batches_and_resolves_device(photos, settings):
    models = Models(settings.replace(batch_size=3))
    out = models.classify(photos)
    assert out.pooled.shape == (4, 1280)
    single = models.classify(photos[3:])
    np.testing.assert_allclose(out.pooled[3], single.pooled[0], atol=1e-4)
    assert models.classify([]).pooled.shape == (0, 1280)
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") in ("cpu", "cuda")


def test_resnet_loading_code_on_a_tiny_random_model(tmp_path, photos):
    """The ResNet-50 path (transformers) on a tiny random ResNetConfig saved to a folder."""
    from transformers import ResNetConfig, ResNetForImageClassification
    from transformers.models.convnext.image_processing_pil_convnext import ConvNextImageProcessorPil

    config = ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic",
                          num_labels=1000)
    ResNetForImageClassification(config).save_pretrained(tmp_path)
    ConvNextImageProcessorPil(size={"shortest_edge": 224}, crop_pct=0.875).save_pretrained(tmp_path)
    classifier = load_classifier(str(tmp_path), "cpu", tmp_path / "cache")
    out = classifier(photos[:2])
    assert out.pooled.shape == (2, 16) and out.logits.shape == (2, 1000)
    assert classifier.pooled_dim == 16 and "transformers" in classifier.name
    assert np.isfinite(out.logits).all()


def test_unknown_backbone_is_a_plain_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(BackboneUnavailable, match="could not be loaded"):
        load_classifier(str(tmp_path / "no-such-model"), "cpu", tmp_path)


def test_settings_from_environment(tmp_path):
    s = Settings.from_env({"IAE_DEVICE": "cpu", "IAE_TOP_K": "7", "IAE_CACHE_DIR": str(tmp_path)})
    assert (s.device, s.top_k, s.cache_dir) == ("cpu", 7, tmp_path)
    with pytest.raises(ValueError, match="unknown layer"):
        Settings(layer="fc7")
    with pytest.raises(ValueError, match="IAE_TOP_K"):
        Settings.from_env({"IAE_TOP_K": "many"})


def test_reduced_precision_is_kept_only_where_it_keeps_the_top5(photos):
    """The CUDA path's rule, exercised on the CPU with bfloat16: reduced precision runs only when it
    gives the reference photos the same top-5 labels as float32."""
    import torch

    from pipeline.models.convnet import half_keeps_top5

    full = TorchEfficientNet("efficientnet-lite0", device="cpu")
    assert full.half_dtype is None and full.name.endswith("(torch, cpu)")
    trial = TorchEfficientNet("efficientnet-lite0", device="cpu", half=True)
    keeps = half_keeps_top5(full, torch.bfloat16)
    assert (trial.half_dtype is torch.bfloat16) == keeps
    assert ("bfloat16" in trial.name) == keeps
    if keeps:
        reduced = trial(photos)
        reference = full(photos)
        for a, b in zip(reduced.logits, reference.logits):
            assert set(np.argsort(-a)[:5]) == set(np.argsort(-b)[:5])
