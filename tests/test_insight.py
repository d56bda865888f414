"""The issue-11 fields of a solved question, end to end (pipeline/insight.py), on the default gallery."""
from __future__ import annotations

import json

import pytest
from PIL import Image

from pipeline import insight

COFFEE = ["coffee/original.jpg", "coffee/greyscale.jpg", "cat/original.jpg"]


@pytest.mark.slow
def test_space_fields_and_figures_of_coffee_greyscale_cat(default_explorer, tmp_path):
    report = default_explorer.analogy(COFFEE, explain=False)
    gallery, models = default_explorer.gallery, default_explorer.models
    found = {name: insight.space_insight(gallery, models, report.inputs, result)
             for name, result in (("image", report.image_space), ("caption", report.caption_space))}
    json.dumps(found)  # plain JSON
    for name, fields in found.items():
        assert set(fields) >= {"offset_terms", "geometry", "expected", "near_duplicate_threshold"}
        assert set(fields["offset_terms"]) >= {"toward", "away", "answer_toward", "answer_away", "alignment"}
        assert {p["role"] for p in fields["geometry"]["points"]} >= {"A", "B", "C", "query", "answer", "neighbour"}
        assert 0.85 <= fields["near_duplicate_threshold"] <= 0.995
    caption = found["caption"]
    assert caption["expected"]["correct"] and caption["expected"]["only_c_correct"]
    assert caption["offset_terms"]["alignment"] == pytest.approx(
        report.caption_space.measurements["offset_consistency"], abs=1e-5)
    # cat/greyscale is a right answer, not a near-duplicate of cat under the calibrated threshold
    assert report.caption_space.measurements["cos_answer_c"] < caption["near_duplicate_threshold"]
    assert not found["image"]["expected"]["correct"]

    maps = insight.question_heatmaps(gallery, models, report.inputs, report.image_space.top.id, default_explorer.load)
    assert maps.maps.shape == (4, 2, 7, 7)
    written = insight.write_figures(tmp_path, {name: f["geometry"] for name, f in found.items()}, maps)
    assert sorted(written) == ["geometry-caption", "geometry-image", "heatmap-A", "heatmap-B", "heatmap-C", "heatmap-D"]
    for path in written.values():
        with Image.open(path) as image:
            assert image.format == "PNG"
