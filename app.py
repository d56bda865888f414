"""The Image Analogy Explainer web app (Gradio 6).

``python app.py`` opens the embedded default gallery (``--gallery DIR`` for any folder of images),
builds or loads its cache with console progress, and serves a page where A, B and C are uploaded or
picked from the gallery; the analogy A : B :: C : ? is answered in image space and caption space side
by side, with verdicts, what would win without exclusion, and an explainer to chat with. Two more
tabs show what the classifier sees in any image and the evaluation reports (newest first).

Importing this module loads no model: :func:`main` (or a test) makes the :class:`pipeline.explorer.Explorer`
and hands it to :func:`build_demo`. Handlers are thin (validate, call the explorer, format); they live
on :class:`Handlers` so that tests can call them directly. User errors reach the page as ``gr.Error``
in plain words; anything unexpected is logged with its traceback and shown as a short generic message,
and the app keeps serving. The page shows gallery images through web-sized copies (:class:`Thumbnails`)
and evaluation figures through copies (:func:`figure_copy`); those folders and Gradio's own uploads are
all the app serves: never the gallery folder, the rest of the cache, or the evaluation reports.
"""
from __future__ import annotations

import argparse
import functools
import hashlib
import html
import io
import json
import logging
import os
import re
import sys
import threading
import time
from abc import ABCMeta
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import gradio as gr
from PIL import Image, ImageOps

from pipeline.config import LAYERS, PROJECT_ROOT, Settings
from pipeline.errors import UserError, error_line, guarded
from pipeline.images import describe, file_sha256
from pipeline.storage import CacheError, atomic_write_bytes
from pipeline.vectors import ALL_METHODS

log = logging.getLogger("iae.app")

DEFAULT_EVAL_DIR = PROJECT_ROOT / "eval" / "reports"
DEFAULT_PORT = 7860
CONCURRENCY_ID = "models"  # every event that runs a model or the pipeline shares this group
MODEL_CONCURRENCY = 2  # the machine's cores do the work; more parallel requests only queue inside
QUEUE_MAX_SIZE = 64
THUMB_SIZE = 160  # browse panels
PREVIEW_SIZE = 512  # result panels and picked slots
MAX_FIGURE_BYTES = 20 * 1024 * 1024
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_BROWSE = 1000  # thumbnails shown at once in a browse panel; the filter finds the others
MAX_MARKDOWN_BYTES = 512 * 1024
GENERIC_ERROR = ("Something went wrong on our side while answering. The error was logged; "
                 "please try again, or try other images.")

METHOD_CHOICES = [
    ("3CosAdd: cos(d, b - a + c) (default)", "3cosadd"),
    ("3CosMul (Levy & Goldberg)", "3cosmul"),
    ("PairDirection: cos(d - c, b - a)", "pairdirection"),
    ("Baseline ONLY-C: nearest to C", "only-c"),
    ("Baseline IGNORE-A: cos(d, b + c)", "ignore-a"),
    ("Baseline ADD-OPPOSITE: cos(d, c - (b - a))", "add-opposite"),
    ("Baseline MULTIPLY: 3CosMul without A", "multiply"),
]
assert [v for _, v in METHOD_CHOICES] == list(ALL_METHODS), "METHOD_CHOICES must follow pipeline.vectors"
LAYER_CHOICES = [("pooled activations (penultimate layer)", "pooled"), ("logits (1000 ImageNet classes)", "logits"),
                 ("probabilities (softmax of the logits)", "probs")]
assert [v for _, v in LAYER_CHOICES] == list(LAYERS)

# The talk's three "cheating" analogies (DESIGN.md section 1), offered when the gallery has those labels.
TALK_ANALOGIES = (("sheep", "camel", "seal"), ("flute", "oboe", "domestic cat"),
                  ("brassiere", "maillot", "guacamole"))

VERDICTS = {  # verdict -> (colour, what it means)
    "input": ("#b91c1c", "Without exclusion the answer would be one of the inputs A, B or C."),
    "only-c": ("#c2410c", "The answer is simply C's nearest neighbour (the ONLY-C baseline gives it too)."),
    "ignore-a": ("#a16207", "The answer is the IGNORE-A answer: A made no difference."),
    "near-duplicate": ("#7e22ce", "The answer is a near-duplicate of C."),
    "genuine": ("#15803d", "None of the cheats applies: a genuine answer."),
}

CSS = """
.iae-badge {display:inline-block; color:#fff; border-radius:999px; padding:1px 10px; margin:2px 4px 2px 0;
            font-size:0.85em; font-weight:600;}
.iae-without {border-left:4px solid #b91c1c; background:rgba(185,28,28,0.08); padding:4px 8px; margin:6px 0;}
.iae-without.iae-ok {border-left-color:#15803d; background:rgba(21,128,61,0.08);}
.iae-measure {font-size:0.85em; opacity:0.8;}
"""


# --- errors --------------------------------------------------------------------------------------


