"""Pictures of an explanation, drawn with matplotlib's Agg backend (no display, no pyplot state).

* :func:`geometry_png`: the geometry of one space, drawn from the ``geometry`` JSON dict alone
  (:meth:`pipeline.geometry.Geometry.as_dict`): points by role, arrows A -> B and C -> query, and a
  circle of radius ``nn_radius`` (the typical nearest-neighbour distance) around C, so that one sees
  whether the query leaves C's neighbourhood.
* :func:`heatmap_png`: an image beside its class-activation overlays (one per target), from numpy
  arrays (:mod:`pipeline.models.heatmaps` computes the maps), composed with PIL.

Each returns PNG bytes; :func:`write_png` stores them atomically.
"""
from __future__ import annotations

import io
import textwrap
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .storage import atomic_write_bytes
from .wording import why

# role -> (marker, colour, size, label shown next to the point, z-order)
STYLE = {
    "neighbour": ("o", "#9e9e9e", 30, None, 2),
    "top": ("o", "#f0a04b", 36, None, 3),
    "answer": ("D", "#e0592a", 80, "D", 5),
    "A": ("s", "#3b6fb6", 70, "A", 4),
    "B": ("^", "#3b6fb6", 80, "B", 4),
    "C": ("o", "#2e8b57", 90, "C", 4),
    "query": ("*", "#c2185b", 160, "query", 6),
}
DPI = 110


def _figure(width: float, height: float):
    # deferred: matplotlib takes a second to import and only drawing a figure needs it
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(figure)
    return figure


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def geometry_png(geometry: dict, title: str | None = None) -> bytes:
    """PNG bytes of a ``geometry`` dict (keys ``plane``, ``preserved``, ``points`` [{role, id, x, y}],
    optional ``nn_radius``, ``query_text``). Top-k points are numbered by rank (the answer is 1)."""
    figure = _figure(8.0, 6.0)
    ax = figure.add_subplot(1, 1, 1)
    points = geometry["points"]
    by_role: dict[str, list[dict]] = {}
    for p in points:
        by_role.setdefault(p["role"], []).append(p)
    for role in STYLE:
        rows = by_role.get(role, [])
        if not rows:
            continue
        marker, colour, size, label, z = STYLE[role]
        ax.scatter([p["x"] for p in rows], [p["y"] for p in rows], marker=marker, s=size, color=colour,
                   edgecolors="black", linewidths=0.5, zorder=z,
                   label={"top": "top-k", "neighbour": "C's neighbours", "answer": "answer D"}.get(role, role))
        for rank, p in enumerate(rows, start=2):
            text = label if label else (str(rank) if role == "top" else None)
            if text:
                ax.annotate(text, (p["x"], p["y"]), textcoords="offset points", xytext=(6, 5), fontsize=9,
                            color=colour, zorder=z + 1)
    first = {role: rows[0] for role, rows in by_role.items()}
    for start, end, colour in (("A", "B", STYLE["A"][1]), ("C", "query", STYLE["query"][1])):
        if start in first and end in first:
            ax.annotate("", xy=(first[end]["x"], first[end]["y"]), xytext=(first[start]["x"], first[start]["y"]),
                        arrowprops={"arrowstyle": "-|>", "color": colour, "lw": 1.6}, zorder=7)
    radius = geometry.get("nn_radius")
    if radius and "C" in first:
        from matplotlib.patches import Circle  # deferred: matplotlib, as above

        ax.add_patch(Circle((first["C"]["x"], first["C"]["y"]), radius, fill=False, linestyle="--",
                            color="#607d8b", lw=1.0, zorder=1, label="typical neighbour distance"))
    xs = [p["x"] for p in points] + ([first["C"]["x"] - radius, first["C"]["x"] + radius] if radius and "C" in first else [])
    ys = [p["y"] for p in points] + ([first["C"]["y"] - radius, first["C"]["y"] + radius] if radius and "C" in first else [])
    pad = 0.08 * max(max(xs) - min(xs), max(ys) - min(ys), 1e-3)
    ax.set_xlim(min(xs) - pad, max(xs) + pad)
    ax.set_ylim(min(ys) - pad, max(ys) + pad)
    ax.set_aspect("equal", adjustable="box")
    ax.grid(True, alpha=0.25)
    ax.set_xlabel("along c")
    ax.set_ylabel("along the offset (orthogonal to c)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=7, framealpha=0.8)  # outside: never over a point
    heading = title or "geometry"
    ax.set_title(f"{textwrap.fill(heading, 70)}\npreserved {geometry['preserved']:.2f} of the distances", fontsize=9)
    caption = textwrap.fill(geometry.get("plane", ""), 120)
    if radius:
        caption += "\n" + textwrap.fill(why("geometry")["circle"], 120)
    figure.text(0.01, 0.01, caption, fontsize=6.5, va="bottom", ha="left", color="#37474f")
    figure.subplots_adjust(left=0.09, right=0.75, top=0.9, bottom=0.2)
    return _png(figure)


def overlay(image: np.ndarray, heat: np.ndarray, alpha: float = 0.5, colormap: str = "jet") -> np.ndarray:
    """``image`` (H, W, 3) uint8 blended with ``heat`` (h, w) float in [0, 1] (resized bilinearly to
    H x W, coloured by ``colormap``); returns (H, W, 3) uint8."""
    from matplotlib import colormaps  # deferred: matplotlib, as above

    image = np.asarray(image, dtype=np.uint8)
    h, w = image.shape[:2]
    heat = np.clip(np.nan_to_num(np.asarray(heat, dtype=np.float32)), 0.0, 1.0)
    resized = np.asarray(Image.fromarray(heat, mode="F").resize((w, h), Image.BILINEAR), dtype=np.float32)
    coloured = colormaps[colormap](np.clip(resized, 0.0, 1.0))[..., :3] * 255.0
    return np.clip((1 - alpha) * image + alpha * coloured, 0, 255).astype(np.uint8)


def heatmap_png(image: np.ndarray, maps: list[tuple[str, np.ndarray]], title: str = "") -> bytes:
    """PNG bytes: ``image`` (H, W, 3) uint8 (the crop the network saw) and one overlay per
    ``(caption, map)`` in ``maps`` (map (h, w) float in [0, 1]), side by side under a line of text
    (``title`` and the captions). Drawn with PIL alone (a tenth of matplotlib's time)."""

    image = np.asarray(image, dtype=np.uint8)
    panels = [image] + [overlay(image, heat) for _, heat in maps]
    h, w = image.shape[:2]
    gap, band = 4, 30
    canvas = Image.new("RGB", (len(panels) * w + (len(panels) - 1) * gap, h + band), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (pixels, caption) in enumerate(zip(panels, [title or "image"] + [c for c, _ in maps])):
        x = i * (w + gap)
        canvas.paste(Image.fromarray(pixels), (x, band))
        draw.text((x + 3, 3), textwrap.shorten(caption, width=w // 6, placeholder="..."), fill="black")
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")
    return buffer.getvalue()


def write_png(path: Path, data: bytes) -> Path:
    """Write PNG bytes to ``path`` atomically; returns the path."""
    atomic_write_bytes(Path(path), data)
    return Path(path)
