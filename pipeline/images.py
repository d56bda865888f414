"""Safe image decoding: untrusted bytes or files in, a fully loaded 8-bit RGB ``PIL.Image`` out.

Everything that can go wrong with a user's file (missing, empty, too large, not an image, a format
we do not accept, a decompression bomb, truncated or corrupted data) becomes an :class:`ImageError`
whose text is one line of the form ``"<name>: <what is wrong>. <what to do>"``, fit to show to a
user as is. No raw PIL exception escapes :func:`load_image`.

Safety rules followed here:

* the format is identified from the content (``Image.open`` restricted to :data:`ALLOWED_FORMATS`),
  never from the file name's suffix;
* ``width * height`` is checked against a per-call pixel limit *before* any pixel data is
  decoded, and PIL's own decompression-bomb error and warning are turned into :class:`ImageError`;
* the global ``Image.MAX_IMAGE_PIXELS`` is never raised and ``ImageFile.LOAD_TRUNCATED_IMAGES``
  is never set: truncated files are rejected, not padded with grey.

Reduced decoding: ``load_image(..., min_short_side=S)`` decodes a JPEG with DCT-domain scaling
(PIL's ``Image.draft``, 1/2, 1/4 or 1/8) to the smallest size whose short side is still at least
``S``, after the same checks (the pixel limit applies to the full size in the header), so that a
12 MP phone photo needed at a 256-pixel short side never has its 12 million pixels decoded
(``scripts/bench_decode.py`` measures it). Other formats decode in full.

Pure PIL and hashlib; no torch, no numpy.
"""
from __future__ import annotations

import hashlib
import io
import os
import re
import stat
import warnings
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from .config import Settings
from .errors import ImageError

__all__ = [
    "ALLOWED_FORMATS",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_PIXELS",
    "IMAGE_SUFFIXES",
    "ImageError",
    "bytes_sha256",
    "describe",
    "file_sha256",
    "is_image_path",
    "load_image",
]

ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF")
#: File name suffixes of the formats :func:`load_image` accepts (the only list of them: gallery scans
#: and caption sidecars use it too), in a fixed order.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif")
DEFAULT_MAX_PIXELS = Settings.max_pixels  # the limits live in pipeline.config.Settings
DEFAULT_MAX_BYTES = Settings.max_file_bytes

# PIL reports multi-picture JPEGs (many phone cameras) as "MPO"; they are JPEGs for our purposes.
_ACCEPTED_FORMATS = frozenset(ALLOWED_FORMATS) | {"MPO"}
_UPLOAD_HINT = "Upload a JPEG, PNG, WebP, BMP or GIF file"
_CORRUPT_HINT = "Re-export or re-download the image and try again"
_UPLOADED = "uploaded image"
_MAX_NAME_CHARS = 80
_HASH_CHUNK = 1024 * 1024

# Leading bytes of common formats we refuse, so the message can name what was found.
_SIGNATURES = (
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"%PDF", "PDF"),
    (b"8BPS", "PSD (Photoshop)"),
    (b"\x00\x00\x01\x00", "ICO"),
    (b"\xff\x0a", "JPEG XL"),
    (b"\x00\x00\x00\x0cJXL ", "JPEG XL"),
)


def _fail(name: str, problem: str, hint: str) -> ImageError:
    """Build the one-line :class:`ImageError` ``"<name>: <problem>. <hint>."``."""
    return ImageError(f"{name}: {problem}. {hint}.")


def _clean_name(text: str) -> str:
    """Make ``text`` safe to show on one line: undecodable bytes become U+FFFD, control
    characters become ``?``, and very long names are shortened in the middle."""
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    text = "".join(ch if ch.isprintable() else "?" for ch in text).strip() or "?"
    if len(text) > _MAX_NAME_CHARS:
        half = (_MAX_NAME_CHARS - 1) // 2
        text = f"{text[:half]}…{text[-half:]}"
    return text


