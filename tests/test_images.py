"""Tests for pipeline.images: every file of the bad-input corpus, plus the small helpers."""
from __future__ import annotations

import hashlib
import io
import os
import sys
from pathlib import Path

import pytest
from PIL import Image, ImageFile, PngImagePlugin

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bad_inputs import (  # noqa: E402
    BLUE, GREEN, GREY16_EXPECTED, GREY16_VALUES, RED, Case, make_corpus,
)

from pipeline import images  # noqa: E402
from pipeline.images import ImageError, describe, load_image  # noqa: E402

WHITE = (255, 255, 255)

# Refused cases -> words their (lower-cased) message must contain.
INVALID = {
    "text_renamed_jpg": ["not an image"],
    "truncated_jpeg": ["truncated or corrupted"],
    "corrupted_jpeg": ["truncated or corrupted"],
    "truncated_png": ["truncated or corrupted"],
    "zero_bytes": ["empty file"],
    "bomb_png": ["pixels", "limit"],
    "bomb_moderate_png": ["pixels", "limit", "8000x8000", "40,000,000"],
    "svg": ["svg", "not supported"],
    "svg_renamed_png": ["svg", "not supported"],
    "tiff": ["tiff", "not supported"],
    "directory": ["is a directory, not an image file"],
}

# Decoded cases -> expected (width, height) after EXIF orientation.
VALID = {
    "tiny_1x1_png": (1, 1),
    "wide_20000x1_png": (20000, 1),
    "grey16_png": (len(GREY16_VALUES), 1),
    "cmyk_jpeg": (16, 16),
    "palette_transparent_png": (20, 10),
    "rgba_png": (20, 10),
    "la_png": (4, 4),
    "bilevel_png": (9, 7),
    "animated_gif": (12, 12),
    "exif_rotated_jpeg": (20, 40),
    "png_renamed_jpg": (5, 3),
    "bmp": (6, 4),
    "webp": (6, 4),
    "symlink_outside": (7, 5),
    "non_utf8_name": (3, 2),
}
OPTIONAL = {"symlink_outside", "non_utf8_name"}  # left out where the filesystem refuses them


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, Case]:
    cases = make_corpus(tmp_path_factory.mktemp("images") / "corpus")
    return {case.name: case for case in cases}


def _case(corpus: dict[str, Case], name: str) -> Case:
    if name not in corpus:
        assert name in OPTIONAL, f"corpus lacks {name}"
        pytest.skip(f"{name}: not supported by this filesystem")
    return corpus[name]


def _close(a, b, tol=12) -> bool:
    return all(abs(x - y) <= tol for x, y in zip(a, b))


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


# --- the corpus ---------------------------------------------------------------------------

def test_every_corpus_case_is_checked(corpus):
    assert set(corpus) - OPTIONAL <= set(INVALID) | set(VALID)
    assert set(corpus) >= (set(INVALID) | set(VALID)) - OPTIONAL
    for name, case in corpus.items():
        assert case.valid == (name in VALID), name


def test_bombs_are_small_on_disk(corpus):
    assert corpus["bomb_png"].path.stat().st_size < 300_000


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_case_raises_one_line_image_error(corpus, name):
    case = _case(corpus, name)
    with pytest.raises(ImageError) as info:
        load_image(case.path)
    message = str(info.value)
    assert "\n" not in message and "\r" not in message
    assert message.startswith(f"{case.path.name}: "), message
    for word in INVALID[name]:
        assert word in message.lower(), message
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("name", sorted(VALID))
def test_valid_case_loads_as_rgb(corpus, name):
    case = _case(corpus, name)
    img = load_image(case.path)
    assert isinstance(img, Image.Image)
    assert img.mode == "RGB"
    assert img.size == VALID[name]
    img.getpixel((0, 0))  # pixels are there


def test_grey16_is_shifted_not_clipped(corpus):
    img = load_image(corpus["grey16_png"].path)
    got = [img.getpixel((x, 0)) for x in range(img.width)]
    assert got == [(v, v, v) for v in GREY16_EXPECTED]  # 65535 -> 255, 32768 -> 128, 255 -> 0


def test_palette_transparency_becomes_white(corpus):
    img = load_image(corpus["palette_transparent_png"].path)
    assert img.getpixel((2, 5)) == WHITE  # transparent index (black underneath)
    assert img.getpixel((15, 5)) == BLUE


