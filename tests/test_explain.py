"""The explainer: verdicts explained with the JSON's numbers, agreement, the lexical check, the text
answer, follow-up questions; then the real MiniLM model on a captioned gallery, and (slow) imagen."""
from __future__ import annotations

import csv
import hashlib
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from pipeline import explain
from pipeline.analogy import gallery_input, solve_space
from pipeline.config import Settings
from pipeline.explorer import AnalogyReport, Explorer
from pipeline.gallery import Captions, Gallery, GalleryItem
from pipeline.models.captioners import LabelsCaptioner
from tests.conftest import imagen_file

DIM = 16
fmt = explain.fmt


# ------------------------------------------------------------------------------------------------
# Synthetic galleries through the real pipeline code (no model loads)


def unit(*pairs: tuple[int, float]) -> np.ndarray:
    """A unit vector of DIM from (axis, weight) pairs."""
    v = np.zeros(DIM, np.float32)
    for axis, weight in pairs:
        v[axis] += weight
    return v / np.linalg.norm(v)


class FakeModels:
    """Stands in for pipeline.models.Models in the synthetic 16-d galleries only: their caption space
    is hand-made 16-d vectors (to make each verdict fire), which a 384-d sentence model cannot share.
    Text vectors come from a hash of the text. The real MiniLM is used by the captioned-gallery test
    and the imagen test below."""

    def __init__(self, dim: int = DIM):
        self.dim = dim
        self.labels_captioner = LabelsCaptioner()
        self.classifier = SimpleNamespace(name="synthetic-convnet")
        self.embedded = 0

    def embed_texts(self, texts):
        self.embedded += len(texts)
        rows = []
        for text in texts:
            seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
            v = np.random.default_rng(seed).normal(size=self.dim)
            rows.append(v / np.linalg.norm(v))
        return np.asarray(rows, np.float32)


def distractors(n: int = 8, seed: int = 0) -> list[np.ndarray]:
    """Items far from everything on axes 0-4: mostly along axes 5..15."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        v = np.zeros(DIM, np.float32)
        v[5 + i % (DIM - 5)] = 1.0
        v[5:] += 0.3 * rng.random(DIM - 5).astype(np.float32)
        out.append(v / np.linalg.norm(v))
    return out


def make_explorer(tmp_path: Path, vectors: list[np.ndarray], texts: list[str] | None = None,
                  labels: list[str | None] | None = None, caption_vectors: np.ndarray | None = None) -> Explorer:
    """An Explorer over a synthetic gallery: pooled vectors as given (image:pooled space), captions
    ``texts`` (default "caption i") with caption vectors equal to the pooled ones unless given."""
    n = len(vectors)
    settings = Settings(cache_dir=tmp_path / "cache")
    pooled = np.stack(vectors).astype(np.float32)
    logits = np.random.default_rng(1).normal(size=(n, 1000)).astype(np.float32) * 3
    items = [GalleryItem(i, f"item{i}.png", hashlib.sha256(str(i).encode()).hexdigest(),
                         labels[i] if labels else None) for i in range(n)]
    root = tmp_path / "gallery"
    root.mkdir(exist_ok=True)
    gallery = Gallery(root, items, pooled, logits, tmp_path / "store", "synthetic-convnet", settings)
    texts = texts or [f"caption {i}" for i in range(n)]
    gallery.captions = Captions(texts, ["file"] * n, pooled.copy() if caption_vectors is None else caption_vectors,
                                "synthetic-text")
    explorer = Explorer(settings, models=FakeModels())
    explorer.gallery = gallery
    return explorer


def space_numbers(space: dict) -> list[str]:
    """The numbers of a space's JSON that the explanation must carry, formatted as the explainer does."""
    m = space["measurements"]
    numbers = [fmt(space["results"][0]["score"])]
    numbers += [fmt(m[k]) for k in ("offset_norm", "typical_nn_distance", "offset_relative",
                                    "offset_consistency", "cos_answer_c")]
    ranks = space["without_exclusion"]["input_ranks"]
    numbers.append(f"{ranks['A']}/{ranks['B']}/{ranks['C']}")
    if "only-c" in space["verdicts"]:
        numbers.append(fmt(space["baselines"]["only-c"]["score"]))
    if "ignore-a" in space["verdicts"]:
        numbers.append(fmt(space["baselines"]["ignore-a"]["score"]))
    if "near-duplicate" in space["verdicts"]:
        numbers.append(fmt(m["near_duplicate_threshold"]))
    return numbers


