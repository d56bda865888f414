"""Content hashes of a gallery's files, remembered by file status so that unchanged files are not read
again: opening a cached gallery of 1,000 phone photos (4 GB) would otherwise re-read every byte.

``<store>/file-hashes.json`` maps each relative path to ``[size, mtime_ns, ctime_ns, inode, hashed_ns,
sha256]`` (checksummed, :func:`pipeline.storage.write_checked_mapping`). A recorded hash is reused only
when the file's size, modification time, status-change time and inode all equal the recorded ones
(the status-change time moves on every write, rename and ``utime``, and cannot be set back), and the
file was last modified long enough before it was hashed (:func:`racy_window_ns`): a file written in
the same instant as it was hashed could be written again without its times moving (git's "racy"
rule), so it is hashed again next time. Anything else is read and hashed (streaming, constant memory).
A damaged or unwritable record only costs hashing again.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

from .errors import CacheError
from .images import file_sha256
from .progress import Progress
from .storage import read_checked_mapping, write_checked_mapping

FILE_NAME = "file-hashes.json"
#: A hash is trusted only for files modified at least this long before they were hashed: longer than
#: the kernel's timestamp tick on file systems with fine timestamps (ext4, XFS, btrfs, APFS: the tick
#: is a few ms) ...
RACY_NS = 100_000_000
#: ... and on file systems with whole-second timestamps (FAT's are 2 s, HFS+'s 1 s), this long.
RACY_COARSE_NS = 2_000_000_000
#: Report progress every this many files.
PROGRESS_EVERY = 64


def racy_window_ns(mtime_ns: int) -> int:
    """How long before its hashing a file must have been modified for its hash to be trusted: a
    timestamp in whole seconds says the file system keeps coarse ones."""
    return RACY_COARSE_NS if mtime_ns % 1_000_000_000 == 0 else RACY_NS


def _status(path: Path) -> list[int]:
    """[size, mtime_ns, ctime_ns, inode] of the file ``path`` points to."""
    st = os.stat(path)
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


def hash_files(root: Path, relative_paths: list[str], store: Path, progress: Progress | None = None) -> list[str | None]:
    """SHA-256 (hex) of each file ``root / relative`` (None for a file that cannot be read), in the
    order of ``relative_paths``, reusing the store's record where the file is unchanged (see the
    module docstring) and saving the record when anything was hashed anew."""
    progress = progress or (lambda done, total, what: None)
    record_path = Path(store) / FILE_NAME
    known = read_checked_mapping(record_path, "files")
    fresh: dict[str, list] = {}
    hashes: list[str | None] = []
    changed = False
    total = len(relative_paths)
    for n, relative in enumerate(relative_paths):
        if n % PROGRESS_EVERY == 0:
            progress(n, total, "hashing files")
        path = Path(root) / relative
        try:
            status = _status(path)
            entry = known.get(relative)
            if (isinstance(entry, list) and len(entry) == 6 and entry[:4] == status
                    and entry[4] - status[1] >= racy_window_ns(status[1])):
                digest = str(entry[5])
            else:
                hashed_ns = time.time_ns()
                digest = file_sha256(path)
                entry = status + [hashed_ns, digest]
                changed = True
            fresh[relative] = entry
            hashes.append(digest)
        except OSError:
            hashes.append(None)
    progress(total, total, "hashing files")
    if changed or fresh.keys() != known.keys():
        try:
            write_checked_mapping(record_path, "files", fresh)
        except CacheError:
            pass  # an unwritable store: the next open hashes again
    return hashes
