"""Word space in the product's analogy report, with the real GloVe vectors and the real imagen photos."""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from pipeline import vectors as vec
from pipeline.chat import answer_question
from pipeline.cli import main
from pipeline.default_gallery import EXAMPLES
from pipeline.explain import word_space_message
from pipeline.word_space import gallery_words, word_space
from pipeline.words import word_analogy
from tests.conftest import imagen_file

TALK = [("sheep", "camel", "seal"), ("flute", "oboe", "domestic cat"), ("brassiere", "maillot", "guacamole")]


def _refs(explorer, labels):
    return [next(i.path for i in explorer.gallery.items if i.label == label) for label in labels]


@pytest.mark.slow
@pytest.mark.parametrize("labels", TALK)
def test_the_talks_questions_are_answered_in_word_space_among_items_and_words(imagen_explorer, labels):
    explorer = imagen_explorer
    report = explorer.analogy(_refs(explorer, labels))
    out = report.as_dict()["word_space"]
    assert [(i["role"], i["source"], i["text"]) for i in out["inputs"]] == [
        (r, "label", t) for r, t in zip("ABC", labels)]
    assert out["missing_inputs"] == [] and all(i["has_vector"] for i in out["inputs"])
    # among the items: the brute-force reference over the same word vectors, inputs excluded
    words = explorer._gallery_words.get(explorer.gallery, explorer.models.word_vectors)
    a, b, c = (words.items.vectors[i.item_id] for i in report.inputs)
    scores = vec.analogy_scores(words.items.vectors, a, b, c, "3cosadd")
    skip = [i.item_id for i in report.inputs] + words.never.tolist()
    ids, values = vec.top_k(scores, 5, exclude=skip)
    assert [r["id"] for r in out["results"]] == ids.tolist()
    np.testing.assert_allclose([r["score"] for r in out["results"]], values, atol=1e-5)
    assert set(out["baselines"]) == set(vec.BASELINES) and out["verdicts"]
    assert {"offset_norm", "typical_nn_distance", "cos_answer_c", "near_duplicate_threshold"} <= set(out["measurements"])
    # over GloVe's vocabulary: the free word analogy of the same words
    expected = word_analogy(explorer.models.word_vectors, *labels, vocab_size=explorer.settings.word_vocab_size)
    assert out["word_answer"]["word"] == expected.word and out["word_answer"]["word"] not in labels
    assert out["word_answer"]["without_exclusion"]["word"]
    # agreement covers the three spaces
    assert set(report.agreement["word"]) == {"image_word", "caption_word", "all_same_item", "all_same_label"}
    assert report.agreement["word"]["image_word"]["same_item"] == (out["results"][0]["id"] == report.image_space.top.id)


@pytest.mark.slow
def test_an_item_without_a_word_vector_is_never_an_answer(imagen_explorer):
    explorer = imagen_explorer
    vocabulary = explorer.models.word_vectors
    words = gallery_words(explorer.gallery, vocabulary)
    assert words.never.tolist() == np.flatnonzero(~words.items.has_vector).tolist()
    inputs = explorer.analogy(_refs(explorer, TALK[0]), explain=False).inputs
    seals = [i.id for i in explorer.gallery.items if i.label == "seal" and i.id != inputs[2].item_id]
    without = replace(words, never=np.array(sorted(set(words.never.tolist()) | set(seals)), dtype=np.int64))
    for method in vec.ALL_METHODS:
        for exclude in (True, False):
            before = word_space(words, vocabulary, inputs, method, exclude, 10, 1000)
            after = word_space(without, vocabulary, inputs, method, exclude, 10, 1000).as_dict()
            answered = {r["id"] for r in after["results"]} | {b["id"] for b in after["baselines"].values() if b}
            top = after["without_exclusion"]["top"]
            assert not answered & set(seals) and (not isinstance(top, dict) or top["id"] not in seals)
            if method == "3cosadd":  # the other seal photos share C's word vector: they won before
                assert before.space.results[0].id in seals + [inputs[2].item_id]


@pytest.mark.slow
def test_cli_analogy_carries_word_space_in_json_and_text(imagen_explorer, imagen_dir, capsys):
    settings = imagen_explorer.settings
    paths = [str(imagen_file(imagen_dir, label)) for label in TALK[0]]
    common = ["--gallery", str(imagen_dir), "--cache-dir", str(settings.cache_dir), "--captioner", "labels"]
    assert main(["analogy", *paths, "--json", *common]) == 0
    out = json.loads(capsys.readouterr().out)["word_space"]
    assert out["space"] == "word" and len(out["results"]) == 5 and out["word_answer"]["top"]
    assert main(["analogy", *paths, *common]) == 0
    text = capsys.readouterr().out
    assert "WORD SPACE (GloVe)" in text and f"1. {out['word_answer']['score']:+.3f}  {out['word_answer']['word']}" in text
    assert '"sheep" (label): sheep' in text


def test_the_explainer_talks_about_word_space(default_explorer):
    """coffee : greyscale coffee :: cat (both coffees labelled "coffee"): the explanation's word-space
    message says B - A is zero there, gives the word analogy (the nearest word to "cat" besides it)
    and the answer among the items; the chat answers "what about word space?" with it; the
    without-exclusion message covers the third space."""
    explorer = default_explorer
    report = explorer.analogy([explorer.gallery.find(p) for p in EXAMPLES[0]])
    data = report.as_dict()
    word = data["word_space"]
    message = report.explanation[3]["content"]
    assert message == word_space_message(word, data["inputs"])
    assert '- **A** "coffee" (gallery label): coffee' in message and '- **C** "cat" (gallery label): cat' in message
    assert 'A and B are the same words ("coffee"), so B - A is zero in word space' in message
    expected = word_analogy(explorer.models.word_vectors, "coffee", "coffee", "cat",
                            vocab_size=explorer.settings.word_vocab_size)
    assert f"over the 30,000 most frequent words: **{expected.word}**" in message
    assert f"**Word space** (word, 3cosadd, exclusion on): the answer is #{word['results'][0]['id']}" in message
    ranks = word["without_exclusion"]["input_ranks"]
    assert "- Word space: " in report.explanation[5]["content"]
    assert f"{ranks['A']}/{ranks['B']}/{ranks['C']}" in report.explanation[5]["content"]
    # the agreement: word space's answer (#4 cat/greyscale) is caption space's, not image space's (#5 cat/mirror)
    pairs = report.agreement["word"]
    assert pairs["caption_word"]["same_item"] and not pairs["image_word"]["same_item"]
    assert ("Word space answers another item than image space (with the same label), and the same item as "
            "caption space.") in report.agreement["summary"]
    assert report.agreement["summary"] in report.explanation[4]["content"]
    for question in ("what about word space?", "and GloVe?", "the word analogy?"):
        reply, same = answer_question(explorer, report, question)
        assert reply == message and same is report
    # an input without a word vector: its words are listed, and there is no answer
    missing = {**word, "missing_inputs": ["B"],
               "inputs": [word["inputs"][0], {**word["inputs"][1], "words": [], "missing": ["zqxj"]}, word["inputs"][2]]}
    text = word_space_message(missing, data["inputs"])
    assert "- **B** \"coffee\" (gallery label): no word GloVe knows; not in GloVe: zqxj" in text
    assert text.endswith("No word-space answer: B has no word vector.") and "As a word analogy" not in text
    assert word_space_message(None, data["inputs"]).startswith("**Word space**: word vectors are not available")