def test_alpha_is_composited_on_white(corpus):
    rgba = load_image(corpus["rgba_png"].path)
    assert rgba.getpixel((2, 5)) == WHITE
    assert rgba.getpixel((15, 5)) == RED
    assert load_image(corpus["la_png"].path).getpixel((1, 1)) == WHITE


def test_animated_gif_gives_first_frame(corpus):
    assert _close(load_image(corpus["animated_gif"].path).getpixel((6, 6)), RED, tol=4)


def test_cmyk_colour_is_about_right(corpus):
    assert _close(load_image(corpus["cmyk_jpeg"].path).getpixel((8, 8)), RED, tol=20)


def test_exif_orientation_is_applied(corpus):
    img = load_image(corpus["exif_rotated_jpeg"].path)
    assert img.size == (20, 40)
    assert _close(img.getpixel((10, 5)), RED, tol=30)  # stored left half ends up on top
    assert _close(img.getpixel((10, 35)), BLUE, tol=30)


def test_bilevel_and_odd_formats(corpus):
    assert load_image(corpus["bilevel_png"].path).getpixel((4, 3)) == WHITE
    assert load_image(corpus["png_renamed_jpg"].path).getpixel((1, 1)) == GREEN
    assert load_image(corpus["bmp"].path).getpixel((1, 1)) == GREEN
    assert load_image(corpus["webp"].path).getpixel((1, 1)) == GREEN


def test_non_utf8_name_is_displayed_safely(corpus):
    case = _case(corpus, "non_utf8_name")
    shown = describe(case.path)
    shown.encode("utf-8")  # no lone surrogates left
    assert shown == "caf\ufffd.png"
    with pytest.raises(ImageError) as info:
        load_image(case.path, max_bytes=10)
    str(info.value).encode("utf-8")


def test_multi_picture_jpeg_gives_first_picture():
    buf = io.BytesIO()
    Image.new("RGB", (8, 6), RED).save(buf, "MPO", save_all=True,
                                       append_images=[Image.new("RGB", (8, 6), GREEN)])
    assert _close(load_image(buf.getvalue()).getpixel((3, 3)), RED, tol=4)


def test_fifo_is_refused(tmp_path):
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs here")
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    with pytest.raises(ImageError, match="not a regular file"):
        load_image(fifo)


def test_loaded_image_does_not_need_the_file(tmp_path):
    path = tmp_path / "gone.png"
    path.write_bytes(_png(Image.new("RGB", (4, 4), GREEN)))
    img = load_image(path)
    path.unlink()
    assert img.getpixel((3, 3)) == GREEN


# --- paths, sizes and limits ----------------------------------------------------------------

def test_missing_path(tmp_path):
    with pytest.raises(ImageError, match=r"^nowhere\.png: no such file\. "):
        load_image(tmp_path / "nowhere.png")


def test_broken_symlink_is_missing(tmp_path):
    link = tmp_path / "dangling.png"
    try:
        link.symlink_to(tmp_path / "absent.png")
    except (OSError, NotImplementedError):
        pytest.skip("no symlinks here")
    with pytest.raises(ImageError, match="no such file"):
        load_image(str(link))


def test_max_bytes_for_paths_and_bytes(tmp_path):
    data = _png(Image.new("RGB", (64, 64), RED))
    path = tmp_path / "big.png"
    path.write_bytes(data)
    with pytest.raises(ImageError) as info:
        load_image(path, max_bytes=100)
    message = str(info.value)
    assert message.startswith("big.png: ") and f"{len(data)} bytes" in message
    assert "100 bytes limit" in message
    with pytest.raises(ImageError, match=r"^uploaded image: file is .* over the 100 bytes limit"):
        load_image(data, max_bytes=100)
    assert load_image(path, max_bytes=len(data)).size == (64, 64)


def test_default_max_bytes_message_uses_mib(tmp_path):
    path = tmp_path / "huge.jpg"
    with open(path, "wb") as fh:
        fh.truncate(images.DEFAULT_MAX_BYTES + 1)  # sparse; never read
    with pytest.raises(ImageError, match=r"25\.0 MiB, over the 25\.0 MiB limit"):
        load_image(path)


def test_max_pixels_is_checked_per_call():
    data = _png(Image.new("RGB", (100, 100), GREEN))
    with pytest.raises(ImageError, match=r"100x100 = 10,000 pixels, over the limit of 9,999"):
        load_image(data, max_pixels=9_999)
    assert load_image(data, max_pixels=10_000).size == (100, 100)


