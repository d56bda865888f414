"""A gallery folder: which of its files are images, and what each one is labelled.

Labels come from imagen-style names (``<wnid>_<id>_<label>.jpg``), else the parent folder's name,
else an optional ``labels.csv`` (``file,label``) at the root.
"""
from __future__ import annotations

import csv
import os
import re
from pathlib import Path

from .errors import GalleryError
from .images import IMAGE_SUFFIXES

IMAGEN_NAME = re.compile(r"^(n\d{8})_(\d+)_(.+)$")


def scan_folder(root: Path) -> list[str]:
    """Relative paths (sorted, forward slashes) of image files under ``root``, by suffix.

    Hidden files and folders are skipped, links to folders are not followed, and a link to a file is
    kept only when it resolves to a file inside ``root``. One ``os.scandir`` per folder: only links
    are resolved (imagen's 1,000 files: 0.045 s with ``Path.rglob`` and a ``resolve`` per file).
    """
    real_root = Path(root).resolve()
    found = []
    folders = [(str(root), "")]  # (folder, its path relative to root + "/"): a stack, not recursion
    while folders:
        folder, prefix = folders.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    folders.append((entry.path, f"{prefix}{entry.name}/"))
                    continue
                if os.path.splitext(entry.name)[1].lower() not in IMAGE_SUFFIXES:
                    continue
                if entry.is_symlink():
                    resolved = Path(entry.path).resolve()
                    if not resolved.is_relative_to(real_root) or not resolved.is_file():
                        continue
                elif not entry.is_file(follow_symlinks=False):
                    continue
            except OSError:
                continue
            found.append(prefix + entry.name)
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
