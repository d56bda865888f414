"""The Image Analogy Explainer web app (Gradio 6): ``python app.py``.

Opens the embedded default gallery (``--gallery DIR`` for any folder of images), builds or loads its
cache with console progress, makes the browse panels' missing thumbnails, prepares what questions
read (no model is loaded until an upload needs one), and serves the page built by :mod:`webui`: A, B
and C uploaded or picked from the gallery (a page of thumbnails at a time); the analogy
A : B :: C : ? answered in image space, caption space and word space side by side, with verdicts, what
would win without exclusion, and an explainer to chat with; what the classifier sees in any image; the
evaluation reports (newest first).

Importing this module loads no model. Start-up errors reach the user as one line through
:func:`pipeline.errors.guarded`, the CLI's guard. The app serves only the web copies of gallery images
and evaluation figures (:mod:`pipeline.web_copies`) and Gradio's own uploads: never the gallery
folder, the rest of the cache, or the evaluation reports (:func:`launch_options`). Two kinds of request
that Gradio alone answers with a 500 (a Range header that is not one byte range, an upload part without
a file name) get 416 and 400 (:mod:`webui.http_guards`).
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

from pipeline.cli import tqdm_progress
from pipeline.config import Settings
from pipeline.errors import error_line, guarded
from pipeline.explorer import Explorer
from pipeline.prepare import prepare_questions
from pipeline.reports import DEFAULT_EVAL_DIR
from webui import THEME, Handlers, build_demo, http_guards
from webui.format import CSS

log = logging.getLogger("iae.app")

DEFAULT_PORT = 7860


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python app.py",
        description="Image Analogy Explainer web app: A is to B as C is to what? in image, caption and word space.")
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


def launch_options(handlers: Handlers) -> dict:
    """``demo.launch`` keyword arguments that enforce the app's limits: the upload size cap; files served
    only from the folders of web copies (:meth:`Handlers.served_folders`: gallery thumbnails and
    previews, evaluation figures) besides Gradio's own uploads, with the gallery folder itself blocked
    (so not even a handler could hand out a file from it); the HTTP guards (:func:`webui.http_guards.app_kwargs`);
    CSS."""
    allowed = [str(folder.resolve()) for folder in handlers.served_folders()]
    root = handlers.gallery.root.resolve()
    # (a cache folder inside the gallery folder would be blocked with it: then only the copies are allowed)
    blocked = [] if any(Path(folder).is_relative_to(root) for folder in allowed) else [str(root)]
    return {"max_file_size": handlers.explorer.settings.max_file_bytes, "allowed_paths": allowed,
            "blocked_paths": blocked, "app_kwargs": http_guards.app_kwargs(), "css": CSS, "show_error": False,
            "theme": THEME}


def warm_up(explorer: Explorer, progress=None) -> None:
    """Before serving, make or read everything a question about gallery items reads (indexes, their
    measurements, vocabularies: :func:`pipeline.prepare.prepare_questions`), so that the first
    visitors do not wait for it. No model is loaded: the convnet and the sentence model load with
    the first upload that needs them."""
    started = time.perf_counter()
    try:
        prepare_questions(explorer, progress)
    except Exception as exc:  # the app can still serve; the first request will show the problem
        log.warning("preparing for questions failed: %s", error_line(exc))
        return
    print(f"Ready for questions in {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)


def open_gallery(args: argparse.Namespace, progress) -> Explorer:
    """An Explorer with the gallery of ``args`` open (built or loaded, reporting to ``progress``)."""
    settings = Settings.from_env().replace(cache_dir=args.cache_dir)
    explorer = Explorer(settings)
    print(f"Opening the gallery {args.gallery or '(embedded default)'} ...", file=sys.stderr, flush=True)
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
    return explorer


def serve(args: argparse.Namespace) -> int:
    """Open the gallery, make its missing thumbnails, warm up, then serve the page until stopped."""
    progress = tqdm_progress(True)  # console bars, one per stage
    explorer = open_gallery(args, progress)
    handlers = Handlers(explorer, eval_dir=args.eval_dir)
    handlers.thumbnails.make_missing(range(len(handlers.gallery)), progress)  # so that turning a page is quick
    warm_up(explorer, progress)
    demo = build_demo(handlers)
    port = args.port or int(os.environ.get("GRADIO_SERVER_PORT", DEFAULT_PORT))
    demo.launch(server_name=args.host or default_host(), server_port=port, share=args.share,
                **launch_options(handlers))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log.setLevel(logging.INFO)
    return guarded(lambda: serve(args))


if __name__ == "__main__":
    sys.exit(main())
