"""Why, end to end with the real models and photos (issue 11): the JSON's offset terms, geometry,
expected and calibrated threshold per space, the explanation's words, the chat's replies, the figures
(valid PNGs drawn from the JSON's numbers) and the CLI's --figures and --expected.

Questions: the default gallery's coffee : greyscale coffee :: cat (ground truth from its
<subject>/<variant> layout) and imagen's sheep : camel :: seal (the talk's; no layout, so the expected
answers are given: the hippopotamus photos, the talk's answer).
"""
from __future__ import annotations

import io
import json

import pytest
from PIL import Image

from pipeline import figures, thresholds
from pipeline.chat import answer_question
from pipeline.cli import main
from pipeline.explain import fmt
from pipeline.insight import report_figures
from tests.conftest import imagen_file

pytestmark = pytest.mark.slow

COFFEE = ["coffee/original.jpg", "coffee/greyscale.jpg", "cat/original.jpg"]
GREY_WORDS = {"black", "white", "black and white", "grey", "gray", "greyscale", "monochrome"}


def toward(space: dict, n: int = 3) -> list[str]:
    return [t["term"] for t in space["offset_terms"]["toward"][:n]]


@pytest.fixture(scope="module")
def coffee(default_explorer):
    return default_explorer.analogy(COFFEE)


def test_coffee_greyscale_cat_in_json_and_words(default_explorer, coffee):
    data = coffee.as_dict()
    json.dumps(data)
    gallery = default_explorer.gallery
    caption, image = data["caption_space"], data["image_space"]
    # caption space: greyscale is named as black and white, and the answer moved the same way
    assert GREY_WORDS & set(toward(caption)), caption["offset_terms"]
    assert GREY_WORDS & {t["term"] for t in caption["offset_terms"]["answer_toward"][:3]}
    assert caption["offset_terms"]["alignment"] > 0.5
    # right, and ONLY-C is right too: the words say the question cannot tell, nothing more
    assert caption["results"][0]["path"] == "cat/greyscale.jpg" == caption["baselines"]["only-c"]["path"]
    assert caption["expected"]["paths"] == ["cat/greyscale.jpg"] and caption["expected"]["layout"] == "subject/variant"
    assert caption["expected"]["correct"] and caption["expected"]["only_c_correct"] and caption["expected"]["rank"] == 1
    message = coffee.explanation[2]["content"]
    assert "cannot tell whether the arithmetic helped" in message
    assert "did nothing" not in message and "did not change the answer" not in message
    # the calibrated threshold, used by the verdicts: the right answer one phrase away is not a near-duplicate
    for key, space in (("caption", caption), ("image:pooled", image)):
        calibrated = thresholds.gallery_calibration(gallery, key).threshold
        assert space["near_duplicate_threshold"] == calibrated == space["measurements"]["near_duplicate_threshold"]
        assert fmt(calibrated) in coffee.explanation[1 if key != "caption" else 2]["content"]
    assert caption["measurements"]["cos_answer_c"] > 0.95 and "near-duplicate" not in caption["verdicts"]
    # image space: wrong (the mirrored cat), with the right one's rank and score as the top-k shows them
    expected = image["expected"]
    assert image["results"][0]["path"] == "cat/mirror.jpg" and not expected["correct"]
    assert image["results"][expected["rank"] - 1]["path"] == "cat/greyscale.jpg"
    assert expected["score"] == pytest.approx(image["results"][expected["rank"] - 1]["score"], abs=1e-5)
    assert f"wrong, the expected cat/greyscale.jpg is at rank {expected['rank']}" in coffee.explanation[1]["content"]
    # geometry: the points the picture draws
    roles = {p["role"] for p in image["geometry"]["points"]}
    assert roles >= {"A", "B", "C", "query", "answer", "top"} and 0 < image["geometry"]["preserved"] <= 1


def test_coffee_chat_replies(default_explorer, coffee):
    data = coffee.as_dict()
    reply, same = answer_question(default_explorer, coffee, "what does B - A mean?")
    assert same is coffee and data["caption_space"]["offset_terms"]["sentence"] in reply
    assert all(term in reply for term in toward(data["caption_space"]))
    reply, _ = answer_question(default_explorer, coffee, "is it right?")
    assert "Caption space: right, the answer is the expected cat/greyscale.jpg." in reply
    assert "Image space: wrong, the expected cat/greyscale.jpg is at rank" in reply
    reply, _ = answer_question(default_explorer, coffee, "why not the right one?")
    image = data["image_space"]
    assert f"at rank {image['expected']['rank']} with score {fmt(image['expected']['score'])}" in reply
    assert f"#{image['results'][0]['id']} cat/mirror.jpg" in reply
    reply, _ = answer_question(default_explorer, coffee, "show the geometry")
    assert fmt(image["geometry"]["preserved"]) in reply and fmt(data["caption_space"]["geometry"]["preserved"]) in reply
    reply, _ = answer_question(default_explorer, coffee, "where does the network look in C?")
    maps = default_explorer.heatmaps(coffee).as_dict()  # the same numbers again (deterministic)
    rows = {row["role"]: row for row in maps["images"]}
    assert f"**C** #{coffee.inputs[2].item_id} cat/original.jpg: cos with the query {fmt(rows['C']['similarity']['query'])}" in reply
    assert "**D** the answer" in reply and "**A**" not in reply
    assert rows["C"]["similarity"]["c"] == pytest.approx(1.0, abs=1e-4)  # C is itself


