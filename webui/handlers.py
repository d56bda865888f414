"""What the page's events call: thin handlers (validate, call the Explorer, format) with named results.

Each handler with several outputs returns a NamedTuple whose fields name the components it updates;
:func:`webui.page.build_demo` wires each event's outputs from those field names, so no result is a
tuple counted by hand. Handlers raise ``gr.Error`` for what the user must fix; the page wraps each in
:func:`webui.guard.user_facing`, which turns the pipeline's user errors into ``gr.Error`` too (one log
line each, no traceback), and anything else into a generic message (the traceback is logged). The
browse panels' handlers are :class:`webui.browsing.GalleryBrowser` (``Handlers.browser``).

The inputs of every event are checked before Gradio touches them (:mod:`webui.api_inputs`, installed by
:func:`webui.page.build_demo`); the handlers run the same checks again, so that a direct call (a test,
another event) meets the same limits in the same words. Large decoded images are released when a
handler that may decode uploads returns (:func:`webui.memory.releasing_memory`, wrapped by the page).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, NamedTuple

import gradio as gr

from pipeline.chat import answer_question, literal_markdown
from pipeline.config import PROJECT_ROOT
from pipeline.default_gallery import EXAMPLES
from pipeline.images import describe, file_sha256
from pipeline.reports import DEFAULT_EVAL_DIR, eval_reports, report_figures, report_text
from pipeline.web_copies import PREVIEW_SIZE, WebCopies, figure_copy

from . import api_inputs
from . import format as fmt
from .browsing import GalleryBrowser, ThumbnailClick, web_value
from .memory import release_memory
from .word_panel import word_space_html

log = logging.getLogger("iae.app")

MAX_CHAT_MESSAGES = 50  # the conversation kept (and sent back with each answer): the newest messages
ROLES = ("A", "B", "C")

# The talk's three "cheating" analogies (DESIGN.md section 1), offered when the gallery has those labels.
TALK_ANALOGIES = (("sheep", "camel", "seal"), ("flute", "oboe", "domestic cat"),
                  ("brassiere", "maillot", "guacamole"))


# --- named results: the fields name the components an event updates, in the order it updates them ---


class Panels(NamedTuple):
    """What a report shows in the Analogy tab."""
    question: str  # Markdown: A : B :: C : ? and the options
    image_head: str  # HTML: the image-space answer, verdicts, without-exclusion line, top-k table
    image_gallery: list  # [(web copy, caption)] of the image-space answers
    caption_head: str
    caption_gallery: list
    text_answer: str  # Markdown
    agreement: str  # Markdown
    word_head: str  # HTML: word space (webui.word_panel)


class Solved(NamedTuple):
    report: Any  # pipeline.explorer.AnalogyReport, kept in the session
    history: list  # the conversation, kept in the session (the chat shows it; the client never sends it)
    question: str
    image_head: str
    image_gallery: list
    caption_head: str
    caption_gallery: list
    text_answer: str
    agreement: str
    word_head: str
    chat: list  # the explanation, as chat messages
    report_json: str


class Asked(NamedTuple):
    """A follow-up's answer. The panels and controls change only when the explainer answered with a
    new report (another method, layer, k or exclusion setting); else they are ``gr.skip()``."""
    chat: list
    history: list  # the same conversation, kept in the session
    report: Any
    question_box: str  # cleared
    question: Any
    image_head: Any
    image_gallery: Any
    caption_head: Any
    caption_gallery: Any
    text_answer: Any
    agreement: Any
    word_head: Any
    report_json: Any
    method: Any
    layer: Any
    exclude: Any
    top_k: Any

    @classmethod
    def in_words(cls, chat: list, report) -> "Asked":
        """An answer in words only: every panel and control stays as it is."""
        kept = {name: gr.skip() for name in cls._fields if name not in ("chat", "history", "report", "question_box")}
        return cls(chat=chat, history=chat, report=report, question_box="", **kept)


class Picked(NamedTuple):
    slot_a: Any  # gr.Image update for the picked slot, gr.skip() for the others
    slot_b: Any
    slot_c: Any
    slot: str  # the slot the next click fills


class Classified(NamedTuple):
    labels: dict[str, float]  # top-5 ImageNet labels -> probability
    caption: str  # Markdown


class PickedForClassifier(NamedTuple):
    image: Any
    labels: dict[str, float]
    caption: str


class EvalView(NamedTuple):
    markdown: str
    figures: list  # [(copy, file name)]


class Handlers:
    """What the page's events call, for one Explorer whose gallery is open."""

    def __init__(self, explorer, eval_dir: Path | str | None = None):
        self.explorer = explorer
        self.gallery = explorer.require_gallery()
        self.eval_dir = Path(eval_dir) if eval_dir is not None else DEFAULT_EVAL_DIR
        self.thumbnails = WebCopies(self.gallery)
        self.previews = WebCopies(self.gallery, PREVIEW_SIZE, kind="previews")
        self.browser = GalleryBrowser(self.gallery, self.thumbnails)
        self.figures_folder = Path(explorer.settings.cache_dir) / "eval-figures"

    def served_folders(self) -> list[Path]:
        """The only folders whose files the app serves (besides Gradio's own uploads and copies):
        web copies of gallery images and of evaluation figures, never the gallery folder itself."""
        return [self.thumbnails.folder, self.previews.folder, self.figures_folder]

    def preview(self, item_id: int):
        """Gradio value showing gallery item ``item_id`` (its 512 px copy)."""
        return web_value(self.previews.path(item_id))

    def find_item(self, path) -> int | None:
        """The gallery id of a file whose bytes are a gallery image or a copy this app served, else None."""
        try:
            digest = file_sha256(path)
        except (OSError, ValueError):
            return None
        for found in (self.gallery.find_hash(digest), self.previews.find_hash(digest),
                      self.thumbnails.find_hash(digest)):
            if found is not None:
                return found
        return None

    # picking from the browse panels -------------------------------------------------------------

    def pick(self, slot: str, ids: list[int], evt: ThumbnailClick) -> Picked:
        """A click on a browse thumbnail: fill ``slot`` (A, B or C) and move the selector to the next slot."""
        item_id = self.browser.picked_id(ids, evt)
        slot = slot if slot in ROLES else "A"
        update = gr.Image(value=self.preview(item_id))
        slots = [update if role == slot else gr.skip() for role in ROLES]
        return Picked(*slots, slot=ROLES[(ROLES.index(slot) + 1) % len(ROLES)])

    def slot_label(self, role: str, image) -> gr.Image:
        """The label of slot ``role`` for what it holds: the gallery item (by content) or an upload."""
        if not image:
            return gr.Image(label=f"{role}: upload, or pick from the gallery")
        path = Path(str(image.get("path") if isinstance(image, dict) else image))
        found = self.find_item(path)
        if found is not None:
            return gr.Image(label=f"{role}: {self.browser.item_caption(found)}")
        return gr.Image(label=f"{role}: {describe(path)} (uploaded)")

    def pick_for_classifier(self, ids: list[int], evt: ThumbnailClick) -> PickedForClassifier:
        """A click on the classifier tab's browse panel: show the item and what the classifier sees."""
        item_id = self.browser.picked_id(ids, evt)
        return PickedForClassifier(self.preview(item_id), *self.classify(item_id))

    # analogy -------------------------------------------------------------------------------------

    def _ref(self, image, role: str):
        """An uploaded/picked image path -> what the explorer takes (a gallery id when its content is
        a gallery item, else the path)."""
        if image is None or (isinstance(image, str) and not image.strip()):
            raise gr.Error(f"Image {role} is missing: upload one, or click a gallery thumbnail with slot {role} "
                           "selected.", title="Missing image")
        if isinstance(image, dict):  # API callers may send FileData-like dicts
            image = image.get("path")
        path = Path(str(image))
        if path.is_file():
            found = self.find_item(path)
            if found is not None:
                return found
        return str(path)

    def solve(self, a, b, c, method: str = "3cosadd", layer: str = "pooled", exclude: bool = True,
              top_k: float = 5, progress=gr.Progress()) -> Solved:
        """A : B :: C : ? answered in both spaces, with the explanation as the first chat messages."""
        refs = [self._ref(image, role) for image, role in zip((a, b, c), ROLES)]
        method, layer = api_inputs.method(method), api_inputs.layer(layer)
        exclude = api_inputs.exclude(exclude)
        k = api_inputs.top_k(top_k, max_top_k=self.explorer.settings.max_top_k)
        progress(0.1, desc="Reading A, B and C; answering in image, caption and word space")
        report = self.explorer.analogy(refs, method=method, layer=layer, exclude=exclude, top_k=k)
        progress(0.9, desc="Formatting")
        history = list(report.explanation)
        return Solved(report, history, *self.render(report), chat=history, report_json=fmt.report_json(report))

    def render(self, report) -> Panels:
        def gallery_value(result):
            if result is None:
                return []
            return [(self.preview(h.id), fmt.hit_caption(rank, h)) for rank, h in enumerate(result.results, 1)]

        return Panels(question=fmt.question_markdown(report),
                      image_head=fmt.space_html(report.image_space, "Image space"),
                      image_gallery=gallery_value(report.image_space),
                      caption_head=fmt.space_html(report.caption_space, "Caption space"),
                      caption_gallery=gallery_value(report.caption_space),
                      text_answer=fmt.text_answer_markdown(report), agreement=fmt.agreement_markdown(report),
                      word_head=word_space_html(report))

    def ask(self, question: str, report, history: list) -> Asked:
        """A follow-up ``question`` about ``report``, answered by the explainer's chat. ``history`` is the
        conversation so far, kept in the session (never sent by the client); the question joins it as
        text shown literally (:func:`pipeline.chat.literal_markdown`: its Markdown is not rendered), and
        only the newest :data:`MAX_CHAT_MESSAGES` are kept, so that the work of each question (the whole
        conversation goes back to the page) stays bounded however long a session asks."""
        question = api_inputs.question(question).strip()
        if report is None:
            raise gr.Error("Solve an analogy first (pick A, B and C, then press Solve); then ask about it.")
        try:
            reply, new_report = answer_question(self.explorer, report, question)
        finally:
            if any(inp.item_id is None for inp in report.inputs):  # a re-run decodes the uploads again
                release_memory()
        history = (list(history or []) + [{"role": "user", "content": literal_markdown(question)},
                                          {"role": "assistant", "content": reply}])[-MAX_CHAT_MESSAGES:]
        if new_report is report:
            return Asked.in_words(history, report)
        return Asked(history, history, new_report, "", *self.render(new_report), report_json=fmt.report_json(new_report),
                     method=new_report.method, layer=new_report.layer, exclude=new_report.exclude,
                     top_k=new_report.top_k)

    # what the classifier sees --------------------------------------------------------------------

    def classify(self, image) -> Classified:
        """Any image (an upload's path, or a gallery id): the classifier's top-5 labels and the caption."""
        if image is None or (isinstance(image, str) and not image.strip()):
            raise gr.Error("Upload an image, or click a gallery thumbnail, to see what the classifier sees.",
                           title="Missing image")
        ref = image if isinstance(image, int) else self._ref(image, "the image")
        labels = self.explorer.labels([ref], k=5)[0]
        row = self.explorer.caption([ref])[0]
        item = self.gallery.items[ref] if isinstance(ref, int) else None
        return Classified(labels={label.name: float(label.probability) for label in labels},
                          caption=fmt.classifier_markdown(row, self.gallery_info()["backbone"], item))

    # evaluation ----------------------------------------------------------------------------------

    def eval_choices(self):
        """The report picker: every report folder's name, newest first, the newest selected."""
        names = [p.name for p in eval_reports(self.eval_dir)]
        return gr.update(choices=names, value=names[0] if names else None)

    def eval_view(self, name: str | None = None) -> EvalView:
        """The report folder called ``name`` (one of :meth:`eval_choices`; anything else is ignored),
        else the newest: its results.md and its PNG figures, shown from copies."""
        reports = eval_reports(self.eval_dir)
        folder = next((p for p in reports if p.name == name), reports[0] if reports else None)
        if folder is None:
            shown = self.eval_dir
            try:
                shown = self.eval_dir.resolve().relative_to(PROJECT_ROOT)
            except ValueError:
                pass
            return EvalView(fmt.no_report_markdown(shown), [])
        text = fmt.report_markdown(report_text(folder), folder.name, self.eval_dir.name, newest=folder == reports[0])
        figures = [(web_value(copy), p.name)
                   for p in report_figures(folder, self.eval_dir)
                   if (copy := figure_copy(p, self.figures_folder)) is not None]
        return EvalView(text, figures)

    # info ----------------------------------------------------------------------------------------

    def gallery_info(self) -> dict:
        return self.explorer.gallery_info()

    def info_markdown(self) -> str:
        return fmt.info_markdown(self.gallery_info(), self.explorer.announcements)

    def examples(self) -> tuple[list[list[str]], list[str]]:
        """Example triples for this gallery: ([[A, B, C] web copies], labels)."""
        g = self.gallery
        triples: list[tuple[int, ...]] = []
        for example in EXAMPLES:
            ids = [g.find(p) for p in example]
            if all(i is not None for i in ids):
                triples.append(tuple(ids))  # type: ignore[arg-type]
        by_label: dict[str, int] = {}
        for item in g.items:
            if item.label:
                by_label.setdefault(item.label.lower(), item.id)
        for labels in TALK_ANALOGIES:
            if all(label in by_label for label in labels):
                triples.append(tuple(by_label[label] for label in labels))
        triples = [t for t in triples if all(isinstance(self.previews.path(i), Path) for i in t)]
        paths = [[self.preview(i) for i in t] for t in triples]
        labels = ["{} : {} :: {} : ?".format(*(fmt.item_name(g.items[i]) for i in t)) for t in triples]
        return paths, labels
