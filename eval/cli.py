"""``python -m eval SUITE --gallery DIR --out DIR [options]``; ``python -m eval SUITE --help``.

Suites: ``reproduce-2017``, ``transforms``, ``agreement`` (over a gallery) and ``word-analogies`` (the
Google analogy benchmark on GloVe word vectors). Each writes ``results.json``, ``results.md`` and PNG
plots into ``--out``. Errors are one line on stderr and exit status 2 (``IAE_DEBUG=1`` shows
the traceback).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.cli import add_settings_options, command_parser
from pipeline.config import LAYERS, Settings
from pipeline.errors import guarded
from pipeline.vectors import ALL_METHODS

from . import agreement, reproduce, transforms, word_analogies
from .common import open_explorer


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _common(parser: argparse.ArgumentParser, questions: int | None = None) -> None:
    parser.add_argument("--gallery", type=Path, required=True, help="folder of images (imagen for reproduce-2017)")
    parser.add_argument("--out", type=Path, required=True,
                        help="folder for results.json, results.md and the PNG plots (created)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random draw (default 0)")
    if questions is not None:
        parser.add_argument("--questions", type=_positive, default=questions,
                            help=f"how many questions to draw (default {questions})")
    parser.add_argument("--layers", nargs="+", choices=LAYERS, default=list(LAYERS), metavar="LAYER",
                        help=f"image-space layers to evaluate, from {', '.join(LAYERS)} (default: all)")
    parser.add_argument("--json", action="store_true", help="print results.json to stdout instead of a summary")
    add_settings_options(parser, backbone=False, captioner_default="labels",
                         captioner_help="captioner for caption space (default labels: templates over the "
                                        "classifier's labels, offline and deterministic)")


def build_parser() -> argparse.ArgumentParser:
    parser, suites = command_parser(
        "python -m eval", "Scripted evaluation of the Image Analogy Explainer: reproducible reports (JSON, "
        "Markdown, PNG) from a gallery's cached vectors.", "suite", "SUITE")

    rep = suites.add_parser(
        "reproduce-2017", help="the 2017 talk's findings on imagen, its numbers beside ours",
        description="On imagen (files <wnid>_<id>_<label>.jpg): class overlap with ImageNet-1k by WordNet id; "
                    "the classifier's top-1/top-5 accuracy on those classes; leave-one-out nearest-centroid "
                    "accuracy per layer and in caption space; what the classifier and the centroid model say "
                    "of the talk's example photos; over all ordered triples of distinct class centroids, how "
                    "often the centroid nearest to B - A + C (the talk's x + y - z) is an input; with inputs "
                    "excluded, the verdicts, the best analogies and where the talk's three best land.")
    _common(rep)
    rep.add_argument("--best", type=_positive, default=10, help="best analogies to list per space (default 10)")

    tr = suites.add_parser(
        "transforms", help="ground-truth analogies x : t(x) :: y : t(y) over transformed photos",
        description="Make transformed copies (greyscale, hflip, rot90, tint, blur, zoom) of a seeded sample of "
                    "the gallery's photos in a work folder, build that gallery (originals + every copy), and "
                    "ask a seeded sample of questions x : t(x) :: y : ? whose right answer is t(y). Reports "
                    "accuracy@1 and @5 per transform for every method and baseline, with and without "
                    "exclusion, per image layer and in caption space, and what the wrong answers are "
                    "(near-duplicates of C, C's other transforms, ...).")
    _common(tr, questions=2000)
    tr.add_argument("--originals", type=_positive, default=1000,
                    help="how many of the gallery's photos to transform (seeded sample; default 1000)")
    tr.add_argument("--transforms", nargs="+", metavar="T", default=None,
                    help="which transforms (default: greyscale hflip rot90 tint blur zoom)")
    tr.add_argument("--work-dir", type=Path, help="folder for the transformed copies "
                    "(default <cache-dir>/eval-transforms/<digest>; never inside the repository)")

    ag = suites.add_parser(
        "agreement", help="how often image space and caption space agree, and how often each cheats",
        description="On a seeded sample of random triples of distinct gallery items, answer A : B :: C : ? in "
                    "each image layer and in caption space (inputs excluded) and measure agreement (same "
                    "item, same label, top-k overlap, caption similarity of the answers) and the verdict "
                    "shares per space.")
    _common(ag, questions=500)
    ag.add_argument("--method", choices=ALL_METHODS, default="3cosadd", help="scoring method (default 3cosadd)")
    ag.add_argument("--top-k", type=_positive, default=5, help="k of the top-k overlap (default 5)")

    wa = suites.add_parser(
        "word-analogies", help="the Google analogy benchmark on GloVe, as gensim scores it and then honestly",
        description="Answer every question of an analogy file (default: questions-words.txt, 19,544 questions "
                    "in 14 sections, found where gensim is installed) over GloVe 6B 50-d. With 3CosAdd, inputs "
                    "excluded, case-insensitive matching and questions with a word outside the first N words "
                    "skipped, the counts equal gensim's KeyedVectors.evaluate_word_analogies. Then every method "
                    "and baseline with and without exclusion, accuracy @1 and @5, and where the unexcluded "
                    "answer lands (A, B, C, the right word, another); per section.")
    wa.add_argument("--questions", type=Path, help="questions file (': section' lines, then 'A B C D' lines; "
                    "default: gensim's questions-words.txt)")
    wa.add_argument("--restrict-vocab", type=_positive, default=300_000, metavar="N",
                    help="answers among the N most frequent words; questions with a word outside them are "
                         "skipped (default 300000, gensim's default)")
    wa.add_argument("--out", type=Path, required=True, help="folder for results.json, results.md and the PNG plots")
    wa.add_argument("--json", action="store_true", help="print results.json to stdout instead of a summary")
    wa.add_argument("--cache-dir", type=Path, help="where the word list is cached (default "
                    "~/.cache/image-analogy-explainer)")
    return parser


def _summary_lines(report) -> list[str]:
    """A few lines for the terminal: where the files are and the summary paragraph."""
    summary = next((body for heading, body in report.sections if heading == "Summary"), "")
    return [summary.replace("**", "")]


def run(args: argparse.Namespace, argv: list[str] | None) -> int:
    if args.suite == "word-analogies":
        report = word_analogies.run(Settings.from_env().replace(cache_dir=args.cache_dir), args, argv)
        return _finish(report, args)
    settings = Settings.from_args(args)
    if args.suite == "transforms":
        report = transforms.run(settings, args, argv)
    else:
        explorer = open_explorer(settings, args.gallery)
        if args.suite == "reproduce-2017":
            report = reproduce.run(explorer, args, argv)
        else:
            report = agreement.run(explorer, args, argv)
    return _finish(report, args)


def _finish(report, args) -> int:
    """Write the report into ``--out``; print its summary (or results.json with ``--json``)."""
    written = report.write(args.out)
    if args.json:
        print((args.out / "results.json").read_text(encoding="utf-8"), end="")
    else:
        for line in _summary_lines(report):
            print(line)
        print()
        print("wrote " + ", ".join(str(p) for p in written))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return guarded(lambda: run(args, argv if argv is not None else sys.argv[1:]))
