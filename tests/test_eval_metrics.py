"""eval.metrics against hand-computed cases, and the triple enumeration against a brute-force loop
that uses the pipeline's own scoring (pipeline.vectors) one question at a time."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from eval import metrics as M
from pipeline import vectors as V
from pipeline.analogy import Hit, verdicts_for


# --- ranks, accuracy, shares -------------------------------------------------------------------


def test_target_rank_hand_cases():
    scores = np.array([0.1, 0.5, 0.5, 0.9])
    assert M.target_rank(scores, 3) == 1
    assert M.target_rank(scores, 1) == 2  # tie with id 2: the lower id goes first
    assert M.target_rank(scores, 2) == 3
    assert M.target_rank(scores, 0) == 4
    assert M.target_rank(scores, 2, exclude=[3]) == 2
    assert M.target_rank(scores, 2, exclude=[1, 3]) == 1
    assert M.target_rank(scores, 0, exclude=[1]) == 3
    with pytest.raises(ValueError, match="excluded"):
        M.target_rank(scores, 2, exclude=[2])
    with pytest.raises(ValueError, match="out of range"):
        M.target_rank(scores, 4)


def test_target_rank_agrees_with_pipeline_top_k():
    rng = np.random.default_rng(3)
    scores = rng.integers(0, 5, size=40).astype(np.float32)  # many ties
    exclude = [3, 7, 11]
    ids, _ = V.top_k(scores, 40, exclude=exclude)
    for position, i in enumerate(ids, start=1):
        assert M.target_rank(scores, int(i), exclude) == position


def test_accuracy_at_k_hand_cases():
    ranks = [1, 2, 6, 1]
    assert M.accuracy_at_k(ranks, 1) == 0.5
    assert M.accuracy_at_k(ranks, 2) == 0.75
    assert M.accuracy_at_k(ranks, 5) == 0.75
    assert M.accuracy_at_k(ranks, 6) == 1.0
    assert math.isnan(M.accuracy_at_k([], 1))
    with pytest.raises(ValueError):
        M.accuracy_at_k(ranks, 0)


def test_shares_hand_case():
    out = M.shares({"x": [True, False, False, True], "y": np.zeros(3, bool), "empty": []})
    assert out["x"] == 0.5 and out["y"] == 0.0 and math.isnan(out["empty"])


def test_topk_classification_hand_cases():
    logits = np.array([[3.0, 1.0, 2.0], [0.0, 5.0, 1.0], [2.0, 2.0, 0.0]])
    targets = np.array([2, 1, 1])
    # ranks: row 0 -> 2; row 1 -> 1; row 2 -> 2 (tied with class 0, which has the lower index)
    assert M.topk_classification(logits, targets, ks=(1, 2)) == {1: pytest.approx(1 / 3), 2: 1.0}


# --- centroids ----------------------------------------------------------------------------------


def test_class_centroids_hand_case():
    vectors = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    classes, centroids = M.class_centroids(vectors, ["b", "a", "b"])
    assert classes == ["a", "b"]
    np.testing.assert_allclose(centroids[0], [0.0, 1.0], atol=1e-7)
    np.testing.assert_allclose(centroids[1], np.array([1.6, 0.8]) / np.hypot(1.6, 0.8), atol=1e-6)


def test_nearest_centroid_loo_hand_case():
    # Class A: e1 and u; class B: e2 and w. Computed by hand:
    #   e1: own centroid without it = u, cos 0.6; B centroid (0.447, 0.894), cos 0.447 -> A (right)
    #   u:  own = e1, cos 0.6; B centroid cos 0.984 -> B (wrong)
    #   e2: own = w, cos 0.6; A centroid (0.894, 0.447), cos 0.447 -> B (right)
    #   w:  own = e2, cos 0.6; A centroid cos 0.984 -> A (wrong)
    vectors = np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [0.8, 0.6]])
    loo = M.nearest_centroid_loo(vectors, ["A", "A", "B", "B"])
    assert loo.classes == ["A", "B"]
    assert loo.predicted.tolist() == [0, 1, 1, 0]
    assert loo.accuracy == 0.5
    assert loo.scores[0, 0] == pytest.approx(0.6) and loo.scores[0, 1] == pytest.approx(1 / math.sqrt(5))
    assert loo.scores[1, 1] == pytest.approx(0.6 / math.sqrt(5) + 0.8 * 2 / math.sqrt(5), abs=1e-6)
    assert loo.top(1, 1) == [("B", pytest.approx(0.98386, abs=1e-4))]


def test_nearest_centroid_loo_single_item_class_is_never_right():
    vectors = np.array([[1.0, 0.0], [0.99, 0.141], [0.0, 1.0]])
    loo = M.nearest_centroid_loo(vectors, ["A", "A", "lonely"])
    assert loo.predicted[2] != loo.truth[2]
    assert np.isneginf(loo.scores[2, 1])
    assert loo.accuracy == pytest.approx(2 / 3)


def test_nearest_centroid_loo_matches_a_loop():
    rng = np.random.default_rng(5)
    vectors = V.l2_normalize(rng.normal(size=(30, 6)))
    labels = [f"c{i % 7}" for i in range(30)]
    loo = M.nearest_centroid_loo(vectors, labels)
    for i in range(30):
        best, best_score = None, -np.inf
        for k, cls in enumerate(loo.classes):
            members = [j for j in range(30) if labels[j] == cls and j != i]
            centroid = vectors[members].astype(np.float64).sum(axis=0)
            score = float(vectors[i] @ centroid / np.linalg.norm(centroid))
            if score > best_score:
                best, best_score = k, score
        assert loo.predicted[i] == best


# --- triples ------------------------------------------------------------------------------------


def test_triples_hand_case_orthonormal_items():
    # Four orthonormal items: the query b - a + c has cosine 1/sqrt(3) with b and c, -1/sqrt(3)
    # with a and 0 with the fourth item. Unexcluded: b and c tie, the lower id wins. Excluded: the
    # fourth item, with score 0.
    answers = M.triple_answers(np.eye(4))
    counts = answers.role_counts()
    assert counts == {"a": 0, "b": 12, "c": 12, "other": 0}  # 24 ordered triples, half with b < c
    a, b, c = 0, 2, 1
    assert answers.nearest[a, b, c] == 1
    assert answers.nearest_excluded[a, b, c] == 3
    assert answers.score_excluded[a, b, c] == pytest.approx(0.0, abs=1e-7)
    assert answers.only_c[a, b, c] == 3 and answers.ignore_a[a, b, c] == 3
    assert not answers.valid[1, 1, 2] and answers.nearest[1, 1, 2] == -1
    assert np.isnan(answers.score_excluded[1, 2, 1])
    flags = answers.verdict_flags(threshold=0.95)
    assert all(len(v) == 24 for v in flags.values())
    assert flags["input"].all() and flags["only-c"].all() and not flags["genuine"].any()


def _brute_force(items, threshold):
    """One question at a time with pipeline.vectors (3CosAdd, ONLY-C, IGNORE-A) and top_k."""
    n = len(items)
    out = {}
    for a, b, c in itertools.permutations(range(n), 3):
        sims = V.input_similarities(items, items[a], items[b], items[c])
        gram = V.gram_matrix(items[a], items[b], items[c])
        add = V.method_scores(sims, gram, "3cosadd")
        nearest = int(V.top_k(add, 1)[0][0])
        (d,), (score,) = V.top_k(add, 1, exclude=[a, b, c])
        only_c = int(V.top_k(V.method_scores(sims, gram, "only-c"), 1, exclude=[a, b, c])[0][0])
        ignore_a = int(V.top_k(V.method_scores(sims, gram, "ignore-a"), 1, exclude=[a, b, c])[0][0])
        winner = {a: "A", b: "B", c: "C"}.get(nearest)
        baselines = {"only-c": Hit(only_c, "", None, 0.0), "ignore-a": Hit(ignore_a, "", None, 0.0)}
        verdicts = verdicts_for(Hit(int(d), "", None, float(score)), winner, baselines,
                                float(items[d] @ items[c]), threshold)
        out[a, b, c] = (nearest, int(d), float(score), only_c, ignore_a, verdicts)
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_triples_match_brute_force_on_random_centroids(seed):
    rng = np.random.default_rng(seed)
    items = V.l2_normalize(rng.normal(size=(8, 5)))
    if seed == 2:  # a near-duplicate pair, so that the near-duplicate verdict is exercised
        items[5] = V.l2_normalize(items[4] + 0.05 * rng.normal(size=5))
    threshold = 0.95
    answers = M.triple_answers(items)
    expected = _brute_force(items, threshold)
    assert int(answers.valid.sum()) == len(expected) == 8 * 7 * 6
    counts = {"a": 0, "b": 0, "c": 0, "other": 0}
    for (a, b, c), (nearest, d, score, only_c, ignore_a, verdicts) in expected.items():
        assert answers.nearest[a, b, c] == nearest
        assert answers.nearest_excluded[a, b, c] == d
        assert answers.score_excluded[a, b, c] == pytest.approx(score, abs=1e-5)
        assert answers.only_c[a, b, c] == only_c
        assert answers.ignore_a[a, b, c] == ignore_a
        assert answers.verdicts(a, b, c, threshold) == verdicts
        counts[{a: "a", b: "b", c: "c"}.get(nearest, "other")] += 1
    assert answers.role_counts() == counts
    flags = answers.verdict_flags(threshold)
    order = [k for k in expected]  # permutations are in C order, like the boolean mask
    for name in ("input", "only-c", "ignore-a", "near-duplicate", "genuine"):
        assert flags[name].tolist() == [name in expected[k][5] for k in order]


def test_best_triples_score_rank_and_answer_rank():
    rng = np.random.default_rng(7)
    items = V.l2_normalize(rng.normal(size=(8, 5)))
    answers = M.triple_answers(items)
    best = M.best_triples(answers, top_n=5)
    assert len(best) == 5
    scores = [s for *_, s in best]
    assert scores == sorted(scores, reverse=True)
    valid_scores = answers.score_excluded[answers.valid]
    assert scores[0] == pytest.approx(float(valid_scores.max()))
    keys = {(a, min(b, c), max(b, c)) for a, b, c, _, _ in best}
    assert len(keys) == 5  # mirrored duplicates (a, b, c) / (a, c, b) listed once
    for a, b, c, d, s in best:
        assert answers.nearest_excluded[a, b, c] == d
        assert items[d] @ items[c] >= items[d] @ items[b]
        assert M.answer_rank(items, a, b, c, d) == 1
        rank, total = M.score_rank(answers, a, b, c)
        assert total == 8 * 7 * 6 and rank <= 2 * 5
    a, b, c, d, _ = best[0]
    assert M.score_rank(answers, a, b, c)[0] == 1
    # a hand-checked answer rank: sort by cos(d, b - a + c) among the other five
    q = items[b] - items[a] + items[c]
    others = [i for i in range(8) if i not in (a, b, c)]
    ranked = sorted(others, key=lambda i: -float(items[i] @ q))
    assert [M.answer_rank(items, a, b, c, i) for i in ranked] == [1, 2, 3, 4, 5]


def test_best_triples_distinct_pairs_lists_each_answer_pair_once():
    rng = np.random.default_rng(11)
    items = V.l2_normalize(rng.normal(size=(9, 4)))
    answers = M.triple_answers(items)
    every = M.best_triples(answers, top_n=10 ** 6)
    distinct = M.best_triples(answers, top_n=10 ** 6, distinct_pairs=True)
    assert len(every) == 9 * 8 * 7 // 2  # one per (a, {b, c})
    pairs = [frozenset((c, d)) for _, _, c, d, _ in distinct]
    assert len(pairs) == len(set(pairs))
    assert set(pairs) == {frozenset((c, d)) for _, _, c, d, _ in every}
    # each kept analogy is the best-scoring one of its pair
    for a, b, c, d, s in distinct:
        assert s == max(t[4] for t in every if frozenset((t[2], t[3])) == frozenset((c, d)))
