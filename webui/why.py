"""The Analogy tab's "why" panels (issue 11): next to each space, the offset named in classes and words,
right or wrong, the calibrated near-duplicate threshold and the geometry picture; under both spaces,
where the network looks (Grad-CAM overlays of A, B, C and the answer D, computed only when asked,
with progress: they take seconds on a CPU).

Layout: :func:`space_panel` (called inside a space's column of :func:`webui.page.build_demo`) and
:func:`heatmap_panel`; :func:`wire` hooks them to the events that change the report (after a solve
or a follow-up, the panels follow the current report; the heatmaps button computes the overlays).
:class:`WhyHandlers` is what those events call; its results name the components they update.
"""
from __future__ import annotations

import io
from typing import Any, NamedTuple

import gradio as gr
from PIL import Image

from pipeline.chat_why import heatmap_summary
from pipeline.explain import space_name, why_sentences
from pipeline.figures import geometry_png
from pipeline.geometry import geometry_sentence
from pipeline.insight import SPACE_FIGURES, heatmap_pngs

from .format import md_escape
from .guard import user_facing

HEATMAP_HINT = ("Where the network looks: Grad-CAM overlays of A, B, C and the answer D, toward the query "
                "b - a + c and toward C alone (a few seconds).")


class SpacePanel(NamedTuple):
    text: Any  # gr.Markdown: the offset named, right or wrong, the threshold, the plane
    geometry: Any  # gr.Image: the geometry picture


class HeatmapPanel(NamedTuple):
    button: Any
    text: Any  # gr.Markdown
    gallery: Any  # gr.Gallery of the four overlays


class WhyShown(NamedTuple):
    """The why panels for the current report (each ``gr.skip()`` when that report is already shown)."""
    image_text: Any
    image_geometry: Any
    caption_text: Any
    caption_geometry: Any
    heatmap_text: Any  # cleared for a new report
    heatmaps: Any
    shown: Any  # the question now shown (session state)


class Heatmaps(NamedTuple):
    heatmap_text: str
    heatmaps: list  # [(PIL image, caption)]


def space_panel(space: str) -> SpacePanel:
    """One space's why panel (``space``: ``image`` or ``caption``), laid out where it is called."""
    text = gr.Markdown(elem_id=f"{space}-space-why")
    geometry = gr.Image(label=f"Geometry of {space} space", type="pil", format="png", interactive=False,
                        height=360, elem_id=f"{space}-space-geometry")
    return SpacePanel(text, geometry)


def heatmap_panel() -> HeatmapPanel:
    """The heatmaps' button, text and gallery, laid out where it is called."""
    button = gr.Button("Where does the network look?", elem_id="heatmaps-button")
    text = gr.Markdown(HEATMAP_HINT, elem_id="heatmaps-text")
    gallery = gr.Gallery(label="Where the network looks (image, toward the query, toward C alone)", columns=2,
                         height="auto", object_fit="contain", elem_id="heatmaps")
    return HeatmapPanel(button, text, gallery)


def _png_image(png: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(png))
    image.load()
    return image


def question_token(report) -> tuple | None:
    """What identifies the question a report answers (inputs' content, method, layer, exclusion, k,
    expected): the panels are redrawn only when it changes."""
    if report is None:
        return None
    return (tuple(inp.sha256 or inp.name for inp in report.inputs), report.method, report.layer, report.exclude,
            report.top_k, tuple(report.expected or ()))


def space_markdown(space: dict | None) -> str:
    """The why text of one space (its JSON, explained): the offset named, right or wrong, the
    calibrated threshold, the plane of the picture; escaped (gallery paths can hold any character)."""
    if space is None:
        return ""
    sentences = why_sentences(space) + ([geometry_sentence(space["geometry"])] if space.get("geometry") else [])
    title = f"**Why, in {space_name(space['space'])}**"
    return "\n\n".join([title] + [md_escape(s) for s in sentences])


class WhyHandlers:
    """What the why panels' events call, for one Explorer whose gallery is open."""

    def __init__(self, explorer):
        self.explorer = explorer

    def show(self, report, shown) -> WhyShown:
        """The why panels of ``report`` (skipped when they show it already; emptied without one)."""
        token = question_token(report)
        if token == shown:
            return WhyShown(*(gr.skip() for _ in WhyShown._fields))
        if report is None:
            return WhyShown("", None, "", None, HEATMAP_HINT, [], None)
        if report.insight is None:
            report = self.explorer.explained(report)
        data = report.as_dict()
        panels = []
        for key, name in SPACE_FIGURES.items():
            space = data.get(key)
            picture = _png_image(geometry_png(space["geometry"], title=f"{name} space")) if space else None
            panels += [space_markdown(space), picture]
        return WhyShown(*panels, heatmap_text=HEATMAP_HINT, heatmaps=[], shown=token)

    def heatmaps(self, report, progress=gr.Progress()) -> Heatmaps:
        """Where the network looks in A, B, C and D (computed now: seconds)."""
        if report is None:
            raise gr.Error("Solve an analogy first; then ask where the network looks.")
        progress(0.1, desc="Grad-CAM of A, B, C and D toward the query and toward C")
        maps = self.explorer.heatmaps(report)
        progress(0.8, desc="Drawing the overlays")
        text = heatmap_summary(report.as_dict(), maps.as_dict(), {"A", "B", "C", "D"})
        overlays = [(_png_image(png), f"{role}: the image, toward the query, toward C alone")
                    for role, png in heatmap_pngs(maps).items()]
        return Heatmaps(text, overlays)


def wire(explorer, report_state, image: SpacePanel, caption: SpacePanel, heatmaps: HeatmapPanel, after: list,
         **model_bound) -> None:
    """Hook the panels up: after each event of ``after`` (solve, follow-ups) succeeds, the panels show
    the current report; the heatmaps button computes the overlays (``model_bound``: the concurrency
    group of the events that run a model)."""
    handlers = WhyHandlers(explorer)
    shown = gr.State(None)
    outputs = [image.text, image.geometry, caption.text, caption.geometry, heatmaps.text, heatmaps.gallery, shown]
    assert len(outputs) == len(WhyShown._fields)
    for event in after:
        event.success(user_facing(handlers.show), inputs=[report_state, shown], outputs=outputs,
                      api_visibility="private", **model_bound)
    heatmaps.button.click(user_facing(handlers.heatmaps), inputs=report_state,
                          outputs=[heatmaps.text, heatmaps.gallery], api_visibility="private", **model_bound)
