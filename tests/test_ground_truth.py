"""Right or wrong, when the gallery knows (pipeline/ground_truth.py)."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline import ground_truth
from pipeline import vectors as vec

COFFEE = ("coffee/original.jpg", "coffee/greyscale.jpg", "cat/original.jpg")


def test_subject_variant_layout():
    paths = ["cat/greyscale.jpg", "cat/original.jpg", "coffee/greyscale.jpg", "coffee/original.png", "x.jpg"]
    assert ground_truth.expected_ids(paths, ["coffee/original.png", "coffee/greyscale.jpg", "cat/original.jpg"]) \
        == ([0], "subject/variant")
    # A and B must share a subject in two variants, C must be another subject
    assert ground_truth.expected_ids(paths, ["coffee/original.png", "cat/greyscale.jpg", "cat/original.jpg"]) is None
    assert ground_truth.expected_ids(paths, ["coffee/original.png", "coffee/original.png", "cat/original.jpg"]) is None
    assert ground_truth.expected_ids(paths, ["coffee/original.png", "coffee/greyscale.jpg", "coffee/original.png"]) is None
    # uploads and flat folders have no layout
    assert ground_truth.expected_ids(paths, ["coffee/original.png", None, "cat/original.jpg"]) is None
    assert ground_truth.expected_ids(["a.jpg", "b.jpg", "c.jpg"], ["a.jpg", "b.jpg", "c.jpg"]) is None


def test_transform_folders_of_eval_transforms():
    paths = ["original/n1_sheep.JPEG", "original/n2_seal.JPEG", "greyscale/n1_sheep.jpg", "greyscale/n2_seal.jpg",
             "hflip/n1_sheep.jpg", "hflip/n2_seal.jpg"]
    assert ground_truth.expected_ids(paths, ["original/n1_sheep.JPEG", "greyscale/n1_sheep.jpg", "original/n2_seal.JPEG"]) \
        == ([3], "variant/subject")
    assert ground_truth.expected_ids(paths, ["hflip/n1_sheep.jpg", "greyscale/n1_sheep.jpg", "hflip/n2_seal.jpg"]) \
        == ([3], "variant/subject")


def test_given_expected_ids_win():
    assert ground_truth.expected_ids(["a/b.jpg"], [None, None, None], given=[5, 2, 5]) == ([2, 5], "given")
    assert ground_truth.expected_ids(["a/b.jpg"], [None, None, None], given=[]) is None


def test_judge_ranks_like_top_k_with_exclusion():
    rng = np.random.default_rng(0)
    for trial in range(20):
        scores = rng.integers(0, 6, size=40).astype(np.float32)  # many ties
        if trial % 2:  # and scores at the ends of the order: -inf before NaN, as top_k has them
            scores[rng.choice(40, size=6, replace=False)] = np.nan
            scores[rng.choice(40, size=4, replace=False)] = -np.inf
        only_c = rng.normal(size=40).astype(np.float32)
        exclude = rng.choice(40, size=3, replace=False).tolist()
        expected = sorted(rng.choice([i for i in range(40) if i not in exclude], size=2, replace=False).tolist())
        result = ground_truth.judge((expected, "given"), scores, only_c, exclude)
        order = vec.top_k(scores, 40, exclude=exclude)[0].tolist()
        assert result.rank == min(order.index(i) for i in expected) + 1
        assert result.correct == (order[0] in expected)
        assert result.only_c_correct == (vec.top_k(only_c, 1, exclude=exclude)[0][0] in expected)
    ends = np.array([np.nan, -np.inf, 1.0], dtype=np.float32)  # top_k's order: 2, 1, 0
    assert ground_truth.judge(([1], "given"), ends, ends).rank == 2
    assert ground_truth.judge(None, scores, only_c) is None
    assert ground_truth.judge(([1], "given"), scores, only_c, exclude=[1]).rank == 0


@pytest.mark.slow
def test_default_gallery_coffee_greyscale_cat(default_explorer):
    gallery = default_explorer.gallery
    paths = [item.path for item in gallery.items]
    expected = ground_truth.expected_ids(paths, COFFEE)
    assert expected == ([gallery.find("cat/greyscale.jpg")], "subject/variant")
    report = default_explorer.analogy(list(COFFEE), explain=False)
    inputs = [inp.item_id for inp in report.inputs]
    verdicts = {}
    for space, result in (("image:pooled", report.image_space), ("caption", report.caption_space)):
        a, b, c = (inp.vectors[space] for inp in report.inputs)
        vectors = gallery.vectors(space)
        judged = ground_truth.judge(expected, vec.analogy_scores(vectors, a, b, c, "3cosadd"),
                                    vec.analogy_scores(vectors, a, b, c, "only-c"), inputs)
        assert judged.correct == (result.top.path == "cat/greyscale.jpg")
        assert judged.only_c_correct == (result.baselines["only-c"].path == "cat/greyscale.jpg")
        verdicts[space] = judged
    # caption space answers cat/greyscale, and so does ONLY-C: the question cannot tell
    caption = verdicts["caption"].as_dict()
    assert caption["correct"] and caption["only_c_correct"] and caption["rank"] == 1
    assert set(caption) >= {"ids", "correct", "only_c_correct", "rank"}
    lines = ground_truth.ground_truth_sentences(caption, "caption space", {i: gallery.items[i].path for i in caption["ids"]})
    assert lines[0].startswith("caption space: right") and "cannot tell whether the arithmetic helped" in lines[1]
    # image space answers the mirrored cat: wrong, with the right one's rank
    image = verdicts["image:pooled"]
    assert not image.correct and image.rank > 1
    assert f"rank {image.rank}" in ground_truth.ground_truth_sentences(image.as_dict(), "image space", {})[0]
