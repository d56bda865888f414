"""A gallery: any folder of images, turned into cached vectors, labels and captions.

Building a gallery (:func:`build_gallery`):

1. scan the folder recursively for image files (symlinks that leave the folder are skipped);
2. hash every file (SHA-256); labels come from imagen-style names (``<wnid>_<id>_<label>.jpg``),
   else the parent folder's name, else an optional ``labels.csv`` (``file,label``);
3. compute convnet activations only for content not already in the cache: in chunks, each chunk
   saved atomically as a shard under ``<store>/shards/`` so that an interrupted build resumes;
4. consolidate aligned arrays (``pooled.npy``, ``logits.npy``) and write the manifest last.

Files that cannot be decoded are skipped and reported (path and reason), never fatal. Scanning and
labels are :mod:`pipeline.scan`; the store (shards, consolidated arrays, manifest) is
:mod:`pipeline.features`; captions are :mod:`pipeline.captions`; the Ray engine is
:mod:`pipeline.distributed`.
"""
from __future__ import annotations

import hashlib
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import vectors as vec
from .captions import Captions, caption_gallery
from .config import Settings
from .distributed import compute_features_ray
from .errors import CacheError, GalleryError, ImageError, StaleIndexError
from .features import CHUNK, FeatureTable, remove_stale_temporaries, store_dir_for
from .file_hashes import hash_files
from .images import load_image
from .index import VectorIndex, load_index
from .labels import softmax, top_labels
from .ordered import in_order
from .progress import Progress
from .scan import label_for, read_labels_csv, scan_folder
from .space_stats import measured


@dataclass(frozen=True)
class GalleryItem:
    """One image of the gallery. ``id`` is its row in every array; ``path`` is relative to the root
    (forward slashes)."""

    id: int
    path: str
    sha256: str
    label: str | None = None
    wnid: str | None = None


@dataclass
class BuildStats:
    items: int = 0
    computed: int = 0
    reused: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return {"items": self.items, "computed": self.computed, "reused": self.reused,
                "skipped": [{"path": p, "reason": r} for p, r in self.skipped], "seconds": round(self.seconds, 3)}


# --- the gallery --------------------------------------------------------------------------------


IMAGE_SPACES = ("image:pooled", "image:logits", "image:probs")
SPACES = IMAGE_SPACES + ("caption",)


def space_key(space: str, layer: str) -> str:
    """``image`` + layer -> ``image:<layer>``; ``caption`` -> ``caption``."""
    if space == "caption":
        return "caption"
    if space == "image":
        return f"image:{layer}"
    raise ValueError(f"unknown space {space!r}: use 'image' or 'caption'")


