"""Tests of pipeline.vectors against literal, per-candidate evaluations of DESIGN.md section 2."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline import vectors as V
from pipeline.vectors import (
    ALL_METHODS,
    analogy_scores,
    gram_matrix,
    input_similarities,
    l2_normalize,
    method_scores,
    offset_consistency,
    offset_norm,
    ranks,
    top_k,
    typical_nn_distance,
)

EPS = 1e-3


# ---------------------------------------------------------------- brute force, one candidate at a time
def _unit(x):
    x = np.asarray(x, dtype=np.float64)
    n = np.linalg.norm(x)
    return x / n if n > 0 else x


def _cos(x, y):
    """Plain cosine; 0 when the second vector (a query or offset) is zero."""
    if np.dot(y, y) < V.ZERO_SQ_NORM:
        return 0.0
    return float(np.dot(x, y) / (np.linalg.norm(x) * np.linalg.norm(y)))


def _s(x, y):
    return (_cos(x, y) + 1.0) / 2.0


def brute_force_score(d, a, b, c, method, eps=EPS):
    """The DESIGN.md formula for one candidate d, all vectors L2-normalised first."""
    d, a, b, c = _unit(d), _unit(a), _unit(b), _unit(c)
    if method == "3cosadd":
        return _cos(d, b - a + c)
    if method == "3cosmul":
        return _s(d, b) * _s(d, c) / (_s(d, a) + eps)
    if method == "pairdirection":
        if np.dot(b - a, b - a) < V.ZERO_SQ_NORM:
            return 0.0
        if np.dot(d - c, d - c) < V.ZERO_SQ_NORM:
            return -1.0
        return _cos(d - c, b - a)
    if method == "only-c":
        return _cos(d, c)
    if method == "ignore-a":
        return _cos(d, b + c)
    if method == "add-opposite":
        return _cos(d, c - (b - a))
    if method == "multiply":
        return _s(d, b) * _s(d, c)
    raise AssertionError(method)


def brute_force_scores(gallery, a, b, c, method, eps=EPS):
    return np.array([brute_force_score(d, a, b, c, method, eps) for d in gallery])


def _random_case(seed, n=50, dim=16, include_inputs=False):
    rng = np.random.default_rng(seed)
    gallery = l2_normalize(rng.normal(size=(n, dim)))
    if include_inputs:
        a, b, c = gallery[3], gallery[17], gallery[41]
    else:
        a, b, c = rng.normal(size=(3, dim))
    return gallery, a, b, c


# ---------------------------------------------------------------- method scores vs brute force
@pytest.mark.parametrize("method", ALL_METHODS)
@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_method_scores_match_brute_force(method, seed):
    gallery, a, b, c = _random_case(seed)
    got = method_scores(input_similarities(gallery, a, b, c), gram_matrix(a, b, c), method, eps=EPS)
    assert got.shape == (len(gallery),) and got.dtype == np.float32
    np.testing.assert_allclose(got, brute_force_scores(gallery, a, b, c, method), atol=1e-5, rtol=0)


@pytest.mark.parametrize("method", ALL_METHODS)
@pytest.mark.parametrize("seed", [10, 11, 12])
def test_method_scores_gallery_contains_inputs(method, seed):
    gallery, a, b, c = _random_case(seed, include_inputs=True)
    got = analogy_scores(gallery, a, b, c, method)
    expected = brute_force_scores(gallery, a, b, c, method)
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
    if method == "pairdirection":
        assert got[41] == -1.0  # d == c: direction undefined, lowest possible cosine


@pytest.mark.parametrize("method", ALL_METHODS)
def test_unnormalised_inputs_are_normalised_inside(method):
    gallery, a, b, c = _random_case(7)
    ua, ub, uc = l2_normalize(a), l2_normalize(b), l2_normalize(c)
    scaled = analogy_scores(gallery, 3.0 * a, 0.25 * b, 40.0 * c, method)
    np.testing.assert_allclose(scaled, analogy_scores(gallery, ua, ub, uc, method), atol=1e-6)
    np.testing.assert_allclose(scaled, brute_force_scores(gallery, ua, ub, uc, method), atol=1e-5)
    # int and float64 inputs work too
    np.testing.assert_allclose(
        analogy_scores(gallery.astype(np.float64), np.round(10 * a).astype(int), b, c, method),
        brute_force_scores(gallery, np.round(10 * a), b, c, method),
        atol=1e-5,
    )


def test_eps_changes_3cosmul_only():
    gallery, a, b, c = _random_case(5)
    sims, gram = input_similarities(gallery, a, b, c), gram_matrix(a, b, c)
    np.testing.assert_allclose(
        method_scores(sims, gram, "3cosmul", eps=0.5),
        brute_force_scores(gallery, a, b, c, "3cosmul", eps=0.5),
        atol=1e-5,
    )
    assert np.array_equal(method_scores(sims, gram, "multiply", eps=0.5), method_scores(sims, gram, "multiply"))
    with pytest.raises(ValueError):
        method_scores(sims, gram, "3cosmul", eps=0.0)


def test_unknown_method_lists_valid_ones():
    gallery, a, b, c = _random_case(0)
    with pytest.raises(ValueError) as err:
        analogy_scores(gallery, a, b, c, "3cosfoo")
    for name in ALL_METHODS:
        assert name in str(err.value)


# ---------------------------------------------------------------- building blocks
def test_l2_normalize():
    x = np.array([[3.0, 4.0], [0.0, 0.0], [0.0, -2.0]])
    y = l2_normalize(x)
    assert y.dtype == np.float32 and not np.isnan(y).any()
    np.testing.assert_allclose(y, [[0.6, 0.8], [0.0, 0.0], [0.0, -1.0]], atol=1e-7)
    assert x[0, 0] == 3.0  # input untouched
    np.testing.assert_allclose(l2_normalize(x, axis=0)[:, 0], [1.0, 0.0, 0.0])
    np.testing.assert_allclose(l2_normalize(np.array([0.0, 5.0])), [0.0, 1.0])


def test_gram_matrix_and_similarities():
    a, b, c = np.array([2.0, 0.0]), np.array([0.0, 3.0]), np.array([1.0, 1.0])
    g = gram_matrix(a, b, c)
    assert g.shape == (3, 3) and g.dtype == np.float64
    r = 1 / np.sqrt(2)
    np.testing.assert_allclose(g, [[1, 0, r], [0, 1, r], [r, r, 1]], atol=1e-7)
    gallery = l2_normalize(np.array([[1.0, 0.0], [-1.0, 1.0]]))
    sims = input_similarities(gallery, a, b, c)
    assert sims.shape == (2, 3) and sims.dtype == np.float32
    np.testing.assert_allclose(sims, [[1, 0, r], [-r, r, 0]], atol=1e-7)
    with pytest.raises(ValueError):
        input_similarities(gallery, np.ones(3), np.ones(3), np.ones(3))


# ---------------------------------------------------------------- degenerate cases
@pytest.mark.parametrize("method", ["3cosadd", "add-opposite"])
def test_zero_query_gives_zero_scores(method):
    gallery, _, b, _ = _random_case(1)
    c = np.zeros(16)  # with a == b, both b - a + c and c - (b - a) are the zero vector
    scores = analogy_scores(gallery, b, b, c, method)
    assert np.array_equal(scores, np.zeros(len(gallery), dtype=np.float32))


def test_ignore_a_zero_query():
    gallery, _, b, _ = _random_case(2)
    scores = analogy_scores(gallery, np.ones(16), b, -b, "ignore-a")  # b + c = 0
    assert np.array_equal(scores, np.zeros(len(gallery), dtype=np.float32))


def test_pairdirection_zero_offset_gives_zero():
    gallery, a, _, c = _random_case(3)
    scores = analogy_scores(gallery, a, 2.0 * a, c, "pairdirection")  # b == a after normalisation
    assert np.array_equal(scores, np.zeros(len(gallery), dtype=np.float32))


def test_pairdirection_candidate_equal_to_c_is_lowest():
    gallery, a, b, _ = _random_case(4)
    c = gallery[9]
    scores = analogy_scores(gallery, a, b, 5.0 * c, "pairdirection")
    assert scores[9] == -1.0
    assert np.sum(scores == -1.0) == 1 and ranks(scores, [9]) == [len(gallery)]


def test_scores_stay_in_range():
    gallery, a, b, c = _random_case(6, include_inputs=True)
    for method in ("3cosadd", "pairdirection", "only-c", "ignore-a", "add-opposite"):
        s = analogy_scores(gallery, a, b, c, method)
        assert s.min() >= -1.0 and s.max() <= 1.0
    # clipping of slightly-out-of-range similarities
    sims = np.array([[1.0000001, -1.0000001, 1.0000002]], dtype=np.float32)
    assert method_scores(sims, np.eye(3), "only-c")[0] == 1.0
    assert method_scores(sims, np.eye(3), "multiply")[0] == 0.0


# ---------------------------------------------------------------- top_k and ranks
def test_top_k_order_ties_and_exclusion():
    scores = np.array([0.5, 0.9, 0.5, 0.9, 0.1, 0.7], dtype=np.float32)
    ids, vals = top_k(scores, 3)
    assert ids.dtype == np.int64 and vals.dtype == np.float32
    assert ids.tolist() == [1, 3, 5]
    np.testing.assert_array_equal(vals, np.array([0.9, 0.9, 0.7], dtype=np.float32))
    ids, _ = top_k(scores, 4, exclude=[1, 5])
    assert ids.tolist() == [3, 0, 2, 4]
    ids, vals = top_k(scores, 100, exclude={3})
    assert ids.tolist() == [1, 5, 0, 2, 4] and len(vals) == 5
    assert top_k(scores, 0)[0].tolist() == []
    assert top_k(scores, 2, exclude=range(6))[0].tolist() == []
    with pytest.raises(ValueError):
        top_k(scores, 1, exclude=[6])
    with pytest.raises(ValueError):
        top_k(scores, -1)


@pytest.mark.parametrize("seed", range(20))
def test_top_1_is_the_first_of_the_full_order(seed):
    """top_k(.., 1) takes a one-pass path; the reference is the full stable sort with the excluded ids
    removed (ties to the lower id, NaN last), including when only NaN or nothing is left."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 60))
    scores = rng.integers(-2, 3, size=n).astype(np.float32)
    scores[rng.random(n) < 0.3] = np.nan
    scores[rng.random(n) < 0.05] = -np.inf
    excluded = sorted(set(rng.integers(0, n, size=int(rng.integers(0, n + 1))).tolist()))
    full = [i for i in np.argsort(-scores.astype(np.float64), kind="stable") if i not in excluded]
    ids, values = top_k(scores, 1, exclude=excluded)
    assert ids.tolist() == full[:1]
    assert np.array_equal(values, scores[full[:1]], equal_nan=True)


