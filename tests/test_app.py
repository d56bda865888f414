"""The Gradio app: handlers called directly, then the real server on 127.0.0.1 driven through
gradio_client and plain HTTP (uploads, limits, file access).

Everything is real: the session's default-gallery Explorer (real models, real FAISS), a real
Gradio server on a free local port, real files.
"""
from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import gradio as gr
import httpx
import pytest
from PIL import Image

import app
from pipeline.default_gallery import EXAMPLES
from pipeline.errors import ApiInputError
from pipeline.web_copies import THUMB_SIZE
from webui import CONCURRENCY_ID, GENERIC_ERROR, MODEL_CONCURRENCY, QUEUE_MAX_SIZE, Handlers, build_demo, user_facing
from webui import http_guards
from webui.browsing import GalleryBrowser
from webui.class_panel import class_report_html
from webui.format import VERDICTS, esc
from webui.handlers import MAX_CHAT_MESSAGES
from tests.bad_inputs import make_corpus
from tests.conftest import REPO, running_app

CAPTION_RE = re.compile(r"^\d+\. -?\d\.\d{3} · [^·]+( · .+)?$")


def solve(handlers, a, b, c, **options) -> dict:
    return user_facing(handlers.solve)(a, b, c, **options)._asdict()


def gallery_file(explorer, relative: str) -> str:
    return str(explorer.gallery.root / relative)


@pytest.fixture(scope="module")
def handlers(default_explorer, tmp_path_factory):
    return Handlers(default_explorer, eval_dir=tmp_path_factory.mktemp("no-eval-reports"))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return {case.name: case for case in make_corpus(tmp_path_factory.mktemp("bad-inputs") / "corpus")}


# --- import and wiring ---------------------------------------------------------------------------