def user_facing(fn: Callable) -> Callable:
    """Run a handler; pipeline user errors become ``gr.Error(one line)``, anything unexpected is
    logged with its traceback and becomes a generic ``gr.Error``. ``gr.Error`` passes through."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except UserError as exc:
            raise gr.Error(error_line(exc), title="Cannot do that") from None
        except Exception:
            log.exception("unexpected error in %s", fn.__name__)
            raise gr.Error(GENERIC_ERROR, title="Error") from None

    return wrapper


class _NoStubComponentMeta(type(gr.Image)):
    """Gradio's component metaclass writes a ``.pyi`` stub beside every module that subclasses a
    component (``app.pyi`` here, which would shadow app.py for type checkers). The subclass below
    adds no ``__init__`` and no events, the only other things that metaclass handles, so it is
    created as a plain class."""

    def __new__(mcs, name, bases, attrs):
        return ABCMeta.__new__(mcs, name, bases, attrs)


class UploadImage(gr.Image, metaclass=_NoStubComponentMeta):
    """``gr.Image`` whose upload is handed to the handler as the uploaded file's path, unopened.

    Stock ``gr.Image`` opens every upload with PIL before the handler runs, so a text file named
    .jpg or a decompression bomb fails inside Gradio with PIL's own words. Here the file goes,
    untouched, to :func:`pipeline.images.load_image`, which refuses it with a clear message. (Gradio
    still accepts only files that were uploaded to it; ``is_template`` keeps the stock front end.)
    A subclass, not a patched instance: Gradio re-creates a component from its class when an event
    updates its properties.
    """

    is_template = True

    def preprocess(self, payload):
        if payload is None:
            return None
        if self.type == "filepath" and payload.path and not (payload.url or "").startswith("data:"):
            return str(payload.path)
        return super().preprocess(payload)


# --- formatting ----------------------------------------------------------------------------------


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def badge(verdict: str) -> str:
    colour, meaning = VERDICTS.get(verdict, ("#475569", verdict))
    return (f'<span class="iae-badge" title="{esc(meaning)}" style="background:{colour};color:#fff;'
            f'border-radius:999px;padding:1px 10px;margin:2px 4px 2px 0;display:inline-block;'
            f'font-size:0.85em;font-weight:600">{esc(verdict)}</span>')


def hit_caption(rank: int, hit) -> str:
    """Caption of a result thumbnail: ``rank. score · label · caption``."""
    parts = [f"{hit.score:.3f}", hit.label or Path(hit.path).name]
    if hit.caption:
        parts.append(hit.caption)
    return f"{rank}. " + " · ".join(parts)


def without_exclusion_text(result) -> tuple[str, bool]:
    """("Without exclusion it would have been ...", whether that is an input)."""
    wo = result.without_exclusion
    ranks = " · ".join(f"{role} #{rank}" for role, rank in wo["input_ranks"].items())
    top = wo["top"]
    if wo["winner"]:
        name = top if isinstance(top, str) else top.path
        text = f"Without exclusion it would have been <b>{esc(wo['winner'])} itself</b> ({esc(name)})"
        return f"{text}. Input ranks: {esc(ranks)}.", True
    name = top if isinstance(top, str) else f"#{top.id} {top.path}"
    return (f"Without exclusion it would have been the same answer, <b>not an input</b> ({esc(name)}). "
            f"Input ranks: {esc(ranks)}.", False)


def space_html(result, title: str) -> str:
    """Header of one space's column: top answer, verdict badges, without-exclusion line, measurements,
    and the top-k answers as a table (full captions; the thumbnails below cut them short)."""
    if result is None:
        return f"<h3>{esc(title)}</h3><p>This gallery has no captions, so there is no caption-space answer.</p>"
    lines = [f"<h3>{esc(title)} <small>({esc(result.space)}, {esc(result.method)})</small></h3>"]
    top = result.top
    if top is None:
        lines.append("<p>No answer: every gallery item was excluded.</p>")
    else:
        label = f" ({esc(top.label)})" if top.label else ""
        lines.append(f"<div><b>Answer:</b> #{top.id} {esc(top.path)}{label}, score {top.score:.3f}</div>")
        lines.append("<div>" + "".join(badge(v) for v in result.verdicts) + "</div>")
    text, is_input = without_exclusion_text(result)
    style = ("border-left:4px solid {c};background:{b};padding:4px 8px;margin:6px 0"
             .format(c="#b91c1c" if is_input else "#15803d",
                     b="rgba(185,28,28,0.08)" if is_input else "rgba(21,128,61,0.08)"))
    lines.append(f'<div class="iae-without{"" if is_input else " iae-ok"}" style="{style}">{text}</div>')
    m = result.measurements
    if "offset_consistency" in m:
        lines.append(f'<div class="iae-measure" style="font-size:0.85em;opacity:0.8">|b − a| = {m["offset_norm"]:.3f} '
                     f'({m["offset_relative"]:.2f}× the typical neighbour distance) · cos(b − a, d − c) = '
                     f'{m["offset_consistency"]:+.3f} · cos(D, C) = {m["cos_answer_c"]:+.3f}</div>')
    if result.results:
        rows = "".join(
            f'<tr><td>{rank}</td><td>{hit.score:.3f}</td><td>{esc(hit.label or "")}</td>'
            f'<td>{esc(hit.caption or hit.path)}</td></tr>' for rank, hit in enumerate(result.results, 1))
        lines.append('<table class="iae-top" style="width:100%;font-size:0.85em;margin:4px 0">'
                     '<thead><tr><th>#</th><th>score</th><th>label</th><th>caption</th></tr></thead>'
                     f'<tbody>{rows}</tbody></table>')
    return "\n".join(lines)


def md_escape(text: Any) -> str:
    """Text shown literally in Markdown (file names of uploads can hold any character)."""
    return re.sub(r"([\\`*_{}\[\]()<>#+!|~])", r"\\\1", "" if text is None else str(text))


def question_markdown(report) -> str:
    a, b, c = (md_escape(inp.name) for inp in report.inputs)
    exclusion = "inputs excluded" if report.exclude else "nothing excluded"
    return (f"### {a} : {b} :: {c} : ?\n"
            f"{report.method} · layer {report.layer} · {exclusion} · top {report.top_k}")


def text_answer_markdown(report) -> str:
    t = report.text_answer
    if not t:
        return ""
    return f"**Caption space, in words:** \u201c{t['text']}\u201d ({t['source']}, score {t['score']:.3f})"


def report_json(report) -> str:
    """The report as indented JSON text (a string: API clients take dicts with a "path" key for files)."""
    return json.dumps(report.as_dict(), indent=1, ensure_ascii=False, default=str)


def agreement_markdown(report) -> str:
    if not report.agreement:
        return ""
    return f"**Do the two spaces agree?** {report.agreement.get('summary', '')}"


# --- eval reports --------------------------------------------------------------------------------


def eval_reports(eval_dir: Path) -> list[Path]:
    """Folders under ``eval_dir`` (``eval_dir`` itself included) holding a results.md, newest first
    (by results.md's modification time); links that leave ``eval_dir`` are ignored."""
    eval_dir = Path(eval_dir)
    if not eval_dir.is_dir():
        return []
    candidates = [eval_dir] if (eval_dir / "results.md").is_file() else []
    try:
        candidates += [p for p in eval_dir.iterdir() if p.is_dir() and (p / "results.md").is_file()]
    except OSError:
        return []
    real_root = eval_dir.resolve()
    candidates = [p for p in candidates if (p / "results.md").resolve().is_relative_to(real_root)]
    return sorted(candidates, key=lambda p: ((p / "results.md").stat().st_mtime, p.name), reverse=True)


# --- web copies: thumbnails, previews, figures ---------------------------------------------------


class Thumbnails:
    """Web-sized JPEG copies of gallery images, cached in the gallery's store as
    ``thumbs-<size>/<source hash>-<copy hash>.jpg`` (``previews-<size>/`` for the larger copies shown
    in the result panels and the picked slots): the first 32 hex digits of the gallery file's SHA-256,
    then the first 16 of the copy's own.

    The page only ever shows these copies: the gallery folder itself (captions, labels, notes, the
    original files) is never served. A copy found on disk is checked against the hash in its name
    once per process before it is used; a damaged one is made again. Each copy's SHA-256 is
    remembered, so that a copy handed back by the page (a picked slot, sent with Solve) is recognised
    as its gallery item. Where no copy can be written (an unwritable store) the image itself is
    returned (Gradio then serves its own copy); where the gallery file can no longer be read, a grey
    placeholder."""

    def __init__(self, gallery, size: int = THUMB_SIZE, kind: str = "thumbs"):
        self.gallery = gallery
        self.size = size
        self.folder = Path(gallery.store) / f"{kind}-{size}"
        self._by_hash: dict[str, int] = {}  # SHA-256 of a copy's bytes -> gallery id
        self._checked: set[int] = set()  # ids whose copy on disk this process has checked
        self._names: dict[str, str] | None = None  # source hash (32 hex) -> file name, listed once

    def _listing(self) -> dict[str, str]:
        if self._names is None:
            names: dict[str, str] = {}
            try:
                for entry in os.scandir(self.folder):
                    stem, _, suffix = entry.name.rpartition(".")
                    if suffix == "jpg" and len(stem) == 49 and stem[32] == "-":
                        names[stem[:32]] = entry.name
            except OSError:
                pass
            self._names = names
        return self._names

    def path(self, item_id: int) -> Path | Image.Image:
        """The copy of gallery item ``item_id``: its file (made where missing or damaged), else an image."""
        item = self.gallery.items[item_id]
        key = item.sha256[:32]
        name = self._listing().get(key)
        if name is not None:
            target = self.folder / name
            if item_id in self._checked and target.is_file():
                return target
            try:
                data = target.read_bytes()
            except OSError:
                data = b""
            if data and hashlib.sha256(data).hexdigest()[:16] == name[33:49]:
                self._remember(data, item_id)
                return target
            log.warning("damaged copy %s of %s: made again", name, item.path)
            self._names.pop(key, None)  # type: ignore[union-attr]
            target.unlink(missing_ok=True)
        try:
            with Image.open(self.gallery.path(item_id)) as im:  # the gallery build already vetted this file
                im.draft("RGB", (self.size * 2, self.size * 2))
                im = ImageOps.exif_transpose(im).convert("RGB")
                im.thumbnail((self.size, self.size))
        except Exception as exc:  # the file changed or went away since the build
            log.warning("cannot read gallery image %s: %s", item.path, exc)
            return Image.new("RGB", (self.size, self.size), (200, 200, 200))
        buffer = io.BytesIO()
        im.save(buffer, format="JPEG", quality=85)
        data = buffer.getvalue()
        target = self.folder / f"{key}-{hashlib.sha256(data).hexdigest()[:16]}.jpg"
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
            partial.write_bytes(data)
            os.replace(partial, target)
        except OSError as exc:  # unwritable store: hand over the image itself
            log.warning("no web copy of %s: %s", item.path, exc)
            return im
        self._listing()[key] = target.name
        self._remember(data, item_id)
        return target

    def _remember(self, data: bytes, item_id: int) -> None:
        self._by_hash.setdefault(hashlib.sha256(data).hexdigest(), item_id)
        self._checked.add(item_id)

    def find_hash(self, sha256: str) -> int | None:
        """The gallery id whose copy (made or checked by this process) has these bytes, else None."""
        return self._by_hash.get(sha256)

    def prepare(self, ids: list[int], progress: Callable[[int, int, str], None] | None = None) -> list:
        """Copies of ``ids`` (made where missing, two at a time), in order."""
        out: list = [None] * len(ids)
        with ThreadPoolExecutor(max_workers=2) as pool:
            for n, (i, path) in enumerate(zip(range(len(ids)), pool.map(self.path, ids)), 1):
                out[i] = path
                if progress and (n % 50 == 0 or n == len(ids)):
                    progress(n, len(ids), "thumbnails")
        return out


def figure_copy(png: Path, folder: Path) -> Path | Image.Image | None:
    """A copy of an evaluation figure in ``folder`` (``<content hash>.png``), the only place figures
    are served from; None when ``png`` is not a PNG file of at most :data:`MAX_FIGURE_BYTES`."""
    try:
        if png.stat().st_size > MAX_FIGURE_BYTES:
            return None
        data = png.read_bytes()
    except OSError:
        return None
    if not data.startswith(PNG_SIGNATURE):
        return None
    digest = hashlib.sha256(data).hexdigest()
    target = Path(folder) / f"{digest[:32]}.png"
    try:
        if target.is_file() and hashlib.sha256(target.read_bytes()).hexdigest() == digest:
            return target
    except OSError:
        pass
    try:
        atomic_write_bytes(target, data)
        return target
    except CacheError as exc:
        log.warning("no web copy of the figure %s: %s", png.name, exc)
        try:
            with Image.open(io.BytesIO(data)) as im:
                im.load()
                return im.copy()
        except Exception:
            return None


def web_value(copy) -> Any:
    """A copy from :class:`Thumbnails` as a Gradio value: a file path as text, an image as is."""
    return str(copy) if isinstance(copy, Path) else copy


# --- handlers ------------------------------------------------------------------------------------


class Handlers:
    """What the page's events call. Each handler validates, calls the explorer and formats; the
    return values follow the order of the outputs wired in :func:`build_demo`."""

    def __init__(self, explorer, eval_dir: Path | str | None = None, thumbnails: Thumbnails | None = None):
        self.explorer = explorer
        self.gallery = explorer.require_gallery()
        self.eval_dir = Path(eval_dir) if eval_dir is not None else DEFAULT_EVAL_DIR
        self.thumbnails = thumbnails or Thumbnails(self.gallery)
        self.previews = Thumbnails(self.gallery, PREVIEW_SIZE, kind="previews")
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

    # gallery browsing ----------------------------------------------------------------------------

    def item_caption(self, item_id: int) -> str:
        item = self.gallery.items[item_id]
        name = item.label if item.wnid and item.label else item.path.rsplit(".", 1)[0]
        return f"#{item_id} {name}"

    def browse_ids(self, query: str = "") -> list[int]:
        """Gallery ids whose label or path contains every word of ``query`` (all when empty), at most
        :data:`MAX_BROWSE`."""
        words = (query or "").lower().split()
        ids = [item.id for item in self.gallery.items
               if all(w in f"{item.label or ''} {item.path}".lower() for w in words)]
        return ids[:MAX_BROWSE]

    def browse_value(self, ids: list[int]) -> list[tuple[str, str]]:
        return [(web_value(p), self.item_caption(i)) for i, p in zip(ids, self.thumbnails.prepare(ids))]

    def filter_gallery(self, query: str):
        """-> (browse panel value, ids shown, note)."""
        ids = self.browse_ids(query)
        total = len(self.gallery)
        if not ids:
            note = f"No gallery image matches \u201c{query}\u201d."
        elif query and query.strip():
            note = f"{len(ids)} of {total} images match \u201c{query.strip()}\u201d."
        else:
            note = f"Showing {len(ids)} of {total} images." + (" Type to filter." if len(ids) < total else "")
        return self.browse_value(ids), ids, note

    def pick(self, slot: str, ids: list[int], evt: gr.SelectData):
        """A click on a browse thumbnail: fill ``slot`` (A, B or C) and move the selector to the next
        slot. -> (A, B, C image updates, next slot)."""
        item_id = self.picked_id(ids, evt)
        slot = slot if slot in ("A", "B", "C") else "A"
        update = gr.Image(value=self.preview(item_id))
        updates = [update if role == slot else gr.skip() for role in ("A", "B", "C")]
        next_slot = {"A": "B", "B": "C", "C": "A"}[slot]
        return (*updates, next_slot)

    def slot_label(self, role: str, image) -> gr.Image:
        """The label of slot ``role`` for what it holds: the gallery item (by content) or an upload."""
        if not image:
            return gr.Image(label=f"{role}: upload, or pick from the gallery")
        path = Path(str(image.get("path") if isinstance(image, dict) else image))
        found = self.find_item(path)
        if found is not None:
            return gr.Image(label=f"{role}: {self.item_caption(found)}")
        return gr.Image(label=f"{role}: {describe(path)} (uploaded)")

    def picked_id(self, ids: list[int], evt: gr.SelectData | None) -> int:
        """The gallery id a click on a browse panel chose: ``ids[evt.index]``. The page sends the index
        (any API caller can send anything): only a whole number within the panel is accepted, and the
        ids come from the server-side session state."""
        index = getattr(evt, "index", None)
        if isinstance(index, (list, tuple)) and index:
            index = index[0]
        if isinstance(index, bool) or not isinstance(index, int):
            raise gr.Error("Click a gallery thumbnail to pick it.")
        if not ids or not 0 <= index < len(ids):
            raise gr.Error("That thumbnail is no longer in the gallery panel; filter again and pick another.")
        item_id = ids[index]
        if isinstance(item_id, bool) or not isinstance(item_id, int) or not 0 <= item_id < len(self.gallery):
            raise gr.Error("That thumbnail is no longer in the gallery panel; filter again and pick another.")
        return item_id

    def pick_for_classifier(self, ids: list[int], evt: gr.SelectData):
        """A click on the classifier tab's browse panel -> (image, top-5 labels, caption markdown)."""
        item_id = self.picked_id(ids, evt)
        return (self.preview(item_id), *self.classify(item_id))

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
              top_k: float = 5, progress=gr.Progress()):
        """A : B :: C : ? -> (report, question, image-space header, image-space gallery, caption-space
        header, caption-space gallery, text answer, agreement, chat messages, report as JSON text)."""
        refs = [self._ref(image, role) for image, role in zip((a, b, c), "ABC")]
        if method not in ALL_METHODS:
            raise gr.Error(f"Unknown method {method!r}. Choose one of: {', '.join(ALL_METHODS)}.")
        if layer not in LAYERS:
            raise gr.Error(f"Unknown layer {layer!r}. Choose one of: {', '.join(LAYERS)}.")
        try:
            k = int(top_k)
        except (TypeError, ValueError):
            raise gr.Error("Top k must be a whole number from 1 to 50.") from None
        if not 1 <= k <= 50:
            raise gr.Error("Top k must be a whole number from 1 to 50.")
        progress(0.1, desc="Reading A, B and C; answering in image and caption space")
        report = self.explorer.analogy(refs, method=method, layer=layer, exclude=bool(exclude), top_k=k)
        progress(0.9, desc="Formatting")
        return (report, *self.render(report), list(report.explanation), report_json(report))

    def render(self, report) -> tuple:
        """(question, image header, image gallery, caption header, caption gallery, text answer, agreement)."""
        def gallery_value(result):
            if result is None:
                return []
            return [(self.preview(h.id), hit_caption(rank, h)) for rank, h in enumerate(result.results, 1)]

        return (question_markdown(report),
                space_html(report.image_space, "Image space"), gallery_value(report.image_space),
                space_html(report.caption_space, "Caption space"), gallery_value(report.caption_space),
                text_answer_markdown(report), agreement_markdown(report))

    def ask(self, question: str, report, history):
        """A follow-up question -> (chat, report, cleared question box, *panel updates, controls).

        The panels and controls change only when the explainer answered with a new report (another
        method, layer, k or exclusion setting)."""
        from pipeline.explain import answer_question

        question = (question or "").strip()
        if not question:
            raise gr.Error("Type a question first, for example \u201cwhy?\u201d or \u201chelp\u201d.")
        if len(question) > 2000:
            raise gr.Error("That question is too long; keep it under 2,000 characters.")
        if report is None:
            raise gr.Error("Solve an analogy first (pick A, B and C, then press Solve); then ask about it.")
        reply, new_report = answer_question(self.explorer, report, question)
        history = list(history or []) + [{"role": "user", "content": question},
                                         {"role": "assistant", "content": reply}]
        if new_report is report:
            panels = tuple(gr.skip() for _ in range(7 + 1 + 4))
        else:
            panels = (*self.render(new_report), report_json(new_report),
                      new_report.method, new_report.layer, new_report.exclude, new_report.top_k)
        return (history, new_report, "", *panels)

    # what the classifier sees --------------------------------------------------------------------

    def classify(self, image):
        """Any image (path or gallery id) -> (top-5 labels {name: probability}, caption markdown)."""
        if image is None or (isinstance(image, str) and not image.strip()):
            raise gr.Error("Upload an image, or click a gallery thumbnail, to see what the classifier sees.",
                           title="Missing image")
        ref = image if isinstance(image, int) else self._ref(image, "the image")
        labels = self.explorer.labels([ref], k=5)[0]
        row = self.explorer.caption([ref])[0]
        lines = [f"**Caption:** \u201c{row['caption']}\u201d", f"**Captioner:** {row['captioner']}",
                 f"**Classifier:** {self.gallery_info()['backbone']}"]
        if isinstance(ref, int):
            item = self.gallery.items[ref]
            lines.insert(0, f"**Gallery item** #{ref} {item.path}" +
                         (f", labelled **{item.label}**" if item.label else ""))
        return {label.name: float(label.probability) for label in labels}, "\n\n".join(lines)

    # evaluation ----------------------------------------------------------------------------------

    def eval_choices(self):
        """The report picker: every report folder's name, newest first, the newest selected."""
        names = [p.name for p in eval_reports(self.eval_dir)]
        return gr.update(choices=names, value=names[0] if names else None)

    def eval_view(self, name: str | None = None):
        """-> (markdown of a report's results.md, its PNG figures [(path, name)]): the report folder
        called ``name`` (one of :meth:`eval_choices`; anything else is ignored), else the newest."""
        reports = eval_reports(self.eval_dir)
        folder = next((p for p in reports if p.name == name), reports[0] if reports else None)
        if folder is None:
            shown = self.eval_dir
            try:
                shown = self.eval_dir.resolve().relative_to(PROJECT_ROOT)
            except ValueError:
                pass
            return (f"No evaluation report yet: no folder with a `results.md` in `{shown}`. Run an evaluation "
                    f"with `--out {shown}/<name>` (for example `python -m eval reproduce-2017 --gallery "
                    f"../shared/data/imagen --out {shown}/2017`), then press Refresh.", [])
        results = folder / "results.md"
        data = results.read_bytes()[:MAX_MARKDOWN_BYTES]
        text = data.decode("utf-8", "replace")
        pngs = sorted(p for p in folder.glob("*.png") if p.is_file() and p.resolve().is_relative_to(self.eval_dir.resolve()))
        # Figures are shown below the text; inline image links would point at files the page cannot read.
        text = re.sub(r"!\[([^\]]*)\]\(([^)\s]+)[^)]*\)", lambda m: f"*(figure: {Path(m.group(2)).name}, shown below)*", text)
        newest = " (the newest)" if folder == reports[0] else ""
        head = f"**Report:** `{folder.name}`{newest} in `{self.eval_dir.name}/`\n\n"
        figures = [(copy if isinstance(copy, Image.Image) else str(copy), p.name)
                   for p in pngs if (copy := figure_copy(p, self.figures_folder)) is not None]
        return head + text, figures

    # info ----------------------------------------------------------------------------------------

    def gallery_info(self) -> dict:
        return self.explorer.gallery_info()

    def info_markdown(self) -> str:
        info = self.gallery_info()
        captioners = ", ".join(info["captioners"]) or "none"
        lines = [f"**Gallery:** `{Path(info['root']).name}`{' (the embedded default gallery)' if info['is_default'] else ''}"
                 f" · {info['items']} images · **classifier:** {info['backbone']} · **captions by:** {captioners}"
                 + (f" · **sentence embeddings:** {info['text_model']}" if info.get("text_model") else "")]
        for note in [info.get("caption_announcement"), *self.explorer.announcements]:
            if note:
                lines.append(f"_{note}_")
        return "\n\n".join(lines)

    def examples(self) -> tuple[list[list[str]], list[str]]:
        """Example triples for this gallery: ([[A, B, C] paths], labels)."""
        g = self.gallery
        triples: list[tuple[int, int, int]] = []
        from pipeline.default_gallery import EXAMPLES

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
                triples.append(tuple(by_label[label] for label in labels))  # type: ignore[arg-type]
        triples = [t for t in triples if all(isinstance(self.previews.path(i), Path) for i in t)]
        paths = [[self.preview(i) for i in t] for t in triples]

        def name(i):
            item = g.items[i]
            return item.label if item.wnid and item.label else item.path.rsplit(".", 1)[0]

        labels = [f"{name(a)} : {name(b)} :: {name(c)} : ?" for a, b, c in triples]
        return paths, labels


