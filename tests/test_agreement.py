"""Agreement between the two spaces and caption space's lexical check (pipeline.agreement), as the
explorer assembles them into a report, on synthetic galleries."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.agreement import knn_intersection, repeats_c
from pipeline.explain import fmt, word_agreement_sentence
from tests.synthetic_explorer import A, B, C, D, X, Y, distractors, make_explorer


def test_agreement_same_item_overlap_and_labels(tmp_path):
    labels = ["x"] * 3 + ["answer", "near c", "ignore a"] + [None] * 8
    explorer = make_explorer(tmp_path, [A, B, C, D, X, Y] + distractors(), labels=labels)
    report = explorer.analogy([0, 1, 2])
    agreement = report.agreement
    assert agreement["same_item"] is True and agreement["same_label"] is True
    assert agreement["top_k_overlap"] == {"k": 5, "measure": 1.0, "common_ids": [h.id for h in report.image_space.results]}
    assert agreement["caption_similarity"] == pytest.approx(1.0, abs=1e-6)
    assert "Both spaces answer the same item, #3 item3.png (answer)" in agreement["summary"]
    assert agreement["summary"] in report.explanation[4]["content"]


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
    assert knn_intersection([1, 2, 3, 4], [4, 9, 2, 7], 4) == (0.5, [2, 4])
    assert knn_intersection([1, 2, 3], [3, 2, 1], 2) == (0.5, [2])
    assert knn_intersection([], [], 0) == (0.0, [])


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
    assert repeats_c(answer, c_caption, c_label) == expected


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


def test_word_space_in_the_agreement_sentence():
    same = {"same_item": True, "same_label": True}
    other = {"same_item": False, "same_label": None}
    assert word_agreement_sentence({"image_word": same, "caption_word": same, "all_same_item": True,
                                    "all_same_label": True}) == "Word space answers that item too: the three spaces agree."
    assert word_agreement_sentence({"image_word": None, "caption_word": other, "all_same_item": None,
                                    "all_same_label": None}) == "Word space answers another item than caption space."
    assert word_agreement_sentence({"image_word": {"same_item": False, "same_label": False}, "caption_word": same,
                                    "all_same_item": False, "all_same_label": False}) == (
        "Word space answers another item than image space (and another label), and the same item as caption space.")
    assert word_agreement_sentence({"image_word": None, "caption_word": None, "all_same_item": None,
                                    "all_same_label": None}) == ""
