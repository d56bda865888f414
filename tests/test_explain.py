"""The explanation in words: verdicts explained with the JSON's numbers, on synthetic galleries; then
the real MiniLM model on a captioned gallery, and (slow) imagen."""
from __future__ import annotations

import csv

import numpy as np
import pytest

from pipeline.analogy import gallery_input, solve_space
from pipeline.chat import _HANDLERS, answer_question
from pipeline.config import Settings
from pipeline.explain import fmt, templates
from pipeline import thresholds
from pipeline.explorer import AnalogyReport, Explorer
from tests.conftest import imagen_file
from tests.synthetic_explorer import (A, B, B_NEAR_A, C, C_COUSIN, C_TWIN, D, X, Y, Y_B, check_explanation_matches_json,
                                      distractors, make_explorer)

VERDICT_CASES = {
    # name: (gallery vectors (inputs first: A, B, C), expected verdicts exactly)
    "genuine": ([A, B, C, D, X, Y], ["genuine"]),
    "only-c": ([A, B, C, D, Y_B], ["only-c"]),
    "ignore-a": ([A, B, C, D, X], ["ignore-a"]),
    "input": ([A, B_NEAR_A, C, C_COUSIN], None),
    "near-duplicate": ([A, B_NEAR_A, C, C_TWIN], None),
}


@pytest.mark.parametrize("case", list(VERDICT_CASES))
def test_each_verdict_fires_and_is_explained_with_the_json_numbers(tmp_path, case):
    vectors, expected = VERDICT_CASES[case]
    explorer = make_explorer(tmp_path, vectors + distractors())
    report = explorer.analogy([0, 1, 2])
    for space in (report.image_space, report.caption_space):
        if expected is not None:
            assert space.verdicts == expected
        else:
            assert case in space.verdicts
        if case == "genuine":
            assert space.top.id == 3 and space.without_exclusion["winner"] is None
        if case in ("input", "near-duplicate"):
            assert space.without_exclusion["winner"] == "C"
        if case == "input":
            assert "near-duplicate" not in space.verdicts
    check_explanation_matches_json(report)
    image_message = report.explanation[1]["content"]
    if case == "input":
        assert "without exclusion the answer would be C itself (#2 item2.png)" in image_message
    if case == "near-duplicate":
        m = report.as_dict()["image_space"]["measurements"]
        assert f"cos(D, C) = {fmt(m['cos_answer_c'])} above the threshold {fmt(m['near_duplicate_threshold'])}" in image_message
    if case == "only-c":
        assert "the offset b - a did not change the answer" in image_message
    if case == "ignore-a":
        assert "A made no difference" in image_message


def test_solve_space_report_assembled_by_hand(tmp_path):
    """The explainer works on any report whose SpaceResults come from analogy.solve_space."""
    explorer = make_explorer(tmp_path, [A, B, C, D, X, Y] + distractors())
    gallery = explorer.gallery
    inputs = [gallery_input(gallery, role, i) for role, i in zip("ABC", (0, 1, 2))]
    image = solve_space(gallery, inputs, "image:pooled", "3cosadd", True, 5)
    caption = solve_space(gallery, inputs, "caption", "3cosadd", True, 5)
    report = AnalogyReport(inputs, "3cosadd", "pooled", True, 5, image, caption, {"backbone": "synthetic", "items": len(gallery)})
    report = explorer.explained(report)
    assert report.image_space.measurements["near_duplicate_threshold"] == thresholds.gallery_calibration(gallery, "image:pooled").threshold
    assert report.caption_space.measurements["repeats_c"] is False
    check_explanation_matches_json(report)


def test_no_caption_space(tmp_path):
    explorer = make_explorer(tmp_path, [A, B, C, D, X, Y] + distractors())
    explorer.gallery.captions = None
    report = explorer.analogy([0, 1, 2])
    assert report.caption_space is None and report.text_answer is None
    assert report.agreement["same_item"] is None and "no caption space" in report.agreement["summary"]
    assert "no captions" in report.explanation[2]["content"]
    assert len(report.explanation) == 6