def test_top_k_nan_last():
    scores = np.array([np.nan, 0.2, -5.0], dtype=np.float32)
    assert top_k(scores, 3)[0].tolist() == [1, 2, 0]


def test_ranks():
    scores = np.array([0.5, 0.9, 0.5, 0.9, 0.1, 0.7], dtype=np.float32)
    assert ranks(scores, [1, 3, 5, 0, 2, 4]) == [1, 2, 3, 4, 5, 6]
    assert ranks(scores, np.array([4, 1])) == [6, 1]
    assert ranks(scores, []) == []
    with pytest.raises(ValueError):
        ranks(scores, [-1])


@pytest.mark.parametrize("seed", range(5))
def test_ranks_consistent_with_top_k(seed):
    """ranks counts; top_k sorts (the brute-force reference): the same order, ties, NaN, infinities and
    signed zeros included."""
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 5, size=400).astype(np.float32)  # many ties
    scores[rng.choice(400, 30, replace=False)] = np.nan
    scores[rng.choice(400, 5, replace=False)] = np.inf
    scores[rng.choice(400, 5, replace=False)] = -np.inf
    scores[rng.choice(400, 10, replace=False)] = -0.0
    order, _ = top_k(scores, 400)
    assert ranks(scores, order) == list(range(1, 401))
    assert ranks(scores, order[::-7]) == [int(np.flatnonzero(order == i)[0]) + 1 for i in order[::-7]]


