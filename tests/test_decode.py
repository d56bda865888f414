"""Reduced JPEG decoding (``load_image(..., min_short_side=N)``) and the gallery built on it: sizes in
every EXIF orientation, the safety rules (pixel limit on the full size before decoding, truncated
files refused, the whole bad-input corpus), caches kept apart from full-decode ones, and faithful
vectors on real photos enlarged to 12 MP (``scripts/faithful_decode.py`` measures the same on more)."""
from __future__ import annotations

import io
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bad_inputs import make_corpus  # noqa: E402

from pipeline.distributed import Featuriser  # noqa: E402
from pipeline.gallery import FeatureTable, build_gallery  # noqa: E402
from pipeline.images import ImageError, load_image  # noqa: E402
from pipeline.models import Models  # noqa: E402
from pipeline.models.convnet import REDUCED_DECODE  # noqa: E402
from pipeline.storage import read_json  # noqa: E402
from scripts.faithful_decode import ORIENTATIONS, agreement, classify_files, phone_copy  # noqa: E402

QUADRANTS = {(0, 0): (255, 0, 0), (1, 0): (0, 255, 0), (0, 1): (0, 0, 255), (1, 1): (255, 255, 255)}
# EXIF orientation -> the transpose that stores an image so that displaying the file shows it.
STORED = {1: None, 2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
          4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_90,
          7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_270}


def _jpeg(image: Image.Image, orientation: int = 1, quality: int = 90) -> bytes:
    exif = Image.Exif()
    if orientation != 1:
        image = image.transpose(STORED[orientation])
        exif[0x0112] = orientation
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality, exif=exif)
    return buffer.getvalue()