def check_explanation_matches_json(report: AnalogyReport) -> None:
    data = report.as_dict()
    messages = report.explanation
    assert len(messages) == 5 and all(m["role"] == "assistant" for m in messages)
    for space, message in ((data["image_space"], messages[1]["content"]), (data["caption_space"], messages[2]["content"])):
        for number in space_numbers(space):
            assert number in message, (number, message)
        for verdict in space["verdicts"]:
            assert f"**{verdict}**" in message
        for other in set(explain.templates()["verdicts"]) & {"input", "only-c", "ignore-a", "near-duplicate", "genuine"}:
            if other not in space["verdicts"]:
                assert f"**{other}**" not in message, (other, message)
        top = space["results"][0]
        assert f"#{top['id']} {top['path']}" in message
        nearest = "**is** C's nearest neighbour" if space["baselines"]["only-c"]["id"] == top["id"] else "**not** C's nearest neighbour"
        assert nearest in message
    for inp in data["inputs"]:
        assert fmt(inp["top_labels"][0]["probability"]) in messages[0]["content"]
        assert inp["caption"] in messages[0]["content"]
    assert fmt(data["agreement"]["top_k_overlap"]["measure"]) in messages[3]["content"]
    for space in (data["image_space"], data["caption_space"]):
        ranks = space["without_exclusion"]["input_ranks"]
        assert f"{ranks['A']}/{ranks['B']}/{ranks['C']}" in messages[4]["content"]


A, B, C = unit((0, 1)), unit((1, 1)), unit((2, 1))
D = unit((1, 1), (0, -1), (2, 1))  # exactly b - a + c
X = unit((2, 1), (3, 0.5))  # close to c: C's nearest neighbour
Y = unit((1, 1), (2, 1), (4, 0.3))  # the IGNORE-A answer
Y_B = unit((1, 1), (2, 0.6), (4, 0.2))  # the IGNORE-A answer, further from c than D
B_NEAR_A = unit((0, 1), (1, 0.2))  # b ~ a: a tiny offset
C_TWIN = unit((2, 1), (5, 0.1))  # cos with c ~ 0.995
C_COUSIN = unit((2, 1), (5, 0.8))  # cos with c ~ 0.78


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
        assert f"cos(D, C) = {fmt(m['cos_answer_c'])} above the threshold {fmt(0.95)}" in image_message
    if case == "only-c":
        assert "the offset b - a did nothing" in image_message
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
    explain.complete_report(explorer, report)
    assert report.image_space.measurements["near_duplicate_threshold"] == 0.95
    assert report.caption_space.measurements["repeats_c"] is False
    check_explanation_matches_json(report)


def test_agreement_same_item_overlap_and_labels(tmp_path):
    labels = ["x"] * 3 + ["answer", "near c", "ignore a"] + [None] * 8
    explorer = make_explorer(tmp_path, [A, B, C, D, X, Y] + distractors(), labels=labels)
    report = explorer.analogy([0, 1, 2])
    agreement = report.agreement
    assert agreement["same_item"] is True and agreement["same_label"] is True
    assert agreement["top_k_overlap"] == {"k": 5, "measure": 1.0, "common_ids": [h.id for h in report.image_space.results]}
    assert agreement["caption_similarity"] == pytest.approx(1.0, abs=1e-6)
    assert "Both spaces answer the same item, #3 item3.png (answer)" in agreement["summary"]
    assert agreement["summary"] in report.explanation[3]["content"]


def test_agreement_when_the_spaces_differ(tmp_path):
    vectors = [A, B, C, D, X, Y] + distractors()
    captions = np.stack(vectors).copy()
    captions[[3, 4]] = captions[[4, 3]]  # in caption space the best answer sits on item 4
    explorer = make_explorer(tmp_path, vectors, caption_vectors=captions)
    report = explorer.analogy([0, 1, 2])
    assert report.image_space.top.id == 3 and report.caption_space.top.id == 4
    agreement = report.agreement
    assert agreement["same_item"] is False and agreement["same_label"] is None
    expected_cos = round(float(np.dot(captions[3], captions[4])), 6)
    assert agreement["caption_similarity"] == pytest.approx(expected_cos, abs=1e-6)
    assert "different items: image space #3 item3.png, caption space #4 item4.png" in agreement["summary"]
    assert fmt(agreement["caption_similarity"]) in agreement["summary"]


