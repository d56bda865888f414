"""A corpus of awkward and hostile image files, generated with PIL and plain bytes only.

Not a test module: ``tests/test_images.py`` (and gallery tests) call :func:`make_corpus`.
``valid`` says whether :func:`pipeline.images.load_image` must decode the file (odd but fine)
or must refuse it with an ``ImageError``. Cases the filesystem refuses (symlinks, non-UTF-8
names) are left out rather than failing.
"""
from __future__ import annotations

import io
import os
import random
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

# Colours used by the cases, so tests can check decoded pixels.
RED = (255, 0, 0)
GREEN = (0, 255, 0)
BLUE = (0, 0, 255)
GREY16_VALUES = (0, 255, 32768, 33023, 65535)  # one per pixel of the 16-bit case, left to right
GREY16_EXPECTED = (0, 0, 128, 128, 255)  # value >> 8


@dataclass
class Case:
    """One corpus file: ``name`` is a stable label (not the file name), ``note`` says why."""

    name: str
    path: Path
    valid: bool
    note: str


def _noise(size: tuple[int, int], seed: int = 0) -> Image.Image:
    """Deterministic RGB noise: compresses badly, so entropy-coded data is long."""
    rng = random.Random(seed)
    return Image.frombytes("RGB", size, rng.randbytes(size[0] * size[1] * 3))


def _encoded(img: Image.Image, fmt: str, **params) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **params)
    return buf.getvalue()


