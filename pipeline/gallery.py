"""A gallery: any folder of images, turned into cached vectors, labels and captions.

Building a gallery (:func:`build_gallery`):

1. scan the folder recursively for image files (symlinks that leave the folder are skipped);
2. hash every file (SHA-256); labels come from imagen-style names (``<wnid>_<id>_<label>.jpg``),
   else the parent folder's name, else an optional ``labels.csv`` (``file,label``);
3. compute convnet activations only for content not already in the cache: in chunks, each chunk
   saved atomically as a shard under ``<store>/shards/`` so that an interrupted build resumes;
4. consolidate aligned arrays (``pooled.npy``, ``logits.npy``) and write the manifest last.

Files that cannot be decoded are skipped and reported (path and reason), never fatal.

The store lives in ``<cache_dir>/galleries/<folder name>-<hash of its absolute path>/``. Its
``manifest.json`` records the backbone, dims, library versions, the items with content hashes and
checksums of every array, so a damaged file is detected and recomputed, never used.
"""
from __future__ import annotations

import csv
import hashlib
import io
import os
import re
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from . import vectors as vec
from .config import Settings
from .images import IMAGE_SUFFIXES, ImageError, file_sha256, load_image
from .index import StaleIndexError, VectorIndex, load_index
from .labels import softmax, top_labels
from .storage import CacheError, atomic_write_bytes, read_array, read_json, write_json, writing_array
from .errors import GalleryError

MANIFEST_VERSION = 1
CHUNK = 128
IMAGEN_NAME = re.compile(r"^(n\d{8})_(\d+)_(.+)$")
Progress = Callable[[int, int, str], None]
"""progress(done, total, what): called as long work advances."""


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


# --- scanning and labels ------------------------------------------------------------------------


def scan_folder(root: Path) -> list[str]:
    """Relative paths (sorted, forward slashes) of image files under ``root``, by suffix.

    Hidden files and folders are skipped, and so is any link that resolves outside ``root``.
    """
    root = Path(root)
    real_root = root.resolve()
    found = []
    for path in root.rglob("*"):
        relative = path.relative_to(root)
        if any(part.startswith(".") for part in relative.parts):
            continue
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        try:
            resolved = path.resolve()
            if not resolved.is_relative_to(real_root) or not resolved.is_file():
                continue
        except OSError:
            continue
        found.append(relative.as_posix())
    return sorted(found)


def read_labels_csv(root: Path) -> dict[str, str]:
    """``labels.csv`` at the root (header ``file,label``), if present; else {}."""
    path = Path(root) / "labels.csv"
    if not path.exists():
        return {}
    try:
        with path.open(encoding="utf-8", newline="") as f:
            return {row["file"].strip(): row["label"].strip() for row in csv.DictReader(f) if row.get("file")}
    except (OSError, KeyError, ValueError, UnicodeDecodeError) as exc:
        raise GalleryError(f"{path}: cannot read labels ({exc}). It needs a header 'file,label'.") from exc


def label_for(relative: str, csv_labels: dict[str, str]) -> tuple[str | None, str | None]:
    """(label, wnid) of an item: imagen file name, else parent folder name, else labels.csv."""
    parts = relative.split("/")
    match = IMAGEN_NAME.match(Path(parts[-1]).stem)
    if match:
        return match.group(3).replace("_", " "), match.group(1)
    if len(parts) > 1:
        return parts[-2], None
    return csv_labels.get(relative), None


# --- the gallery --------------------------------------------------------------------------------


def store_dir_for(root: Path, settings: Settings) -> Path:
    root = Path(root).resolve()
    digest = hashlib.sha256(os.fsencode(root)).hexdigest()[:12]
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", root.name)[:40] or "gallery"
    return settings.cache_dir / "galleries" / f"{safe}-{digest}"


IMAGE_SPACES = ("image:pooled", "image:logits", "image:probs")
SPACES = IMAGE_SPACES + ("caption",)


def space_key(space: str, layer: str) -> str:
    """``image`` + layer -> ``image:<layer>``; ``caption`` -> ``caption``."""
    if space == "caption":
        return "caption"
    if space == "image":
        return f"image:{layer}"
    raise ValueError(f"unknown space {space!r}: use 'image' or 'caption'")


@dataclass
class Captions:
    """Per item: the caption text and the name of the captioner that wrote it; vectors (N, D) float32
    L2-normalised sentence embeddings of the texts, by ``text_model``."""

    texts: list[str]
    captioners: list[str]
    vectors: np.ndarray
    text_model: str
    announcement: str | None = None


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
            expect = {"model": self.model_key if space != "caption" else self.captions.text_model,
                      "space": space, "items_digest": self.digest,
                      "captions_digest": _captions_digest(self.captions) if space == "caption" else None}
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

    def typical_nn_distance(self, space: str) -> float:
        """Median distance from an item to its nearest other distinct item in a space (cached).

        Exact duplicates are collapsed first: label captions repeat often, and a zero distance to a
        copy says nothing about how far apart different items are."""
        if space not in self._nn_distance and not self.index(space).exact:  # large: ask the index
            self._nn_distance[space] = self.index(space).typical_nn_distance()
        if space not in self._nn_distance:
            distinct = np.unique(self.vectors(space), axis=0)
            self._nn_distance[space] = vec.typical_nn_distance(distinct) if len(distinct) >= 2 else 0.0
        return self._nn_distance[space]

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


