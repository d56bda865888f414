"""Benchmark (not a test): the time issue 11's explanations add to a question, without and with heatmaps.

    .venv/bin/python scripts/bench_explain.py [--cache-dir DIR] [--repeats 5] [--imagen ../shared/data/imagen]

For two questions (the default gallery's coffee : greyscale coffee :: cat, and imagen's sheep : camel ::
seal when the photos are there) it measures, in the same run and interleaved (machines are noisy, so
compare the ratios):

- ``plain``: one question as it is answered today, ``Explorer.analogy`` (both spaces, explanation);
- ``explain``: what :func:`pipeline.insight.space_insight` adds for both spaces (offset terms, geometry
  with C's neighbours, ground truth, calibrated threshold, already calibrated once per gallery), JSON only;
- ``figures``: drawing the two geometry PNGs (matplotlib Agg) and writing them;
- ``heatmaps``: decoding A, B, C, D and Grad-CAM of the four toward the query and toward C
  (:func:`pipeline.insight.question_heatmaps`);
- ``heatmap figures``: drawing and writing the four heatmap PNGs;
- ``torch forward``: for reference, a bare forward pass of the torch EfficientNet-Lite0 (float32,
  inference mode) over the same four preprocessed crops: the floor of any torch heatmap;

and prints medians and each as a ratio of ``plain``. One-time costs (the offset vocabulary's embeddings
when not cached, the classifier head, the torch model for the maps, each gallery's threshold
calibration) are printed separately.
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

from pipeline import insight, offsets  # noqa: E402
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


def bench_question(explorer: Explorer, refs: list[str], repeats: int, out: Path, torch_net) -> dict[str, list[float]]:
    gallery, models = explorer.gallery, explorer.models
    samples: dict[str, list[float]] = {key: [] for key in ("plain", "explain", "figures", "heatmaps", "heatmap figures",
                                                           "torch forward")}
    for _ in range(repeats):
        seconds, report = timed(lambda: explorer.analogy(refs))
        samples["plain"].append(seconds)
        spaces = {"image": report.image_space, "caption": report.caption_space}
        seconds, found = timed(lambda: {name: insight.space_insight(gallery, models, report.inputs, result)
                                        for name, result in spaces.items() if result is not None})
        samples["explain"].append(seconds)
        seconds, _ = timed(lambda: insight.write_figures(out, {name: f["geometry"] for name, f in found.items()}))
        samples["figures"].append(seconds)
        seconds, maps = timed(lambda: insight.question_heatmaps(gallery, models, report.inputs,
                                                               report.image_space.top.id, explorer.load))
        samples["heatmaps"].append(seconds)
        seconds, _ = timed(lambda: insight.write_figures(out, {}, maps))
        samples["heatmap figures"].append(seconds)
        batch = efficientnet_input([Image.fromarray(crop) for crop in maps.crops])
        seconds, _ = timed(lambda: torch_net.forward(batch))
        samples["torch forward"].append(seconds)
    print("   offset terms:", found["image"]["offset_terms"]["sentence"], "|", found["caption"]["offset_terms"]["sentence"])
    print("   expected:", {k: f["expected"] and {x: f["expected"][x] for x in ("ids", "correct", "only_c_correct", "rank")}
                           for k, f in found.items()})
    print("   thresholds:", {k: f["near_duplicate_threshold"] for k, f in found.items()},
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
            explorer.analogy(refs)  # warm-up: models loaded, indexes read
            print(f"{name}: {len(gallery)} items, {' : '.join(refs)}")
            once = {
                "offset vocabulary": lambda: offsets.word_vocabulary(explorer.models.embed_texts,
                                                                     gallery.captions.text_model, cache),
                "classifier head": explorer.models.classifier_head,
                "thresholds (4 spaces)": lambda: [insight.near_duplicate_threshold(gallery, s) for s in
                                                  ("image:pooled", "image:logits", "image:probs", "caption")],
                "torch model for heatmaps": lambda: explorer.models.similarity_maps(
                    [explorer.load(gallery.path(0))], np.ones((1, 1280), np.float32)),
            }
            for what, function in once.items():
                print(f"   once: {what:<26} {timed(function)[0]:7.3f} s")
            samples = bench_question(explorer, refs, args.repeats, out, torch_net)
            plain = float(np.median(samples["plain"]))
            for key, values in samples.items():
                median = float(np.median(values))
                print(f"   {key:<15} median {median:7.3f} s   {median / plain:5.2f} x plain   (min {min(values):.3f} s)")


if __name__ == "__main__":
    main()