# ---------------------------------------------------------------- offsets
def test_offset_norm():
    assert offset_norm([1, 0], [0, 1]) == pytest.approx(np.sqrt(2))
    assert offset_norm([2, 0], [0, 5]) == pytest.approx(np.sqrt(2))  # normalised inside
    assert offset_norm([1, 0], [-3, 0]) == pytest.approx(2.0)
    assert offset_norm([1, 1], [4, 4]) == pytest.approx(0.0)


def test_offset_consistency():
    # b - a = (-1, 1); d - c = (-1, 1): same direction
    assert offset_consistency([1, 0], [0, 1], [1, 0], [0, 1]) == pytest.approx(1.0)
    # d - c = (1, -1): opposite
    assert offset_consistency([1, 0], [0, 1], [0, 1], [1, 0]) == pytest.approx(-1.0)
    # b - a = (-1, 1); c = (1, 0), d = (-1, 0): d - c = (-2, 0); cos = 2 / (sqrt2 * 2) = 1/sqrt2
    assert offset_consistency([1, 0], [0, 1], [3, 0], [-1, 0]) == pytest.approx(1 / np.sqrt(2))
    # orthogonal: b - a = (-1, 1); c = (1, 0), d = (0, -1): d - c = (-1, -1)
    assert offset_consistency([1, 0], [0, 1], [1, 0], [0, -1]) == pytest.approx(0.0, abs=1e-7)
    # degenerate differences
    assert offset_consistency([1, 0], [2, 0], [1, 0], [0, 1]) == 0.0
    assert offset_consistency([1, 0], [0, 1], [0, 1], [0, 3]) == 0.0


