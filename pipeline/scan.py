"""A gallery folder: which of its files are images, and what each one is labelled.

Labels come from imagen-style names (``<wnid>_<id>_<label>.jpg``), else the parent folder's name,
else an optional ``labels.csv`` (``file,label``) at the root.
"""
from __future__ import annotations

import csv
import re
from pathlib import Path

from .errors import GalleryError
from .images import IMAGE_SUFFIXES

IMAGEN_NAME = re.compile(r"^(n\d{8})_(\d+)_(.+)$")


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
    except (OSError, KeyError, AttributeError, ValueError, csv.Error) as exc:
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
