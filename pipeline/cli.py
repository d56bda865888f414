"""Command line: ``python -m pipeline <command> --help``.

Commands: ``gallery build DIR``, ``labels IMG...``, ``caption IMG...``, ``analogy A B C``,
``explain A B C``, ``words A B C`` (a pure word analogy over GloVe, no images). Every command takes ``--json``; errors are one line on stderr and exit status 2.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import render
from .batch import open_batch, run_batch
from .config import CAPTIONERS, DEVICES, LAYERS, Settings
from .errors import SettingsError, guarded
from .explorer import Explorer
from .insight import report_figures
from .models import Models
from .prepare import prepare_questions
from .progress import show_progress, tqdm_progress
from .vectors import ALL_METHODS
from .words import word_analogy

CAPTIONER_HELP = ("auto (default): caption files, else BLIP when it loads and is fast enough here, else the "
                  "classifier's labels")


BATCH_HELP = ("answer many questions: FILE (or - for stdin) is CSV with a header a,b,c[,method,layer,expected] or "
              "JSON Lines objects with those keys; one JSON line out per row (the --json object with 'row', or "
              "{'row': n, 'error': ...}); exit status 0 when every row was answered, 1 when some rows failed "
              "(each said on stderr), 2 when the file cannot be read as questions")


def add_settings_options(parser: argparse.ArgumentParser, *, backbone: bool = True,
                         captioner_default: str | None = None, captioner_help: str = CAPTIONER_HELP) -> None:
    """The settings flags of a command line (:meth:`Settings.from_args` reads them back): cache folder,
    device, backbone (unless ``backbone`` is false), captioner, batch size."""
    group = parser.add_argument_group("settings (also IAE_<NAME> environment variables)")
    group.add_argument("--cache-dir", type=Path, help="where vectors, indexes and the ONNX model are cached "
                       "(default ~/.cache/image-analogy-explainer)")
    group.add_argument("--device", choices=DEVICES, help="auto (default): cuda when available, else cpu")
    if backbone:
        group.add_argument("--backbone", help="efficientnet-lite0 (default, packaged), microsoft/resnet-50 (hub) "
                           "or a local ResNet folder")
    group.add_argument("--captioner", choices=CAPTIONERS, default=captioner_default, help=captioner_help)
    group.add_argument("--batch-size", type=int, help="images per convnet batch (default 32)")


def _common(parser: argparse.ArgumentParser) -> None:
    add_settings_options(parser)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _question(parser: argparse.ArgumentParser, batch: bool = False) -> None:
    """A, B, C and the question's options; with ``batch`` also ``--batch FILE`` (then A, B, C are optional)."""
    for name in ("a", "b", "c"):
        parser.add_argument(name, metavar=name.upper(), nargs="?" if batch else None,
                            help="gallery id or path, or any image file")
    if batch:
        parser.add_argument("--batch", metavar="FILE", help=BATCH_HELP)
    parser.add_argument("--gallery", type=Path, help="folder of images (default: the embedded default gallery)")
    parser.add_argument("--method", choices=ALL_METHODS, default="3cosadd",
                        help="scoring method (default 3cosadd); the baselines can be asked for directly too")
    parser.add_argument("--layer", choices=LAYERS, help="image-space layer (default pooled)")
    parser.add_argument("--no-exclude", action="store_true", help="do not exclude A, B, C from the answers")
    parser.add_argument("--top-k", type=int, default=Settings.top_k,
                        help=f"answers to show per space (default {Settings.top_k}, at most {Settings.max_top_k}: "
                             "IAE_MAX_TOP_K)")