def _decodes(data: bytes) -> bool:
    """True when plain PIL fully decodes ``data``."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
        return True
    except Exception:
        return False


def _corrupted_jpeg() -> bytes:
    """A JPEG with a stray SOI marker (FF D8) written over the middle of its scan data.

    Flipping bits in entropy-coded data usually just gives garbage pixels (libjpeg recovers),
    whereas a marker inside the scan makes libjpeg fail ("broken data stream"). Should this
    libjpeg ever recover, fall back to cutting the scan short.
    """
    data = _encoded(_noise((64, 64), seed=1), "JPEG", quality=90)
    sos = data.index(b"\xff\xda")
    scan_start = sos + 2 + int.from_bytes(data[sos + 2:sos + 4], "big")
    scan_end = data.rindex(b"\xff\xd9")
    mid = (scan_start + scan_end) // 2
    corrupted = data[:mid] + b"\xff\xd8" + data[mid + 2:]
    return corrupted if not _decodes(corrupted) else data[:mid]


def _blank_bilevel_png(width: int, height: int) -> bytes:
    """A black 1-bit greyscale PNG written chunk by chunk with zlib, never holding the pixels.

    (``Image.new("1", ...)`` would take a byte per pixel: 400 MB for 20000x20000.)
    """

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + body))
        return struct.pack(">I", len(body)) + kind + body + crc

    row = bytes(1 + (width + 7) // 8)  # filter byte 0, then all-zero (black) pixels
    packer = zlib.compressobj(9)
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit, greyscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def make_corpus(directory: Path) -> list[Case]:
    """Write the corpus into ``directory`` (created if needed) and describe each file.

    Also writes one valid PNG in a sibling folder ``<directory>_outside`` as the target of the
    outside-pointing symlink. Takes about a second; the largest file (the 20000x20000 bomb)
    is a few tens of KB.
    """
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    cases: list[Case] = []

    def add(name: str, filename: str, data: bytes, valid: bool, note: str) -> None:
        cases.append(Case(name, _write(d / filename, data), valid, note))

    # --- refused -------------------------------------------------------------------------
    add("text_renamed_jpg", "notes.jpg", b"Shopping list:\n- eggs\n- milk\n", False,
        "plain text with a .jpg suffix")
    jpeg = _encoded(_noise((64, 64)), "JPEG", quality=90)
    add("truncated_jpeg", "truncated.jpg", jpeg[: len(jpeg) // 2], False,
        "JPEG cut off halfway through its scan data")
    add("corrupted_jpeg", "corrupted.jpg", _corrupted_jpeg(), False,
        "JPEG with a stray marker in the middle of its entropy-coded data")
    png = _encoded(_noise((64, 64)), "PNG")
    add("truncated_png", "truncated.png", png[: len(png) * 6 // 10], False,
        "PNG cut off inside its IDAT data")
    add("zero_bytes", "empty.png", b"", False, "zero-byte file")
    add("bomb_png", "bomb.png", _blank_bilevel_png(20000, 20000),
        False, "20000x20000 1-bit PNG: 400 Mpx, beyond even PIL's own bomb error threshold")
    add("bomb_moderate_png", "bomb_moderate.png",
        _blank_bilevel_png(8000, 8000), False,
        "8000x8000 = 64 Mpx: under PIL's warning limit, over load_image's default 40 Mpx")
    add("svg", "drawing.svg",
        b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" '
        b'height="10"><rect width="10" height="10" fill="red"/></svg>\n', False,
        "SVG vector image (XML text)")
    add("svg_renamed_png", "logo.png",
        b'<svg xmlns="http://www.w3.org/2000/svg"><circle r="4"/></svg>', False,
        "SVG with a .png suffix")
    add("tiff", "scan.tif", _encoded(Image.new("RGB", (8, 8), RED), "TIFF"), False,
        "a real image in a format outside the allow-list")
    folder = d / "a_folder.png"
    folder.mkdir(exist_ok=True)
    cases.append(Case("directory", folder, False, "a directory whose name looks like an image"))

    # --- valid, if odd -------------------------------------------------------------------
    add("tiny_1x1_png", "tiny.png", _encoded(Image.new("RGB", (1, 1), GREEN), "PNG"), True,
        "1x1 image")
    add("wide_20000x1_png", "wide.png", _encoded(Image.new("RGB", (20000, 1), BLUE), "PNG"),
        True, "20000x1 extreme aspect ratio")
    grey16 = Image.new("I;16", (len(GREY16_VALUES), 1))
    for x, value in enumerate(GREY16_VALUES):
        grey16.putpixel((x, 0), value)
    add("grey16_png", "grey16.png", _encoded(grey16, "PNG"), True,
        f"16-bit greyscale PNG with values {GREY16_VALUES}")
    add("cmyk_jpeg", "cmyk.jpg", _encoded(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), "JPEG",
                                          quality=95), True, "CMYK JPEG, pure red")
    pal = Image.new("P", (20, 10), 0)
    pal.putpalette([0, 0, 0, *BLUE])  # index 0 black (but transparent), index 1 blue
    pal.paste(1, (10, 0, 20, 10))
    add("palette_transparent_png", "palette_alpha.png", _encoded(pal, "PNG", transparency=0),
        True, "palette PNG: left half transparent (black underneath), right half blue")
    rgba = Image.new("RGBA", (20, 10), (0, 0, 0, 0))
    rgba.paste((*RED, 255), (10, 0, 20, 10))
    add("rgba_png", "rgba.png", _encoded(rgba, "PNG"), True,
        "RGBA PNG: left half fully transparent, right half red")
    add("la_png", "la.png", _encoded(Image.new("LA", (4, 4), (0, 0)), "PNG"), True,
        "grey+alpha PNG, fully transparent black")
    add("bilevel_png", "bilevel.png", _encoded(Image.new("1", (9, 7), 1), "PNG"), True,
        "1-bit PNG, all white")
    frames = [Image.new("RGB", (12, 12), RED), Image.new("RGB", (12, 12), GREEN)]
    add("animated_gif", "animated.gif",
        _encoded(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0),
        True, "2-frame GIF: red then green")
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    sideways = Image.new("RGB", (40, 20), RED)
    sideways.paste(BLUE, (20, 0, 40, 20))
    add("exif_rotated_jpeg", "rotated.jpg", _encoded(sideways, "JPEG", quality=95, exif=exif),
        True, "40x20 stored (left red, right blue), EXIF orientation 6: shows 20x40, red on top")
    add("png_renamed_jpg", "actually_png.jpg", _encoded(Image.new("RGB", (5, 3), GREEN), "PNG"),
        True, "a PNG with a .jpg suffix: content decides, not the name")
    add("bmp", "plain.bmp", _encoded(Image.new("RGB", (6, 4), GREEN), "BMP"), True, "BMP")
    add("webp", "plain.webp", _encoded(Image.new("RGB", (6, 4), GREEN), "WEBP", lossless=True),
        True, "lossless WebP")

    outside = d.parent / f"{d.name}_outside"
    outside.mkdir(exist_ok=True)
    target = _write(outside / "target.png", _encoded(Image.new("RGB", (7, 5), GREEN), "PNG"))
    link = d / "link_outside.png"
    try:
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(target)
        cases.append(Case("symlink_outside", link, True,
                          "symlink to a valid PNG outside the folder: decodes; galleries decide"))
    except (OSError, NotImplementedError):
        pass  # no symlinks here (e.g. Windows without privileges)

    raw_name = os.path.join(os.fsencode(d), b"caf\xe9.png")  # Latin-1 bytes, invalid UTF-8
    try:
        with open(raw_name, "wb") as fh:
            fh.write(_encoded(Image.new("RGB", (3, 2), GREEN), "PNG"))
        cases.append(Case("non_utf8_name", Path(os.fsdecode(raw_name)), True,
                          "valid PNG whose file name is not valid UTF-8"))
    except (OSError, ValueError):
        pass  # filesystem (e.g. APFS) refuses non-UTF-8 names
    return cases