def test_templates_are_data_with_doc():
    spec = templates()
    assert "_doc" in spec
    assert {i["name"] for i in spec["intents"]} == set(_HANDLERS)
    for key in ("input", "only-c", "ignore-a", "near-duplicate", "genuine"):
        assert key in spec["verdicts"]


# ------------------------------------------------------------------------------------------------
# The real MiniLM model on a gallery with human captions


def test_red_apple_green_apple_red_car_with_minilm(tmp_path):
    from PIL import Image
    import skimage.data

    tints = {"red": (1.0, 0.35, 0.35), "green": (0.35, 1.0, 0.35), "yellow": (1.0, 1.0, 0.3), "blue": (0.35, 0.35, 1.0)}
    photos = [
        ("red_apple.png", "coffee", "red", "a red apple"),
        ("green_apple.png", "coffee", "green", "a green apple"),
        ("red_car.png", "rocket", "red", "a red car"),
        ("green_car.png", "rocket", "green", "a green car"),
        ("red_bus.png", "astronaut", "red", "a red bus"),
        ("green_bus.png", "astronaut", "green", "a green bus"),
        ("yellow_banana.png", "chelsea", "yellow", "a yellow banana"),
        ("blue_boat.png", "hubble_deep_field", "blue", "a blue boat on a lake"),
        ("brown_dog.png", "immunohistochemistry", "red", "a brown dog on the grass"),
    ]
    folder = tmp_path / "gallery"
    folder.mkdir()
    with (folder / "captions.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "caption"])
        for name, source, tint, caption in photos:
            array = getattr(skimage.data, source)()[:256, :256, :3].astype(np.float32) * np.array(tints[tint])
            Image.fromarray(array.clip(0, 255).astype(np.uint8)).save(folder / name)
            writer.writerow([name, caption])
    explorer = Explorer(Settings(cache_dir=tmp_path / "cache", captioner="auto"))
    gallery = explorer.open_gallery(folder)
    assert set(gallery.captions.captioners) == {"file"}
    report = explorer.analogy(["red_apple.png", "green_apple.png", "red_car.png"])
    assert report.caption_space.top.caption == "a green car"
    assert report.caption_space.top.path == "green_car.png"
    assert report.text_answer["text"] == "a green car"
    check_explanation_matches_json(report)
    image_message = report.explanation[1]["content"]
    for verdict in ("input", "only-c", "ignore-a", "near-duplicate", "genuine"):
        assert (f"**{verdict}**" in image_message) == (verdict in report.image_space.verdicts)
    json_image = report.as_dict()["image_space"]
    assert fmt(json_image["results"][0]["score"]) in image_message
    # Follow-ups run on the real models too.
    reply, _ = answer_question(explorer, report, "why is this cheating?")
    for verdict in report.image_space.verdicts + report.caption_space.verdicts:
        assert f"**{verdict}**" in reply


# ------------------------------------------------------------------------------------------------
# Slow: the imagen gallery with label captions


@pytest.mark.slow
def test_imagen_flute_oboe_domestic_cat(imagen_explorer, imagen_dir):
    explorer = imagen_explorer

    def first(label: str) -> str:
        return imagen_file(imagen_dir, label).name

    report = explorer.analogy([first("flute"), first("oboe"), first("domestic cat")])
    assert report.inputs[2].label == "domestic cat"
    check_explanation_matches_json(report)
    text = "\n\n".join(m["content"] for m in report.explanation)
    data = report.as_dict()
    for key in ("image_space", "caption_space"):
        space = data[key]
        top = space["results"][0]
        assert f"#{top['id']} {top['path']} ({top['label']})" in text
        assert fmt(top["score"]) in text
        for verdict in space["verdicts"]:
            assert f"**{verdict}**" in text
    for index, key in ((1, "image_space"), (2, "caption_space")):
        space = data[key]
        is_nn = space["baselines"]["only-c"]["id"] == space["results"][0]["id"]
        message = report.explanation[index]["content"]
        assert ("**is** C's nearest neighbour" in message) == is_nn
        assert ("**not** C's nearest neighbour" in message) == (not is_nn)
    assert "(labels)" in report.explanation[0]["content"]  # captions and the captioner's name