# --- the page ------------------------------------------------------------------------------------


def _resolve_explorer(explorer_or_factory):
    from pipeline.explorer import Explorer

    if isinstance(explorer_or_factory, Explorer) or hasattr(explorer_or_factory, "analogy"):
        return explorer_or_factory
    if callable(explorer_or_factory):
        return explorer_or_factory()
    raise TypeError("build_demo needs an Explorer or a function that returns one")


def build_demo(explorer_or_factory, eval_dir: Path | str | None = None, handlers: Handlers | None = None) -> gr.Blocks:
    """The app's page for an Explorer (or a zero-argument function returning one) whose gallery is
    open (or is opened here). Queue on; model-bound events share one concurrency group."""
    explorer = _resolve_explorer(explorer_or_factory)
    h = handlers or Handlers(explorer, eval_dir=eval_dir)
    model_bound = {"concurrency_limit": MODEL_CONCURRENCY, "concurrency_id": CONCURRENCY_ID}
    first_ids = h.browse_ids("")
    browse_value = h.browse_value(first_ids)
    total = len(h.gallery)
    browse_note = f"Showing {len(first_ids)} of {total} images." + (" Type to filter." if len(first_ids) < total else "")
    example_paths, example_labels = h.examples()

    with gr.Blocks(title="Image Analogy Explainer", analytics_enabled=False, delete_cache=(3600, 6 * 3600)) as demo:
        report_state = gr.State(None)
        gr.Markdown("# Image Analogy Explainer\nA is to B as C is to what? Answered over convnet activations "
                    "(**image space**) and caption embeddings (**caption space**), with an honest verdict on "
                    "whether the answer is a real analogy or a cheat.")
        gr.Markdown(h.info_markdown(), elem_id="gallery-info")
        with gr.Tabs():
            with gr.Tab("Analogy", id="analogy"):
                with gr.Row(equal_height=False):
                    with gr.Column(scale=3):
                        with gr.Row():
                            slots = [UploadImage(label=f"{role}: upload, or pick from the gallery", type="filepath",
                                                 sources=["upload", "clipboard"], height=200, elem_id=f"slot-{role.lower()}")
                                     for role in ("A", "B", "C")]
                        slot = gr.Radio(["A", "B", "C"], value="A", label="A click on a gallery thumbnail fills slot",
                                        info="Moves on to the next slot after each click.", elem_id="slot-selector")
                        with gr.Row():
                            method = gr.Dropdown(METHOD_CHOICES, value="3cosadd", label="Method")
                            layer = gr.Radio(LAYER_CHOICES, value=explorer.settings.layer, label="Image-space layer")
                        with gr.Row():
                            exclude = gr.Checkbox(value=True, label="Exclude A, B and C from the answers",
                                                  info="The standard cheat; the result says what would win without it.")
                            top_k = gr.Slider(1, 20, value=explorer.settings.top_k, step=1, label="Answers shown (top k)")
                        solve_btn = gr.Button("Solve A : B :: C : ?", variant="primary", elem_id="solve")
                        if example_paths:
                            gr.Examples(example_paths, inputs=slots, label="Example triples",
                                        example_labels=example_labels)
                    with gr.Column(scale=2):
                        browse_filter = gr.Textbox(label="Gallery (click a thumbnail to pick it)",
                                                   placeholder="filter by label or file name, e.g. cat")
                        browse_ids = gr.State(first_ids)
                        browse_info = gr.Markdown(browse_note)
                        browse = gr.Gallery(browse_value, columns=4, height=460, allow_preview=False,
                                            show_label=False, object_fit="cover", elem_id="browse")
                question_md = gr.Markdown(elem_id="question")
                with gr.Row(equal_height=False):
                    with gr.Column():
                        image_head = gr.HTML(elem_id="image-space-head")
                        image_results = gr.Gallery(label="Image space: top answers", columns=5, height=200,
                                                   object_fit="contain", elem_id="image-space")
                    with gr.Column():
                        caption_head = gr.HTML(elem_id="caption-space-head")
                        caption_results = gr.Gallery(label="Caption space: top answers", columns=5, height=200,
                                                     object_fit="contain", elem_id="caption-space")
                        text_md = gr.Markdown(elem_id="text-answer")
                agreement_md = gr.Markdown(elem_id="agreement")
                chat = gr.Chatbot(label="Explainer", height=560, elem_id="chat",
                                  placeholder="Solve an analogy and the explanation appears here. Then ask away.")
                with gr.Row():
                    question = gr.Textbox(show_label=False, scale=5, elem_id="question-box",
                                          placeholder="Ask a follow-up: why? · top 10 · without exclusion · "
                                                      "compare methods · help")
                    ask_btn = gr.Button("Ask", scale=1)
                with gr.Accordion("Full report (JSON)", open=False):
                    report_json = gr.Code(language="json", show_label=False, elem_id="report-json")

            with gr.Tab("What the classifier sees", id="classifier"):
                gr.Markdown("One label per picture is ImageNet's whole view of the world. Pick or upload any image "
                            "and compare the classifier's top five labels with its caption.")
                with gr.Row(equal_height=False):
                    with gr.Column(scale=2):
                        cls_image = UploadImage(label="Image", type="filepath", sources=["upload", "clipboard"],
                                                height=300, elem_id="classifier-image")
                        cls_btn = gr.Button("What does the classifier see?", variant="primary")
                        cls_ids = gr.State(first_ids)
                        cls_browse = gr.Gallery(browse_value, columns=5, height=300, allow_preview=False,
                                                label="Or click a gallery image", object_fit="cover")
                    with gr.Column(scale=2):
                        cls_labels = gr.Label(num_top_classes=5, label="Top-5 ImageNet labels", elem_id="classifier-labels")
                        cls_caption = gr.Markdown(elem_id="classifier-caption")

            with gr.Tab("Evaluation", id="evaluation"):
                with gr.Row():
                    eval_choice = gr.Dropdown(label="Report", choices=[], scale=3, elem_id="eval-choice")
                    eval_refresh = gr.Button("Refresh", scale=1)
                eval_md = gr.Markdown(elem_id="eval-report")
                eval_figures = gr.Gallery(label="Figures", columns=2, height="auto", object_fit="contain")

        panels = [question_md, image_head, image_results, caption_head, caption_results, text_md, agreement_md]
        controls = [method, layer, exclude, top_k]

        solve_btn.click(user_facing(h.solve), inputs=[*slots, method, layer, exclude, top_k],
                        outputs=[report_state, *panels, chat, report_json], api_name="analogy", **model_bound)
        ask_event = dict(fn=user_facing(h.ask), inputs=[question, report_state, chat],
                         outputs=[chat, report_state, question, *panels, report_json, *controls], **model_bound)
        ask_btn.click(api_name="ask", **ask_event)
        question.submit(api_visibility="private", **ask_event)

        browse.select(user_facing(h.pick), inputs=[slot, browse_ids], outputs=[*slots, slot],
                      api_visibility="private", concurrency_limit=None)
        browse_filter.change(user_facing(h.filter_gallery), inputs=browse_filter,
                             outputs=[browse, browse_ids, browse_info], api_visibility="private",
                             trigger_mode="always_last")
        for role, image in zip("ABC", slots):  # however a slot is filled, its label says with what
            image.change(functools.partial(h.slot_label, role), inputs=image, outputs=image,
                         api_visibility="private", concurrency_limit=None, queue=False)

        cls_btn.click(user_facing(h.classify), inputs=cls_image, outputs=[cls_labels, cls_caption],
                      api_name="classify", **model_bound)
        cls_image.upload(user_facing(h.classify), inputs=cls_image, outputs=[cls_labels, cls_caption],
                         api_visibility="private", **model_bound)
        cls_browse.select(user_facing(h.pick_for_classifier), inputs=cls_ids,
                          outputs=[cls_image, cls_labels, cls_caption], api_visibility="private", **model_bound)

        eval_refresh.click(user_facing(h.eval_choices), outputs=eval_choice, api_visibility="private")
        eval_choice.change(user_facing(h.eval_view), inputs=eval_choice, outputs=[eval_md, eval_figures],
                           api_name="evaluation")
        demo.load(user_facing(h.eval_choices), outputs=eval_choice, api_visibility="private")
        demo.load(user_facing(h.eval_view), outputs=[eval_md, eval_figures], api_visibility="private")

    demo.queue(default_concurrency_limit=MODEL_CONCURRENCY, max_size=QUEUE_MAX_SIZE)
    demo.iae_handlers = h  # type: ignore[attr-defined]  # for tests and the launcher
    return demo


