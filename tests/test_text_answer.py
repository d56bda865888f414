"""The text answer (pipeline.text_answer): its vocabulary of class captions and gallery captions, kept
with the explorer's gallery and cached on disk, scored with the report's method."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.embedding_cache import forget_in_memory
from pipeline.explain import fmt
from pipeline.explorer import Explorer
from pipeline.models.captioners import LabelsCaptioner
from pipeline.text_answer import class_caption_texts
from tests.synthetic_explorer import A, B, C, D, X, Y, distractors, make_explorer


def fresh_explorer(explorer: Explorer) -> Explorer:
    """A new Explorer (empty memory, as in a new process) with the same settings, models and gallery."""
    forget_in_memory()
    fresh = Explorer(explorer.settings, models=explorer.models)
    fresh.gallery = explorer.gallery
    return fresh


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
    class_texts = class_caption_texts(LabelsCaptioner())
    assert "a photo of a tiger cat" in class_texts and "an espresso" in " ".join(class_texts)
    files = list((tmp_path / "cache" / "vocabulary").glob("imagenet-classes-synthetic-text-*.npy"))
    assert len(files) == 1
    embedded = explorer.models.embedded
    explorer.analogy([0, 1, 2])
    assert explorer.models.embedded == embedded  # memory cache
    explorer = fresh_explorer(explorer)  # nothing in memory: a new explorer (as a new process) on the same cache
    explorer.analogy([0, 1, 2])
    assert explorer.models.embedded == embedded  # disk cache
    files[0].write_bytes(files[0].read_bytes()[:-8] + b"damaged!")
    explorer = fresh_explorer(explorer)
    explorer.analogy([0, 1, 2])
    assert explorer.models.embedded == embedded + len(class_texts)  # checksum caught it: recomputed


def test_text_answer_scored_with_the_reports_method(tmp_path):
    from pipeline import vectors as vec

    texts = [f"caption {i}" for i in range(14)]
    texts[7] = texts[8] = "Caption 7"  # a duplicate (case-insensitive) is one sentence
    explorer = make_explorer(tmp_path, [A, B, C, D, X, Y] + distractors(), texts=texts)
    inputs = explorer.analogy([0, 1, 2], explain=False).inputs
    class_texts = class_caption_texts(LabelsCaptioner())
    class_vectors = explorer.models.embed_texts(class_texts)
    rows = [i for i in range(14) if i not in (0, 1, 2, 8)]  # inputs' captions left out, duplicate once
    sentences = class_texts + [texts[i] for i in rows]
    vectors = np.concatenate([class_vectors, explorer.gallery.vectors("caption")[rows]])
    a, b, c = (inp.vectors["caption"] for inp in inputs)
    vocab = explorer.text_vocabulary()
    assert len(vocab) == len(class_texts) + 13 and vocab.gallery_rows.tolist()[-4:] == [10, 11, 12, 13]
    for method in ("3cosadd", "3cosmul", "pairdirection", "only-c"):
        answer = explorer.text_answer(inputs, method)
        scores = vec.analogy_scores(vectors, a, b, c, method)
        order = np.argsort(-scores, kind="stable")[:5]
        assert [row["text"] for row in answer["top"]] == [sentences[i] for i in order]
        assert [row["score"] for row in answer["top"]] == pytest.approx([float(scores[i]) for i in order], abs=1e-5)
        assert answer["method"] == method and answer["vocabulary"]["gallery_captions"] == 13
