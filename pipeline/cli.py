"""Command line: ``python -m pipeline <command> --help``.

Commands: ``gallery build DIR``, ``labels IMG...``, ``caption IMG...``, ``analogy A B C``,
``explain A B C``. Every command takes ``--json``; errors are one line on stderr and exit status 2.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .config import CAPTIONERS, DEVICES, LAYERS, Settings
from .errors import guarded
from .vectors import ALL_METHODS



def _common(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("settings (also IAE_<NAME> environment variables)")
    group.add_argument("--cache-dir", type=Path, help="where vectors, indexes and the ONNX model are cached "
                       "(default ~/.cache/image-analogy-explainer)")
    group.add_argument("--device", choices=DEVICES, help="auto (default): cuda when available, else cpu")
    group.add_argument("--backbone", help="efficientnet-lite0 (default, packaged), microsoft/resnet-50 (hub) "
                       "or a local ResNet folder")
    group.add_argument("--captioner", choices=CAPTIONERS, help="auto (default): caption files, else BLIP "
                       "when it loads and is fast enough here, else the classifier's labels")
    group.add_argument("--batch-size", type=int, help="images per convnet batch (default 32)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _question(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("a", metavar="A", help="gallery id or path, or any image file")
    parser.add_argument("b", metavar="B", help="gallery id or path, or any image file")
    parser.add_argument("c", metavar="C", help="gallery id or path, or any image file")
    parser.add_argument("--gallery", type=Path, help="folder of images (default: the embedded default gallery)")
    parser.add_argument("--method", choices=ALL_METHODS, default="3cosadd",
                        help="scoring method (default 3cosadd); the baselines can be asked for directly too")
    parser.add_argument("--layer", choices=LAYERS, help="image-space layer (default pooled)")
    parser.add_argument("--no-exclude", action="store_true", help="do not exclude A, B, C from the answers")
    parser.add_argument("--top-k", type=int, default=5, help="answers to show per space (default 5)")


def _explanation_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("why (the offset named, the geometry, right or wrong)")
    group.add_argument("--figures", type=Path, metavar="DIR",
                       help="write DIR/geometry-<image|caption>.png and DIR/heatmap-<A|B|C|D>.png (where the network "
                            "looks: a few seconds on a CPU) and list them under \"figures\" in the JSON")
    group.add_argument("--expected", nargs="+", metavar="REF",
                       help="the right answer(s), gallery ids or paths: each space then says whether it is right "
                            "(default: the gallery's <subject>/<variant> layout, where it has one)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline",
        description="Image Analogy Explainer: A is to B as C is to what? answered over convnet activations "
                    "and caption embeddings, with verdicts on when the answer cheats.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

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

    analogy = commands.add_parser("analogy", help="answer A : B :: C : ? in both spaces",
                                  description="Answer A : B :: C : ? in image space and caption space, with what "
                                              "wins without exclusion, the baselines and verdicts.")
    _question(analogy)
    _explanation_options(analogy)
    _common(analogy)

    explain = commands.add_parser("explain", help="explain an analogy in plain words",
                                  description="The chat-style explanation of A : B :: C : ?.")
    _question(explain)
    _explanation_options(explain)
    _common(explain)
    return parser


def settings_from_args(args: argparse.Namespace) -> Settings:
    return Settings.from_env().replace(
        cache_dir=args.cache_dir, device=args.device, backbone=args.backbone, captioner=args.captioner,
        batch_size=args.batch_size, layer=getattr(args, "layer", None))


def tqdm_progress(enabled: bool = True):
    """A progress(done, total, what) callback drawing tqdm bars on stderr, one per stage."""
    from tqdm import tqdm

    bars: dict[str, tqdm] = {}

    def progress(done: int, total: int, what: str) -> None:
        if not enabled or total <= 0:
            return
        bar = bars.get(what)
        if bar is None:
            for old in bars.values():
                old.close()
            bar = bars[what] = tqdm(total=total, desc=what, unit="img", file=sys.stderr, leave=False)
        bar.n = done
        bar.refresh()
        if done >= total:
            bar.close()

    return progress


def emit(args: argparse.Namespace, data, as_text) -> int:
    """Print ``data`` as JSON with ``--json``, else ``as_text(data)``; exit status 0."""
    print(json.dumps(data, indent=1) if args.json else as_text(data))
    return 0


def run(args: argparse.Namespace) -> int:
    from . import render
    from .explorer import Explorer
    from .insight import report_figures

    explorer = Explorer(settings_from_args(args))
    show_progress = sys.stderr.isatty() or bool(os.environ.get("IAE_PROGRESS"))
    progress = tqdm_progress(show_progress)
    if args.command == "gallery":
        if args.address and args.engine != "ray":
            raise ValueError("--address needs --engine ray")
        explorer.open_gallery(args.dir, progress, with_captions=not args.no_captions,
                              engine=args.engine, address=args.address)
        if not args.no_captions:  # so that the first question is fast: thresholds, vocabularies, classifier head
            explorer.prepare_explanations()
        info = explorer.gallery_info() if not args.no_captions else {"root": str(explorer.gallery.root)}
        return emit(args, {"gallery": info, **explorer.build_stats.as_dict()}, render.build_summary)
    if args.command == "labels":
        results = explorer.labels(args.images, args.top_k)
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
    explorer.open_gallery(args.gallery, progress)
    if args.top_k < 1:
        raise ValueError("--top-k must be at least 1")
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