def test_knn_intersection():
    assert explain.knn_intersection([1, 2, 3, 4], [4, 9, 2, 7], 4) == (0.5, [2, 4])
    assert explain.knn_intersection([1, 2, 3], [3, 2, 1], 2) == (0.5, [2])
    assert explain.knn_intersection([], [], 0) == (0.0, [])


@pytest.mark.parametrize("answer, c_caption, c_label, expected", [
    ("a photo of a tabby, or perhaps a tiger cat", "a photo of a tabby", None, ("caption", "a photo of a tabby")),
    ("A Photo Of A Tabby", "a photo of a tabby", None, ("caption", "a photo of a tabby")),
    ("a photo of a domestic cat sleeping", "a cat on a mat", "domestic cat", ("label", "domestic cat")),
    ("a photo of a catamaran", "a photo of a boat", "cat", None),
    ("a photo of a tabby cat", "a photo of a tabby", None, ("caption", "a photo of a tabby")),
    ("a photo of a tabbycat", "a photo of a tabby", None, None),
    (None, "a photo of a tabby", "tabby", None),
])
def test_repeats_c(answer, c_caption, c_label, expected):
    assert explain.repeats_c(answer, c_caption, c_label) == expected


def test_lexical_check_flags_caption_space_and_is_explained(tmp_path):
    texts = ["a red apple", "a green apple", "a red car", "a red car in the rain", "x", "y"] + [f"d{i}" for i in range(8)]
    explorer = make_explorer(tmp_path, [A, B, C, D, X, Y] + distractors(), texts=texts)
    report = explorer.analogy([0, 1, 2])
    m = report.caption_space.measurements
    assert report.caption_space.top.caption == "a red car in the rain"
    assert m["repeats_c"] is True and m["repeats_c_what"] == "caption" and m["repeats_c_phrase"] == "a red car"
    assert report.caption_space.verdicts == ["genuine"]  # the lexical check does not change DESIGN verdicts
    assert "**repeats-c**" in report.explanation[2]["content"]
    assert report.as_dict()["caption_space"]["measurements"]["repeats_c"] is True
    assert "repeats_c" not in report.image_space.measurements


def test_text_answer_vocabulary_scoring_exclusion_and_cache(tmp_path):
    texts = ["a red apple", "a green apple", "a red car", "the answer", "x", "y"] + [f"d{i}" for i in range(8)]
    explorer = make_explorer(tmp_path, [A, B, C, D, X, Y] + distractors(), texts=texts)
    report = explorer.analogy([0, 1, 2])
    text = report.text_answer
    # The gallery caption vector of item 3 is exactly b - a + c: it is the best sentence in the vocabulary.
    assert text["text"] == "the answer" and text["source"] == "gallery caption"
    assert text["score"] == pytest.approx(1.0, abs=1e-5)
    assert len(text["top"]) == 5 and text["top"][0]["text"] == "the answer"
    assert text["vocabulary"]["imagenet_classes"] >= 990
    assert text["vocabulary"]["gallery_captions"] == len(set(texts))
    sentences = {row["text"] for row in text["top"]}
    assert not sentences & {"a red apple", "a green apple", "a red car"}
    assert f"\"the answer\" (gallery caption, score {fmt(text['score'])})" in report.explanation[2]["content"]
    # Class captions: worded as the labels captioner, embedded once, cached on disk and in memory.
    class_texts = explain.class_caption_texts(LabelsCaptioner())
    assert "a photo of a tiger cat" in class_texts and "an espresso" in " ".join(class_texts)
    files = list((tmp_path / "cache" / "vocabulary").glob("imagenet-classes-synthetic-text-*.npy"))
    assert len(files) == 1
    embedded = explorer.models.embedded
    explorer.analogy([0, 1, 2])
    assert explorer.models.embedded == embedded  # memory cache
    explain._VOCABULARY_MEMORY.clear()
    explorer.analogy([0, 1, 2])
    assert explorer.models.embedded == embedded  # disk cache
    files[0].write_bytes(files[0].read_bytes()[:-8] + b"damaged!")
    explain._VOCABULARY_MEMORY.clear()
    explorer.analogy([0, 1, 2])
    assert explorer.models.embedded == embedded + len(class_texts)  # checksum caught it: recomputed