class Gallery:
    """A built gallery: items, raw activations, captions, and normalised vectors per space.

    pooled: (N, P) float32 raw penultimate activations; logits: (N, 1000) float32 raw logits (both
    read-only memory maps of the cache). ``vectors(space)`` are L2-normalised float32 copies.
    """

    def __init__(self, root: Path, items: list[GalleryItem], pooled: np.ndarray, logits: np.ndarray,
                 store: Path, model_key: str, settings: Settings):
        self.root = Path(root)
        self.items = items
        self.pooled = pooled
        self.logits = logits
        self.store = store
        self.model_key = model_key
        self.settings = settings
        self.captions: Captions | None = None
        self._vectors: dict[str, np.ndarray] = {}
        self._indexes: dict[str, VectorIndex] = {}
        self._by_path = {item.path: item.id for item in items}
        self._by_hash = {}
        for item in items:
            self._by_hash.setdefault(item.sha256, item.id)
        listing = "\n".join(f"{i.path}\t{i.sha256}" for i in items)
        self.digest = hashlib.sha256(listing.encode("utf-8", "surrogateescape")).hexdigest()
        self._nn_distance: dict[str, float] = {}
        self.index_messages: list[str] = []  # what was rebuilt or recomputed, and why

    def __len__(self) -> int:
        return len(self.items)

    @property
    def labelled(self) -> bool:
        return any(item.label for item in self.items)

    def path(self, item_id: int) -> Path:
        return self.root / self.items[item_id].path

    def find(self, ref) -> int | None:
        """The id of a gallery item named by id (int or digits), relative path, path inside the
        root, or content hash; None when ``ref`` is not a gallery item."""
        if isinstance(ref, (int, np.integer)):
            return int(ref) if 0 <= int(ref) < len(self.items) else None
        text = str(ref).strip()
        if text.lstrip("#").isdigit():
            number = int(text.lstrip("#"))
            return number if 0 <= number < len(self.items) else None
        if text in self._by_path:
            return self._by_path[text]
        candidate = Path(text)
        try:
            if candidate.is_absolute() or candidate.exists():
                relative = candidate.resolve().relative_to(self.root.resolve()).as_posix()
                return self._by_path.get(relative)
        except (ValueError, OSError):
            return None
        return None

    def find_hash(self, sha256: str) -> int | None:
        return self._by_hash.get(sha256)

    def vectors(self, space: str) -> np.ndarray:
        """(N, D) float32 L2-normalised vectors of a space key (see :data:`SPACES`)."""
        if space not in self._vectors:
            self._vectors[space] = space_vectors(space, self.pooled, self.logits, self.captions)
        return self._vectors[space]

    def index(self, space: str) -> VectorIndex:
        """The FAISS index of a space, loaded from the store when its manifest matches, else built
        and saved (a stale or damaged file is replaced, with its reason logged in ``index_messages``)."""
        if space not in self._indexes:
            vectors = self.vectors(space)
            path = self.store / f"index-{space.replace(':', '-')}.faiss"
            expect = self.space_identity(space)
            try:
                self._indexes[space] = load_index(path, vectors, expect)
            except StaleIndexError as exc:
                self.index_messages.append(f"rebuilt {space} index: {exc}")
                index = VectorIndex.build(vectors)
                try:
                    index.save(path, expect)
                except CacheError as save_error:
                    self.index_messages.append(f"could not save the {space} index: {save_error}")
                self._indexes[space] = index
        return self._indexes[space]

    def space_identity(self, space: str) -> dict:
        """What the vectors of ``space`` are made from: the manifest its index is saved with, and the
        key of its measurements kept in the store (:mod:`pipeline.space_stats`)."""
        return {"model": self.model_key if space != "caption" else self.captions.text_model,
                "space": space, "items_digest": self.digest,
                "captions_digest": self.captions.texts_digest() if space == "caption" else None}

    def typical_nn_distance(self, space: str) -> float:
        """Median distance from an item to its nearest other distinct item in a space (measured once,
        kept in the store: :func:`pipeline.space_stats.measured`).

        Exact duplicates are collapsed first: label captions repeat often, and a zero distance to a
        copy says nothing about how far apart different items are."""
        if space not in self._nn_distance:
            self._nn_distance[space] = float(measured(self.store, space, self.space_identity(space),
                                                      "typical_nn_distance", lambda: self._nn_distance_now(space)))
        return self._nn_distance[space]

    def _nn_distance_now(self, space: str) -> float:
        if not self.index(space).exact:  # large: ask the index
            return self.index(space).typical_nn_distance()
        distinct = np.unique(self.vectors(space), axis=0)
        return vec.typical_nn_distance(distinct) if len(distinct) >= 2 else 0.0

    def top_labels(self, item_id: int, k: int = 5):
        return top_labels(np.asarray(self.logits[item_id:item_id + 1]), k)[0]


def space_vectors(space: str, pooled: np.ndarray, logits: np.ndarray, captions: Captions | None) -> np.ndarray:
    """Normalised (N, D) float32 vectors of a space key from raw arrays (probs = softmax(logits)).
    Row by row, in chunks: a memory-mapped (1M, 1280) array is never copied whole in float64."""
    if space == "image:pooled":
        return _rowwise(pooled, vec.l2_normalize)
    if space == "image:logits":
        return _rowwise(logits, vec.l2_normalize)
    if space == "image:probs":
        return _rowwise(logits, lambda block: vec.l2_normalize(softmax(block)))
    if space == "caption":
        if captions is None:
            raise GalleryError("this gallery has no captions yet; build it with captions first")
        return vec.l2_normalize(captions.vectors)
    raise ValueError(f"unknown space {space!r}: choose one of {', '.join(SPACES)}")


def _rowwise(array: np.ndarray, transform, chunk: int = 65_536) -> np.ndarray:
    """transform(float32 rows) applied to ``array`` (N, D) chunk by chunk, into one float32 array."""
    out = np.empty(array.shape, dtype=np.float32)
    for start in range(0, len(array), chunk):
        out[start:start + chunk] = transform(np.asarray(array[start:start + chunk], dtype=np.float32))
    return out


# --- building -----------------------------------------------------------------------------------


