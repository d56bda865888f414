"""The near-duplicate threshold calibrated per space (pipeline/thresholds.py), on real FAISS indexes."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline import thresholds
from pipeline import vectors as vec
from pipeline.index import VectorIndex
from scripts.bench_lib import clustered_unit_vectors


def test_rule_is_half_the_typical_neighbour_distance_clipped():
    t = 0.4
    assert thresholds.threshold_for_distance(t) == pytest.approx(1 - (t / 2) ** 2 / 2)
    # a pair at exactly half the typical distance sits on the threshold
    assert 1 - (0.5 * t) ** 2 / 2 == pytest.approx(thresholds.threshold_for_distance(t))
    assert thresholds.threshold_for_distance(1.4) == thresholds.LOW
    assert thresholds.threshold_for_distance(0.0) == thresholds.HIGH


def test_nearest_distinct_cosines_match_brute_force_and_skip_copies():
    vectors = vec.l2_normalize(np.random.default_rng(0).normal(size=(60, 24)))
    vectors = np.concatenate([vectors, vectors[:5], vectors[:5]])  # copies of the first five, twice
    found = thresholds.nearest_distinct_cosines(VectorIndex.build(vectors, kind="flat"))
    distinct = vectors[:60].astype(np.float64)
    sims = distinct @ distinct.T
    np.fill_diagonal(sims, -np.inf)
    np.testing.assert_allclose(np.sort(found), np.sort(sims.max(axis=1)), atol=1e-6)


def test_calibration_is_deterministic_and_agrees_with_the_gallerys_yardstick():
    vectors = clustered_unit_vectors(3000, 32, seed=1)
    index = VectorIndex.build(vectors, kind="flat")
    first, second = thresholds.calibrate(index, "x"), thresholds.calibrate(index, "x")
    assert first.as_dict() == second.as_dict()
    assert first.items_measured == thresholds.SAMPLE  # a seeded sample of 2,000 of the 3,000
    assert thresholds.LOW <= first.threshold <= thresholds.HIGH
    assert first.threshold == pytest.approx(thresholds.threshold_for_distance(first.typical_nn_distance))
    assert first.typical_nn_distance == pytest.approx(index.typical_nn_distance(), rel=0.05)


@pytest.mark.slow
def test_default_gallery_thresholds_let_one_word_right_answers_through(default_explorer):
    gallery = default_explorer.gallery
    values = {}
    for space in ("image:pooled", "image:logits", "image:probs", "caption"):
        calibration = thresholds.calibrate(gallery.index(space), space)
        assert calibration.typical_nn_distance == pytest.approx(gallery.typical_nn_distance(space), abs=1e-4)
        assert calibration.items_measured == len(gallery)
        values[space] = calibration.threshold
    caption = gallery.vectors("caption")
    # the right answers of the default gallery's questions differ from C by a word or two
    for subject in ("cat", "coffee", "flower", "astronaut"):
        c = caption[gallery.find(f"{subject}/original.jpg")]
        for variant in ("greyscale", "mirror", "red"):
            cos = float(caption[gallery.find(f"{subject}/{variant}.jpg")] @ c)
            assert cos < values["caption"], (subject, variant, cos)
    # the fixed 0.95 flagged the right answer cat/greyscale as a near-duplicate of cat
    assert float(caption[gallery.find("cat/greyscale.jpg")] @ caption[gallery.find("cat/original.jpg")]) > 0.95
    calibration = thresholds.calibrate(gallery.index("caption"), "caption").as_dict()
    sentence = thresholds.threshold_sentence(calibration, "caption space")
    assert sentence.startswith("Near-duplicate threshold in caption space: ")


@pytest.mark.slow
def test_imagen_thresholds(imagen_explorer):
    gallery = imagen_explorer.gallery
    pooled = thresholds.calibrate(gallery.index("image:pooled"), "image:pooled")
    # 1,000 different photos: none has a near-duplicate in pooled space
    assert pooled.share_with_near_duplicate == 0.0
    assert pooled.nn_cosine_percentiles["100"] < pooled.threshold < 0.95
    caption = thresholds.calibrate(gallery.index("caption"), "caption")
    assert caption.typical_nn_distance == pytest.approx(gallery.typical_nn_distance("caption"), abs=1e-4)


def test_calibrated_once_per_gallery_kept_in_its_store_and_checked(tmp_path, monkeypatch):
    """gallery_calibration: computed once per gallery object; a new process (its memory cleared, a new
    Gallery object on the same store) reads it from the store's space measurements
    (pipeline.space_stats); a damaged or stale entry is recomputed."""
    import json

    from pipeline import space_stats
    from pipeline.gallery import Gallery
    from tests.synthetic_explorer import A, B, C, D, X, Y, distractors, make_explorer

    gallery = make_explorer(tmp_path, [A, B, C, D, X, Y] + distractors(12)).gallery
    calls = []
    real = thresholds.calibrate
    monkeypatch.setattr(thresholds, "calibrate", lambda index, space, *a, **k: calls.append(space) or real(index, space))

    def reopened() -> Gallery:  # the same gallery, as a new process opens it
        space_stats._MEMORY.clear()
        again = Gallery(gallery.root, gallery.items, gallery.pooled, gallery.logits, gallery.store, gallery.model_key,
                        gallery.settings)
        again.captions = gallery.captions
        return again

    first = thresholds.gallery_calibration(gallery, "image:pooled")
    assert thresholds.gallery_calibration(gallery, "image:pooled") is first and calls == ["image:pooled"]
    assert first.threshold == round(real(gallery.index("image:pooled"), "image:pooled").threshold, 6)
    path = gallery.store / space_stats.FILE_NAME
    assert thresholds.gallery_calibration(reopened(), "image:pooled").as_dict() == first.as_dict()
    assert calls == ["image:pooled"]  # read from the store
    thresholds.gallery_calibration(reopened(), "caption")
    stored = json.loads(path.read_text())
    assert calls == ["image:pooled", "caption"]
    assert {"image:pooled/near_duplicate_calibration", "caption/near_duplicate_calibration"} <= set(stored["stats"])

    stored["stats"]["image:pooled/near_duplicate_calibration"]["value"]["threshold"] = 0.5
    path.write_text(json.dumps(stored))  # still JSON: the checksum catches it
    assert thresholds.gallery_calibration(reopened(), "image:pooled").threshold == first.threshold
    assert calls[-1] == "image:pooled" and len(calls) == 3
    path.write_bytes(path.read_bytes()[:40])  # torn
    assert thresholds.gallery_calibration(reopened(), "caption").threshold > 0 and len(calls) == 4
    stale = reopened()
    stale.digest = "another content"  # the gallery changed: the stored calibration no longer applies
    thresholds.gallery_calibration(stale, "image:pooled")
    assert len(calls) == 5

