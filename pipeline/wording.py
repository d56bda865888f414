"""Wording kept as data: the parsed ``prompts/<name>.json`` files, read once per process."""
from __future__ import annotations

import json
from functools import lru_cache

from .config import PROMPTS_DIR


@lru_cache(maxsize=None)
def prompts(name: str) -> dict:
    """The parsed ``prompts/<name>.json`` (``name`` without the suffix, e.g. ``"why"``)."""
    return json.loads((PROMPTS_DIR / f"{name}.json").read_text(encoding="utf-8"))


def why(section: str) -> dict:
    """One section of ``prompts/why.json`` (the wording of offsets, geometry, ground truth, thresholds
    and heatmaps; see its ``_doc`` key)."""
    return prompts("why")[section]