def launch_options(demo: gr.Blocks) -> dict:
    """``demo.launch`` keyword arguments that enforce the app's limits: the upload size cap; files served
    only from the folders of web copies (:meth:`Handlers.served_folders`: gallery thumbnails and
    previews, evaluation figures) besides Gradio's own uploads, with the gallery folder itself blocked
    (so not even a handler could hand out a file from it); CSS."""
    h: Handlers = demo.iae_handlers  # type: ignore[attr-defined]
    allowed = [str(folder.resolve()) for folder in h.served_folders()]
    root = h.gallery.root.resolve()
    # (a cache folder inside the gallery folder would be blocked with it: then only the copies are allowed)
    blocked = [] if any(Path(folder).is_relative_to(root) for folder in allowed) else [str(root)]
    return {"max_file_size": h.explorer.settings.max_file_bytes, "allowed_paths": allowed,
            "blocked_paths": blocked, "css": CSS, "show_error": False, "theme": gr.themes.Soft()}


# --- command line --------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python app.py",
        description="Image Analogy Explainer web app: A is to B as C is to what? in image and caption space.")
    parser.add_argument("--gallery", type=Path, help="folder of images (default: the embedded default gallery)")
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1; 0.0.0.0 on Hugging Face Spaces)")
    parser.add_argument("--port", type=int, default=None, help=f"port (default {DEFAULT_PORT}, or GRADIO_SERVER_PORT)")
    parser.add_argument("--share", action="store_true", help="also make a temporary public gradio.live link")
    parser.add_argument("--cache-dir", type=Path, help="where vectors, indexes and models are cached "
                        "(default ~/.cache/image-analogy-explainer, or IAE_CACHE_DIR)")
    parser.add_argument("--eval-dir", type=Path, default=DEFAULT_EVAL_DIR,
                        help="folder of evaluation reports (subfolders with results.md; the newest is shown first) "
                             "(default eval/reports)")
    return parser


