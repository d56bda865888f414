"""Why, in the explanation and the chat (pipeline/explain.py, pipeline/chat_why.py), on the synthetic
galleries of tests/synthetic_explorer.py (real pipeline code, hand-made vectors): the new intents, the
replies carrying the JSON's numbers, right or wrong with given expected ids, and the only-c wording."""
from __future__ import annotations

import json

import pytest

from pipeline.chat import answer_question, match_intent
from pipeline.explain import fmt
from tests.synthetic_explorer import A, B, C, D, X, Y, Y_B, distractors, make_explorer


@pytest.fixture
def explorer(tmp_path):
    return make_explorer(tmp_path, [A, B, C, D, X, Y] + distractors(12))


@pytest.mark.parametrize("question, intent", [
    ("what does B - A mean?", "offset"), ("what does b-a mean", "offset"), ("and D − C?", "offset"),
    ("what is the offset?", "offset"), ("why is the offset small?", "why"),
    ("where does the network look in C?", "heatmaps"), ("show me the heatmaps", "heatmaps"),
    ("show the geometry", "geometry"), ("draw it", "geometry"),
    ("is it right?", "right"), ("is the caption answer correct?", "right"), ("what is the ground truth", "right"),
    ("why not the right one?", "why_not_right"), ("why isn't it the expected answer?", "why_not_right"),
    ("what is the near-duplicate threshold?", "threshold"),
    ("what does the classifier see in picture c", "sees"), ("why is this cheating?", "why"),
])
def test_intents_of_why(question, intent):
    assert match_intent(question) == intent


def test_every_space_carries_the_issue_fields_as_plain_json(explorer):
    data = explorer.analogy([0, 1, 2]).as_dict()
    json.dumps(data)
    for key in ("image_space", "caption_space"):
        space = data[key]
        assert set(space["offset_terms"]) >= {"toward", "away", "answer_toward", "answer_away", "alignment"}
        assert {p["role"] for p in space["geometry"]["points"]} >= {"A", "B", "C", "query", "answer"}
        assert space["expected"] is None  # item<i>.png: no layout, nothing given
        assert space["near_duplicate_threshold"] == space["measurements"]["near_duplicate_threshold"]
    # in caption space the terms live in the space itself: the alignment is the offset consistency
    # (in pooled space it is measured between the logit changes W (b - a) and W (d - c))
    caption = data["caption_space"]
    assert caption["offset_terms"]["alignment"] == pytest.approx(caption["measurements"]["offset_consistency"], abs=1e-5)
    assert explorer.analogy([0, 1, 2], explain=False).as_dict()["image_space"].get("offset_terms") is None


def test_offset_geometry_threshold_replies_carry_the_json(explorer):
    report = explorer.analogy([0, 1, 2])
    data = report.as_dict()
    reply, same = answer_question(explorer, report, "what does B - A mean?")
    assert same is report
    for key in ("image_space", "caption_space"):
        terms = data[key]["offset_terms"]
        for term in terms["toward"] + terms["away"]:
            assert f"{term['term']} ({fmt(term['score'])})" in reply
        assert terms["sentence"] in reply and fmt(terms["alignment"]) in reply
    reply, _ = answer_question(explorer, report, "show the geometry in caption space")
    geometry = data["caption_space"]["geometry"]
    assert fmt(geometry["preserved"]) in reply and "image space" not in reply
    assert ("leaves C's neighbourhood" if geometry["query_outside_circle"] else "never leaves") in reply
    reply, _ = answer_question(explorer, report, "what is the near-duplicate threshold?")
    for key in ("image_space", "caption_space"):
        assert fmt(data[key]["near_duplicate_threshold"]) in reply


def test_right_or_wrong_with_given_expected_ids(explorer):
    report = explorer.analogy([0, 1, 2])
    reply, _ = answer_question(explorer, report, "is it right?")
    assert reply.count("the gallery cannot tell") == 2
    right = explorer.analogy([0, 1, 2], expected=[3])  # D = b - a + c exactly: the genuine answer
    for key in ("image_space", "caption_space"):
        expected = right.as_dict()[key]["expected"]
        assert expected["correct"] and not expected["only_c_correct"] and expected["layout"] == "given"
    reply, _ = answer_question(explorer, right, "is it right?")
    assert "Image space: right, the answer is the expected item3.png." in reply
    assert "ONLY-C would have answered item4.png instead" in reply  # X, C's nearest neighbour
    wrong = explorer.analogy([0, 1, 2], expected=["item5.png"])  # Y, the IGNORE-A answer, given by path
    reply, same = answer_question(explorer, wrong, "why not the right one?")
    assert same is wrong
    for key in ("image_space", "caption_space"):
        space = wrong.as_dict()[key]
        expected = space["expected"]
        assert not expected["correct"] and expected["rank"] > 1
        # its score is the method's score of that item, as the top-k shows it
        shown = next(h["score"] for h in space["results"] if h["id"] == 5)
        assert expected["score"] == pytest.approx(shown, abs=1e-5)
        assert f"at rank {expected['rank']} with score {fmt(expected['score'])}" in reply
        assert f"scored {fmt(space['results'][0]['score'])}" in reply
    # a follow-up that re-runs the question keeps the expected ids
    _, rerun = answer_question(explorer, wrong, "try 3cosmul")
    assert rerun.expected == [5] and rerun.as_dict()["image_space"]["expected"]["ids"] == [5]


def test_only_c_words_do_not_claim_more_than_the_numbers(tmp_path):
    explorer = make_explorer(tmp_path, [A, B, C, D, Y_B] + distractors())
    plain = explorer.analogy([0, 1, 2])
    assert plain.image_space.verdicts == ["only-c"]
    assert "the offset b - a did not change the answer" in plain.explanation[1]["content"]
    right = explorer.analogy([0, 1, 2], expected=[3])  # the answer, and ONLY-C's, is the expected one
    message = right.explanation[1]["content"]
    assert "did not change the answer" not in message and "did nothing" not in message
    assert "**only-c**: the answer is also what C's nearest neighbour" in message
    assert "right, the answer is the expected item3.png" in message
    assert "cannot tell whether the arithmetic helped" in message


def test_unknown_expected_reference_is_one_clear_error(explorer):
    from pipeline.errors import AnalogyError

    with pytest.raises(AnalogyError, match="expected answer 'nope.png' is not a gallery item"):
        explorer.analogy([0, 1, 2], expected=["nope.png"])
