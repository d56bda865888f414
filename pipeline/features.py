"""The feature store of a gallery: convnet activations by content hash, cached on disk.

A gallery's store lives in ``<cache_dir>/galleries/<folder name>-<hash of its absolute path>/``
(:func:`store_dir_for`). A build adds computed chunks as shards (``shards/<uuid>.npz``, each saved
atomically, so that an interrupted build resumes), then :meth:`FeatureTable.consolidate` writes
aligned arrays (``pooled.npy``, ``logits.npy``) and the manifest last. ``manifest.json`` records the
backbone, dims, library versions, the items with content hashes and checksums of every array, so a
damaged file is detected and recomputed, never used.
"""
from __future__ import annotations

import hashlib
import io
import os
import platform
import time
import uuid
from pathlib import Path

import numpy as np

from .config import Settings
from .errors import CacheError
from .index import FAISS_VERSION
from .storage import atomic_write_bytes, read_array, read_json, safe_filename, write_json, writing_array

MANIFEST_VERSION = 1
#: Images per shard: a build saves what it computed every CHUNK images.
CHUNK = 128
#: ``*.tmp`` files older than this (seconds) were left by killed writes (see remove_stale_temporaries).
STALE_TEMPORARY_SECONDS = 3600


def store_dir_for(root: Path, settings: Settings) -> Path:
    """The folder of the gallery of ``root`` in ``settings.cache_dir`` (see the module docstring)."""
    root = Path(root).resolve()
    digest = hashlib.sha256(os.fsencode(root)).hexdigest()[:12]
    safe = safe_filename(root.name, 40) or "gallery"
    return settings.cache_dir / "galleries" / f"{safe}-{digest}"



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

    def consolidate(self, store: Path, hashes: list[str], items: list, root: Path, backbone_name):
        """Write aligned pooled/logits arrays for ``hashes`` and the manifest (last), remove shards,
        and return the arrays as read-only memory maps. ``items``: the gallery's
        :class:`pipeline.gallery.GalleryItem` rows, in the order of ``hashes``; ``backbone_name``: a
        callable returning the convnet's name for the manifest (called only when it is written)."""
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
            "version": MANIFEST_VERSION, "root": str(root), "model": self.model_key, "backbone": backbone_name(),
            "dims": dims,
            "libraries": {"numpy": np.__version__, "faiss": FAISS_VERSION, "python": platform.python_version()},
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
