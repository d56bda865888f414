"""The chat (pipeline.chat): follow-up questions matched to intents and answered with the report's
numbers, re-running the question where it asks for another method, layer, k or exclusion."""
from __future__ import annotations

import re

import pytest

from pipeline.chat import answer_question, capabilities as listed_capabilities, match_intent
from pipeline.explain import fmt, templates
from tests.synthetic_explorer import A, B, C, D, X, Y, distractors, make_explorer, space_numbers


@pytest.fixture
def chat(tmp_path):
    vectors = [A, B, C, D, X, Y] + distractors(12)
    labels = ["flute", "oboe", "cat", "lion", "tabby", "tiger"] + [None] * 12
    explorer = make_explorer(tmp_path, vectors, labels=labels)
    return explorer, explorer.analogy([0, 1, 2])


@pytest.mark.parametrize("question, intent", [
    ("help", "help"), ("?", "help"), ("What can you do?", "help"),
    ("why is this cheating?", "why"), ("Why?", "why"),
    ("show the top 5", "top_k"), ("top-8 please", "top_k"),
    ("what without exclusion?", "without_exclusion"), ("and with no exclusion", "without_exclusion"),
    ("compare the methods", "compare_methods"), ("compare 3cosadd and 3cosmul methods", "compare_methods"),
    ("other layer logits", "layer"), ("try probabilities", "layer"), ("compare the layers", "layer"),
    ("try 3cosmul", "method"), ("pair direction?", "method"),
    ("what does the classifier see in C?", "sees"), ("what does the captioner say about image b", "sees"),
    ("caption space", "caption_space"), ("image space details", "image_space"),
    ("do the spaces agree?", "agreement"), ("what is the answer in words?", "text_answer"),
    ("what's the weather like", None),
])
def test_intents(question, intent):
    assert match_intent(question) == intent


def test_follow_up_why(chat):
    explorer, report = chat
    reply, same = answer_question(explorer, report, "why is this cheating?")
    assert same is report
    data = report.as_dict()
    for space in (data["image_space"], data["caption_space"]):
        for number in space_numbers(space):
            assert number in reply
        for verdict in space["verdicts"]:
            assert f"**{verdict}**" in reply
    reply_caption, _ = answer_question(explorer, report, "why is the caption answer cheating?")
    assert "Caption space" in reply_caption and "Image space" not in reply_caption


def test_follow_up_top_k_reruns_for_a_larger_k(chat):
    explorer, report = chat
    reply, new = answer_question(explorer, report, "show the top 8")
    assert new is not report and new.top_k == 8 and len(new.image_space.results) == 8
    for hit in new.image_space.results + new.caption_space.results:
        assert f"#{hit.id} {hit.path}" in reply and fmt(hit.as_dict()["score"]) in reply
    assert re.search(r"^8\. ", reply, flags=re.MULTILINE)
    reply3, same = answer_question(explorer, report, "show the top 3")
    assert same is report and not re.search(r"^4\. ", reply3, flags=re.MULTILINE)


def test_follow_up_without_exclusion(chat):
    explorer, report = chat
    reply, same = answer_question(explorer, report, "what without exclusion?")
    assert same is report  # a look-aside
    other = explorer.analogy([0, 1, 2], exclude=False)
    for space in (other.image_space, other.caption_space):
        top = space.top.as_dict()
        assert f"#{top['id']} {top['path']}" in reply and fmt(top["score"]) in reply
        ranks = space.without_exclusion["input_ranks"]
        assert f"{ranks['A']}/{ranks['B']}/{ranks['C']}" in reply


def test_follow_up_compare_methods(chat):
    explorer, report = chat
    reply, same = answer_question(explorer, report, "compare the methods")
    assert same is report
    rows = [line for line in reply.splitlines() if line.startswith("| ") and not line.startswith("| method")]
    assert len(rows) == 7
    for method, row in zip(["3cosadd", "3cosmul", "pairdirection", "only-c", "ignore-a", "add-opposite", "multiply"], rows):
        rerun = explorer.analogy([0, 1, 2], method=method, explain=False)
        assert row.startswith(f"| {method} |")
        assert fmt(rerun.image_space.top.as_dict()["score"]) in row
        assert fmt(rerun.caption_space.top.as_dict()["score"]) in row
        assert ", ".join(rerun.image_space.verdicts) in row


