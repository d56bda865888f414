"""Browse panels: the gallery as thumbnails, a page at a time, narrowed by a filter; a click picks one.

A panel (:func:`browse_panel`, laid out where it is called) is a filter box, a line saying what is
shown, a page of thumbnails (:data:`PAGE_SIZE`) and Previous / Next buttons (shown only when
the matching images fill more than one page). The gallery ids on the page shown and the page number
are session state: a click is mapped to its gallery id on the server
(:meth:`GalleryBrowser.picked_id`), never taken from the client. Each tab wires its own click.

Why pages: the panel shows 16 thumbnails at once; 1,000 at once (imagen) cost the app's start 0.4 s
(Gradio checks and serves every one) and each visitor a thousand image requests.
:class:`GalleryBrowser` is what the panel's events call; it reads the gallery and its thumbnails only.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, NamedTuple

import gradio as gr

from . import api_inputs
from . import format as fmt
from .guard import user_facing

PAGE_SIZE = 200  # thumbnails on one page of a browse panel


class Panel(NamedTuple):
    """A browse panel's components that its tab's events read or update."""
    browse: Any  # gr.Gallery of thumbnails (its select event: a click)
    browse_ids: Any  # gr.State: the gallery ids on the page shown, in order
    filter_box: Any  # gr.Textbox
    outputs: list  # the components a :class:`BrowseView` updates, in its order


class BrowseView(NamedTuple):
    """A page of a browse panel (each field ``gr.skip()`` where nothing changes)."""
    browse: Any  # [(thumbnail, caption)] of the page
    browse_ids: Any  # the gallery ids on the page, in order (session state)
    browse_page: Any  # the page number, from 0 (session state)
    browse_info: Any  # Markdown: which images are shown
    previous: Any  # gr.update of a button (a dict, not a component: ``view`` also runs while the page is
    # laid out, where a component would be placed on it): shown when there are pages, enabled unless first
    next: Any  # the same for the last page


class ThumbnailClick(gr.SelectData):
    """The event data of a click on a browse panel, as a handler's type hint (``evt: ThumbnailClick``).

    Gradio builds a handler's ``gr.SelectData`` from whatever the client sent, before the handler runs;
    ``gr.SelectData`` indexes it (``data["index"]``, ``data["value"]``), so a client that sends no
    object, or one without those keys, made Gradio fail and print a traceback. This one takes any data:
    what is missing is ``None``, and :meth:`GalleryBrowser.picked_id` refuses it in one line."""

    def __init__(self, target, data):
        super().__init__(target, {"index": None, "value": None, **(data if isinstance(data, dict) else {})})


class GalleryBrowser:
    """What browse panels' events call, for one gallery and its thumbnails
    (:class:`pipeline.web_copies.WebCopies`), ``page_size`` thumbnails to a page."""

    def __init__(self, gallery, thumbnails, page_size: int = PAGE_SIZE):
        self.gallery = gallery
        self.thumbnails = thumbnails
        self.page_size = page_size

    def item_caption(self, item_id: int) -> str:
        return f"#{item_id} {fmt.item_name(self.gallery.items[item_id])}"

    def matching(self, query: str = "") -> list[int]:
        """Gallery ids whose label or path contains every word of ``query`` (all when empty), in order."""
        words = (query or "").lower().split()
        return [item.id for item in self.gallery.items
                if all(w in f"{item.label or ''} {item.path}".lower() for w in words)]

    def thumbnail_values(self, ids: list[int]) -> list[tuple[Any, str]]:
        """``[(thumbnail, caption)]`` of ``ids``: what a gr.Gallery shows (thumbnails made where missing)."""
        return [(web_value(copy), self.item_caption(i)) for i, copy in zip(ids, self.thumbnails.prepare(ids))]

    def view(self, query: str = "", page: int = 0) -> BrowseView:
        """Page ``page`` (clamped to the pages there are) of the images matching ``query``."""
        query = api_inputs.filter_text(query)
        matches = self.matching(query)
        size = self.page_size
        pages = max(1, -(-len(matches) // size))
        page = min(max(int(page), 0), pages - 1)
        ids = matches[page * size:(page + 1) * size]
        info = fmt.browse_note(page * size + 1, page * size + len(ids), len(matches), len(self.gallery), query)
        return BrowseView(self.thumbnail_values(ids), ids, page, info,
                          gr.update(visible=pages > 1, interactive=page > 0),
                          gr.update(visible=pages > 1, interactive=page < pages - 1))

    def filter(self, query: str) -> BrowseView:
        """The first page for a new filter ``query`` (at most :data:`webui.api_inputs.MAX_FILTER_CHARS`
        characters)."""
        return self.view(query, 0)

    def turn(self, step: int, query: str, page: int) -> BrowseView:
        """The page ``step`` pages from ``page`` (session state) for ``query``."""
        return self.view(query, (page if isinstance(page, int) else 0) + step)

    def fill_once(self, query: str, shown_ids: list[int]) -> BrowseView:
        """The first page for ``query`` (the filter box as it is) of a panel that starts empty, when its
        tab is opened; nothing when the session's panel shows thumbnails already."""
        if shown_ids:
            return BrowseView(*(gr.skip() for _ in BrowseView._fields))
        return self.view(query, 0)

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


def web_value(copy) -> Any:
    """A web copy (:mod:`pipeline.web_copies`) as a Gradio value: a file path as text, an image as is."""
    return str(copy) if isinstance(copy, Path) else copy


def browse_panel(browser: GalleryBrowser, label: str, columns: int, height: int, elem_id: str,
                 filled: bool = True) -> tuple[Panel, dict]:
    """A browse panel laid out where it is called, its filter and page buttons wired. ``filled``: it
    starts with the first page (else empty, for :meth:`GalleryBrowser.fill_once`). Returns its
    components and the check of the filter box (for :func:`webui.api_inputs.install`)."""
    first = browser.view() if filled else None
    filter_box = gr.Textbox(label=label, placeholder="filter by label or file name, e.g. cat",
                            max_length=api_inputs.MAX_FILTER_CHARS, elem_id=f"{elem_id}-filter")
    info = gr.Markdown(first.browse_info if first else "", elem_id=f"{elem_id}-info")
    browse = gr.Gallery(first.browse if first else None, columns=columns, height=height, allow_preview=False,
                        show_label=False, object_fit="cover", elem_id=elem_id)
    with gr.Row():
        previous = gr.Button("\u25c0 Previous", size="sm", elem_id=f"{elem_id}-previous",
                             visible=bool(first and first.previous["visible"]), interactive=False)
        next_ = gr.Button("Next \u25b6", size="sm", elem_id=f"{elem_id}-next",
                          visible=bool(first and first.next["visible"]))
    ids = gr.State(first.browse_ids if first else [])
    page = gr.State(0)

    shown = list(BrowseView(browse=browse, browse_ids=ids, browse_page=page, browse_info=info, previous=previous,
                            next=next_))
    filter_box.change(user_facing(browser.filter), inputs=filter_box, outputs=shown, api_visibility="private",
                      trigger_mode="always_last")
    for button, step in ((previous, -1), (next_, 1)):
        button.click(user_facing(functools.partial(browser.turn, step)), inputs=[filter_box, page], outputs=shown,
                     api_visibility="private")
    return Panel(browse, ids, filter_box, shown), {filter_box: api_inputs.filter_text}