def test_figures_are_pngs_drawn_from_the_json(default_explorer, coffee, tmp_path):
    data = coffee.as_dict()
    maps = default_explorer.heatmaps(coffee)
    written = report_figures(tmp_path, data, maps)
    assert sorted(written) == ["geometry-caption", "geometry-image", "heatmap-A", "heatmap-B", "heatmap-C", "heatmap-D"]
    for path in written.values():
        with Image.open(path) as image:
            assert image.format == "PNG" and image.width > 300
    # the geometry picture is a function of the JSON's numbers: drawn again from them, byte for byte;
    # one point moved, another picture
    geometry = json.loads(json.dumps(data["caption_space"]["geometry"]))
    assert open(written["geometry-caption"], "rb").read() == figures.geometry_png(geometry, title="caption space")
    geometry["points"][0]["y"] += 0.3
    assert figures.geometry_png(geometry, title="caption space") != open(written["geometry-caption"], "rb").read()
    with Image.open(written["heatmap-D"]) as image:  # the crop and one overlay per target, side by side
        assert image.width >= 3 * 224


def test_imagen_sheep_camel_seal(imagen_explorer, imagen_dir):
    gallery = imagen_explorer.gallery
    refs = [str(imagen_file(imagen_dir, label)) for label in ("sheep", "camel", "seal")]
    hippos = [i for i, item in enumerate(gallery.items) if item.label == "hippopotamus"]
    report = imagen_explorer.analogy(refs, expected=hippos)
    data = report.as_dict()
    for key in ("image_space", "caption_space"):
        space = data[key]
        assert "Arabian camel" in toward(space, 2), space["offset_terms"]["toward"]
        expected = space["expected"]
        assert expected["layout"] == "given" and expected["ids"] == hippos
        assert expected["correct"] == (space["results"][0]["id"] in hippos)
        assert expected["rank"] >= 1 and expected["best"] in hippos
    assert data["image_space"]["offset_terms"]["away"][0]["term"] == "valley"  # the sheep photo's background
    reply, _ = answer_question(imagen_explorer, report, "why not the right one?")
    for key in ("image_space", "caption_space"):
        expected = data[key]["expected"]
        if not expected["correct"]:
            assert f"at rank {expected['rank']} with score {fmt(expected['score'])}" in reply
    # without expected ids the flat imagen folder cannot tell
    assert imagen_explorer.analogy(refs).as_dict()["image_space"]["expected"] is None


def test_cli_figures_and_expected(default_explorer, session_cache, tmp_path, capsys):
    folder = tmp_path / "figures"
    common = ["--cache-dir", str(session_cache)]
    assert main(["analogy", *COFFEE, "--json", "--figures", str(folder), *common]) == 0
    data = json.loads(capsys.readouterr().out)
    assert sorted(data["figures"]) == ["geometry-caption", "geometry-image", "heatmap-A", "heatmap-B", "heatmap-C",
                                       "heatmap-D"]
    for name, path in data["figures"].items():
        assert path == str(folder / f"{name}.png")
        assert Image.open(io.BytesIO(open(path, "rb").read())).format == "PNG"
    assert open(data["figures"]["geometry-image"], "rb").read() == figures.geometry_png(
        data["image_space"]["geometry"], title="image space")
    assert [row["role"] for row in data["heatmaps"]["images"]] == ["A", "B", "C", "D"]
    for key in ("image_space", "caption_space"):
        assert {"offset_terms", "geometry", "expected", "near_duplicate_threshold"} <= set(data[key])
    # the text: the named offsets, right or wrong, the threshold, the figures
    assert main(["analogy", *COFFEE, "--expected", "cat/mirror.jpg", *common]) == 0
    text = capsys.readouterr().out
    assert "B - A asks for" in text and "Image space: right, the answer is the expected" in text  # (wrapped)
    assert "Near-duplicate threshold in caption space" in text
    assert main(["analogy", *COFFEE, "--expected", "nope.jpg", *common]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: expected answer 'nope.jpg' is not a gallery item")