def test_follow_up_layer(chat):
    explorer, report = chat
    reply, new = answer_question(explorer, report, "other layer logits")
    assert new.layer == "logits" and new.image_space.space == "image:logits" and new.explanation
    assert fmt(new.image_space.top.as_dict()["score"]) in reply and "image:logits" in reply
    for number in space_numbers(new.as_dict()["image_space"]):
        assert number in reply
    reply_all, same = answer_question(explorer, report, "compare the layers")
    assert same is report
    for layer in ("pooled", "logits", "probs"):
        rerun = explorer.analogy([0, 1, 2], layer=layer, explain=False)
        assert f"| {layer} | #{rerun.image_space.top.id} " in reply_all
        assert fmt(rerun.image_space.top.as_dict()["score"]) in reply_all


def test_follow_up_method(chat):
    explorer, report = chat
    reply, new = answer_question(explorer, report, "try 3cosmul")
    assert new.method == "3cosmul" and new.image_space.method == "3cosmul"
    assert fmt(new.image_space.top.as_dict()["score"]) in reply
    assert fmt(new.caption_space.top.as_dict()["score"]) in reply
    assert new.agreement["summary"] in reply


def test_follow_up_what_the_classifier_sees(chat):
    explorer, report = chat
    reply, same = answer_question(explorer, report, "what does the classifier see in C?")
    assert same is report
    c = report.as_dict()["inputs"][2]
    for label in c["top_labels"]:
        assert f"{label['name']} (p = {fmt(label['probability'])})" in reply
    assert "**C**" in reply and "**A**" not in reply and c["caption"] in reply and "gallery label: cat" in reply
    reply_all, _ = answer_question(explorer, report, "what do the models see?")
    assert all(f"**{r}**" in reply_all for r in "ABC")


def test_follow_up_space_details_agreement_text_help_unknown(chat):
    explorer, report = chat
    data = report.as_dict()
    reply, _ = answer_question(explorer, report, "caption space")
    for hit in data["caption_space"]["results"]:
        assert fmt(hit["score"]) in reply
    for name, hit in data["caption_space"]["baselines"].items():
        assert f"- {name}: #{hit['id']} {hit['path']}" in reply and fmt(hit["score"]) in reply
    reply, _ = answer_question(explorer, report, "image space")
    assert "image:pooled" in reply and fmt(data["image_space"]["measurements"]["offset_norm"]) in reply
    reply, _ = answer_question(explorer, report, "do the spaces agree?")
    assert report.agreement["summary"] in reply
    reply, _ = answer_question(explorer, report, "what is the answer in words?")
    for row in report.text_answer["top"]:
        assert f"\"{row['text']}\" ({row['source']}, score {fmt(row['score'])})" in reply
    capabilities = listed_capabilities()
    reply, _ = answer_question(explorer, report, "help")
    assert capabilities in reply
    reply, same = answer_question(explorer, report, "what's the weather like?")
    assert same is report and "cannot answer" in reply and capabilities in reply
    for intent in templates()["intents"]:
        assert intent["example"] in capabilities


def test_rerun_impossible_for_a_vanished_upload(chat):
    explorer, report = chat
    report.inputs[0].item_id = None
    report.inputs[0].name = "upload.png"
    report.inputs[0].source = "/nonexistent/upload.png"
    reply, same = answer_question(explorer, report, "compare the methods")
    assert same is report and "cannot re-run" in reply


def test_follow_up_reruns_an_uploaded_image(default_explorer, tmp_path):
    """An upload (not a gallery item) keeps its file, so follow-ups can ask the pipeline again."""
    from PIL import Image, ImageOps

    upload = tmp_path / "my cat.png"
    ImageOps.flip(Image.open(default_explorer.gallery.path(default_explorer.gallery.find("cat/original.jpg")))).save(upload)
    report = default_explorer.analogy(["coffee/original.jpg", "coffee/greyscale.jpg", str(upload)])
    assert report.inputs[2].item_id is None and report.inputs[2].source == str(upload)
    reply, new = answer_question(default_explorer, report, "top 8")
    assert new is not report and len(new.image_space.results) == 8
    assert new.inputs[2].source == str(upload)