def test_text_answer_scored_with_the_reports_method(tmp_path):
    from pipeline import vectors as vec

    texts = [f"caption {i}" for i in range(14)]
    texts[7] = texts[8] = "Caption 7"  # a duplicate (case-insensitive) is one sentence
    explorer = make_explorer(tmp_path, [A, B, C, D, X, Y] + distractors(), texts=texts)
    inputs = explorer.analogy([0, 1, 2], explain=False).inputs
    class_texts = explain.class_caption_texts(LabelsCaptioner())
    class_vectors = explorer.models.embed_texts(class_texts)
    rows = [i for i in range(14) if i not in (0, 1, 2, 8)]  # inputs' captions left out, duplicate once
    sentences = class_texts + [texts[i] for i in rows]
    vectors = np.concatenate([class_vectors, explorer.gallery.vectors("caption")[rows]])
    a, b, c = (inp.vectors["caption"] for inp in inputs)
    vocab = explain.vocabulary(explorer, explorer.gallery)
    assert len(vocab) == len(class_texts) + 13 and vocab.gallery_rows.tolist()[-4:] == [10, 11, 12, 13]
    for method in ("3cosadd", "3cosmul", "pairdirection", "only-c"):
        answer = explain.text_answer(explorer, inputs, method)
        scores = vec.analogy_scores(vectors, a, b, c, method)
        order = np.argsort(-scores, kind="stable")[:5]
        assert [row["text"] for row in answer["top"]] == [sentences[i] for i in order]
        assert [row["score"] for row in answer["top"]] == pytest.approx([float(scores[i]) for i in order], abs=1e-5)
        assert answer["method"] == method and answer["vocabulary"]["gallery_captions"] == 13


def test_no_caption_space(tmp_path):
    explorer = make_explorer(tmp_path, [A, B, C, D, X, Y] + distractors())
    explorer.gallery.captions = None
    report = explorer.analogy([0, 1, 2])
    assert report.caption_space is None and report.text_answer is None
    assert report.agreement["same_item"] is None and "no caption space" in report.agreement["summary"]
    assert "no captions" in report.explanation[2]["content"]
    assert len(report.explanation) == 5


# ------------------------------------------------------------------------------------------------
# Follow-up questions


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
    assert explain.match_intent(question) == intent


def test_follow_up_why(chat):
    explorer, report = chat
    reply, same = explain.answer_question(explorer, report, "why is this cheating?")
    assert same is report
    data = report.as_dict()
    for space in (data["image_space"], data["caption_space"]):
        for number in space_numbers(space):
            assert number in reply
        for verdict in space["verdicts"]:
            assert f"**{verdict}**" in reply
    reply_caption, _ = explain.answer_question(explorer, report, "why is the caption answer cheating?")
    assert "Caption space" in reply_caption and "Image space" not in reply_caption


def test_follow_up_top_k_reruns_for_a_larger_k(chat):
    explorer, report = chat
    reply, new = explain.answer_question(explorer, report, "show the top 8")
    assert new is not report and new.top_k == 8 and len(new.image_space.results) == 8
    for hit in new.image_space.results + new.caption_space.results:
        assert f"#{hit.id} {hit.path}" in reply and fmt(hit.as_dict()["score"]) in reply
    assert re.search(r"^8\. ", reply, flags=re.MULTILINE)
    reply3, same = explain.answer_question(explorer, report, "show the top 3")
    assert same is report and not re.search(r"^4\. ", reply3, flags=re.MULTILINE)


def test_follow_up_without_exclusion(chat):
    explorer, report = chat
    reply, same = explain.answer_question(explorer, report, "what without exclusion?")
    assert same is report  # a look-aside
    other = explorer.analogy([0, 1, 2], exclude=False)
    for space in (other.image_space, other.caption_space):
        top = space.top.as_dict()
        assert f"#{top['id']} {top['path']}" in reply and fmt(top["score"]) in reply
        ranks = space.without_exclusion["input_ranks"]
        assert f"{ranks['A']}/{ranks['B']}/{ranks['C']}" in reply