def describe(source) -> str:
    """Short display name for ``source`` used in messages.

    Raw image data (``bytes``, ``bytearray``, ``memoryview``) is ``"uploaded image"``; a path is
    its file name without the folders (the full path if it has no name, e.g. ``"/"``). The result
    is one printable line: undecodable file-name bytes show as U+FFFD.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _UPLOADED
    text = os.fsdecode(source)
    return _clean_name(Path(text).name or text)


def is_image_path(path) -> bool:
    """True when ``path``'s suffix is one of :data:`IMAGE_SUFFIXES` (case-insensitive).

    Only the name is looked at; the file need not exist. :func:`load_image` never trusts this.
    """
    return Path(os.fsdecode(path)).suffix.lower() in IMAGE_SUFFIXES


def bytes_sha256(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def file_sha256(path) -> str:
    """Hex SHA-256 of the file at ``path``, read in 1 MiB chunks (constant memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_HASH_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _format_bytes(n: int) -> str:
    """Human-readable size: ``"512 bytes"``, ``"3.4 KiB"``, ``"30.1 MiB"``."""
    if n < 1024:
        return f"{n} bytes"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KiB"
    return f"{n / (1024 * 1024):.1f} MiB"


def _too_large(name: str, size: int, max_bytes: int) -> ImageError:
    return _fail(
        name,
        f"file is {_format_bytes(size)}, over the {_format_bytes(max_bytes)} limit",
        "Use a smaller file (downscale or re-compress it)",
    )


def _read_file(path, name: str, max_bytes: int) -> bytes:
    """Read a regular file's bytes, enforcing ``max_bytes``; symlinks are followed."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise _fail(name, "no such file", "Check the path and try again") from None
    except OSError as exc:
        raise _fail(name, f"cannot access the file ({exc.strerror or exc})",
                    "Check the path and its permissions") from None
    if stat.S_ISDIR(st.st_mode):
        raise _fail(name, "is a directory, not an image file", "Choose an image file instead")
    if not stat.S_ISREG(st.st_mode):  # FIFO, device, socket: reading could block or never end
        raise _fail(name, "not a regular file", "Choose an ordinary image file")
    if st.st_size > max_bytes:
        raise _too_large(name, st.st_size, max_bytes)
    try:
        with open(path, "rb") as fh:
            data = fh.read(max_bytes + 1)  # +1: notice a file that grew after stat
    except OSError as exc:
        raise _fail(name, f"cannot read the file ({exc.strerror or exc})",
                    "Check the file's permissions") from None
    if len(data) > max_bytes:
        raise _too_large(name, len(data), max_bytes)
    return data


def _sniff_format(data: bytes) -> str | None:
    """Name a refused format from its leading bytes, or None when it is unrecognised."""
    for magic, fmt in _SIGNATURES:
        if data.startswith(magic):
            return fmt
    if data[4:8] == b"ftyp":  # ISO base media file: AVIF, HEIC, but also MP4 video
        brand = data[8:12]
        if brand.startswith(b"avi"):
            return "AVIF"
        if brand.startswith(b"he") or brand in (b"mif1", b"msf1"):
            return "HEIC/HEIF"
        return "MP4/ISO media"
    head = data[:1024].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if b"<svg" in head or (head.startswith(b"<?xml") and b"svg" in head):
        return "SVG"
    return None


def _open(data: bytes, name: str, max_pixels: int) -> Image.Image:
    """Identify ``data`` (allowed formats only) and check its dimensions; no pixels decoded."""
    # Never looser than PIL's global limit, and PIL's own bomb checks become ImageErrors.
    limit = max_pixels
    if Image.MAX_IMAGE_PIXELS is not None:
        limit = min(limit, Image.MAX_IMAGE_PIXELS)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # PIL's own check fired first: name the limit in force (the lower of ours and PIL's) and the size PIL read
        found = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"image is {int(found.group(1)):,} pixels" if found else "image has too many pixels"
        raise _fail(name, f"{size}, over the limit of {limit:,} pixels",
                    "Use a smaller image (downscale it first)") from None
    except UnidentifiedImageError:
        found = _sniff_format(data)
        if found:
            raise _fail(name, f"{found} images are not supported", _UPLOAD_HINT) from None
        raise _fail(name, "not an image (PIL cannot identify it)", _UPLOAD_HINT) from None
    except Exception as exc:  # header parsed far enough to pick a plugin, then broke
        raise _fail(name, f"truncated or corrupted image data ({_reason(exc)})",
                    _CORRUPT_HINT) from None
    if img.format not in _ACCEPTED_FORMATS:  # belt and braces; formats= already restricts
        img.close()
        raise _fail(name, f"{img.format} images are not supported", _UPLOAD_HINT)
    width, height = img.size
    if width * height > limit:
        img.close()
        raise _fail(
            name,
            f"image is {width}x{height} = {width * height:,} pixels, "
            f"over the limit of {limit:,} pixels",
            "Use a smaller image (downscale it first)",
        )
    return img


def _reason(exc: BaseException) -> str:
    """Short one-line reason from a PIL exception, for the message's parenthesis."""
    text = " ".join(str(exc).split())[:160].rstrip(".")
    return text or type(exc).__name__


def _composite_on_white(img: Image.Image) -> Image.Image:
    """Flatten any image with alpha or a transparency key onto white, returning RGB."""
    rgba = img.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _to_rgb(img: Image.Image) -> Image.Image:
    """Convert a loaded image of any PIL mode to a new 8-bit RGB image.

    * alpha (``LA``, ``PA``, ``RGBA``, ...) or a transparency key (palette ``tRNS`` etc.):
      composited onto white;
    * 16-bit greyscale (``I;16*``) and ``I``: ``value >> 8`` (0..65535 -> 0..255, values outside
      that range clipped first), so 65535 -> 255 and 32768 -> 128 rather than clipping at 255;
    * ``F``: values within 0..1 are scaled by 255; any other range is stretched min..max to 0..255;
    * ``1``, ``L``, ``P``, ``CMYK``, ``YCbCr`` and the rest: PIL's own conversion.
    """
    mode = img.mode
    if mode.startswith("I"):
        grey = img.convert("I") if mode != "I" else img
        return grey.point(lambda v: v / 256).convert("L").convert("RGB")
    if mode == "F":
        lo, hi = img.getextrema()
        if lo >= 0.0 and hi <= 1.0:
            scale, offset = 255.0, 0.5
        elif hi > lo:
            scale = 255.0 / (hi - lo)
            offset = 0.5 - lo * scale
        else:
            scale, offset = 1.0, 0.0
        return img.point(lambda v: v * scale + offset).convert("L").convert("RGB")
    if "A" in mode or "a" in mode or "transparency" in img.info:
        return _composite_on_white(img)
    return img.convert("RGB")


def _reduce_jpeg(img: Image.Image, min_short_side: int) -> None:
    """Ask PIL to decode the (not yet loaded) JPEG ``img`` at 1/2, 1/4 or 1/8 scale: the smallest
    whose short side is still at least ``min_short_side``. No-op for other formats and small images.

    Only the short side is constrained, and EXIF rotation swaps width and height but keeps the short
    side, so the image is large enough whatever its orientation."""
    if img.format not in ("JPEG", "MPO") or min(img.size) < 2 * min_short_side:
        return
    img.draft("RGB", (min_short_side, min_short_side))  # scale = largest of 8, 4, 2 keeping both >= this


def load_image(
    source: str | os.PathLike | bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
    name: str | None = None,
    min_short_side: int | None = None,
) -> Image.Image:
    """Decode an untrusted image into a new, fully loaded 8-bit RGB ``PIL.Image``.

    Args:
        source: a path (``str`` or ``os.PathLike``; symlinks are followed) or the raw file
            content (``bytes``, ``bytearray`` or ``memoryview``).
        max_pixels: largest ``width * height`` accepted, checked before any pixel is decoded
            (PIL's global ``Image.MAX_IMAGE_PIXELS`` still applies when it is lower).
        max_bytes: largest file / data size accepted, checked before reading a file.
        name: display name used in error messages; default :func:`describe` of ``source``
            (the file name, or ``"uploaded image"`` for bytes).
        min_short_side: when given, a JPEG whose short side is at least twice this is decoded at
            reduced size (1/2, 1/4 or 1/8, DCT-domain scaling): the smallest whose short side is
            still ``>= min_short_side``, whatever its EXIF orientation. Use it where the image is
            only needed at that size (the convnet's 256-pixel resize, web thumbnails); the limits
            above still apply to the full size. None (default): full size.

    Returns:
        A mode ``"RGB"`` image (reduced as ``min_short_side`` says), independent of any file,
        with the EXIF orientation applied
        (``ImageOps.exif_transpose``; unreadable EXIF is ignored). Animated GIF/PNG/WebP give
        their first frame; transparency is composited onto white; CMYK, palette, 1-bit, 16-bit
        and float greyscale are converted as described in :func:`_to_rgb`. Tiny (1x1) and
        extremely elongated images are returned as they are.

    Raises:
        ImageError: one-line message ``"<name>: <what is wrong>. <what to do>"`` for a missing
            path, a directory, an empty or oversized file, content that is not an image or not
            one of :data:`ALLOWED_FORMATS` (the suffix is ignored), too many pixels
            (decompression bomb), truncated or corrupted data, or any other decoding failure.
        TypeError: ``source`` is neither a path nor bytes (a programming error).
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        shown = _clean_name(name) if name is not None else _UPLOADED
        data = bytes(source)
        if len(data) > max_bytes:
            raise _too_large(shown, len(data), max_bytes)
    elif isinstance(source, (str, os.PathLike)):
        shown = _clean_name(name) if name is not None else describe(source)
        data = _read_file(source, shown, max_bytes)
    else:
        raise TypeError(f"load_image() needs a path or bytes, not {type(source).__name__}")
    if not data:
        raise _fail(shown, "empty file (0 bytes)", _UPLOAD_HINT)

    img = _open(data, shown, max_pixels)  # pixel limit checked on the full size
    try:
        try:
            if min_short_side is not None:
                _reduce_jpeg(img, min_short_side)
            img.load()  # first frame only for animations
        except Exception as exc:  # OSError, SyntaxError, ValueError, struct.error, EOFError...
            raise _fail(shown, f"truncated or corrupted image data ({_reason(exc)})",
                        _CORRUPT_HINT) from None
        try:
            oriented = ImageOps.exif_transpose(img)
        except Exception:  # broken EXIF block: keep the pixels as stored
            oriented = img
        try:
            rgb = _to_rgb(oriented)
            rgb.load()
        except Exception as exc:
            raise _fail(shown, f"cannot convert colour mode {oriented.mode} to RGB "
                        f"({_reason(exc)})", "Re-save the image as an ordinary RGB JPEG or PNG") \
                from None
    finally:
        img.close()
    return rgb
