"""The report writer: ``results.json``, ``results.md`` and PNG plots in one output folder.

A :class:`Report` collects Markdown sections, the JSON results and matplotlib figures; :meth:`Report.write`
writes them all (each file atomically). Numbers in Markdown go through :func:`pct` and :func:`num`, so
tables read the same everywhere. NaN and infinities become ``null`` in the JSON.
"""
from __future__ import annotations

import io
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from pipeline.storage import atomic_write_bytes, ensure_dir


def pct(x: float | None, digits: int = 1) -> str:
    """0.923 -> ``92.3%``; None or NaN -> ``n/a``."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{100.0 * float(x):.{digits}f}%"


def num(x: float | None, digits: int = 3) -> str:
    """A float with ``digits`` decimals; None or NaN -> ``n/a``."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{float(x):.{digits}f}"


def md_table_cell(text: Any) -> str:
    """``text`` as one cell of a Markdown table: on one line (white space runs folded to a space), its
    pipes escaped. Other Markdown in it stays Markdown (reports put `code` and *emphasis* in cells)."""
    return " ".join(str(text).split()).replace("|", "\\|")


def md_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], align: str | None = None) -> str:
    """A GitHub Markdown table. ``align``: one character per column, ``l`` or ``r`` (default: first
    column left, the rest right)."""
    align = align or ("l" + "r" * (len(headers) - 1))
    marks = {"l": ":---", "r": "---:", "c": ":---:"}
    lines = ["| " + " | ".join(md_table_cell(h) for h in headers) + " |",
             "| " + " | ".join(marks[a] for a in align) + " |"]
    lines += ["| " + " | ".join(md_table_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def jsonable(value: Any) -> Any:
    """``value`` with numpy scalars/arrays, tuples and Paths turned into JSON types, NaN/inf -> None."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, Path):
        return str(value)
    return value


@dataclass
class Report:
    """What one suite run produced. ``results`` is the JSON body (provenance goes under ``run``)."""

    suite: str
    title: str
    results: dict = field(default_factory=dict)
    sections: list[tuple[str, str]] = field(default_factory=list)
    figures: list[tuple[str, Any]] = field(default_factory=list)  # (file name, matplotlib Figure)

    def section(self, heading: str, body: str) -> None:
        self.sections.append((heading, body.strip()))

    def figure(self, name: str, fig) -> None:
        self.figures.append((name, fig))

    def markdown(self) -> str:
        parts = [f"# {self.title}", ""]
        for heading, body in self.sections:
            parts += [f"## {heading}", "", body, ""]
        if self.figures:
            parts += ["## Plots", ""]
            parts += [f"![{name}]({name})" for name, _ in self.figures]
            parts.append("")
        return "\n".join(parts)

    def write(self, out: Path) -> list[Path]:
        """Write results.json, results.md and the PNGs into ``out`` (created); return the paths.
        A folder that cannot be written is a CacheError saying so."""
        # deferred: matplotlib takes about a second to import; only a report with figures needs it
        import matplotlib.pyplot as plt

        out = ensure_dir(Path(out), hint="Choose a writable folder with --out.")
        written = []
        body = json.dumps(jsonable(self.results), indent=1, ensure_ascii=False, allow_nan=False)
        atomic_write_bytes(out / "results.json", (body + "\n").encode())
        written.append(out / "results.json")
        atomic_write_bytes(out / "results.md", self.markdown().encode())
        written.append(out / "results.md")
        for name, fig in self.figures:
            buffer = io.BytesIO()
            fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
            plt.close(fig)
            atomic_write_bytes(out / name, buffer.getvalue())
            written.append(out / name)
        umask = os.umask(0)
        os.umask(umask)
        for path in written:  # temporary files are created 0600; reports are meant to be shared
            os.chmod(path, 0o666 & ~umask)
        return written


def new_figure(width: float = 8.0, height: float = 4.5):
    """A matplotlib (figure, axes) on the Agg backend (no display needed)."""
    # deferred: matplotlib takes about a second to import; only the suites' plots need it
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt  # deferred, after choosing the backend

    return plt.subplots(figsize=(width, height))


def grouped_bars(ax, groups: Sequence[str], series: dict[str, Sequence[float]], ylabel: str,
                 percent: bool = True, reference: dict[str, float] | None = None) -> None:
    """Bars for each group (x axis) and series (colours); values in [0, 1] shown as percentages.
    ``reference``: horizontal dashed lines (label -> value), e.g. the talk's number."""
    n = max(1, len(series))
    width = 0.8 / n
    x = np.arange(len(groups))
    for i, (name, values) in enumerate(series.items()):
        values = np.array([np.nan if v is None else v for v in values], dtype=float)
        ax.bar(x + (i - (n - 1) / 2) * width, values * (100 if percent else 1), width, label=name)
    for label, value in (reference or {}).items():
        ax.axhline(value * (100 if percent else 1), linestyle="--", color="black", linewidth=1)
        ax.text(-0.45, value * (100 if percent else 1), f"{label}: {value * (100 if percent else 1):.1f}",
                va="bottom", ha="left", fontsize=8, bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8})
    ax.set_xticks(x)
    ax.set_xticklabels(groups, rotation=0)
    ax.set_ylabel(ylabel + (" (%)" if percent else ""))
    if percent:
        ax.set_ylim(0, 105)
    if len(series) > 1:
        ax.legend(fontsize=8, ncols=min(4, len(series)))
    ax.grid(axis="y", alpha=0.3)


def stacked_bars(ax, groups: Sequence[str], parts: dict[str, Sequence[float]], ylabel: str) -> None:
    """Stacked shares (each group's parts sum to 1), shown as percentages."""
    bottom = np.zeros(len(groups))
    x = np.arange(len(groups))
    for name, values in parts.items():
        values = np.nan_to_num(np.array(values, dtype=float)) * 100
        ax.bar(x, values, 0.6, bottom=bottom, label=name)
        bottom += values
    ax.set_xticks(x)
    ax.set_xticklabels(groups)
    ax.set_ylabel(ylabel + " (%)")
    ax.set_ylim(0, 105)
    ax.legend(fontsize=8, ncols=min(5, len(parts)), loc="upper center", bbox_to_anchor=(0.5, -0.08))
    ax.grid(axis="y", alpha=0.3)