def test_offset_consistency_agrees_with_pairdirection():
    gallery, a, b, c = _random_case(8)
    scores = analogy_scores(gallery, a, b, c, "pairdirection")
    for i in (0, 13, 49):
        assert offset_consistency(a, b, c, gallery[i]) == pytest.approx(float(scores[i]), abs=1e-5)


# ---------------------------------------------------------------- typical nearest-neighbour distance
def _brute_nn_distances(x):
    x = np.asarray(x, dtype=np.float64)
    out = []
    for i in range(len(x)):
        out.append(min(np.linalg.norm(x[i] - x[j]) for j in range(len(x)) if j != i))
    return np.array(out)


@pytest.mark.parametrize("seed", [0, 1])
def test_typical_nn_distance_matches_brute_force(seed):
    x = l2_normalize(np.random.default_rng(seed).normal(size=(60, 8)))
    assert typical_nn_distance(x) == pytest.approx(float(np.median(_brute_nn_distances(x))), abs=1e-6)


def test_typical_nn_distance_duplicates_count_as_zero():
    x = l2_normalize(np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [-1.0, 0.0]]))
    assert typical_nn_distance(x) == 0.0  # four of five items have an exact duplicate
    assert typical_nn_distance(x[[0, 2]]) == pytest.approx(np.sqrt(2))


def test_typical_nn_distance_sampled():
    x = l2_normalize(np.random.default_rng(3).normal(size=(300, 8)))
    rows = np.sort(np.random.default_rng(5).choice(300, size=40, replace=False))
    expected = float(np.median(_brute_nn_distances(x)[rows]))
    assert typical_nn_distance(x, sample=40, seed=5) == pytest.approx(expected, abs=1e-6)
    assert typical_nn_distance(x, sample=40, seed=5) == typical_nn_distance(x, sample=40, seed=5)
    with pytest.raises(ValueError):
        typical_nn_distance(x[:1])