def build_gallery(root: Path, settings: Settings, models, progress: Progress | None = None,
                  with_captions: bool = True, engine: str = "local",
                  address: str | None = None, recheck_captioner: bool = False) -> tuple[Gallery, BuildStats]:
    """Build (or load from cache) the gallery of the folder ``root``; see the module docstring.

    ``models`` is a :class:`pipeline.models.Models`. Returns the gallery and what the build did.
    ``engine``: ``local`` (this process) or ``ray`` (Ray Data workers, see :mod:`pipeline.distributed`;
    ``address`` names an existing Ray cluster, default a local Ray instance); both write the same cache.
    ``recheck_captioner``: decide the captioner again rather than as remembered by the store
    (:func:`pipeline.captions.choose_captioner`; ``gallery build`` does).
    Raises GalleryError for a missing, empty or unreadable folder and CacheError for an unwritable cache.
    """
    started = time.perf_counter()
    root = Path(root)
    if not root.exists():
        raise GalleryError(f"gallery folder {root} does not exist. Give a folder of images (JPEG, PNG, WebP, BMP, GIF).")
    if not root.is_dir():
        raise GalleryError(f"{root} is not a folder. Give a folder of images with --gallery.")
    root = root.resolve()
    progress = progress or (lambda done, total, what: None)
    relative_paths = scan_folder(root)
    if not relative_paths:
        raise GalleryError(f"gallery folder {root} has no image files (JPEG, PNG, WebP, BMP, GIF).")
    if len(relative_paths) > settings.max_gallery_items:
        raise GalleryError(f"gallery folder {root} has {len(relative_paths)} images, over the limit of "
                           f"{settings.max_gallery_items} (IAE_MAX_GALLERY_ITEMS).")
    csv_labels = read_labels_csv(root)

    store = store_dir_for(root, settings)
    hashes = hash_files(root, relative_paths, store, progress)  # unchanged files are not read again
    model_key = models.classifier_key  # the convnet itself loads only when there is something to compute
    table = FeatureTable.load(store, model_key)
    remove_stale_temporaries(store)
    stats = BuildStats()

    todo = [(rel, h) for rel, h in zip(relative_paths, hashes) if h is not None and h not in table and h not in table.rejected]
    todo = list({h: (rel, h) for rel, h in todo}.values())  # each content once
    stats.computed = len(todo)
    if todo and engine == "ray":
        compute_features_ray(root, todo, table, settings, progress, address=address)
    elif todo:
        _compute_features(root, todo, table, models, settings, progress)

    items, rows = [], []
    for relative, digest in zip(relative_paths, hashes):
        if digest is None:
            stats.skipped.append((relative, "cannot be read"))
        elif digest in table.rejected:
            stats.skipped.append((relative, table.rejected[digest]))
        else:
            label, wnid = label_for(relative, csv_labels)
            items.append(GalleryItem(len(items), relative, digest, label, wnid))
            rows.append(digest)
    if not items:
        raise GalleryError(f"none of the {len(relative_paths)} image files in {root} could be decoded "
                           f"(first: {stats.skipped[0][0]}: {stats.skipped[0][1]}).")
    stats.items = len(items)
    computed_now = {digest for _, digest in todo}
    stats.reused = sum(1 for digest in rows if digest not in computed_now)
    pooled, logits = table.consolidate(store, rows, items, root, lambda: models.classifier_name)
    gallery = Gallery(root, items, pooled, logits, store, model_key, settings)
    gallery.index_messages = list(table.messages)
    if with_captions:
        gallery.captions = caption_gallery(gallery, models, settings, progress, engine=engine, address=address,
                                           recheck_captioner=recheck_captioner)
    stats.seconds = time.perf_counter() - started
    return gallery, stats


DECODE_THREADS = min(4, os.cpu_count() or 1)
"""Threads decoding images ahead of the convnet (PIL and numpy release the GIL while they work); on 2
cores, 2 threads against 1 thread and 2 worker processes: see scripts/bench_decode.py."""


def _model_input(root: Path, settings: Settings, classifier, item: tuple[str, str]):
    """Network input of one gallery file ``item`` (relative path, sha256): decoded safely, reduced to
    ``classifier.decode_short_side``, preprocessed. Returns ((1, 3, 224, 224) float32, None), or
    (None, the reason it was refused)."""
    try:
        image = load_image(root / item[0], max_pixels=settings.max_pixels, max_bytes=settings.max_file_bytes,
                           min_short_side=classifier.decode_short_side)
    except ImageError as exc:
        return None, str(exc)
    return classifier.preprocess([image]), None


def _compute_features(root, todo, table: "FeatureTable", models, settings: Settings, progress: Progress) -> None:
    """Run the convnet over ``todo`` [(relative path, sha256)] batch by batch while
    :data:`DECODE_THREADS` threads decode the next images; every :data:`CHUNK` images are saved as a
    shard at once, so an interrupted build resumes."""
    classifier = models.classifier
    decode = lambda item: _model_input(root, settings, classifier, item)  # noqa: E731
    size = settings.batch_size
    progress(0, len(todo), "computing activations")
    pool = ThreadPoolExecutor(max_workers=DECODE_THREADS, thread_name_prefix="decode")
    try:
        decoded = in_order(pool, decode, todo, ahead=2 * size)
        for start in range(0, len(todo), CHUNK):
            chunk = todo[start:start + CHUNK]
            good, outputs, rejected = [], [], {}
            for offset in range(0, len(chunk), size):
                inputs = []
                for _, digest in chunk[offset:offset + size]:
                    array, reason = next(decoded)
                    if array is None:
                        rejected[digest] = reason
                    else:
                        inputs.append(array)
                        good.append(digest)
                if inputs:
                    outputs.append(models.run_classifier(np.concatenate(inputs)))
                progress(start + min(offset + size, len(chunk)), len(todo), "computing activations")
            pooled = np.concatenate([out.pooled for out in outputs]) if outputs else None
            logits = np.concatenate([out.logits for out in outputs]) if outputs else None
            table.add_shard(good, pooled, logits, rejected)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