def test_follow_up_compare_methods(chat):
    explorer, report = chat
    reply, same = explain.answer_question(explorer, report, "compare the methods")
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
    reply, new = explain.answer_question(explorer, report, "other layer logits")
    assert new.layer == "logits" and new.image_space.space == "image:logits" and new.explanation
    assert fmt(new.image_space.top.as_dict()["score"]) in reply and "image:logits" in reply
    for number in space_numbers(new.as_dict()["image_space"]):
        assert number in reply
    reply_all, same = explain.answer_question(explorer, report, "compare the layers")
    assert same is report
    for layer in ("pooled", "logits", "probs"):
        rerun = explorer.analogy([0, 1, 2], layer=layer, explain=False)
        assert f"| {layer} | #{rerun.image_space.top.id} " in reply_all
        assert fmt(rerun.image_space.top.as_dict()["score"]) in reply_all


def test_follow_up_method(chat):
    explorer, report = chat
    reply, new = explain.answer_question(explorer, report, "try 3cosmul")
    assert new.method == "3cosmul" and new.image_space.method == "3cosmul"
    assert fmt(new.image_space.top.as_dict()["score"]) in reply
    assert fmt(new.caption_space.top.as_dict()["score"]) in reply
    assert new.agreement["summary"] in reply


def test_follow_up_what_the_classifier_sees(chat):
    explorer, report = chat
    reply, same = explain.answer_question(explorer, report, "what does the classifier see in C?")
    assert same is report
    c = report.as_dict()["inputs"][2]
    for label in c["top_labels"]:
        assert f"{label['name']} (p = {fmt(label['probability'])})" in reply
    assert "**C**" in reply and "**A**" not in reply and c["caption"] in reply and "gallery label: cat" in reply
    reply_all, _ = explain.answer_question(explorer, report, "what do the models see?")
    assert all(f"**{r}**" in reply_all for r in "ABC")


def test_follow_up_space_details_agreement_text_help_unknown(chat):
    explorer, report = chat
    data = report.as_dict()
    reply, _ = explain.answer_question(explorer, report, "caption space")
    for hit in data["caption_space"]["results"]:
        assert fmt(hit["score"]) in reply
    for name, hit in data["caption_space"]["baselines"].items():
        assert f"- {name}: #{hit['id']} {hit['path']}" in reply and fmt(hit["score"]) in reply
    reply, _ = explain.answer_question(explorer, report, "image space")
    assert "image:pooled" in reply and fmt(data["image_space"]["measurements"]["offset_norm"]) in reply
    reply, _ = explain.answer_question(explorer, report, "do the spaces agree?")
    assert report.agreement["summary"] in reply
    reply, _ = explain.answer_question(explorer, report, "what is the answer in words?")
    for row in report.text_answer["top"]:
        assert f"\"{row['text']}\" ({row['source']}, score {fmt(row['score'])})" in reply
    capabilities = explain.capabilities()
    reply, _ = explain.answer_question(explorer, report, "help")
    assert capabilities in reply
    reply, same = explain.answer_question(explorer, report, "what's the weather like?")
    assert same is report and "cannot answer" in reply and capabilities in reply
    for intent in explain.templates()["intents"]:
        assert intent["example"] in capabilities


def test_rerun_impossible_for_a_vanished_upload(chat):
    explorer, report = chat
    report.inputs[0].item_id = None
    report.inputs[0].name = "upload.png"
    report.inputs[0].source = "/nonexistent/upload.png"
    reply, same = explain.answer_question(explorer, report, "compare the methods")
    assert same is report and "cannot re-run" in reply


def test_follow_up_reruns_an_uploaded_image(default_explorer, tmp_path):
    """An upload (not a gallery item) keeps its file, so follow-ups can ask the pipeline again."""
    from PIL import Image, ImageOps

    upload = tmp_path / "my cat.png"
    ImageOps.flip(Image.open(default_explorer.gallery.path(default_explorer.gallery.find("cat/original.jpg")))).save(upload)
    report = default_explorer.analogy(["coffee/original.jpg", "coffee/greyscale.jpg", str(upload)])
    assert report.inputs[2].item_id is None and report.inputs[2].source == str(upload)
    reply, new = explain.answer_question(default_explorer, report, "top 8")
    assert new is not report and len(new.image_space.results) == 8
    assert new.inputs[2].source == str(upload)


def test_templates_are_data_with_doc():
    spec = explain.templates()
    assert "_doc" in spec
    assert {i["name"] for i in spec["intents"]} == set(explain._HANDLERS)
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
    reply, _ = explain.answer_question(explorer, report, "why is this cheating?")
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