def default_host() -> str:
    return "0.0.0.0" if os.environ.get("SPACE_ID") else os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1")


def warm_up(explorer) -> None:
    """One analogy before serving, so that indexes, vocabularies and sessions are loaded once, here,
    rather than by the first (or the first few concurrent) visitors."""
    if len(explorer.gallery) < 3:
        return
    started = time.perf_counter()
    try:
        explorer.analogy([0, 1, 2], top_k=1)
    except Exception as exc:  # the app can still serve; the first request will show the problem
        log.warning("warm-up analogy failed: %s", error_line(exc))
        return
    print(f"Warmed up in {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log.setLevel(logging.INFO)
    from pipeline.cli import tqdm_progress
    from pipeline.explorer import Explorer

    try:
        settings = Settings.from_env().replace(cache_dir=args.cache_dir)
        explorer = Explorer(settings)
        print(f"Opening the gallery {args.gallery or '(embedded default)'} ...", file=sys.stderr, flush=True)
        progress = tqdm_progress(True)
        explorer.open_gallery(args.gallery, progress)
        stats = explorer.build_stats
        print(f"Gallery ready: {stats.items} images ({stats.computed} computed, {stats.reused} reused, "
              f"{len(stats.skipped)} skipped) in {stats.seconds:.1f} s", file=sys.stderr, flush=True)
        for path, reason in stats.skipped[:10]:
            print(f"  skipped {path}: {reason}", file=sys.stderr)
        info = explorer.gallery_info()
        print(f"Captions by: {', '.join(info['captioners']) or 'none'}", file=sys.stderr)
        if info.get("caption_announcement"):
            print(info["caption_announcement"], file=sys.stderr)
        handlers = Handlers(explorer, eval_dir=args.eval_dir)
        handlers.thumbnails.prepare(handlers.browse_ids(""), progress)
        warm_up(explorer)
        demo = build_demo(explorer, handlers=handlers)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        print(f"error: {error_line(exc)}", file=sys.stderr)
        if os.environ.get("IAE_DEBUG"):
            raise
        return 2
    port = args.port or int(os.environ.get("GRADIO_SERVER_PORT", DEFAULT_PORT))
    demo.launch(server_name=args.host or default_host(), server_port=port, share=args.share,
                **launch_options(demo))
    return 0


if __name__ == "__main__":
    sys.exit(main())
