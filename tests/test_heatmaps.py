"""Where the classifier looks (pipeline/models/heatmaps.py): Grad-CAM (torchcam) of each image's
similarity to the query and to C, on the real torch EfficientNet-Lite0 and real imagen photos."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline import figures
from pipeline.config import Settings
from pipeline.errors import BackboneUnavailable
from pipeline.models import Models
from pipeline.models.heatmaps import TARGET_NAMES, heatmap_sentence, map_correlation, question_targets

SHEEP_CAMEL_SEAL = ["n02411705_146_sheep.jpg", "n02437136_176_camel.jpg", "n02076196_10411_seal.jpg"]


@pytest.fixture(scope="module")
def question(imagen_explorer):
    report = imagen_explorer.analogy(SHEEP_CAMEL_SEAL, explain=False)
    gallery = imagen_explorer.gallery
    ids = [inp.item_id for inp in report.inputs] + [report.image_space.top.id]
    images = [imagen_explorer.load(gallery.path(i)) for i in ids]
    pooled = [inp.vectors["image:pooled"] for inp in report.inputs]
    return imagen_explorer, ids, images, pooled


@pytest.mark.slow
def test_maps_of_a_b_c_d_toward_the_query_and_toward_c(question, tmp_path):
    explorer, ids, images, (a, b, c) = question
    targets = question_targets(a, b, c)
    maps = explorer.models.similarity_maps(images, targets, TARGET_NAMES)
    assert maps.maps.shape == (4, 2, 7, 7) and maps.maps.dtype == np.float32
    assert maps.maps.min() >= 0.0 and maps.maps.max() <= 1.0 + 1e-6
    assert maps.crops.shape == (4, 224, 224, 3) and maps.crops.dtype == np.uint8
    # the torch network's similarities are those of the gallery's (ONNX) pooled vectors
    vectors = explorer.gallery.vectors("image:pooled")[ids]
    units = targets / np.linalg.norm(targets, axis=1, keepdims=True)
    np.testing.assert_allclose(maps.similarities, vectors @ units.T, atol=2e-3)
    assert maps.similarities[2, 1] == pytest.approx(1.0, abs=1e-4)  # C against C alone
    # sheep -> camel moves far: D's map toward the query is not its map toward C alone
    assert maps.correlation(3) < 0.97
    assert heatmap_sentence(maps.as_dict()).startswith("D's map toward the query differs")
    # C's map toward C alone shows where C's features lie (not a vanishing gradient's noise)
    assert maps.maps[2, 1].max() == pytest.approx(1.0) and maps.maps[2, 1].std() > 0.1
    # A is far from the query (negative cosine): no part of it contributes, the map is empty
    assert maps.similarities[0, 0] < 0 and maps.maps[0, 0].max() == 0.0
    out = maps.as_dict()
    assert [row["role"] for row in out["images"]] == ["A", "B", "C", "D"]
    assert out["targets"] == ["query", "c"] and out["images"][3]["correlation"] == pytest.approx(maps.correlation(3), abs=1e-6)
    for i, role in enumerate("ABCD"):
        path = figures.write_png(tmp_path / f"heatmap-{role}.png", figures.heatmap_png(
            maps.crops[i], [("toward the query", maps.maps[i, 0]), ("toward C alone", maps.maps[i, 1])], role))
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_without_an_offset_the_two_maps_are_the_same(question):
    explorer, _, images, (a, _, c) = question
    maps = explorer.models.similarity_maps(images, question_targets(a, a, c), TARGET_NAMES)
    np.testing.assert_allclose(maps.maps[:, 0], maps.maps[:, 1], atol=1e-5)
    assert all(maps.correlation(i) == pytest.approx(1.0) for i in range(4))
    assert heatmap_sentence(maps.as_dict()).startswith("D's map toward the query and toward C alone agree")


def test_map_correlation():
    x = np.arange(49, dtype=np.float32).reshape(7, 7)
    assert map_correlation(x, 2 * x + 1) == pytest.approx(1.0)
    assert map_correlation(x, -x) == pytest.approx(-1.0)
    assert map_correlation(np.zeros((7, 7)), np.zeros((7, 7))) == 1.0
    assert map_correlation(np.zeros((7, 7)), x) == 0.0


def test_heatmaps_need_the_efficientnet_backbone(tmp_path):
    models = Models(Settings(cache_dir=tmp_path, device="cpu", backbone="microsoft/resnet-50"))
    with pytest.raises(BackboneUnavailable, match="efficientnet-lite0"):
        models.similarity_maps([], np.zeros((2, 2048), np.float32))