def _quadrants(width: int, height: int) -> Image.Image:
    image = Image.new("RGB", (width, height))
    for (col, row), colour in QUADRANTS.items():
        image.paste(colour, (col * width // 2, row * height // 2, (col + 1) * width // 2, (row + 1) * height // 2))
    return image


@pytest.mark.parametrize("orientation", range(1, 9))
def test_reduced_decode_is_the_smallest_that_covers_the_short_side_in_every_orientation(orientation):
    data = _jpeg(_quadrants(2016, 1512), orientation)  # shown 2016x1512 whatever is stored
    image = load_image(data, min_short_side=256)
    assert image.mode == "RGB" and image.size == (504, 378)  # 1/4: 1/8 would leave a 189-pixel short side
    for (col, row), colour in QUADRANTS.items():
        pixel = image.getpixel((col * 252 + 126, row * 189 + 94))
        assert all(abs(a - b) <= 8 for a, b in zip(pixel, colour)), (orientation, col, row, pixel)
    assert load_image(data, min_short_side=100).size == (252, 189)  # 1/8
    assert load_image(data).size == (2016, 1512)


def test_images_too_small_to_reduce_and_other_formats_decode_in_full(imagen_dir):
    photo = sorted(imagen_dir.glob("*.jpg"))[0]
    assert min(Image.open(photo).size) < 512
    assert load_image(photo, min_short_side=256).tobytes() == load_image(photo).tobytes()
    buffer = io.BytesIO()
    _quadrants(1200, 900).save(buffer, "PNG")
    assert load_image(buffer.getvalue(), min_short_side=256).size == (1200, 900)


def test_pixel_limit_is_checked_on_the_full_size_before_decoding():
    data = bytearray(_jpeg(_quadrants(64, 48)))
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", 8000, 10000)  # header claims 10000x8000 = 80 Mpx
    # Reduced to 1/8 it would be 1250x1000, far under the limit; and its scan data is far too short.
    with pytest.raises(ImageError, match=r"10000x8000 = 80,000,000 pixels, over the limit of 40,000,000"):
        load_image(bytes(data), min_short_side=256)
    phone = _jpeg(_quadrants(4032, 3024))
    with pytest.raises(ImageError, match="4032x3024"):
        load_image(phone, min_short_side=256, max_pixels=10_000_000)


def test_truncated_large_jpeg_is_still_refused():
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (1512, 2016, 3), dtype=np.uint8))
    data = _jpeg(noise)
    with pytest.raises(ImageError, match="truncated or corrupted"):
        load_image(data[: len(data) * 7 // 10], min_short_side=256)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("images") / "corpus")


def test_the_bad_input_corpus_gets_the_same_answers_from_the_reduced_decode(corpus):
    """min_short_side=8 reduces the corpus's 16- to 64-pixel JPEGs (truncated and corrupted ones too)."""
    for case in corpus:
        try:
            full = load_image(case.path)
        except ImageError as exc:
            with pytest.raises(ImageError) as info:
                load_image(case.path, min_short_side=8)
            assert str(info.value) == str(exc), case.name
            continue
        reduced = load_image(case.path, min_short_side=8)
        assert reduced.mode == "RGB", case.name
        assert min(reduced.size) >= min(8, *full.size), case.name
        assert (reduced.width >= reduced.height) == (full.width >= full.height), case.name
    rotated = load_image(next(c.path for c in corpus if c.name == "exif_rotated_jpeg"), min_short_side=8)
    assert rotated.size == (10, 20)  # stored 40x20, decoded at 1/2, shown upright
    top, bottom = rotated.getpixel((5, 2)), rotated.getpixel((5, 17))
    assert top[0] > 200 > top[2] and bottom[2] > 200 > bottom[0]  # red on top, blue below


# --- the gallery on reduced decodes --------------------------------------------------------------


@pytest.fixture(scope="module")
def phone_folder(tmp_path_factory, imagen_dir):
    """Three imagen photos enlarged to 12 MP (orientations 1, 6, 3) and one PNG."""
    root = tmp_path_factory.mktemp("phone") / "g"
    root.mkdir()
    sources = sorted(imagen_dir.glob("*.jpg"))[100::300][:3]
    for source, orientation in zip(sources, ORIENTATIONS):
        phone_copy(source, root / source.name, orientation)
    load_image(sources[0]).save(root / "copy.png")
    return root


def test_gallery_vectors_come_from_the_reduced_decode(tmp_path, settings, phone_folder):
    models = Models(settings)
    gallery, stats = build_gallery(phone_folder, settings.replace(cache_dir=tmp_path / "c"), models, with_captions=False)
    assert stats.computed == 4 and not stats.skipped
    assert models.classifier.decode_short_side == 256
    assert read_json(gallery.store / "manifest.json")["model"] == models.classifier.model_key
    assert models.classifier.model_key.endswith(f"+{REDUCED_DECODE}")
    expected = classify_files(models, [gallery.path(i) for i in range(len(gallery))], 256)
    np.testing.assert_allclose(np.asarray(gallery.pooled), expected.pooled, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(gallery.logits), expected.logits, rtol=1e-4, atol=1e-4)


def test_a_cache_of_full_decodes_is_recomputed_never_mixed(tmp_path, settings, phone_folder):
    local = settings.replace(cache_dir=tmp_path / "c")
    old = Models(settings)  # the previous decode path: full decodes, weights-only model key
    weights_key = old.classifier.model_key.removesuffix(f"+{REDUCED_DECODE}")
    old.classifier.decode_short_side, old.classifier.model_key = None, weights_key
    before, _ = build_gallery(phone_folder, local, old, with_captions=False)
    old_pooled = np.array(before.pooled)
    hashes = [item.sha256 for item in before.items]
    # and an interrupted full-decode rebuild left a shard with the same images
    FeatureTable(before.store, weights_key).add_shard(hashes, old_pooled, np.array(before.logits), {})

    models = Models(settings)
    after, stats = build_gallery(phone_folder, local, models, with_captions=False)
    assert stats.computed == 4 and stats.reused == 0
    assert any(f"cache was built with {weights_key}" in m for m in after.index_messages)
    expected = classify_files(models, [after.path(i) for i in range(len(after))], 256)
    np.testing.assert_allclose(np.asarray(after.pooled), expected.pooled, rtol=1e-5, atol=1e-5)
    jpegs = [item.id for item in after.items if item.path.endswith(".jpg")]
    png = after.find("copy.png")
    assert len(jpegs) == 3 and not np.allclose(np.asarray(after.pooled)[jpegs], old_pooled[jpegs], atol=1e-3)
    np.testing.assert_allclose(np.asarray(after.pooled)[png], old_pooled[png], atol=1e-5)  # PNGs decode in full
    again, stats = build_gallery(phone_folder, local, models, with_captions=False)
    assert stats.computed == 0 and stats.reused == 4


def test_ray_featuriser_decodes_like_the_local_build(settings, phone_folder):
    paths = sorted(str(p) for p in phone_folder.glob("*.jpg"))
    featuriser = Featuriser(settings.backbone, "cpu", str(settings.cache_dir), settings.max_pixels,
                            settings.max_file_bytes, threads=1)
    out = featuriser({"path": np.array(paths), "sha256": np.array(["h1", "h2", "h3"])})
    local = classify_files(Models(settings), [Path(p) for p in paths], 256)
    np.testing.assert_allclose(out["pooled"], local.pooled, rtol=1e-5, atol=1e-5)
    assert set(out["model"]) == {Models(settings).classifier.model_key}


# --- faithful vectors (real photos, real model) --------------------------------------------------


@pytest.mark.slow
def test_vectors_of_12_mp_copies_are_faithful_to_the_original_photos(tmp_path, settings, imagen_dir):
    sources = sorted(imagen_dir.glob("*.jpg"))[7::125]  # 8 photos, 2 in each orientation
    copies = [phone_copy(s, tmp_path / s.name, ORIENTATIONS[n % 4]) for n, s in enumerate(sources)]
    models = Models(settings)
    original = classify_files(models, sources, None)
    reduced = classify_files(models, copies, models.classifier.decode_short_side)
    result = agreement(original, reduced)
    assert result["cos_mean"] >= 0.985 and result["cos_min"] >= 0.97, result
    top = np.argmax(original.logits, axis=1)
    assert all(t in np.argsort(-row)[:5] for t, row in zip(top, reduced.logits))  # the label stays in the top 5
    assert result["top1"] >= 0.75, result


@pytest.mark.slow
def test_imagen_photos_that_the_reduced_decode_touches_keep_their_labels(settings, imagen_dir):
    large = [p for p in sorted(imagen_dir.glob("*.jpg")) if min(Image.open(p).size) >= 512]
    assert len(large) >= 10
    models = Models(settings)
    result = agreement(classify_files(models, large, None), classify_files(models, large, 256))
    assert result["top1"] == 1.0 and result["cos_min"] >= 0.98, result
