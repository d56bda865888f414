"""Finding and reading the evaluation reports (``python -m eval ... --out DIR`` writes them): a report
is a folder holding a ``results.md``, with its PNG figures beside it.

Only files inside the reports folder are ever read (links that leave it are ignored), and a report's
text is read up to :data:`MAX_MARKDOWN_BYTES`. Pure file-system code: no Gradio, no models.
"""
from __future__ import annotations

from pathlib import Path

from .config import PROJECT_ROOT

DEFAULT_EVAL_DIR = PROJECT_ROOT / "eval" / "reports"
RESULTS_NAME = "results.md"
MAX_MARKDOWN_BYTES = 512 * 1024


def eval_reports(eval_dir: Path) -> list[Path]:
    """Folders under ``eval_dir`` (``eval_dir`` itself included) holding a results.md, newest first
    (by results.md's modification time); links that leave ``eval_dir`` are ignored."""
    eval_dir = Path(eval_dir)
    if not eval_dir.is_dir():
        return []
    candidates = [eval_dir] if (eval_dir / RESULTS_NAME).is_file() else []
    try:
        candidates += [p for p in eval_dir.iterdir() if p.is_dir() and (p / RESULTS_NAME).is_file()]
    except OSError:
        return []
    real_root = eval_dir.resolve()
    candidates = [p for p in candidates if (p / RESULTS_NAME).resolve().is_relative_to(real_root)]
    return sorted(candidates, key=lambda p: ((p / RESULTS_NAME).stat().st_mtime, p.name), reverse=True)


def report_text(folder: Path) -> str:
    """The report's results.md as text: its first :data:`MAX_MARKDOWN_BYTES` bytes, decoded as UTF-8
    (undecodable bytes become U+FFFD)."""
    with open(Path(folder) / RESULTS_NAME, "rb") as f:
        data = f.read(MAX_MARKDOWN_BYTES)
    return data.decode("utf-8", "replace")


def report_figures(folder: Path, eval_dir: Path) -> list[Path]:
    """The report's PNG files (sorted by name) that really lie inside ``eval_dir``."""
    real_root = Path(eval_dir).resolve()
    return sorted(p for p in Path(folder).glob("*.png") if p.is_file() and p.resolve().is_relative_to(real_root))
