"""Measurements of a gallery's spaces that hold as long as the space's vectors do, computed once and
kept in the gallery's store: the typical nearest-neighbour distance (the yardstick of offset sizes)
and the near-duplicate calibration (:mod:`pipeline.thresholds`). Each costs O(N^2 D) on an exact
index (a quarter of a second at 1,000 items on 2 busy cores): a question answered from the cache
reads it instead.

``<store>/space-stats.json`` is a checksummed mapping (:func:`pipeline.storage.write_checked_mapping`)
from ``"<space>/<name>"`` to ``{"identity": ..., "value": ...}``. ``identity`` says what the space's
vectors were made from (the dict its index is saved with: model, space, items digest, captions
digest); a value whose identity differs is computed again. Values are JSON (floats round-trip
exactly, so a value read back equals the one computed). Values are also kept in memory for the
process. A damaged file is ignored; an unwritable store only costs computing again in the next process.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable

from .errors import CacheError
from .storage import read_checked_mapping, write_checked_mapping

FILE_NAME = "space-stats.json"

_MEMORY: dict[tuple[str, str, str], tuple[dict, object]] = {}
_LOCK = threading.Lock()


def measured(store: Path, space: str, identity: dict, name: str, compute: Callable[[], object]):
    """The measurement ``name`` of ``space`` (a JSON value): from memory, else from the store when
    recorded for this ``identity``, else ``compute()``, recorded in both. One thread computes at a time."""
    key = (str(Path(store).resolve()), space, name)
    with _LOCK:
        known = _MEMORY.get(key)
        if known is not None and known[0] == identity:
            return known[1]
        path = Path(store) / FILE_NAME
        record = read_checked_mapping(path, "stats")
        entry = record.get(f"{space}/{name}")
        if isinstance(entry, dict) and entry.get("identity") == identity and "value" in entry:
            value = entry["value"]
        else:
            value = compute()
            record[f"{space}/{name}"] = {"identity": identity, "value": value}
            try:
                write_checked_mapping(path, "stats", record)
            except CacheError:
                pass  # an unwritable store: computed again by the next process
        _MEMORY[key] = (identity, value)
        return value