def _captions_digest(captions: Captions | None) -> str | None:
    if captions is None:
        return None
    return hashlib.sha256("\n".join(captions.texts).encode()).hexdigest()


# --- building -----------------------------------------------------------------------------------


def build_gallery(root: Path, settings: Settings, models, progress: Progress | None = None,
                  with_captions: bool = True, engine: str = "local",
                  address: str | None = None) -> tuple[Gallery, BuildStats]:
    """Build (or load from cache) the gallery of the folder ``root``; see the module docstring.

    ``models`` is a :class:`pipeline.models.Models`. Returns the gallery and what the build did.
    ``engine``: ``local`` (this process) or ``ray`` (Ray Data workers, see :mod:`pipeline.distributed`;
    ``address`` names an existing Ray cluster, default a local Ray instance); both write the same cache.
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

    hashes = []
    for n, relative in enumerate(relative_paths):
        try:
            hashes.append(file_sha256(root / relative))
        except OSError:
            hashes.append(None)
        if n % 64 == 0:
            progress(n, len(relative_paths), "hashing files")
    progress(len(relative_paths), len(relative_paths), "hashing files")

    store = store_dir_for(root, settings)
    classifier = models.classifier
    model_key = classifier.model_key
    table = FeatureTable.load(store, model_key)
    remove_stale_temporaries(store)
    stats = BuildStats()

    todo = [(rel, h) for rel, h in zip(relative_paths, hashes) if h is not None and h not in table and h not in table.rejected]
    todo = list({h: (rel, h) for rel, h in todo}.values())  # each content once
    stats.computed = len(todo)
    if todo and engine == "ray":
        from .distributed import compute_features_ray

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
    pooled, logits = table.consolidate(store, rows, items, root, classifier)
    gallery = Gallery(root, items, pooled, logits, store, model_key, settings)
    gallery.index_messages = list(table.messages)
    if with_captions:
        from .captions import caption_gallery

        gallery.captions = caption_gallery(gallery, models, settings, progress, engine=engine, address=address)
    stats.seconds = time.perf_counter() - started
    return gallery, stats


STALE_TEMPORARY_SECONDS = 3600


def remove_stale_temporaries(store: Path, older_than: float = STALE_TEMPORARY_SECONDS) -> int:
    """Delete ``*.tmp`` files that killed writes left in the store (only old ones: a build running
    beside this one may be about to rename a fresh one). Returns how many were removed."""
    removed = 0
    cutoff = time.time() - older_than
    for tmp in Path(store).glob("**/*.tmp"):
        try:
            if tmp.stat().st_mtime < cutoff:
                tmp.unlink()
                removed += 1
        except OSError:
            pass
    return removed


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


def _in_order(pool: ThreadPoolExecutor, function, items: list, ahead: int):
    """Yield ``function(item)`` for every item in order, computed on ``pool`` up to ``ahead`` items
    before it is asked for."""
    from collections import deque

    pending = deque()
    for item in items:
        pending.append(pool.submit(function, item))
        if len(pending) > ahead:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


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
        decoded = _in_order(pool, decode, todo, ahead=2 * size)
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


class FeatureTable:
    """Content hash -> (pooled, logits) rows for one backbone: the consolidated arrays of the last
    build plus shards written since. Files whose checksum fails are dropped (and recomputed)."""

    def __init__(self, store: Path, model_key: str):
        self.store = Path(store)
        self.model_key = model_key
        self.rows: dict[str, tuple[int, int]] = {}  # hash -> (source index, row)
        # (pooled, logits) memory maps of the consolidated arrays, or the path of a shard, read only
        # when consolidating: a build of a million images never holds all its vectors in memory.
        self.sources: list[tuple[np.ndarray, np.ndarray] | Path] = []
        self.rejected: dict[str, str] = {}
        self.messages: list[str] = []
        self.shard_paths: list[Path] = []

    def __contains__(self, digest: str) -> bool:
        return digest in self.rows

    @classmethod
    def load(cls, store: Path, model_key: str) -> "FeatureTable":
        table = cls(store, model_key)
        manifest_path = table.store / "manifest.json"
        if manifest_path.exists():
            try:
                manifest = read_json(manifest_path)
                if manifest.get("version") == MANIFEST_VERSION and manifest.get("model") == model_key:
                    pooled = read_array(table.store / "pooled.npy", manifest["arrays"]["pooled"])
                    logits = read_array(table.store / "logits.npy", manifest["arrays"]["logits"])
                    table._add_source([item["sha256"] for item in manifest["items"]], (pooled, logits))
                    table.rejected.update(manifest.get("rejected", {}))
                elif manifest.get("model") != model_key:
                    table.messages.append(f"cache was built with {manifest.get('model')}; recomputing for {model_key}")
            except (CacheError, KeyError, TypeError) as exc:
                table.messages.append(f"gallery cache damaged, recomputing: {exc}")
        for shard in sorted((table.store / "shards").glob("*.npz")):
            try:
                with np.load(shard, allow_pickle=False) as data:
                    if str(data["model"]) != model_key:
                        continue
                    data["pooled"], data["logits"]  # read (zip CRCs checked), then dropped
                    table._add_source(list(data["hashes"]), shard)
                    table.rejected.update(dict(zip(data["rejected_hashes"], data["rejected_reasons"])))
                table.shard_paths.append(shard)
            except Exception as exc:  # a torn or foreign shard: ignore it, its images are recomputed
                table.messages.append(f"ignored damaged shard {shard.name}: {exc}")
                table.shard_paths.append(shard)  # removed with the others once the build is consolidated
        return table

    def _add_source(self, hashes: list[str], source) -> None:
        """Add a source, (pooled, logits) arrays or a shard path, holding ``hashes`` in row order."""
        index = len(self.sources)
        self.sources.append(source)
        for row, digest in enumerate(hashes):
            self.rows[str(digest)] = (index, row)

    def _source_arrays(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        source = self.sources[index]
        if isinstance(source, Path):
            with np.load(source, allow_pickle=False) as data:
                return data["pooled"], data["logits"]
        return source

    def add_shard(self, hashes: list[str], pooled, logits, rejected: dict[str, str]) -> None:
        """Save one computed chunk atomically under ``shards/`` and add it to the table."""
        dim_p = pooled.shape[1] if pooled is not None else 0
        pooled = pooled if pooled is not None else np.zeros((0, dim_p), np.float32)
        logits = logits if logits is not None else np.zeros((0, 1000), np.float32)
        buffer = io.BytesIO()
        np.savez(buffer, model=np.array(self.model_key), hashes=np.array(hashes, dtype="U64"),
                 pooled=pooled, logits=logits,
                 rejected_hashes=np.array(list(rejected), dtype="U64"),
                 rejected_reasons=np.array(list(rejected.values()), dtype=str))
        path = self.store / "shards" / f"{uuid.uuid4().hex}.npz"
        atomic_write_bytes(path, buffer.getvalue())
        self.shard_paths.append(path)
        if len(hashes):
            self._add_source(hashes, path)
        self.rejected.update(rejected)

    def consolidate(self, store: Path, hashes: list[str], items: list[GalleryItem], root: Path, classifier):
        """Write aligned pooled/logits arrays for ``hashes`` and the manifest (last), remove shards,
        and return the arrays as read-only memory maps."""
        import platform

        import faiss

        manifest_path = store / "manifest.json"
        unchanged = False
        if manifest_path.exists() and not self.shard_paths:
            try:
                manifest = read_json(manifest_path)
                unchanged = (manifest.get("model") == self.model_key and
                             [i["sha256"] for i in manifest["items"]] == hashes and
                             [i["path"] for i in manifest["items"]] == [i.path for i in items])
            except (CacheError, KeyError):
                unchanged = False
        if unchanged:
            pooled = read_array(store / "pooled.npy")
            logits = read_array(store / "logits.npy")
            return pooled, logits
        checksums, dims = self._write_aligned(store, hashes)
        write_json(manifest_path, {
            "version": MANIFEST_VERSION, "root": str(root), "model": self.model_key, "backbone": classifier.name,
            "dims": dims,
            "libraries": {"numpy": np.__version__, "faiss": faiss.__version__, "python": platform.python_version()},
            "arrays": checksums, "rejected": self.rejected,
            "items": [{"path": i.path, "sha256": i.sha256, "label": i.label, "wnid": i.wnid} for i in items],
        })
        for shard in self.shard_paths:
            shard.unlink(missing_ok=True)
        return read_array(store / "pooled.npy"), read_array(store / "logits.npy")

    def _write_aligned(self, store: Path, hashes: list[str], chunk: int = 65_536) -> tuple[dict, dict]:
        """pooled.npy and logits.npy (float32) with row i = ``hashes[i]``, written incrementally into
        memory maps (:func:`pipeline.storage.writing_array`), one source at a time. Returns the files'
        checksums and dims."""
        groups: dict[int, list[tuple[int, int]]] = {}
        for position, digest in enumerate(hashes):
            source, row = self.rows[digest]
            groups.setdefault(source, []).append((position, row))
        first_pooled, first_logits = self._source_arrays(next(iter(groups)))
        dims = {"pooled": int(first_pooled.shape[1]), "logits": int(first_logits.shape[1])}
        del first_pooled, first_logits
        n = len(hashes)
        with writing_array(store / "pooled.npy", (n, dims["pooled"])) as pooled_out, \
                writing_array(store / "logits.npy", (n, dims["logits"])) as logits_out:
            for source, pairs in groups.items():
                pooled, logits = self._source_arrays(source)
                pairs_array = np.asarray(pairs, dtype=np.int64)
                for start in range(0, len(pairs_array), chunk):
                    positions, rows = pairs_array[start:start + chunk].T
                    pooled_out.array[positions] = pooled[rows]
                    logits_out.array[positions] = logits[rows]
                del pooled, logits
        return {"pooled": pooled_out.sha256, "logits": logits_out.sha256}, dims
