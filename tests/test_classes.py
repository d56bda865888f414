"""Questions about classes: centroids shared with the evaluation, and answers among class centroids
that agree with the evaluation's all-triples results (real galleries, real vectors)."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from eval import metrics as M
from pipeline import vectors as vec
from pipeline.classes import class_answer, class_centroids
from pipeline.errors import AnalogyError


def test_one_centroid_function_serves_the_evaluation():
    assert M.class_centroids is class_centroids
    vectors = vec.l2_normalize(np.array([[1, 0], [0, 1], [1, 1]], dtype=np.float32), axis=1)
    classes, centroids = class_centroids(vectors, ["b", "a", "b"])
    assert classes == ["a", "b"] and centroids.dtype == np.float32
    expected_b = vectors[0] + vectors[2]
    assert np.allclose(centroids[1], expected_b / np.linalg.norm(expected_b))
    assert np.allclose(np.linalg.norm(centroids, axis=1), 1.0)


def _agree(classes, centroids, triples, threshold=0.95):
    """Every triple's class answer equals the evaluation's: the excluded 3CosAdd answer, the winner with
    nothing excluded, the ONLY-C and IGNORE-A answers."""
    answers = M.triple_answers(centroids)
    for a, b, c in triples:
        got = class_answer(classes, centroids, classes[a], classes[b], classes[c], method="3cosadd", top_k=3)
        assert got.answer.top[0][0] == answers.nearest_excluded[a, b, c]
        assert abs(got.answer.top[0][1] - answers.score_excluded[a, b, c]) < 1e-5
        assert got.answer.without_exclusion["row"] == answers.nearest[a, b, c]
        assert got.answer.baselines["only-c"][0] == answers.only_c[a, b, c]
        assert got.answer.baselines["ignore-a"][0] == answers.ignore_a[a, b, c]
        winner = got.answer.without_exclusion["winner"]
        assert (winner is not None) == ("input" in answers.verdicts(a, b, c, threshold))


def test_class_answers_agree_with_the_evaluation_on_the_default_gallery(default_explorer):
    gallery = default_explorer.gallery
    labels = [item.label for item in gallery.items]
    for space in ("image:pooled", "caption"):
        classes, centroids = class_centroids(gallery.vectors(space), labels)
        assert len(classes) >= 4
        _agree(classes, centroids, itertools.permutations(range(len(classes)), 3))


@pytest.mark.slow
def test_the_talks_class_questions_agree_with_reproduce_2017_on_imagen(imagen_explorer):
    gallery = imagen_explorer.gallery
    labels = [item.label for item in gallery.items]
    classes, centroids = class_centroids(gallery.vectors("image:pooled"), labels)
    index = {name: i for i, name in enumerate(classes)}
    talk = [("sheep", "camel", "seal"), ("flute", "oboe", "domestic cat"), ("brassiere", "maillot", "guacamole")]
    rng = np.random.default_rng(0)
    sample = [tuple(rng.choice(len(classes), 3, replace=False)) for _ in range(200)]
    _agree(classes, centroids, [tuple(index[n] for n in t) for t in talk] + sample)
    # as the evaluation's report says: burrito for guacamole, otter for seal (pooled)
    out = class_answer(classes, centroids, "brassiere", "maillot", "guacamole").as_dict()
    assert out["kind"] == "class" and out["class"] == "burrito" and out["candidates"] == 200
    assert out["without_exclusion"]["winner"] in ("B", "C")
    assert class_answer(classes, centroids, "sheep", "camel", "seal").top_class == "otter"


def test_every_method_answers_among_classes_and_unknown_classes_are_named(default_explorer):
    gallery = default_explorer.gallery
    classes, centroids = class_centroids(gallery.vectors("image:pooled"), [i.label for i in gallery.items])
    a, b, c = classes[:3]
    for method in vec.ALL_METHODS:
        out = class_answer(classes, centroids, a, b, c, method=method, top_k=len(classes)).as_dict()
        assert {t["class"] for t in out["top"]}.isdisjoint({a, b, c}) and len(out["top"]) == len(classes) - 3
        unexcluded = class_answer(classes, centroids, a, b, c, method=method, exclude=False, top_k=len(classes))
        assert len(unexcluded.answer.top) == len(classes)
        assert unexcluded.answer.top[0][0] == unexcluded.answer.without_exclusion["row"]
    with pytest.raises(AnalogyError, match="'unicorn'"):
        class_answer(classes, centroids, a, "unicorn", c)
