"""Benchmark (not a test): the time issue 11's explanations add to a question, without and with heatmaps.

    .venv/bin/python scripts/bench_explain.py [--cache-dir DIR] [--repeats 5] [--imagen ../shared/data/imagen]

For two questions (the default gallery's coffee : greyscale coffee :: cat, and imagen's sheep : camel ::
seal when the photos are there) it measures, in the same run and interleaved (machines are noisy, so
compare the ratios), against ``before``, a question as it was answered before issue 11
(``Explorer.explained(..., insight=False)``: both spaces, text answer, agreement, explanation):

- ``plain``: a question as it is answered now, ``Explorer.analogy`` (the same, plus each space's
  ``offset_terms``, ``geometry``, ``expected`` and calibrated ``near_duplicate_threshold`` in the JSON
  and the sentences about them); the difference is what every question pays;
- ``insight step``: that step alone (``Explorer.insight``: the four fields of both spaces), timed directly;
- ``+ geometry PNGs``: drawing the two geometry pictures (the app draws them after showing the answer;
  the CLI with ``--figures``);
- ``+ heatmaps``: Grad-CAM of A, B, C, D toward the query and toward C, and their four PNGs (only on
  request: the app's button, the chat, ``--figures``);
- ``torch forward``: for reference, a bare forward pass of the torch EfficientNet-Lite0 (float32,
  inference mode) over the same four preprocessed crops: the floor of any torch heatmap;

and prints medians, each as a ratio of ``before``, and the time each adds. One-time costs (the offset
vocabulary's embeddings when not cached, the classifier head, the torch model for the maps, each
space's threshold calibration, computed afresh here) are printed separately.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from PIL import Image  # noqa: E402

from pipeline import insight, offsets, thresholds  # noqa: E402
from pipeline.models.convnet import TorchEfficientNet, efficientnet_input  # noqa: E402
from pipeline.config import Settings  # noqa: E402
from pipeline.explorer import Explorer  # noqa: E402

QUESTIONS = {
    "default": (None, "auto", ["coffee/original.jpg", "coffee/greyscale.jpg", "cat/original.jpg"]),
    "imagen": ("imagen", "labels", ["n02411705_146_sheep.jpg", "n02437136_176_camel.jpg", "n02076196_10411_seal.jpg"]),
}


def timed(function):
    started = time.perf_counter()
    value = function()
    return time.perf_counter() - started, value


def heatmaps_and_pngs(explorer: Explorer, report):
    """The maps of A, B, C, D and their four PNGs, as the app's button computes them; returns the maps."""
    maps = explorer.heatmaps(report)
    insight.heatmap_pngs(maps)
    return maps


def bench_question(explorer: Explorer, refs: list[str], repeats: int, out: Path, torch_net) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {key: [] for key in ("before", "plain", "insight step", "+ geometry PNGs",
                                                           "+ heatmaps", "torch forward")}
    for _ in range(repeats):
        seconds, _ = timed(lambda: explorer.explained(explorer.analogy(refs, explain=False), insight=False))
        samples["before"].append(seconds)
        seconds, report = timed(lambda: explorer.analogy(refs))
        samples["plain"].append(seconds)
        data = report.as_dict()
        seconds, _ = timed(lambda: explorer.insight(report))
        samples["insight step"].append(seconds)
        seconds, _ = timed(lambda: insight.report_figures(out, data))
        samples["+ geometry PNGs"].append(seconds)
        seconds, maps = timed(lambda: heatmaps_and_pngs(explorer, report))
        samples["+ heatmaps"].append(seconds)
        batch = efficientnet_input([Image.fromarray(crop) for crop in maps.crops])
        seconds, _ = timed(lambda: torch_net.forward(batch))
        samples["torch forward"].append(seconds)
    print("   offset terms:", data["image_space"]["offset_terms"]["sentence"], "|",
          data["caption_space"]["offset_terms"]["sentence"])
    print("   expected:", {k: data[k]["expected"] and {x: data[k]["expected"][x] for x in ("ids", "correct", "only_c_correct", "rank")}
                           for k in ("image_space", "caption_space")})
    print("   thresholds:", {k: data[k]["near_duplicate_threshold"] for k in ("image_space", "caption_space")},
          "D's map correlation (query vs C):", round(maps.correlation(3), 3))
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache-dir", type=Path, default=None, help="reuse a cache (default: a new temporary one)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--imagen", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/imagen")
    args = parser.parse_args()
    torch_net = TorchEfficientNet("efficientnet-lite0", device="cpu", half=False)  # the reference forward
    with tempfile.TemporaryDirectory() as tmp:
        cache = args.cache_dir or Path(tmp)
        out = Path(tmp) / "figures"
        for name, (root, captioner, refs) in QUESTIONS.items():
            if root == "imagen":
                if not args.imagen.is_dir():
                    print(f"{name}: skipped ({args.imagen} not found)")
                    continue
                root = args.imagen
            explorer = Explorer(Settings(cache_dir=cache, device="cpu", captioner=captioner))
            gallery = explorer.open_gallery(root)
            print(f"{name}: {len(gallery)} items, {' : '.join(refs)}")
            once = {  # before the first question, which would load them
                "offset vocabulary": lambda: offsets.word_vocabulary(explorer.models.embed_texts,
                                                                     gallery.captions.text_model, cache),
                "classifier head": explorer.models.classifier_head,
                "thresholds (4 spaces)": lambda: [thresholds.calibrate(gallery.index(s), s) for s in
                                                  ("image:pooled", "image:logits", "image:probs", "caption")],
                "torch model for heatmaps": lambda: explorer.models.similarity_maps(
                    [explorer.load(gallery.path(0))], np.ones((1, 1280), np.float32)),
            }
            for what, function in once.items():
                print(f"   once: {what:<26} {timed(function)[0]:7.3f} s")
            explorer.analogy(refs)  # warm-up: the rest loaded (text-answer vocabulary, indexes)
            samples = bench_question(explorer, refs, args.repeats, out, torch_net)
            before = float(np.median(samples["before"]))
            for key, values in samples.items():
                median = float(np.median(values))
                added = {"plain": median - before, "insight step": median, "+ geometry PNGs": median,
                         "+ heatmaps": median}.get(key)
                print(f"   {key:<16} median {median:7.3f} s   {median / before:6.2f} x before"
                      + (f"   adds {1000 * added:8.1f} ms" if added is not None else "") + f"   (min {min(values):.3f} s)")


if __name__ == "__main__":
    main()
