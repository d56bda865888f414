"""The offset named in classes and words (pipeline/offsets.py, pipeline/models/head.py), with the real
packaged classifier head, the real all-MiniLM-L6-v2 and real photos."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from pipeline import offsets
from pipeline import vectors as vec
from pipeline.images import file_sha256
from pipeline.models.convnet import reference_photos
from pipeline.models.head import efficientnet_head

from tests.conftest import REPO

COFFEE = ("coffee/original.jpg", "coffee/greyscale.jpg", "cat/original.jpg")


def _terms(terms) -> list[str]:
    return [t.term for t in terms]


# --- the classifier head ---------------------------------------------------------------------------


def test_head_maps_pooled_activations_to_the_classifiers_logits(default_explorer):
    models = default_explorer.models
    head = models.classifier_head()
    out = models.classify(reference_photos())
    assert head.weight.shape == (1000, 1280) and head.bias.shape == (1000,)
    np.testing.assert_allclose(head.logits(out.pooled), out.logits, atol=1e-4)
    # the bias cancels: W (p_B - p_A) = logits(B) - logits(A)
    np.testing.assert_allclose(head.logit_change(out.pooled[1] - out.pooled[0]), out.logits[1] - out.logits[0], atol=1e-4)


def test_head_cache_is_checksummed_and_read_without_torch(default_explorer, settings):
    head = default_explorer.models.classifier_head()
    cached = sorted((settings.cache_dir / "onnx").glob("*-head.npy"))
    assert len(cached) == 1 and cached[0].with_suffix(".json").exists()
    script = ("import sys; sys.modules['torch'] = None\n"  # importing torch now fails
              "import numpy as np\n"
              "from pipeline.models.head import efficientnet_head\n"
              f"h = efficientnet_head('efficientnet-lite0', {str(settings.cache_dir)!r})\n"
              "print(h.weight.shape, float(np.abs(h.weight).sum()))")
    run = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split()[:2] == ["(1000,", "1280)"]
    assert float(run.stdout.split()[2]) == pytest.approx(float(np.abs(head.weight).sum()), rel=1e-6)


def test_damaged_head_cache_is_rewritten(tmp_path):
    first = efficientnet_head("efficientnet-lite0", tmp_path)
    path = next((tmp_path / "onnx").glob("*-head.npy"))
    path.write_bytes(path.read_bytes()[:-100] + b"\0" * 100)
    from pipeline.models import head as head_module

    head_module._cache.clear()
    again = efficientnet_head("efficientnet-lite0", tmp_path)
    np.testing.assert_array_equal(again.weight, first.weight)
    assert file_sha256(path) == head_module.read_json(path.with_suffix(".json"))["sha256"]


# --- ranking terms ---------------------------------------------------------------------------------


def test_rank_terms_matches_a_brute_force_sort():
    rng = np.random.default_rng(3)
    scores = rng.normal(size=50)
    names = [f"t{i}" for i in range(50)]
    toward, away = offsets.rank_terms(scores, names, k=4)
    assert _terms(toward) == [names[i] for i in sorted(range(50), key=lambda i: -scores[i])[:4]]
    assert _terms(away) == [names[i] for i in sorted(range(50), key=lambda i: scores[i])[:4]]
    toward, away = offsets.rank_terms(np.array([0.5, 0.0, -0.2]), ["x", "y", "z"], k=3)
    assert _terms(toward) == ["x"] and _terms(away) == ["z"]  # zero is neither toward nor away


def test_class_offset_of_raw_logits_is_the_logit_difference():
    rng = np.random.default_rng(0)
    a, b, c, d = rng.normal(size=(4, 1000))
    named = offsets.class_offset_terms(a, b, c, d, k=3)
    best = np.argsort(-(b - a))[:3]
    assert [t.score for t in named.toward] == pytest.approx(list((b - a)[best]))
    assert named.alignment == pytest.approx(float((b - a) @ (d - c) / np.linalg.norm(b - a) / np.linalg.norm(d - c)))
    assert named.along == pytest.approx(float((b - a) @ (d - c) / ((b - a) @ (b - a))))


def test_zero_offset_and_missing_answer_are_said_plainly():
    v = np.random.default_rng(1).normal(size=1000)
    named = offsets.class_offset_terms(v, v, v + 1, None)
    assert named.toward == [] and named.away == [] and named.alignment is None
    assert "zero" in named.sentence
    assert "no answer" in offsets.class_offset_terms(v, 2 * v, v, None).sentence


# --- image space on real photos --------------------------------------------------------------------


@pytest.mark.slow
def test_sheep_to_camel_is_named_by_imagenet_classes(imagen_explorer):
    refs = ["n02411705_146_sheep.jpg", "n02437136_176_camel.jpg", "n02076196_10411_seal.jpg"]
    report = imagen_explorer.analogy(refs, explain=False)
    gallery = imagen_explorer.gallery
    head = imagen_explorer.models.classifier_head()
    a, b, c = (inp.vectors["image:pooled"] for inp in report.inputs)
    d = gallery.vectors("image:pooled")[report.image_space.top.id]
    named = offsets.image_offset_terms("image:pooled", a, b, c, d, weight=head.weight)
    assert "Arabian camel" in _terms(named.toward)[:2]
    assert named.basis == "image:pooled" and "normalised" in named.basis_text
    assert named.sentence.startswith("B - A asks for +Arabian camel")
    # the alignment is measured where the terms live: on the logit changes W (b - a), W (d - c)
    u, w = head.weight.astype(np.float64) @ (b - a), head.weight.astype(np.float64) @ (d - c)
    assert named.alignment == pytest.approx(float(u @ w / np.linalg.norm(u) / np.linalg.norm(w)), abs=1e-6)
    # raw pooled activations name logits(B) - logits(A) exactly
    ids = [inp.item_id for inp in report.inputs]
    raw = offsets.pooled_offset_terms(head.weight, *(gallery.pooled[i] for i in ids), normalised=False)
    logit_change = np.asarray(gallery.logits[ids[1]], np.float64) - gallery.logits[ids[0]]
    assert [t.score for t in raw.toward] == pytest.approx(sorted(logit_change, reverse=True)[:len(raw.toward)], abs=1e-3)
    assert raw.as_dict()["toward"][0]["term"] == "Arabian camel"


# --- caption space with the real MiniLM ------------------------------------------------------------


@pytest.fixture(scope="module")
def word_vocabulary(default_explorer, settings):
    return offsets.word_vocabulary(default_explorer.models.embed_texts, settings.text_model, settings.cache_dir)


@pytest.mark.slow
def test_vocabulary_holds_classes_and_attributes_and_is_cached(word_vocabulary, default_explorer, settings):
    assert word_vocabulary.vectors.shape == (len(word_vocabulary.terms), 384)
    np.testing.assert_allclose(np.linalg.norm(word_vocabulary.vectors, axis=1), 1.0, atol=1e-5)
    assert {"tench", "black and white", "upside down", "tinted red"} <= set(word_vocabulary.terms)
    assert word_vocabulary.kinds[word_vocabulary.terms.index("mirrored")] == "attribute"
    files = list((settings.cache_dir / "vocabulary").glob("offset-terms-*.npy"))
    assert len(files) == 1
    # a second load reads the file (the embedder is not called)
    from pipeline import embedding_cache

    embedding_cache._MEMORY.clear()

    def refuse(texts):
        raise AssertionError("the vocabulary should come from the disk cache")

    again = offsets.word_vocabulary(refuse, settings.text_model, settings.cache_dir)
    np.testing.assert_allclose(again.vectors, word_vocabulary.vectors, atol=1e-6)


@pytest.mark.slow
def test_red_apple_to_green_apple_is_named_green_and_red(word_vocabulary, default_explorer):
    red, green = default_explorer.models.embed_texts(["a photo of a red apple", "a photo of a green apple"])
    named = offsets.caption_offset_terms(word_vocabulary, red, green, red, None)
    assert _terms(named.toward)[0] == "green"
    assert _terms(named.away)[0] == "red"
    unit = (green - red) / np.linalg.norm(green - red)
    green = word_vocabulary.vectors[word_vocabulary.terms.index("green")]
    assert named.toward[0].score == pytest.approx(float(green @ unit), abs=1e-5)


@pytest.mark.slow
def test_greyscale_coffee_reads_as_black_and_white_in_caption_space(word_vocabulary, default_explorer):
    report = default_explorer.analogy(list(COFFEE), explain=False)
    a, b, c = (inp.vectors["caption"] for inp in report.inputs)
    top = report.caption_space.top
    assert top.path == "cat/greyscale.jpg"
    d = default_explorer.gallery.vectors("caption")[top.id]
    named = offsets.caption_offset_terms(word_vocabulary, a, b, c, d)
    toward = _terms(named.toward)
    assert {"black and white", "black", "white", "grey"} & set(toward[:3])
    assert "black and white" in toward
    assert "black and white" in _terms(named.answer_toward)
    # alignment in caption space is the report's offset consistency
    assert named.alignment == pytest.approx(report.caption_space.measurements["offset_consistency"], abs=1e-5)
    out = named.as_dict()
    assert set(out) >= {"toward", "away", "answer_toward", "answer_away", "alignment"}
    assert set(out["toward"][0]) >= {"term", "score"}
    assert out["sentence"].startswith("B - A asks for +") and "the answer moved +" in out["sentence"]
    assert vec.offset_consistency(a, b, c, d) == pytest.approx(out["alignment"], abs=1e-5)
