"""Web copies: the only image files the app serves.

Gallery images are shown through web-sized JPEG copies kept in the gallery's store (:class:`WebCopies`:
thumbnails for the browse panels, previews for the result panels and the picked slots), and
evaluation figures through content-named copies (:func:`figure_copy`). The gallery folder itself
(captions, labels, notes, the original files), the rest of the cache and the evaluation reports are
never served, so only these folders need to be reachable from the web.

Every copy is written with :func:`pipeline.storage.atomic_write_bytes`. Pure PIL, hashlib and the
file system: no Gradio, no models.
"""
from __future__ import annotations

import hashlib
import io
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

from PIL import Image

from .errors import CacheError, ImageError
from .images import load_image
from .storage import atomic_write_bytes

log = logging.getLogger(__name__)

THUMB_SIZE = 160  # browse panels
PREVIEW_SIZE = 512  # result panels and picked slots
MAX_FIGURE_BYTES = 20 * 1024 * 1024
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_QUALITY = 85
PLACEHOLDER_GREY = (200, 200, 200)


class WebCopies:
    """Web-sized JPEG copies of gallery images, cached in the gallery's store as
    ``<kind>-<size>/<source hash>-<copy hash>.jpg`` (``thumbs-160/`` for the browse panels,
    ``previews-512/`` for the larger copies shown in the result panels and the picked slots): the
    first 32 hex digits of the gallery file's SHA-256, then the first 16 of the copy's own.

    A copy found on disk is checked against the hash in its name once per process before it is used;
    a damaged one is made again. Each copy's SHA-256 is remembered, so that a copy handed back by the
    page (a picked slot, sent with Solve) is recognised as its gallery item (:meth:`find_hash`).
    Where no copy can be written (an unwritable store) the image itself is returned; where the
    gallery file can no longer be read, a grey placeholder.
    """

    def __init__(self, gallery, size: int = THUMB_SIZE, kind: str = "thumbs"):
        self.gallery = gallery
        self.size = size
        self.folder = Path(gallery.store) / f"{kind}-{size}"
        self._by_hash: dict[str, int] = {}  # SHA-256 of a copy's bytes -> gallery id
        self._checked: set[int] = set()  # ids whose copy on disk this process has checked
        self._names: dict[str, str] | None = None  # source hash (32 hex) -> file name, listed once

    def _listing(self) -> dict[str, str]:
        if self._names is None:
            names: dict[str, str] = {}
            try:
                for entry in os.scandir(self.folder):
                    stem, _, suffix = entry.name.rpartition(".")
                    if suffix == "jpg" and len(stem) == 49 and stem[32] == "-":
                        names[stem[:32]] = entry.name
            except OSError:
                pass
            self._names = names
        return self._names

    def path(self, item_id: int) -> Path | Image.Image:
        """The copy of gallery item ``item_id``: its file (made where missing or damaged), else an
        RGB image at most ``size`` pixels on its longer side."""
        item = self.gallery.items[item_id]
        key = item.sha256[:32]
        name = self._listing().get(key)
        if name is not None:
            target = self.folder / name
            if item_id in self._checked and target.is_file():
                return target
            try:
                data = target.read_bytes()
            except OSError:
                data = b""
            if data and hashlib.sha256(data).hexdigest()[:16] == name[33:49]:
                self._remember(data, item_id)
                return target
            log.warning("damaged copy %s of %s: made again", name, item.path)
            self._listing().pop(key, None)
            target.unlink(missing_ok=True)
        try:
            settings = self.gallery.settings
            im = load_image(self.gallery.path(item_id), max_pixels=settings.max_pixels,
                            max_bytes=settings.max_file_bytes, min_short_side=self.size)
            im.thumbnail((self.size, self.size))
        except (ImageError, OSError) as exc:  # the file changed or went away since the build
            log.warning("cannot read gallery image %s: %s", item.path, exc)
            return Image.new("RGB", (self.size, self.size), PLACEHOLDER_GREY)
        buffer = io.BytesIO()
        im.save(buffer, format="JPEG", quality=JPEG_QUALITY)
        data = buffer.getvalue()
        target = self.folder / f"{key}-{hashlib.sha256(data).hexdigest()[:16]}.jpg"
        try:
            atomic_write_bytes(target, data)
        except CacheError as exc:  # unwritable store: hand over the image itself
            log.warning("no web copy of %s: %s", item.path, exc)
            return im
        self._listing()[key] = target.name
        self._remember(data, item_id)
        return target

    def _remember(self, data: bytes, item_id: int) -> None:
        self._by_hash.setdefault(hashlib.sha256(data).hexdigest(), item_id)
        self._checked.add(item_id)

    def find_hash(self, sha256: str) -> int | None:
        """The gallery id whose copy (made or checked by this process) has these bytes, else None."""
        return self._by_hash.get(sha256)

    def prepare(self, ids: list[int], progress: Callable[[int, int, str], None] | None = None) -> list:
        """Copies of ``ids`` (made where missing, two at a time), in order; ``progress(done, total,
        "thumbnails")`` every 50 copies and at the end."""
        if self._checked.issuperset(ids):  # all checked by this process already: nothing to read or make
            return [self.path(item_id) for item_id in ids]
        out: list = []
        with ThreadPoolExecutor(max_workers=2) as pool:
            for n, copy in enumerate(pool.map(self.path, ids), 1):
                out.append(copy)
                if progress and (n % 50 == 0 or n == len(ids)):
                    progress(n, len(ids), "thumbnails")
        return out

    def make_missing(self, ids: list[int], progress: Callable[[int, int, str], None] | None = None) -> int:
        """Make the copies of ``ids`` that have no file yet (two at a time; ``progress`` as in
        :meth:`prepare`, over the missing ones) and return how many that was. Copies already on disk are
        not read: each is checked when first used (:meth:`path`). One folder listing when none is missing."""
        listing = self._listing()
        missing = [i for i in ids if self.gallery.items[i].sha256[:32] not in listing]
        if missing:
            self.prepare(missing, progress)
        return len(missing)


def figure_copy(png: Path, folder: Path) -> Path | Image.Image | None:
    """A copy of an evaluation figure in ``folder`` (``<content hash>.png``), the only place figures
    are served from; None when ``png`` is not a PNG file of at most :data:`MAX_FIGURE_BYTES`. Where
    ``folder`` cannot be written, the figure as an image."""
    try:
        if png.stat().st_size > MAX_FIGURE_BYTES:
            return None
        data = png.read_bytes()
    except OSError:
        return None
    if not data.startswith(PNG_SIGNATURE):
        return None
    digest = hashlib.sha256(data).hexdigest()
    target = Path(folder) / f"{digest[:32]}.png"
    try:
        if target.is_file() and hashlib.sha256(target.read_bytes()).hexdigest() == digest:
            return target
    except OSError:
        pass
    try:
        atomic_write_bytes(target, data)
        return target
    except CacheError as exc:
        log.warning("no web copy of the figure %s: %s", png.name, exc)
        try:
            with Image.open(io.BytesIO(data)) as im:
                im.load()
                return im.copy()
        except Exception:
            return None
