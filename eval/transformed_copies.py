"""The ``transforms`` suite's gallery: a seeded sample of a gallery's photos, each with one transformed
copy per transform, in a work folder (default ``<cache dir>/eval-transforms/<name>-<digest>/``, never
the repository): ``original/<path>`` holds the original bytes, ``<transform>/<path>.jpg`` the copies.
The folder is written once (a marker file records what is there) and built like any gallery.
"""
from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter, ImageOps

from pipeline.default_gallery import RED, greyscale, tint
from pipeline.errors import CacheError, GalleryError, ImageError, SettingsError
from pipeline.gallery import scan_folder
from pipeline.images import load_image
from pipeline.storage import atomic_write_bytes, read_json, safe_filename, write_json

from .common import bar

VERSION = 1  # bump when a transform's definition changes (the work folder's digest includes it)
JPEG_QUALITY = 92


def _blur(image: Image.Image) -> Image.Image:
    return image.filter(ImageFilter.GaussianBlur(radius=max(2.0, 0.015 * min(image.size))))


def _zoom(image: Image.Image) -> Image.Image:
    w, h = image.size
    box = (w // 4, h // 4, w // 4 + max(1, w // 2), h // 4 + max(1, h // 2))
    return image.crop(box).resize((w, h), Image.BICUBIC)


#: name -> (what it does, function on an RGB PIL image)
TRANSFORMS = {
    "greyscale": ("converted to greyscale (kept as 3-channel RGB)", greyscale),
    "hflip": ("mirrored left-right", ImageOps.mirror),
    "rot90": ("rotated by 90 degrees counter-clockwise", lambda im: im.transpose(Image.Transpose.ROTATE_90)),
    "tint": (f"blended 45% with red {RED}", tint),
    "blur": ("Gaussian blur, radius 1.5% of the short side (at least 2 px)", _blur),
    "zoom": ("centre crop of half the width and height, resized back (2x zoom)", _zoom),
}

def parse_transforms(names: list[str] | None) -> list[str]:
    names = list(TRANSFORMS) if not names else names
    unknown = [n for n in names if n not in TRANSFORMS]
    if unknown:
        raise SettingsError(f"unknown transform(s) {', '.join(unknown)}: choose from {', '.join(TRANSFORMS)}")
    return list(dict.fromkeys(names))


# --- the work folder -----------------------------------------------------------------------------


@dataclass
class WorkFolder:
    root: Path
    originals: list[str]  # relative paths (in the source gallery and under original/)
    transforms: list[str]
    skipped: list[tuple[str, str]]

    def path(self, original: str, transform: str | None) -> str:
        """Relative path of an original (transform None) or of its transformed copy."""
        if transform is None:
            return f"original/{original}"
        return f"{transform}/{Path(original).with_suffix('.jpg').as_posix()}"


def select_originals(source: Path, n: int, seed: int) -> list[str]:
    """A seeded sample of ``n`` image paths of ``source`` (all of them when it has no more), sorted."""
    files = scan_folder(source)
    if not files:
        raise GalleryError(f"gallery folder {source} has no image files (JPEG, PNG, WebP, BMP, GIF)")
    if n >= len(files):
        return files
    chosen = np.random.default_rng(seed).choice(len(files), size=n, replace=False)
    return [files[i] for i in sorted(chosen)]


def prepare_work_folder(source: Path, originals: list[str], transforms: list[str], work_dir: Path | None,
                        cache_dir: Path, max_pixels: int) -> WorkFolder:
    """Write the originals and their transformed copies (once: a marker file records what is there)."""
    source = Path(source).resolve()
    spec = "\n".join([f"v{VERSION}", str(source), ",".join(transforms), *originals])
    digest = hashlib.sha256(spec.encode()).hexdigest()[:12]
    if work_dir is None:
        safe = safe_filename(source.name, 40) or "gallery"
        work_dir = Path(cache_dir) / "eval-transforms" / f"{safe}-{digest}"
    work_dir = Path(work_dir)
    marker = work_dir / ".eval-transforms.json"
    try:
        done = read_json(marker)
        if done.get("digest") == digest:
            return WorkFolder(work_dir, done["originals"], transforms, [tuple(s) for s in done["skipped"]])
    except (CacheError, AttributeError, KeyError, TypeError):  # not there yet, or damaged: write it again
        pass
    kept, skipped = [], []
    folder = WorkFolder(work_dir, [], transforms, skipped)
    for relative in bar(originals, desc="writing transformed copies", unit="photo"):
        path = source / relative
        try:
            image = load_image(path, max_pixels=max_pixels)
            data = path.read_bytes()
        except (ImageError, OSError) as exc:  # undecodable or unreadable: left out, and reported
            skipped.append((relative, " ".join(str(exc).split())[:200]))
            continue
        atomic_write_bytes(work_dir / folder.path(relative, None), data)
        for name in transforms:
            buffer = io.BytesIO()
            TRANSFORMS[name][1](image).save(buffer, format="JPEG", quality=JPEG_QUALITY)
            atomic_write_bytes(work_dir / folder.path(relative, name), buffer.getvalue())
        kept.append(relative)
    if len(kept) < 2:
        raise GalleryError(f"transforms needs at least 2 decodable photos; got {len(kept)} of {len(originals)}")
    folder.originals = kept
    write_json(marker, {"digest": digest, "version": VERSION, "source": str(source), "transforms": transforms,
                        "originals": kept, "skipped": skipped})
    return folder


def build_table(gallery, work: WorkFolder) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where everything is in the built gallery: ``table`` (n_originals, 1 + T) gallery ids (column 0
    the original, column 1 + t its copy under transform t), and per gallery id ``photo_of`` (original
    index) and ``transform_of`` (0 original, 1 + t copy; -1 for items of neither)."""
    n_orig = len(work.originals)
    table = np.full((n_orig, 1 + len(work.transforms)), -1, dtype=np.int64)
    for i, relative in enumerate(work.originals):
        for k, name in enumerate([None, *work.transforms]):
            item = gallery.find(work.path(relative, name))
            if item is None:
                raise GalleryError(f"{work.path(relative, name)} is missing from the gallery built in {work.root} "
                                 f"(could not be decoded?); delete that folder and run again")
            table[i, k] = item
    photo_of = np.full(len(gallery), -1, dtype=np.int64)
    transform_of = np.full(len(gallery), -1, dtype=np.int64)
    for k in range(table.shape[1]):
        photo_of[table[:, k]] = np.arange(n_orig)
        transform_of[table[:, k]] = k
    return table, photo_of, transform_of
