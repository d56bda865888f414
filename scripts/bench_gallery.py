"""Benchmark (not a test): gallery build throughput against a bare onnxruntime loop, and query latency.

    .venv/bin/python scripts/bench_gallery.py [--gallery ../shared/data/imagen] [--queries 300]

Prints, measured in the same run (machines are noisy, so compare the ratio):
- images/second of ``build_gallery`` from scratch (empty cache; image vectors, then captions),
- images/second of a bare loop: the same decoding (pipeline.images.load_image, reduced to the
  convnet's ``decode_short_side``) + preprocessing +
  the same onnxruntime session, batch 32, nothing else, and the ratio build / bare (target >= 0.85),
- p50 / p95 latency of one analogy (3CosAdd with all four baselines, exclusion, "without exclusion"
  ranks, verdicts) over the cached gallery, per space, and of the whole two-space question
  (target < 5 ms at 1,000 items for one space),
- the label captioner's throughput next to the bare classifier's,
- peak memory (max RSS).
"""
from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.analogy import gallery_input, solve_space  # noqa: E402
from pipeline.captions import labels_captions  # noqa: E402
from pipeline.config import Settings  # noqa: E402
from pipeline.explorer import Explorer  # noqa: E402
from pipeline.gallery import build_gallery, scan_folder  # noqa: E402
from pipeline.images import load_image  # noqa: E402
from pipeline.models import Models  # noqa: E402


def bare_loop(root: Path, paths: list[str], models: Models, batch_size: int = 32) -> float:
    """Seconds for decode + preprocess + onnxruntime over every image, serially."""
    classifier = models.classifier
    started = time.perf_counter()
    for start in range(0, len(paths), batch_size):
        images = [load_image(root / p, min_short_side=classifier.decode_short_side) for p in paths[start:start + batch_size]]
        classifier.run(classifier.preprocess(images))
    return time.perf_counter() - started


def percentiles(samples: list[float]) -> str:
    ms = np.array(samples) * 1000
    return f"p50 {np.percentile(ms, 50):6.2f} ms   p95 {np.percentile(ms, 95):6.2f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gallery", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/imagen")
    parser.add_argument("--queries", type=int, default=300)
    args = parser.parse_args()
    root = args.gallery.resolve()
    paths = scan_folder(root)
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(cache_dir=Path(tmp), device="cpu", captioner="labels")
        models = Models(settings)
        models.classifier  # export + load the ONNX model before timing
        models.text_embedder
        bare_loop(root, paths[:32], models)  # warm-up

        t0 = time.perf_counter()
        gallery, stats = build_gallery(root, settings, models, with_captions=False)
        build_s = time.perf_counter() - t0
        bare_s = bare_loop(root, paths, models)
        t0 = time.perf_counter()
        gallery, _ = build_gallery(root, settings, models, with_captions=True)
        caption_s = time.perf_counter() - t0

        n = len(paths)
        print(f"gallery {root}: {n} images, {stats.computed} computed, {len(stats.skipped)} skipped")
        print(f"build (image vectors, from scratch) {n / build_s:7.1f} img/s   ({build_s:.1f} s)")
        print(f"bare onnxruntime loop               {n / bare_s:7.1f} img/s   ({bare_s:.1f} s)")
        print(f"ratio build / bare                  {bare_s / build_s:7.2f}   (target >= 0.85)")
        print(f"captions + embeddings (labels)      {n / caption_s:7.1f} img/s   ({caption_s:.1f} s, cached vectors reused)")
        t0 = time.perf_counter()
        labels_captions(models, np.asarray(gallery.logits))
        label_s = time.perf_counter() - t0
        print(f"label captioner alone               {n / label_s:7.0f} img/s  vs bare classifier {n / bare_s:.1f} img/s")

        rng = np.random.default_rng(0)
        triples = [rng.choice(len(gallery), 3, replace=False) for _ in range(args.queries)]
        for space in ("image:pooled", "image:probs", "caption"):
            gallery.index(space)
            times = []
            for triple in triples:
                inputs = [gallery_input(gallery, role, int(i)) for role, i in zip("ABC", triple)]
                t0 = time.perf_counter()
                solve_space(gallery, inputs, space, "3cosadd", True, 5)
                times.append(time.perf_counter() - t0)
            print(f"analogy query {space:<13} {percentiles(times)}   (target p50 < 5 ms)")
        explorer = Explorer(settings, models)
        explorer.gallery = gallery
        times = []
        for triple in triples[:100]:
            t0 = time.perf_counter()
            explorer.analogy([int(i) for i in triple], explain=False)
            times.append(time.perf_counter() - t0)
        print(f"whole question, both spaces     {percentiles(times)}")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory (max RSS)               {peak_mb:7.0f} MB")


if __name__ == "__main__":
    main()
