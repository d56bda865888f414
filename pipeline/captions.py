"""Captions for a gallery and for uploaded images, and their sentence embeddings, cached.

Which captioner runs follows :func:`pipeline.models.captioners.resolve_captioner` (the ``auto`` rule:
human captions from files where present, else BLIP where it loads and the time is reasonable, else
templates over the classifier's labels; every fallback is announced). Each caption keeps the name of
the captioner that wrote it.

Cache files in the gallery's store: ``captions-<captioner>.json`` (content hash -> caption, for BLIP)
and ``caption-vectors-<text model>.npy`` with ``caption-vectors-<text model>.json`` (the texts, in row
order, and the array's checksum): embeddings are reused by text, so only new captions are embedded.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from .config import DATA_DIR, PROMPTS_DIR
from .distributed import caption_blip_ray
from .errors import CacheError, CaptionerUnavailable
from .images import load_image
from .labels import top_labels
from .models.captioners import FileCaptions, blip_name, resolve_captioner
from .storage import (read_array, read_checked_mapping, read_json, safe_filename, write_array,
                      write_checked_mapping, write_json)

BLIP_CHUNK = 16


@dataclass
class Captions:
    """Per item: the caption text and the name of the captioner that wrote it; vectors (N, D) float32
    L2-normalised sentence embeddings of the texts, by ``text_model``."""

    texts: list[str]
    captioners: list[str]
    vectors: np.ndarray
    text_model: str
    announcement: str | None = None

    def texts_digest(self) -> str:
        """SHA-256 (hex) of the texts in row order: what a caption-space index was built from (hashed
        once: every question's caption space asks for it)."""
        return self._texts_digest

    @cached_property
    def _texts_digest(self) -> str:
        return hashlib.sha256("\n".join(self.texts).encode()).hexdigest()


def labels_captions(models, logits: np.ndarray) -> list[str]:
    """Template captions from (N, 1000) logits via the top-5 ImageNet labels."""
    predictions = [[(l.name, l.probability) for l in row] for row in top_labels(np.asarray(logits), 5)]
    return models.labels_captioner.caption_predictions(predictions)


def gallery_labels_captions(gallery, models, ids: list[int]) -> list[str]:
    """:func:`labels_captions` of the gallery items ``ids``, kept in the store by content hash
    (``captions-labels-<key>.json``, the key a digest of the convnet's weights, the caption templates
    and the class table; only the captions of ``ids`` are kept), so that a cached gallery does not
    caption every item again on each open."""
    key = hashlib.sha256("\n".join([gallery.model_key, (PROMPTS_DIR / "captions.json").read_text(encoding="utf-8"),
                                    (DATA_DIR / "imagenet_classes.tsv").read_text(encoding="utf-8")]).encode()).hexdigest()
    cache_path = gallery.store / f"captions-labels-{key[:16]}.json"
    cached = read_caption_cache(cache_path)
    missing = [i for i in ids if gallery.items[i].sha256 not in cached]
    if missing:
        for i, text in zip(missing, labels_captions(models, np.asarray(gallery.logits)[missing])):
            cached[gallery.items[i].sha256] = text
        wanted = {gallery.items[i].sha256 for i in ids}  # what this gallery holds now, no more
        try:
            write_caption_cache(cache_path, {h: t for h, t in cached.items() if h in wanted})
        except CacheError:
            pass  # an unwritable store: captioned again next time
    return [cached[gallery.items[i].sha256] for i in ids]


def choose_captioner(gallery, models, settings, file_captions: bool, engine: str = "local",
                     recheck: bool = False) -> tuple[str, str | None]:
    """:func:`resolve_captioner`'s (captioner, announcement) for ``gallery``, loading BLIP only where
    that decides something: not when the BLIP cache already holds every item's caption, and not when
    the store remembers (``captioner.json``) that the same settings, item count and device chose
    another captioner (e.g. labels, because BLIP could not be loaded), unless ``recheck`` (``gallery
    build`` rechecks, so a BLIP that failed to load is tried again there). ``file_captions``: the
    gallery has caption files."""
    decided_from = {"requested": settings.captioner, "items": len(gallery), "device": models.device,
                    "file_captions": file_captions, "blip_model": settings.blip_model,
                    "blip_cpu_item_limit": settings.blip_cpu_item_limit}
    record = gallery.store / "captioner.json"
    remembered = read_checked_mapping(record, "captioner")
    if not recheck and remembered.get("decided_from") == decided_from and remembered.get("chosen") != "blip":
        return remembered["chosen"], remembered.get("announcement")
    blip_cached = read_caption_cache(blip_cache_path(gallery, settings))
    needs_blip = engine != "ray" and any(item.sha256 not in blip_cached for item in gallery.items)
    chosen, announcement = resolve_captioner(
        settings.captioner, n_items=len(gallery), device=models.device, file_captions_available=file_captions,
        blip_model=settings.blip_model, blip_cpu_item_limit=settings.blip_cpu_item_limit,
        try_blip=models.blip if needs_blip else None)  # on Ray, the workers load BLIP
    try:
        write_checked_mapping(record, "captioner", {"decided_from": decided_from, "chosen": chosen,
                                                    "announcement": announcement})
    except CacheError:
        pass  # an unwritable store: decided again next time
    return chosen, announcement


def blip_cache_path(gallery, settings):
    """The store's BLIP caption cache (content hash -> caption) for ``settings.blip_model``."""
    return gallery.store / f"captions-{safe_filename(blip_name(settings.blip_model))}.json"


def caption_gallery(gallery, models, settings, progress=None, engine: str = "local", address: str | None = None,
                    recheck_captioner: bool = False):
    """Captions (texts, captioner names, embeddings) for every gallery item; see module docstring.

    ``engine="ray"``: missing BLIP captions are computed on Ray workers (one BLIP per worker, see
    :func:`pipeline.distributed.caption_blip_ray`, ``address`` as there) and never loaded here; they
    go into the same cache file, so the result equals a local captioning. Labels and file captions
    are computed here either way. ``recheck_captioner``: see :func:`choose_captioner`."""
    progress = progress or (lambda done, total, what: None)
    n = len(gallery)
    file_captions = FileCaptions.from_folder(gallery.root)
    chosen, announcement = choose_captioner(gallery, models, settings, len(file_captions) > 0, engine,
                                            recheck_captioner)
    texts: list[str | None] = [None] * n
    captioners: list[str | None] = [None] * n
    if chosen == "file":
        for item in gallery.items:
            text = file_captions.lookup(gallery.root / item.path)
            if text:
                texts[item.id], captioners[item.id] = text, "file"
    elif chosen == "blip":
        name = blip_name(settings.blip_model)
        cache_path = blip_cache_path(gallery, settings)
        cached = read_caption_cache(cache_path)
        missing = [item for item in gallery.items if item.sha256 not in cached]
        missing = list({item.sha256: item for item in missing}.values())  # each content once
        if missing and engine == "ray":
            def save(captions: dict[str, str]) -> None:
                cached.update(captions)
                write_caption_cache(cache_path, cached)  # after each chunk, so an interrupted run resumes

            try:
                caption_blip_ray([(str(gallery.path(item.id)), item.sha256) for item in missing], settings, name,
                                 save, progress, address=address, chunk=BLIP_CHUNK)
            except CaptionerUnavailable as exc:
                if settings.captioner != "auto":
                    raise
                chosen, announcement = "labels", f"Captions: ImageNet-label templates, because {exc.reason.rstrip('.')}."
            missing = []
        for start in range(0, len(missing), BLIP_CHUNK):
            chunk = missing[start:start + BLIP_CHUNK]
            images = [load_image(gallery.path(item.id), max_pixels=settings.max_pixels) for item in chunk]
            for item, text in zip(chunk, models.blip_captions(images)):
                cached[item.sha256] = text
            write_caption_cache(cache_path, cached)  # after each chunk, so an interrupted run resumes
            progress(start + len(chunk), len(missing), "captioning with BLIP")
        if chosen == "blip":
            for item in gallery.items:
                texts[item.id], captioners[item.id] = cached[item.sha256], name
    missing_ids = [i for i in range(n) if texts[i] is None]
    if missing_ids:
        fallback = gallery_labels_captions(gallery, models, missing_ids)
        for i, text in zip(missing_ids, fallback):
            texts[i], captioners[i] = text, "labels"
        if chosen == "file":
            note = f"{len(missing_ids)} of {n} images have no caption file; their captions come from the classifier's labels."
            announcement = f"{announcement} {note}" if announcement else note
    progress(0, n, "embedding captions")
    vectors = embed_cached(gallery.store, models, settings.text_model, texts)
    progress(n, n, "embedding captions")
    return Captions(texts, captioners, vectors, settings.text_model, announcement)  # type: ignore[arg-type]


def write_caption_cache(path, captions: dict[str, str]) -> None:
    """Save content hash -> caption with a checksum of the mapping (atomic)."""
    write_checked_mapping(path, "captions", captions)


def read_caption_cache(path) -> dict[str, str]:
    """The cached captions, or {} when the file is missing, unreadable or fails its checksum
    (a damaged file is never used: its captions are computed again)."""
    return read_checked_mapping(path, "captions")


def embed_cached(store, models, text_model: str, texts: list[str]) -> np.ndarray:
    """(N, D) float32 L2-normalised embeddings of ``texts``, reusing the store's cached rows by text."""
    base = store / f"caption-vectors-{safe_filename(text_model)}"
    known: dict[str, np.ndarray] = {}
    try:
        meta = read_json(base.with_suffix(".json"))
        old = read_array(base.with_suffix(".npy"), meta["sha256"], mmap=False)
        known = {t: old[i] for i, t in enumerate(meta["texts"])}
    except (CacheError, KeyError, TypeError, IndexError):
        pass
    new_texts = sorted({t for t in texts if t not in known})
    if new_texts:
        for t, v in zip(new_texts, models.embed_texts(new_texts)):
            known[t] = v
    if not texts:
        return np.zeros((0, 384), np.float32)
    vectors = np.stack([known[t] for t in texts]).astype(np.float32)
    if new_texts:
        digest = write_array(base.with_suffix(".npy"), vectors)
        write_json(base.with_suffix(".json"), {"texts": texts, "sha256": digest, "text_model": text_model})
    return vectors


def caption_external(gallery, models, images, logits: np.ndarray) -> list[tuple[str, str]]:
    """(caption, captioner name) for uploaded images, by the gallery's captioner where it can run on
    a single image (BLIP), else the classifier's labels (an upload has no caption file)."""
    captioners = set(gallery.captions.captioners) if gallery.captions else set()
    blip_names = [c for c in captioners if c.startswith("blip:")]
    if blip_names:
        return [(text, blip_names[0]) for text in models.blip_captions(list(images))]
    return [(text, "labels") for text in labels_captions(models, logits)]
