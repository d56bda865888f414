"""Small, careful file I/O: atomic writes, checksummed arrays and JSON.

Every write goes to a temporary file in the same folder, is fsynced, then renamed over the target, so
a reader sees the old file or the new one, never half of one, and a build killed at any point leaves
the cache as it was or complete.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .errors import CacheError
from .images import file_sha256

#: What to do about a cache folder that cannot be written (the end of a CacheError's message).
CACHE_DIR_HINT = "Choose a writable cache folder with --cache-dir or IAE_CACHE_DIR."


def safe_filename(text: str, max_chars: int = 80) -> str:
    """``text`` as part of a file name in a cache: every character but ``A-Z a-z 0-9 _ . -`` becomes
    ``_``, and at most ``max_chars`` characters are kept (may be empty when ``text`` is)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)[:max_chars]


def ensure_dir(folder: Path, hint: str = CACHE_DIR_HINT) -> Path:
    """Create ``folder`` (and parents) if needed; CacheError with a plain message when impossible,
    ending with ``hint`` (what to do)."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CacheError(f"cannot write to {folder} ({exc.strerror or exc}). {hint}") from exc
    return folder


@contextmanager
def replacing(path: Path):
    """Yield the name of a new temporary file in ``path``'s folder; on a clean exit from the ``with``
    block rename it over ``path`` (atomic). Any error removes the temporary file and leaves ``path``
    as it was; OS errors (a full disk, a read-only folder) become a CacheError saying what to do."""
    path = Path(path)
    ensure_dir(path.parent)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
        os.close(fd)
    except OSError as exc:
        raise CacheError(f"cannot write to {path.parent} ({exc.strerror or exc}). {CACHE_DIR_HINT}") from exc
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as exc:
        _remove_quietly(tmp)
        raise CacheError(f"cannot write {path} ({exc.strerror or exc}; is the disk full?). "
                         "Free some space or choose another cache folder with --cache-dir.") from exc
    except BaseException:
        _remove_quietly(tmp)
        raise


def fsync_file(name: str) -> None:
    with open(name, "rb+") as f:
        os.fsync(f.fileno())


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder, fsync, rename."""
    with replacing(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def _remove_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_json(path: Path, obj) -> None:
    # ASCII-escaped, so that file names that are not valid UTF-8 (surrogate escapes) round-trip.
    atomic_write_bytes(path, json.dumps(obj, indent=1, ensure_ascii=True).encode("ascii"))


def read_json(path: Path):
    """Parsed JSON, or CacheError naming the file when it is missing or unreadable."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise CacheError(f"{path} is missing") from exc
    except (OSError, ValueError) as exc:
        raise CacheError(f"{path} is damaged ({exc})") from exc


def mapping_checksum(mapping: dict) -> str:
    """SHA-256 (hex) of a JSON mapping, independent of its key order."""
    return hashlib.sha256(json.dumps(mapping, sort_keys=True).encode()).hexdigest()


def write_checked_mapping(path: Path, name: str, mapping: dict) -> None:
    """Save ``mapping`` (string keys, JSON values) as ``{name: mapping, "sha256": checksum}``, atomically
    (:func:`mapping_checksum`). Raises CacheError where the file cannot be written."""
    write_json(path, {name: mapping, "sha256": mapping_checksum(mapping)})


def read_checked_mapping(path: Path, name: str) -> dict:
    """The mapping :func:`write_checked_mapping` saved under ``name``, or {} when the file is missing,
    unreadable or fails its checksum (a damaged file is never used)."""
    try:
        data = read_json(path)
        if isinstance(data, dict) and isinstance(data.get(name), dict) and mapping_checksum(data[name]) == data["sha256"]:
            return dict(data[name])
    except (CacheError, KeyError, TypeError):
        pass
    return {}


def write_array(path: Path, array: np.ndarray) -> str:
    """Save ``array`` as .npy atomically; return the SHA-256 of the file's bytes."""
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    data = buffer.getvalue()
    atomic_write_bytes(path, data)
    return sha256_bytes(data)


class WrittenArray:
    """What :func:`writing_array` yields: ``array``, a writable (N, D) memory map to fill, and after
    the ``with`` block ``sha256``, the checksum of the file as renamed into place."""

    array: np.ndarray
    sha256: str | None = None


@contextmanager
def writing_array(path: Path, shape: tuple[int, ...], dtype=np.float32):
    """Write a large .npy incrementally, never holding it in memory, with :func:`write_array`'s
    guarantees: the rows go into a memory map of a temporary file in the same folder (its space
    reserved first, so a full disk is a CacheError, not a crash), which on a clean exit from the
    ``with`` block is flushed, fsynced, checksummed and renamed over ``path``. The file's bytes equal
    ``np.save`` of the same array. On an error the temporary file is removed and ``path`` untouched.
    """
    written = WrittenArray()
    with replacing(path) as tmp:
        written.array = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=tuple(shape))
        size = os.path.getsize(tmp)
        with open(tmp, "rb+") as f:
            if size and hasattr(os, "posix_fallocate"):
                os.posix_fallocate(f.fileno(), 0, size)
        yield written
        written.array.flush()
        del written.array
        fsync_file(tmp)
        written.sha256 = file_sha256(tmp)


def read_array(path: Path, sha256: str | None = None, mmap: bool = True) -> np.ndarray:
    """Load a .npy written by :func:`write_array`, memory-mapped read-only by default.

    With ``sha256`` the file's bytes are checked first; a mismatch or a damaged file raises CacheError.
    """
    path = Path(path)
    try:
        if sha256 is not None:
            if file_sha256(path) != sha256:
                raise CacheError(f"{path.name} is damaged (checksum mismatch)")
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except CacheError:
        raise
    except FileNotFoundError as exc:
        raise CacheError(f"{path} is missing") from exc
    except (OSError, ValueError) as exc:
        raise CacheError(f"{path.name} is damaged ({exc})") from exc