def test_pil_bomb_warning_becomes_image_error(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000)  # 1,600 px warns, below 2x errors
    with pytest.raises(ImageError, match=r"image is 1,600 pixels, over the limit of 1,000 pixels"):
        load_image(_png(Image.new("RGB", (40, 40))), max_pixels=10**9)


def test_global_pil_settings_untouched(corpus):
    before = Image.MAX_IMAGE_PIXELS
    for case in corpus.values():
        try:
            load_image(case.path)
        except ImageError:
            pass
    assert Image.MAX_IMAGE_PIXELS == before
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


# --- bytes, names, errors -----------------------------------------------------------------

def test_bytes_input():
    data = _png(Image.new("RGBA", (3, 5), (*BLUE, 255)))
    for source in (data, bytearray(data), memoryview(data)):
        img = load_image(source)
        assert (img.mode, img.size, img.getpixel((0, 0))) == ("RGB", (3, 5), BLUE)
    with pytest.raises(ImageError, match=r"^uploaded image: not an image"):
        load_image(b"hello")
    with pytest.raises(ImageError, match=r"^uploaded image: empty file"):
        load_image(b"")


def test_name_override(corpus):
    with pytest.raises(ImageError, match=r"^photo\.jpg: not an image"):
        load_image(b"hello", name="photo.jpg")
    with pytest.raises(ImageError, match=r"^My upload: truncated or corrupted"):
        load_image(corpus["truncated_jpeg"].path, name="My upload")
    with pytest.raises(ImageError) as info:
        load_image(b"hello", name="two\nlines.png")
    assert "\n" not in str(info.value) and str(info.value).startswith("two?lines.png: ")


def test_unexpected_pil_exception_becomes_image_error(monkeypatch):
    def boom(self):
        raise RuntimeError("something odd")

    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load", boom)
    with pytest.raises(ImageError, match=r"^uploaded image: .*something odd"):
        load_image(_png(Image.new("RGB", (2, 2))))


def test_wrong_source_type_is_a_type_error():
    with pytest.raises(TypeError):
        load_image(42)


def test_image_error_is_always_one_line():
    assert str(ImageError("a\nb\r\nc")) == "a b c"


@pytest.mark.parametrize(
    ("mode", "values", "expected"),
    [
        ("I", [-5, 255, 32768, 65535, 70000], [0, 0, 128, 255, 255]),
        ("F", [0.0, 0.5, 1.0], [0, 128, 255]),
        ("F", [-1.0, 1.0, 3.0], [0, 128, 255]),
    ],
)
def test_wide_greyscale_modes_scale_to_8_bit(mode, values, expected):
    img = Image.new(mode, (len(values), 1))
    for x, value in enumerate(values):
        img.putpixel((x, 0), value)
    rgb = images._to_rgb(img)
    assert rgb.mode == "RGB"
    assert [rgb.getpixel((x, 0))[0] for x in range(len(values))] == expected


# --- helpers ------------------------------------------------------------------------------

def test_hashes_match_hashlib(tmp_path):
    data = os.urandom(3 * 1024 * 1024 + 17)  # several read chunks
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    expected = hashlib.sha256(data).hexdigest()
    assert images.bytes_sha256(data) == expected
    assert images.file_sha256(path) == expected
    assert images.file_sha256(str(path)) == expected
    assert images.bytes_sha256(b"") == hashlib.sha256(b"").hexdigest()


def test_is_image_path():
    for good in ("a.jpg", "A.JPEG", "x/y.Png", Path("p.webp"), "b.BMP", "c.gif"):
        assert images.is_image_path(good), good
    for bad in ("a.tif", "a.svg", "notes.txt", "png", ".png", "a.png.txt"):
        assert not images.is_image_path(bad), bad


def test_describe():
    assert describe(b"\x89PNG") == "uploaded image"
    assert describe("/some/where/cat.jpg") == "cat.jpg"
    assert describe(Path("dog.png")) == "dog.png"
    long_name = "x" * 200 + ".png"
    assert len(describe(long_name)) <= 80 and describe(long_name).endswith(".png")


def test_constants():
    assert images.ALLOWED_FORMATS == ("JPEG", "PNG", "WEBP", "BMP", "GIF")
    assert set(images.IMAGE_SUFFIXES) == {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif"}
    assert images.DEFAULT_MAX_PIXELS == 40_000_000
    assert images.DEFAULT_MAX_BYTES == 25 * 1024 * 1024