def test_importing_app_loads_no_model():
    code = ("import sys, app\n"
            "heavy = [m for m in ('torch', 'onnxruntime', 'sentence_transformers', 'transformers') if m in sys.modules]\n"
            "assert not heavy, heavy\n"
            "from pathlib import Path\n"
            "assert not Path(app.__file__).with_suffix('.pyi').exists(), 'Gradio wrote a stub beside app.py'\n"
            "import webui.page\n"
            "assert not Path(webui.page.__file__).with_suffix('.pyi').exists(), 'Gradio wrote a stub beside page.py'\n"
            "from webui.gradio_stubs import stub_writing_stopped\n"
            "assert stub_writing_stopped(), 'app imported Gradio before webui stopped its stub writing'\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("stopped", [False, True])
def test_gradio_writes_stubs_beside_component_subclasses_unless_stopped(tmp_path, stopped):
    """Gradio's component metaclass writes ``<module>.pyi`` beside any module that subclasses a component
    (the premise of :mod:`webui.gradio_stubs`); after ``stop_stub_writing`` (before or after Gradio is
    imported) it writes nothing, and the subclass still works."""
    (tmp_path / "my_component.py").write_text("import gradio as gr\n\n\nclass MyImage(gr.Image):\n    pass\n")
    code = ("import sys\n"
            f"sys.path.insert(0, {str(tmp_path)!r})\n"
            + ("from webui.gradio_stubs import stop_stub_writing\nstop_stub_writing()\n" if stopped else "")
            + "import my_component\n"
            "print(my_component.MyImage(label='x').label)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "x"
    assert (tmp_path / "my_component.pyi").exists() is not stopped


def test_stop_stub_writing_after_gradio_is_imported():
    from webui.gradio_stubs import stop_stub_writing, stub_writing_stopped

    stop_stub_writing()  # Gradio is imported in this process: the function is replaced in place
    stop_stub_writing()
    assert stub_writing_stopped()


def test_gradio_pin_matches_installed_and_is_recent():
    pins = dict(re.findall(r"^(gradio|gradio-client)==(\S+)", (REPO / "requirements.txt").read_text(), re.M))
    assert pins["gradio"] == gr.__version__
    major, minor = (int(x) for x in gr.__version__.split(".")[:2])
    assert (major, minor) >= (6, 22), "security fixes ship only in current Gradio releases"


def test_readme_front_matter_matches_pinned_gradio():
    readme = REPO / "README.md"
    assert readme.is_file(), "README.md with the Hugging Face Spaces front matter is missing"
    match = re.match(r"^---\n(.*?)\n---\n", readme.read_text(encoding="utf-8"), re.S)
    assert match, "README.md must start with the Spaces front matter (--- ... ---)"
    front = dict(re.findall(r"^(\w+):\s*(.*?)\s*$", match.group(1), re.M))
    pin = re.search(r"^gradio==(\S+)", (REPO / "requirements.txt").read_text(), re.M).group(1)
    assert front.get("sdk") == "gradio"
    assert front.get("sdk_version", "").strip("\"'") == pin
    assert front.get("app_file") == "app.py"


def test_flags_and_host(monkeypatch):
    args = app.build_parser().parse_args(["--gallery", "/x", "--port", "9000", "--share", "--cache-dir", "/c",
                                          "--eval-dir", "/e", "--host", "0.0.0.0"])
    assert (args.gallery, args.port, args.share, args.cache_dir, args.eval_dir, args.host) == \
        (Path("/x"), 9000, True, Path("/c"), Path("/e"), "0.0.0.0")
    defaults = app.build_parser().parse_args([])
    assert defaults.eval_dir == app.DEFAULT_EVAL_DIR and defaults.host is None and not defaults.share
    monkeypatch.delenv("SPACE_ID", raising=False)
    monkeypatch.delenv("GRADIO_SERVER_NAME", raising=False)
    assert app.default_host() == "127.0.0.1"
    monkeypatch.setenv("SPACE_ID", "someone/image-analogy-explainer")
    assert app.default_host() == "0.0.0.0"


def test_main_with_a_missing_gallery_says_so_in_one_line(tmp_path, capsys):
    code = app.main(["--gallery", str(tmp_path / "nope"), "--cache-dir", str(tmp_path / "cache")])
    err = capsys.readouterr().err
    assert code == 2
    assert "error: gallery folder" in err and "does not exist" in err and "Traceback" not in err


def test_limits_and_concurrency_are_wired(default_explorer, tmp_path):
    h = Handlers(default_explorer, eval_dir=tmp_path)
    demo = build_demo(h)
    options = app.launch_options(h)
    assert options["max_file_size"] == default_explorer.settings.max_file_bytes
    # only the web copies are served (thumbnails, previews, evaluation figures), never the gallery folder
    assert options["allowed_paths"] == [str(h.thumbnails.folder.resolve()), str(h.previews.folder.resolve()),
                                        str(h.figures_folder.resolve())]
    assert options["blocked_paths"] == [str(default_explorer.gallery.root.resolve())]
    assert demo._queue.max_size == QUEUE_MAX_SIZE
    assert demo.api_open is False  # no event skips the queue (Gradio opens /gradio_api/api/NAME off Spaces)
    by_name = {fn.api_name: fn for fn in demo.fns.values()}
    for name in ("analogy", "ask", "classify"):
        assert by_name[name].concurrency_id == CONCURRENCY_ID
        assert by_name[name].concurrency_limit == MODEL_CONCURRENCY
    sliders = [block for block in demo.blocks.values() if isinstance(block, gr.Slider)]
    assert [s.maximum for s in sliders] == [default_explorer.settings.max_top_k]  # the one top-k limit
    assert [m.cls for m in options["app_kwargs"]["middleware"]] == [http_guards.HttpGuards]
    # the conversation is session state: the Chatbot is never an input, /ask takes the question alone
    chatbots = {block._id for block in demo.blocks.values() if isinstance(block, gr.Chatbot)}
    assert chatbots and not any(c._id in chatbots for fn in demo.fns.values() for c in fn.inputs)
    assert [type(c).__name__ for c in by_name["ask"].inputs] == ["Textbox", "State", "State"]
    # any existing report can be named through /evaluation (the dropdown's choices arrive with the page)
    assert by_name["evaluation"].inputs[0].allow_custom_value
    # thumbnails are served where they are, not copied into Gradio's cache; the folder is given to Gradio once
    browse = next(block for block in demo.blocks.values() if getattr(block, "elem_id", None) == "browse")
    assert [Path(shown["image"]["path"]).parent for shown in browse.value] == [h.thumbnails.folder] * 40
    build_demo(h)
    from gradio.data_classes import _StaticFiles  # Gradio's list of such folders (private: no public reader)
    assert _StaticFiles.all_paths.count(h.thumbnails.folder.resolve()) == 1



def test_the_page_has_only_the_buttons_it_lays_out(default_explorer, tmp_path):
    # a component made while the page is laid out is placed on it: a page update built then (gr.Button(...)
    # instead of gr.update(...)) once showed two stray "Run" buttons above the browse panel
    demo = build_demo(Handlers(default_explorer, eval_dir=tmp_path))
    labels = sorted(block.value for block in demo.blocks.values() if isinstance(block, gr.Button))
    assert "Run" not in labels
    assert labels == sorted(["Solve A : B :: C : ?", "Ask", "What does the classifier see?", "Refresh",
                             "Solve A : B :: C : ? for classes", "Where does the network look?"]
                            + ["\u25c0 Previous", "Next \u25b6"] * 2)

# --- handlers, called directly -------------------------------------------------------------------


def test_info_shows_gallery_and_captioner(handlers):
    text = handlers.info_markdown()
    assert "40 images" in text and "captions by:** file" in text
    assert "efficientnet-lite0" in text
    assert "caption files" in text  # the captioner announcement


def test_examples_for_the_default_gallery(handlers, default_explorer):
    paths, labels = handlers.examples()
    assert len(paths) == len(EXAMPLES) == len(labels)
    assert paths[0] == [handlers.preview(default_explorer.gallery.find(p)) for p in EXAMPLES[0]]
    assert labels[0] == "coffee/original : coffee/greyscale :: cat/original : ?"


@pytest.mark.slow
def test_examples_for_imagen_are_the_talks_analogies(imagen_explorer):
    handlers = Handlers(imagen_explorer)
    paths, labels = handlers.examples()
    assert labels == ["sheep : camel :: seal : ?", "flute : oboe :: domestic cat : ?",
                      "brassiere : maillot :: guacamole : ?"]
    items = imagen_explorer.gallery.items
    assert items[handlers.find_item(paths[0][0])].path.endswith("_sheep.jpg")
    assert items[handlers.find_item(paths[1][2])].path.endswith("_domestic_cat.jpg")
    out = solve(handlers, *paths[0])
    assert out["report"].inputs[2].label == "seal"
    assert all(CAPTION_RE.match(caption) for _, caption in out["image_gallery"])


def test_solve_gallery_triple_fills_both_spaces(handlers, default_explorer):
    a, b, c = (gallery_file(default_explorer, p) for p in EXAMPLES[0])
    out = solve(handlers, a, b, c, method="3cosadd", layer="pooled", exclude=True, top_k=4)
    report = out["report"]
    assert [inp.item_id for inp in report.inputs] == [default_explorer.gallery.find(p) for p in EXAMPLES[0]]
    assert out["question"].startswith("### coffee/original.jpg : coffee/greyscale.jpg :: cat/original.jpg : ?")
    for space, gallery_key, head_key in ((report.image_space, "image_gallery", "image_head"),
                                         (report.caption_space, "caption_gallery", "caption_head")):
        shown = out[gallery_key]
        assert len(shown) == 4
        assert [p for p, _ in shown] == [handlers.preview(h.id) for h in space.results]  # web copies
        for (_, caption), hit in zip(shown, space.results):
            assert CAPTION_RE.match(caption), caption
            assert f"{hit.score:.3f} · {hit.label} · {hit.caption}" in caption
        head = out[head_key]
        assert "Without exclusion it would have been" in head
        for verdict in space.verdicts:
            assert f">{verdict}</span>" in head
        ranks = space.without_exclusion["input_ranks"]
        assert f"A #{ranks['A']} · B #{ranks['B']} · C #{ranks['C']}" in head
    # the greyscale cat is the right answer; caption space finds it
    assert report.caption_space.top.path == "cat/greyscale.jpg"
    assert "in words" in out["text_answer"] and report.text_answer["text"] in out["text_answer"]
    assert out["agreement"].startswith("**Do the two spaces agree?**") and report.agreement["summary"] in out["agreement"]
    assert out["chat"] == report.explanation and out["chat"] and out["chat"][0]["role"] == "assistant"
    data = json.loads(out["report_json"])
    assert data["question"]["top_k"] == 4 and len(data["image_space"]["results"]) == 4


def test_solve_without_exclusion_and_other_options(handlers, default_explorer):
    a, b, c = (gallery_file(default_explorer, p) for p in EXAMPLES[1])
    out = solve(handlers, a, b, c, method="only-c", layer="logits", exclude=False, top_k=3)
    report = out["report"]
    assert (report.method, report.layer, report.exclude, report.top_k) == ("only-c", "logits", False, 3)
    assert report.image_space.space == "image:logits"
    # nothing excluded, ONLY-C: C itself is the answer
    assert report.image_space.top.path == EXAMPLES[1][2]
    assert "nothing excluded" in out["question"]


def test_solve_with_uploads(handlers, default_explorer, tmp_path):
    # a byte-identical copy of a gallery image is recognised as that item; a re-encoded one is new
    same = tmp_path / "my_coffee.jpg"
    shutil.copyfile(gallery_file(default_explorer, "coffee/original.jpg"), same)
    new = tmp_path / "my cat.png"
    Image.open(gallery_file(default_explorer, "cat/original.jpg")).rotate(7).save(new)
    out = solve(handlers, str(same), gallery_file(default_explorer, "coffee/greyscale.jpg"), str(new))
    a, _, c = out["report"].inputs
    assert a.item_id == default_explorer.gallery.find("coffee/original.jpg")
    assert c.item_id is None and c.name == "my cat.png" and c.caption
    assert "my cat.png" in out["question"]
    assert len(out["image_gallery"]) == 5 and len(out["caption_gallery"]) == 5
    # follow-ups about a report with an upload: one in words, one that re-runs it (decoding the upload again)
    asked = handlers.ask("why?", out["report"], [])
    assert asked.report is out["report"] and asked.history[-1]["role"] == "assistant"
    rerun = handlers.ask("try 3cosmul", out["report"], asked.history)
    assert rerun.method == "3cosmul" and rerun.report.inputs[2].name == "my cat.png" and len(rerun.history) == 4


def test_missing_and_invalid_options_are_plain_errors(handlers, default_explorer):
    a, b, c = (gallery_file(default_explorer, p) for p in EXAMPLES[0])
    with pytest.raises(gr.Error, match="Image B is missing"):
        solve(handlers, a, None, c)
    # the handlers run the same checks as the page runs on what callers send (webui.api_inputs)
    with pytest.raises(gr.Error, match="method: 'nonsense' is not a method; give one of: 3cosadd"):
        solve(handlers, a, b, c, method="nonsense")
    with pytest.raises(gr.Error, match="exclude: 'false' is not a boolean"):
        solve(handlers, a, b, c, exclude="false")
    with pytest.raises(gr.Error, match="top_k: 0 is not a whole number"):
        solve(handlers, a, b, c, top_k=0)
    limit = default_explorer.settings.max_top_k  # the one top-k limit
    with pytest.raises(gr.Error, match=f"top_k: {limit + 1} is not a whole number from 1 to {limit}"):
        solve(handlers, a, b, c, top_k=limit + 1)


@pytest.mark.parametrize("case, words", [
    ("text_renamed_jpg", "notes.jpg: not an image"),
    ("zero_bytes", "empty.png:"),
    ("bomb_png", "bomb.png:"),
    ("bomb_moderate_png", "bomb_moderate.png:"),
    ("truncated_jpeg", "truncated.jpg:"),
    ("svg", "drawing.svg:"),
    ("directory", "a_folder.png:"),
])
def test_bad_uploads_get_a_clear_message_then_the_app_answers(handlers, default_explorer, corpus, case, words):
    a, b, c = (gallery_file(default_explorer, p) for p in EXAMPLES[0])
    with pytest.raises(gr.Error) as caught:
        solve(handlers, a, b, str(corpus[case].path))
    message = caught.value.message
    assert words in message, message
    assert "Traceback" not in message and message != GENERIC_ERROR and "\n" not in message
    assert solve(handlers, a, b, c)["report"].image_space.top is not None


def test_photos_over_pils_own_limit_get_the_apps_pixel_limit(handlers, default_explorer, tmp_path):
    """Above PIL's decompression-bomb limit (Image.MAX_IMAGE_PIXELS, about 89 MP: a warning; twice
    that: an error) the message is still the app's: the size, and the limit of Settings.max_pixels."""
    from tests.bad_inputs import _blank_bilevel_png

    a, b = (gallery_file(default_explorer, p) for p in EXAMPLES[0][:2])
    limit = f"over the limit of {default_explorer.settings.max_pixels:,} pixels"
    for width, height in ((10_000, 9_500), (15_000, 12_000), (20_000, 20_000)):  # 95, 180 and 400 MP
        photo = tmp_path / f"huge-{width}.png"
        photo.write_bytes(_blank_bilevel_png(width, height))
        with pytest.raises(gr.Error) as caught:
            solve(handlers, a, b, str(photo))
        message = caught.value.message
        assert message.startswith(f"huge-{width}.png: image is {width * height:,} pixels, {limit}"), message


def test_valid_but_odd_uploads_are_answered(handlers, default_explorer, corpus):
    a, b = (gallery_file(default_explorer, p) for p in EXAMPLES[0][:2])
    for name in ("cmyk_jpeg", "grey16_png", "exif_rotated_jpeg", "palette_transparent_png", "animated_gif"):
        out = solve(handlers, a, b, str(corpus[name].path), top_k=2)
        assert len(out["image_gallery"]) == 2, name


@pytest.mark.expects_generic_error
def test_unexpected_errors_become_a_generic_message_and_are_logged(caplog):
    def broken():
        raise RuntimeError("internal detail /secret/path")

    with pytest.raises(gr.Error) as caught:
        user_facing(broken)()
    assert caught.value.message == GENERIC_ERROR
    assert "internal detail" in caplog.text and "Traceback" in caplog.text
    assert caught.value.print_exception is False  # logged once, above; Gradio prints nothing more


def test_memory_is_given_back_through_glibc():
    """release_memory finds glibc's malloc_trim where there is glibc (without it, memory freed by worker
    threads stays with the process: tests/test_app_reliability.py measures it on the real server)."""
    import platform

    from webui import memory as module

    if platform.libc_ver()[0] == "glibc":
        assert module._LIBC is not None and module._LIBC.malloc_trim(0) in (0, 1)
    module.release_memory()


def test_user_errors_are_logged_in_one_line_without_a_traceback(caplog):
    from pipeline.errors import ImageError

    def refuses(error):
        def handler():
            raise error
        return handler

    caplog.set_level("INFO", logger="iae.app")
    for error in (ImageError("photo.jpg: not an image. Upload a JPEG."), gr.Error("Type a question first.\nPlease."),
                  ImageError("\x1b[2J\x1b[31mred\u2028.jpg: not an image.")):  # an upload's name chosen by the client
        with pytest.raises(gr.Error) as caught:
            user_facing(refuses(error))()
        assert caught.value.print_exception is False
    def turn_page(page):
        raise gr.Error(f"No page {page}.")

    # a handler given as functools.partial (the page wires some so) is named by the function it wraps
    with pytest.raises(gr.Error) as caught:
        user_facing(functools.partial(turn_page, 7))()
    assert caught.value.message == "No page 7."
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["refused handler: photo.jpg: not an image. Upload a JPEG.",
                     "refused handler: Type a question first. Please.",
                     "refused handler: \\x1b[2J\\x1b[31mred .jpg: not an image.", "refused turn_page: No page 7."], lines
    assert "Traceback" not in caplog.text and not any(r.exc_info for r in caplog.records)


def test_picking_thumbnails_fills_the_selected_slot_and_moves_on(handlers, default_explorer):
    ids = handlers.browser.view().browse_ids
    assert ids == list(range(40))
    picked = handlers.pick("B", ids, gr.SelectData(None, {"index": 6, "value": None}))
    assert isinstance(picked.slot_a, dict) and isinstance(picked.slot_c, dict)  # gr.skip()
    assert picked.slot_b.constructor_args["value"] == handlers.preview(6)
    assert handlers.slot_label("B", picked.slot_b.constructor_args["value"]).label == "B: #6 cat/original"
    assert picked.slot == "C"
    assert handlers.pick("C", ids, gr.SelectData(None, {"index": 0, "value": None})).slot == "A"
    with pytest.raises(gr.Error):
        handlers.pick("A", ids, gr.SelectData(None, {"index": 99, "value": None}))


def test_slot_labels_say_what_a_slot_holds(handlers, default_explorer, tmp_path):
    assert handlers.slot_label("A", None).label == "A: upload, or pick from the gallery"
    copy = tmp_path / "anything.jpg"
    shutil.copyfile(gallery_file(default_explorer, "coffee/red.jpg"), copy)
    assert handlers.slot_label("A", str(copy)).label == "A: #11 coffee/red"  # recognised by content
    own = tmp_path / "mine.png"
    Image.new("RGB", (20, 20), "blue").save(own)
    assert handlers.slot_label("C", str(own)).label == "C: mine.png (uploaded)"


def test_filtering_the_gallery_panel(handlers):
    shown = handlers.browser.filter("cat")
    ids = shown.browse_ids
    assert len(ids) == 4 and all(handlers.gallery.items[i].label == "cat" for i in ids)
    assert all(Path(p).is_file() and Path(p).suffix == ".jpg" for p, _ in shown.browse)
    assert all(Path(p).parent == handlers.thumbnails.folder for p, _ in shown.browse)
    assert all(max(Image.open(p).size) <= THUMB_SIZE for p, _ in shown.browse)
    assert shown.browse_info == "4 of 40 images match \u201ccat\u201d."
    assert not shown.previous['visible'] and not shown.next['visible']  # one page: no page buttons
    assert handlers.browser.filter("no such thing").browse_ids == []
    assert handlers.browser.filter("no such thing").browse_info == "No gallery image matches \u201cno such thing\u201d."
    assert len(handlers.browser.filter("").browse_ids) == 40
    with pytest.raises(ApiInputError, match="over the limit"):
        handlers.browser.filter("x" * 201)


def test_browse_panel_pages(handlers):
    browser = GalleryBrowser(handlers.gallery, handlers.thumbnails, page_size=16)  # 40 images: 16, 16, 8
    first = browser.view()
    assert first.browse_ids == list(range(16)) and first.browse_page == 0
    assert first.browse_info == "Showing 1\u201316 of 40 images. Type to filter, or turn the page."
    assert first.previous['visible'] and not first.previous['interactive'] and first.next['interactive']
    second = browser.turn(1, "", first.browse_page)
    assert second.browse_ids == list(range(16, 32)) and second.browse_page == 1
    assert second.previous['interactive'] and second.next['interactive']
    assert [caption for _, caption in second.browse] == [browser.item_caption(i) for i in second.browse_ids]
    last = browser.turn(1, "", browser.turn(1, "", second.browse_page).browse_page)  # past the end: the last page
    assert last.browse_ids == list(range(32, 40)) and last.browse_page == 2 and not last.next['interactive']
    assert last.browse_info == "Showing 33\u201340 of 40 images. Type to filter, or turn the page."
    assert browser.turn(-1, "", 0).browse_page == 0 and browser.turn(-1, "", "2").browse_page == 0  # state is a page
    # a click maps to the gallery id on the page shown
    assert browser.picked_id(second.browse_ids, gr.SelectData(None, {"index": 3, "value": None})) == 19
    # a filter starts on its first page; turning keeps to the images it matches
    matched = browser.filter("original")
    assert all("original" in handlers.gallery.items[i].path for i in matched.browse_ids)
    assert all(handlers.gallery.items[i].label == "cat" for i in browser.view("cat", 5).browse_ids)
    assert browser.view("cat", 5).browse_info == "4 of 40 images match \u201ccat\u201d."


def test_classifier_view_for_gallery_items_and_uploads(handlers, default_explorer, tmp_path):
    labels, text = handlers.classify(gallery_file(default_explorer, "cat/original.jpg"))
    assert len(labels) == 5 and sum(labels.values()) <= 1.0001
    assert list(labels.values()) == sorted(labels.values(), reverse=True)
    assert any("cat" in name for name in labels)
    assert "labelled **cat**" in text and "a photo of a tabby cat" in text and "**Captioner:** file" in text
    upload = tmp_path / "upload.png"
    Image.open(gallery_file(default_explorer, "coffee/original.jpg")).resize((200, 150)).save(upload)
    labels, text = handlers.classify(str(upload))
    assert len(labels) == 5 and "**Caption:**" in text and "Gallery item" not in text
    picked = handlers.pick_for_classifier(handlers.browser.view().browse_ids, gr.SelectData(None, {"index": 6, "value": None}))
    assert picked.image == handlers.preview(6) and len(picked.labels) == 5
    with pytest.raises(gr.Error, match="Upload an image"):
        handlers.classify(None)


def test_classifier_browse_panel_is_filled_when_its_tab_is_first_opened(handlers):
    first = handlers.browser.fill_once("", [])
    assert first.browse_ids == handlers.browser.matching("") and len(first.browse) == len(handlers.gallery)
    assert [caption for _, caption in first.browse] == [handlers.browser.item_caption(i) for i in first.browse_ids]
    assert all(Path(copy).is_file() for copy, _ in first.browse)
    again = handlers.browser.fill_once("", first.browse_ids)  # opened again in the same session: nothing is sent
    assert tuple(again) == tuple(gr.skip() for _ in again)
    # a filter that matched nothing left the panel empty: opening the tab again keeps to that filter
    assert handlers.browser.fill_once("no such thing", []).browse_info == "No gallery image matches \u201cno such thing\u201d."


def test_follow_up_chat(handlers, default_explorer):
    ask = user_facing(handlers.ask)
    with pytest.raises(gr.Error, match="Solve an analogy first"):
        ask("why?", None, [])
    out = solve(handlers, *(gallery_file(default_explorer, p) for p in EXAMPLES[0]))
    report, chat = out["report"], out["chat"]
    assert out["history"] == chat  # the conversation is kept in the session, beside what the chat shows
    with pytest.raises(gr.Error, match="question: empty; type a question first"):
        ask("   ", report, chat)
    with pytest.raises(gr.Error, match="question: 2,001 characters, over the limit of 2,000"):
        ask("why" + " " * 1998, report, chat)
    answer = ask("why?", report, chat)
    history = answer.chat
    assert answer.report is report and answer.question_box == "" and answer.history == history
    assert history[:len(chat)] == chat and history[-2] == {"role": "user", "content": "why\\?"}  # shown as typed
    assert history[-1]["role"] == "assistant" and "Image space" in history[-1]["content"]
    kept = [value for name, value in answer._asdict().items()
            if name not in ("chat", "history", "report", "question_box")]
    assert kept and all(isinstance(p, dict) for p in kept)  # gr.skip(): nothing else changes
    answer = ask("show the top 8", report, history)
    bigger = answer.report
    assert bigger is not report and bigger.top_k == 8
    assert len(answer.image_gallery) == 8 and answer.top_k == 8  # image-space gallery and the top-k slider follow
    # "top 30": the slider's maximum is the one limit (Settings.max_top_k), so the next Solve takes it
    answer = ask("top 30", bigger, answer.history)
    assert answer.top_k == 30 <= default_explorer.settings.max_top_k
    again = solve(handlers, *(gallery_file(default_explorer, p) for p in EXAMPLES[0]), top_k=answer.top_k)
    assert len(again["image_gallery"]) == 30
    # a question the chat cannot answer is echoed in the reply, shown as typed too
    answer = ask("![x](http://elsewhere/x.png)", report, history)
    shown = "\\!\\[x\\]\\(http\\:\\/\\/elsewhere\\/x\\.png\\)"
    assert answer.chat[-2]["content"] == shown and shown in answer.chat[-1]["content"]
    assert "![x](" not in answer.chat[-1]["content"]
    # the conversation kept is bounded: the newest MAX_CHAT_MESSAGES
    long_history = [{"role": "assistant", "content": f"old {n}"} for n in range(MAX_CHAT_MESSAGES + 20)]
    answer = ask("help", report, long_history)
    assert len(answer.history) == MAX_CHAT_MESSAGES and answer.history[:-2] == long_history[-MAX_CHAT_MESSAGES + 2:]


def test_user_text_in_the_chat_is_shown_as_typed():
    """A user's question goes into the chat with every Markdown character escaped: an image, a link, an
    HTML tag is shown as those characters (tests/test_app_browser.py checks it in a real browser)."""
    from pipeline.chat import literal_markdown

    assert literal_markdown("![x](http://elsewhere/x.png)") == "\\!\\[x\\]\\(http\\:\\/\\/elsewhere\\/x\\.png\\)"
    assert literal_markdown("<img src=x> *a* `b` # c") == "\\<img src\\=x\\> \\*a\\* \\`b\\` \\# c"
    assert literal_markdown("why\\") == "why\\\\" and literal_markdown("plain words") == "plain words"


def test_eval_view_shows_the_newest_report(tmp_path, default_explorer):
    handlers = Handlers(default_explorer, eval_dir=tmp_path / "reports")
    text, figures = handlers.eval_view()
    assert text.startswith("No evaluation report yet") and figures == []
    old, new = tmp_path / "reports" / "run-1", tmp_path / "reports" / "run-2"
    for folder, title in ((old, "Old"), (new, "New")):
        folder.mkdir(parents=True)
        (folder / "results.json").write_text("{}")
        (folder / "results.md").write_text(f"# {title} results\n\n| suite | accuracy |\n|---|---|\n| flips | 0.9 |\n\n"
                                           "![accuracy by suite](accuracy.png)\n")
        Image.new("RGB", (40, 30), "white").save(folder / "accuracy.png")
        time.sleep(0.05)
    (tmp_path / "reports" / "empty-run").mkdir()
    os.utime(old / "results.md", (time.time() - 100, time.time() - 100))
    text, figures = handlers.eval_view()
    assert "# New results" in text and "run-2" in text and "| flips | 0.9 |" in text
    assert "(figure: accuracy.png, shown below)" in text and "](accuracy.png)" not in text
    assert [name for _, name in figures] == ["accuracy.png"]  # served from a copy, not the reports folder
    assert Path(figures[0][0]).parent == handlers.figures_folder
    assert Path(figures[0][0]).read_bytes() == (new / "accuracy.png").read_bytes()
    # every report can be picked; an unknown name falls back to the newest
    assert handlers.eval_choices()["choices"] in (["run-2", "run-1"], [("run-2", "run-2"), ("run-1", "run-1")])
    text, _ = handlers.eval_view("run-1")
    assert "# Old results" in text and "(the newest)" not in text
    text, _ = handlers.eval_view("../../etc")
    assert "# New results" in text and "(the newest)" in text


def test_eval_view_lists_the_committed_reports(default_explorer):
    handlers = Handlers(default_explorer)
    names = [c if isinstance(c, str) else c[0] for c in handlers.eval_choices()["choices"]]
    assert {"reproduce-2017", "transforms", "agreement"} <= set(names)
    text, figures = handlers.eval_view("reproduce-2017")
    assert "Reproducing the 2017 talk" in text and figures


# --- the real server -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(default_explorer, tmp_path_factory):
    with running_app(default_explorer, tmp_path_factory.mktemp("eval-reports")) as running:
        yield running


@pytest.fixture(scope="module")
def client(server):
    from gradio_client import Client

    return Client(server["url"], verbose=False)


def test_analogy_through_gradio_client(client, server):
    from gradio_client import handle_file

    root = server["explorer"].gallery.root
    out = client.predict(*(handle_file(str(root / p)) for p in EXAMPLES[0]), "3cosadd", "pooled", True, 5,
                         api_name="/analogy")
    question, image_head, image_gallery, caption_head, caption_gallery, text_answer, agreement, word_head, chat, \
        report = out
    assert "As a word analogy" in word_head and "(gallery label)" in word_head
    assert question.startswith("### coffee/original.jpg : coffee/greyscale.jpg :: cat/original.jpg : ?")
    assert "Without exclusion it would have been" in image_head and "iae-badge" in image_head
    assert len(image_gallery) == 5 and len(caption_gallery) == 5
    assert all(CAPTION_RE.match(item["caption"]) for item in image_gallery + caption_gallery)
    assert caption_gallery[0]["caption"] == "1. 0.991 · cat · a black and white photo of a tabby cat" or \
        caption_gallery[0]["caption"].endswith("· cat · a black and white photo of a tabby cat")
    assert Path(image_gallery[0]["image"]).is_file()  # downloaded by the client from the server
    assert "in words" in text_answer and agreement.startswith("**Do the two spaces agree?**")
    assert chat and chat[0]["role"] == "assistant"
    data = json.loads(report)
    assert [i["id"] for i in data["inputs"]] == [server["explorer"].gallery.find(p) for p in EXAMPLES[0]]
    assert data["caption_space"]["results"][0]["path"] == "cat/greyscale.jpg"
    assert data["word_space"]["word_answer"]["word"] in word_head
    # the same session then asks a follow-up about that report
    reply = client.predict("why?", api_name="/ask")
    assert reply[0][-1]["role"] == "assistant"


def test_class_questions_through_gradio_client(client, server):
    """The photos/classes switch's question: labels in, the three spaces' class answers out, equal to
    Explorer.class_analogy's; an unknown class is refused."""
    from gradio_client.exceptions import AppError

    html = client.predict("coffee", "cat", "rocket", "3cosadd", "pooled", True, 3, api_name="/classes")
    expected = server["explorer"].class_analogy(["coffee", "cat", "rocket"], top_k=3).as_dict()
    assert "Classes: coffee : cat :: rocket : ?" in html
    for key, title in (("image_space", "Image space"), ("caption_space", "Caption space"), ("word_space", "Word space")):
        assert f"<h3>{title}</h3>" in html
        assert f"<b>Among classes:</b> {expected[key]['among_classes']['class']}" in html
    assert "As a word analogy:" in html
    with pytest.raises(AppError, match="unicorn"):  # Gradio's own check of the picker's choices
        client.predict("coffee", "unicorn", "rocket", "3cosadd", "pooled", True, 3, api_name="/classes")


def test_class_answer_panel_shows_verdicts_ranks_baselines_and_tops(default_explorer):
    out = default_explorer.class_analogy(["coffee", "cat", "rocket"], top_k=3).as_dict()
    out["image_space"]["among_items"]["top"][0]["label"] = "<img src=x onerror=alert(1)>"  # labels are data
    html = class_report_html(out)
    assert "<img" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    verdicts = []
    for key in ("image_space", "caption_space", "word_space"):
        for part, name in (("among_classes", "class"), ("among_items", "item")):
            answer = out[key][part]
            verdicts += answer["verdicts"]
            ranks = " · ".join(f"{role} #{rank}" for role, rank in answer["without_exclusion"]["input_ranks"].items())
            assert f"Input ranks: {ranks}." in html
            pick = answer["baselines"]["only-c"][name]
            assert f"ONLY-C {pick}" in html
    assert html.count('<table class="iae-top"') == 6 and html.count("<tr><td>3</td>") == 6  # top 3, six times
    legend = html[html.index('class="iae-legend"'):]
    for verdict in set(verdicts):  # each verdict shown is coloured and explained once
        colour, meaning = VERDICTS[verdict]
        assert f"background:{colour}" in html and legend.count(f"</span> {esc(meaning)}</li>") == 1
    assert "As a word analogy:" in html


def test_classifier_through_gradio_client(client, server):
    from gradio_client import handle_file

    labels, text = client.predict(handle_file(str(server["explorer"].gallery.root / "cat/original.jpg")),
                                  api_name="/classify")
    assert len(labels["confidences"]) == 5 and "a photo of a tabby cat" in text


def test_bad_uploads_through_the_server_then_it_still_answers(client, server, corpus):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    root = server["explorer"].gallery.root
    a, b, c = (handle_file(str(root / p)) for p in EXAMPLES[0])
    for case, words in (("text_renamed_jpg", "not an image"), ("bomb_png", "bomb.png:"), ("zero_bytes", "empty.png:")):
        with pytest.raises(AppError) as caught:
            client.predict(a, b, handle_file(str(corpus[case].path)), "3cosadd", "pooled", True, 5, api_name="/analogy")
        assert words in str(caught.value), str(caught.value)
        with pytest.raises(AppError, match=words):
            client.predict(handle_file(str(corpus[case].path)), api_name="/classify")
    out = client.predict(a, b, c, "3cosadd", "pooled", True, 3, api_name="/analogy")
    assert len(out[2]) == 3


def test_uploads_over_the_size_limit_are_refused(server, tmp_path):
    limit = server["explorer"].settings.max_file_bytes
    big = tmp_path / "big.png"
    with big.open("wb") as f:
        f.truncate(limit + 1)
    with big.open("rb") as f:
        response = httpx.post(server["url"] + "gradio_api/upload", files={"files": ("big.png", f, "image/png")},
                              timeout=60)
    assert response.status_code == 413, response.text


def _get(server, path: str) -> httpx.Response:
    return httpx.get(server["url"] + "gradio_api/file=" + path, timeout=30)


def test_file_route_serves_the_gallery_and_nothing_else(server, tmp_path):
    gallery = server["explorer"].gallery
    root = gallery.root.resolve()
    preview = server["handlers"].preview(gallery.find("cat/original.jpg"))
    assert _get(server, preview).status_code == 200  # the control: web copies are served
    refused = [
        str(root / "cat/original.jpg"),  # the gallery's own files are not (only their web copies)
        "/etc/passwd",
        str(root) + "/../../../../../../etc/passwd",
        str(root) + "/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "..%2f..%2f..%2f..%2f..%2f..%2fetc%2fpasswd",
        str(REPO / "app.py"),  # the working directory is not served
        "app.py",
        str(Path(gallery.store) / "manifest.json"),  # the cache beside the thumbnails is not served
        str(Path(gallery.store) / "pooled.npy"),
        str(Path(sys.executable)),
    ]
    for path in refused:
        response = _get(server, path)
        assert response.status_code in (403, 404), (path, response.status_code)
        assert b"root:" not in response.content
    # a link inside the gallery folder that points outside it is refused too
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the web")
    link = root / "leak.jpg"
    try:
        link.symlink_to(secret)
        response = _get(server, str(link))
        assert response.status_code == 403 and b"not for the web" not in response.content
    finally:
        link.unlink(missing_ok=True)


def test_an_api_caller_cannot_hand_the_app_a_server_path(server):
    """Inputs must be uploads: a FileData pointing at /etc/passwd never reaches the handler."""
    fake = {"path": "/etc/passwd", "meta": {"_type": "gradio.FileData"}, "orig_name": "passwd.jpg"}
    response = httpx.post(server["url"] + "gradio_api/call/classify", json={"data": [fake]}, timeout=30)
    assert response.status_code == 200
    event_id = response.json()["event_id"]
    stream = httpx.get(server["url"] + f"gradio_api/call/classify/{event_id}", timeout=60).text
    assert "event: error" in stream
    assert "root:" not in stream


def test_concurrent_requests_with_uploads_all_answer_correctly(client, server, tmp_path):
    """A burst of analogy requests (some with images the gallery has never seen) all come back right:
    the queue and the model lock serialise the model work without mixing requests up."""
    from gradio_client import handle_file

    explorer = server["explorer"]
    root = explorer.gallery.root
    uploads = []
    for n, relative in enumerate(("cat/original.jpg", "rocket/original.jpg", "flower/red.jpg")):
        path = tmp_path / f"upload-{n}.png"
        Image.open(root / relative).rotate(5 + n).save(path)
        uploads.append(str(path))
    gallery_paths = [str(root / item.path) for item in explorer.gallery.items]
    triples = [(gallery_paths[i % 40], gallery_paths[(i * 7 + 3) % 40], uploads[i % 3] if i % 2 else gallery_paths[(i * 13 + 5) % 40])
               for i in range(12)]
    started = time.perf_counter()
    jobs = [client.submit(*(handle_file(p) for p in triple), "3cosadd", "pooled", True, 3, api_name="/analogy")
            for triple in triples]
    results = [job.result(timeout=120) for job in jobs]
    assert time.perf_counter() - started < 120
    for triple, out in zip(triples, results):
        expected = explorer.analogy(list(triple), top_k=3, explain=False)
        data = json.loads(out[-1])
        assert [h["id"] for h in data["image_space"]["results"]] == [h.id for h in expected.image_space.results]
        assert [h["id"] for h in data["caption_space"]["results"]] == [h.id for h in expected.caption_space.results]