def command_parser(prog: str, description: str, dest: str, metavar: str):
    """(parser, subparsers) of a command line whose first argument is a required subcommand, stored
    in ``args.<dest>``."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    return parser, parser.add_subparsers(dest=dest, metavar=metavar, required=True)


def _explanation_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("why (the offset named, the geometry, right or wrong)")
    group.add_argument("--figures", type=Path, metavar="DIR",
                       help="write DIR/geometry-<image|caption>.png and DIR/heatmap-<A|B|C|D>.png (where the network "
                            "looks: a few seconds on a CPU) and list them under \"figures\" in the JSON")
    group.add_argument("--expected", nargs="+", metavar="REF",
                       help="the right answer(s), gallery ids or paths: each space then says whether it is right "
                            "(default: the gallery's <subject>/<variant> layout, where it has one)")


def build_parser() -> argparse.ArgumentParser:
    parser, commands = command_parser(
        "python -m pipeline", "Image Analogy Explainer: A is to B as C is to what? answered over convnet "
        "activations and caption embeddings, with verdicts on when the answer cheats.", "command", "COMMAND")

    gallery = commands.add_parser("gallery", help="build or refresh a gallery's cache",
                                  description="Gallery commands.")
    gallery_commands = gallery.add_subparsers(dest="gallery_command", metavar="SUBCOMMAND", required=True)
    build = gallery_commands.add_parser(
        "build", help="compute (only new or changed) vectors and captions for a folder of images",
        description="Scan DIR recursively, compute convnet activations for new or changed images (cached "
                    "by content hash), captions and their embeddings. Prints counts of items, computed, reused.")
    build.add_argument("dir", type=Path, nargs="?", help="folder of images (default: the embedded default gallery)")
    build.add_argument("--no-captions", action="store_true", help="image vectors only")
    build.add_argument("--engine", choices=("local", "ray"), default="local",
                       help="local (default): this process; ray: Ray Data workers, one model each, GPUs "
                            "where the cluster has them (same cache format)")
    build.add_argument("--address", help="with --engine ray: the Ray cluster to join, e.g. ray://head:10001 "
                                         "or auto (default: start a local Ray instance)")
    _common(build)

    labels = commands.add_parser("labels", help="top-5 ImageNet labels of images",
                                 description="What the classifier sees: top-k ImageNet-1k labels with probabilities.")
    labels.add_argument("images", nargs="+", metavar="IMG")
    labels.add_argument("--top-k", type=int, default=5)
    _common(labels)

    caption = commands.add_parser("caption", help="caption images",
                                  description="Caption images with the chosen captioner (the caption says which).")
    caption.add_argument("images", nargs="+", metavar="IMG")
    caption.add_argument("--gallery", type=Path, help="gallery whose caption files apply")
    _common(caption)

    analogy = commands.add_parser("analogy", help="answer A : B :: C : ? in image, caption and word space",
                                  description="Answer A : B :: C : ? in image space and caption space, and in word "
                                              "space (GloVe vectors of the images' labels), with what wins without "
                                              "exclusion, the baselines and verdicts.")
    _question(analogy, batch=True)
    _explanation_options(analogy)
    analogy.add_argument("--classes", action="store_true",
                         help="A, B, C are classes (labels of the gallery's items), each its centroid in every space; "
                              "answered among class centroids and among items")
    _common(analogy)

    explain = commands.add_parser("explain", help="explain an analogy in plain words",
                                  description="The chat-style explanation of A : B :: C : ?.")
    _question(explain)
    _explanation_options(explain)
    _common(explain)

    words = commands.add_parser(
        "words", help="answer A : B :: C : ? over GloVe word vectors (no images)",
        description="A pure word analogy over GloVe 6B 50-d: the answer among the most frequent words, the top k, "
                    "the baselines' answers, and what wins without exclusion (man : king :: woman : ? is 'king' "
                    "itself unless the inputs are excluded). A, B or C may be several words in quotes "
                    "(\"domestic cat\": the normalised mean of the words' vectors).")
    for role in "ABC":
        words.add_argument(role.lower(), metavar=role, help="a word, or several words in quotes")
    words.add_argument("--method", choices=ALL_METHODS, default="3cosadd",
                       help="scoring method (default 3cosadd); the baselines can be asked for directly too")
    words.add_argument("--restrict-vocab", type=int, metavar="N",
                       help="answer among the N most frequent words (default 30000, IAE_WORD_VOCAB_SIZE)")
    words.add_argument("--no-exclude", action="store_true", help="do not exclude the input words from the answers")
    words.add_argument("--top-k", type=int, default=5, help="answers to show (default 5)")
    words.add_argument("--cache-dir", type=Path, help="where the word list is cached "
                       "(default ~/.cache/image-analogy-explainer)")
    words.add_argument("--json", action="store_true", help="print JSON instead of text")
    return parser


def emit(args: argparse.Namespace, data, as_text) -> int:
    """Print ``data`` as JSON with ``--json``, else ``as_text(data)``; exit status 0."""
    print(json.dumps(data, indent=1) if args.json else as_text(data))
    return 0


def check_top_k(top_k: int, settings: Settings) -> int:
    """``--top-k`` as given, when it is from 1 to ``settings.max_top_k``; else SettingsError."""
    if not 1 <= top_k <= settings.max_top_k:
        raise SettingsError(f"--top-k must be a whole number from 1 to {settings.max_top_k} (max_top_k), got {top_k}")
    return top_k


def run_words(args: argparse.Namespace) -> int:
    """The ``words`` command: a free word analogy (pipeline.words.word_analogy)."""
    if args.restrict_vocab is not None and args.restrict_vocab < 1:
        raise SettingsError(f"--restrict-vocab must be at least 1, got {args.restrict_vocab}")
    settings = Settings.from_env().replace(cache_dir=args.cache_dir, word_vocab_size=args.restrict_vocab)
    check_top_k(args.top_k, settings)
    answer = word_analogy(Models(settings).word_vectors, args.a, args.b, args.c, method=args.method,
                          vocab_size=settings.word_vocab_size, exclude=not args.no_exclude, top_k=args.top_k,
                          eps=settings.cosmul_eps, strict=True)
    return emit(args, answer.as_dict(), render.word_answer)


def run(args: argparse.Namespace) -> int:
    if args.command == "words":
        return run_words(args)
    settings = Settings.from_args(args)
    explorer = Explorer(settings)
    progress = tqdm_progress(show_progress())
    if args.command == "gallery":
        if args.address and args.engine != "ray":
            raise SettingsError("--address needs --engine ray")
        explorer.open_gallery(args.dir, progress, with_captions=not args.no_captions,
                              engine=args.engine, address=args.address, recheck_captioner=True)
        prepared = prepare_questions(explorer, progress)  # so that the first question is as fast as the next
        info = explorer.gallery_info() if not args.no_captions else {"root": str(explorer.gallery.root)}
        return emit(args, {"gallery": info, **explorer.build_stats.as_dict(), "prepared": prepared},
                    render.build_summary)
    if args.command == "labels":
        results = explorer.labels(args.images, check_top_k(args.top_k, settings))
        rows = [{"image": str(img), "labels": [{"name": l.name, "wnid": l.wnid, "probability": round(l.probability, 4)}
                                               for l in labels]} for img, labels in zip(args.images, results)]
        return emit(args, rows, render.labels_table)
    if args.command == "caption":
        if args.gallery:
            explorer.open_gallery(args.gallery, progress)
        rows = explorer.caption(args.images)
        for note in explorer.announcements:  # e.g. why BLIP was not used: never a silent fallback
            print(note, file=sys.stderr)
        return emit(args, rows, lambda rows: "\n".join(
            f"{row['image']}: {row['caption']}  [{row['captioner']}]" for row in rows))
    # analogy / explain
    check_top_k(args.top_k, settings)
    batch = getattr(args, "batch", None)
    given = [ref for ref in (args.a, args.b, args.c) if ref is not None]
    if batch is not None and given:
        raise SettingsError("give either A B C or --batch FILE, not both")
    if batch is not None and getattr(args, "classes", False):
        raise SettingsError("--classes asks one question about classes: give A B C, not --batch")
    if batch is None and len(given) != 3:
        raise SettingsError(f"{args.command} needs three images A B C (gallery ids or paths, or image files)"
                            + (", or --batch FILE" if args.command == "analogy" else ""))
    questions = open_batch(batch) if batch is not None else None  # a missing file is said before any wait
    explorer.open_gallery(args.gallery, progress)
    if questions is not None:
        return run_batch(explorer, questions, method=args.method, layer=args.layer, exclude=not args.no_exclude,
                         top_k=args.top_k, show_bar=show_progress())
    if getattr(args, "classes", False):
        classes = explorer.class_analogy([args.a, args.b, args.c], method=args.method, layer=args.layer,
                                         exclude=not args.no_exclude, top_k=args.top_k)
        return emit(args, classes.as_dict(), render.class_report)
    report = explorer.analogy([args.a, args.b, args.c], method=args.method, layer=args.layer,
                              exclude=not args.no_exclude, top_k=args.top_k, expected=args.expected)
    data = report.as_dict()
    if args.figures:
        maps = explorer.heatmaps(report)
        data["heatmaps"] = maps.as_dict()
        data["figures"] = report_figures(args.figures, data, maps)
    as_text = render.explanation if args.command == "explain" else render.analogy_report
    return emit(args, data, lambda data: render.with_figures(as_text(report), data.get("figures")))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return guarded(lambda: run(args))

