"""Benchmark (not a test): gallery builds of phone-size JPEGs and of imagen against a bare reduced-decode loop.

    .venv/bin/python scripts/bench_decode.py [--imagen ../shared/data/imagen] [--phones 100] [--repeats 3]

The script makes ``--phones`` imagen photos enlarged to 12 MP (4032x3024 for 4:3 photos), JPEG quality
90, EXIF orientations 1, 6, 3, 8 in turn (:func:`faithful_decode.phone_copy`), in a temporary
folder, and exports the ONNX model once into a temporary cache that every run below shares: "fresh
cache" means no gallery store yet, the models' ONNX files and the class-caption vocabulary present
(making them is a one-time cost of the cache, printed on its own).

The reference, "bare loop": ``load_image(path, min_short_side=256)`` (the same reduced decode), the
same preprocessing and the same onnxruntime session, batch 32, one image after another, nothing else.

Prints, measured in the same run (machines are noisy, so compare the ratios; the load average is
printed with them), medians of ``--repeats``:

1. steady state, in one process with the model loaded: ``build_gallery(with_captions=False)`` into
   an empty store against the bare loop, for the phone photos (target >= 0.85) and imagen; the
   same bare loop with full decodes, for scale; and the build's decode-ahead with 1 thread instead
   of :data:`pipeline.gallery.DECODE_THREADS`, and on 2 worker processes instead of threads;
2. whole processes from a fresh cache (no gallery store; one-time exports made by an untimed first build,
   whose time is printed apart): ``python -m pipeline gallery build DIR --captioner labels``
   (image vectors, label captions and their embeddings: what a user runs), the same with
   ``--no-captions``, and with ``--no-captions --device cpu`` (``auto`` imports torch to look for a
   GPU), against the bare loop run as a process of its own (imports, session, loop):
   phone photos (target >= 0.7) and imagen (target >= 0.85); and how many of the build's seconds
   are spent inside ``build_gallery`` (model loads included), from its ``--json`` report, the rest
   being start-up and imports.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

BATCH = 32


def bare_loop(paths: list[Path], classifier, min_short_side: int | None = 256) -> float:
    """Seconds to decode (``load_image(..., min_short_side)``), preprocess and run ``classifier``
    (batch 32) over ``paths``, serially."""
    from pipeline.images import load_image

    started = time.perf_counter()
    for start in range(0, len(paths), BATCH):
        images = [load_image(p, min_short_side=min_short_side) for p in paths[start:start + BATCH]]
        classifier.run(classifier.preprocess(images))
    return time.perf_counter() - started


def bare_process(folder: Path, cache_dir: Path) -> None:
    """The bare loop as a whole process (``--bare``): only what it needs is imported."""
    from pipeline.models.convnet import OnnxEfficientNet

    classifier = OnnxEfficientNet("efficientnet-lite0", cache_dir)
    bare_loop(sorted(folder.glob("*.jpg")), classifier)


def timed_process(command: list[str]) -> tuple[float, str]:
    """(wall seconds, stdout) of a whole process."""
    started = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(REPO)))
    seconds = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    return seconds, done.stdout


def reduced_input(path: Path):
    """(1, 3, 224, 224) float32 EfficientNet input of ``path``, reduced decode (a worker process's job)."""
    from pipeline.images import load_image
    from pipeline.models.convnet import RESIZE_SHORT_SIDE, efficientnet_input

    return efficientnet_input([load_image(path, min_short_side=RESIZE_SHORT_SIDE)])


def process_loop(paths: list[Path], classifier, workers: int = 2) -> float:
    """Seconds for the build's decode-ahead loop with worker processes instead of threads: the same
    order, batches and look-ahead (two batches), the inputs pickled back from ``workers`` processes."""
    from concurrent.futures import ProcessPoolExecutor

    import numpy as np

    from pipeline.ordered import in_order

    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(abs, range(workers)))  # start the workers before timing
        started = time.perf_counter()
        decoded = in_order(pool, reduced_input, paths, ahead=2 * BATCH)
        for start in range(0, len(paths), BATCH):
            classifier.run(np.concatenate([next(decoded) for _ in paths[start:start + BATCH]]))
        return time.perf_counter() - started


def steady_state(folder: Path, settings, models, repeats: int, variants: bool = False) -> dict[str, float]:
    """Median seconds of build_gallery into an empty store (``build``) and of the bare loop (``bare``),
    interleaved; with ``variants``, also the build with 1 decode thread and the loop on 2 processes."""
    from pipeline import gallery

    paths = sorted(folder.glob("*.jpg"))
    times: dict[str, list[float]] = {}

    def build(threads: int) -> float:
        shutil.rmtree(gallery.store_dir_for(folder, settings), ignore_errors=True)
        default, gallery.DECODE_THREADS = gallery.DECODE_THREADS, threads
        try:
            started = time.perf_counter()
            gallery.build_gallery(folder, settings, models, with_captions=False)
            return time.perf_counter() - started
        finally:
            gallery.DECODE_THREADS = default

    runs = {"build": lambda: build(gallery.DECODE_THREADS), "bare": lambda: bare_loop(paths, models.classifier)}
    if variants:
        runs.update({"build_1_thread": lambda: build(1), "processes": lambda: process_loop(paths, models.classifier)})
    for _ in range(repeats):
        for name, run in runs.items():
            times.setdefault(name, []).append(run())
    return {name: statistics.median(values) for name, values in times.items()}


def whole_process(folder: Path, cache_dir: Path, repeats: int) -> dict[str, float]:
    """Median wall seconds of the build (with and without captions, fresh gallery store each time)
    and of the bare-loop process, interleaved; plus the build's own ``seconds`` (inside build_gallery).
    First, one build whose seconds are kept apart as ``first``: it makes, where missing, what every
    gallery of the cache shares (the sentence model's ONNX export, the class-caption vocabulary), as the
    convnet's export is made before (one-time costs of a cache, not of a gallery)."""
    build = [sys.executable, "-m", "pipeline", "gallery", "build", str(folder), "--cache-dir", str(cache_dir),
             "--captioner", "labels", "--json"]
    runs = {"build": build, "build_no_captions": build + ["--no-captions"],
            "build_no_captions_cpu": build + ["--no-captions", "--device", "cpu"],
            "bare": [sys.executable, __file__, "--bare", str(folder), "--cache-dir", str(cache_dir)]}
    times: dict[str, list[float]] = {name: [] for name in runs}
    inside: list[float] = []
    shutil.rmtree(cache_dir / "galleries", ignore_errors=True)
    first, _ = timed_process(build)
    for _ in range(repeats):
        for name, command in runs.items():
            shutil.rmtree(cache_dir / "galleries", ignore_errors=True)
            seconds, out = timed_process(command)
            times[name].append(seconds)
            if name == "build":
                inside.append(json.loads(out)["seconds"])
    result = {name: statistics.median(values) for name, values in times.items()}
    result["inside_build"] = statistics.median(inside)
    result["first"] = first
    return result


def load() -> str:
    return f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--imagen", type=Path, default=REPO.parent / "shared/data/imagen")
    parser.add_argument("--phones", type=int, default=100, help="12 MP JPEGs to make (default 100)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--bare", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--cache-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare:
        return bare_process(args.bare, args.cache_dir)

    from faithful_decode import ORIENTATIONS, phone_copy

    from pipeline.config import Settings
    from pipeline.gallery import DECODE_THREADS
    from pipeline.models import Models

    imagen = args.imagen.resolve()
    sources = sorted(imagen.glob("*.jpg"))
    with tempfile.TemporaryDirectory() as tmp:
        phones = Path(tmp) / "phones"
        phones.mkdir()
        step = max(1, len(sources) // args.phones)
        for n, source in enumerate(sources[::step][:args.phones]):
            phone_copy(source, phones / source.name, ORIENTATIONS[n % len(ORIENTATIONS)])
        size_mb = sum(p.stat().st_size for p in phones.iterdir()) / len(list(phones.iterdir())) / 1e6
        cache = Path(tmp) / "cache"
        settings = Settings(cache_dir=cache, device="cpu", captioner="labels")
        models = Models(settings)
        classifier = models.classifier  # exports the ONNX file once, for every run below
        phone_paths = sorted(phones.glob("*.jpg"))
        bare_loop(phone_paths[:BATCH], classifier)  # warm-up
        print(f"{len(phone_paths)} phone JPEGs (~12 MP, {size_mb:.1f} MB each), imagen {len(sources)} photos; "
              f"{classifier.name}; {load()}")

        full = bare_loop(phone_paths, classifier, None)
        t = steady_state(phones, settings, models, args.repeats, variants=True)
        n = len(phone_paths)
        print("\n1. steady state (one process, model loaded), phone JPEGs:")
        print(f"   bare loop, full decode              {n / full:6.1f} img/s")
        print(f"   bare loop, reduced decode           {n / t['bare']:6.1f} img/s")
        print(f"   gallery build (no captions)         {n / t['build']:6.1f} img/s   ratio build/bare "
              f"{t['bare'] / t['build']:.2f}  (target >= 0.85)   [{load()}]")
        print(f"   the same with 1 decode thread       {n / t['build_1_thread']:6.1f} img/s   "
              f"(default: {DECODE_THREADS} threads)")
        print(f"   its loop on 2 worker processes      {n / t['processes']:6.1f} img/s")
        t = steady_state(imagen, settings.replace(cache_dir=Path(tmp) / "imagen-cache"), models, 1)
        print(f"   imagen: build {len(sources) / t['build']:.1f} img/s, bare {len(sources) / t['bare']:.1f} img/s, "
              f"ratio {t['bare'] / t['build']:.2f}   [{load()}]")

        print("\n2. whole processes, fresh gallery cache (the models' ONNX exports and the class vocabulary present):")
        for name, folder, count, target in (("phone JPEGs", phones, n, 0.7), ("imagen", imagen, len(sources), 0.85)):
            t = whole_process(folder, cache, args.repeats)
            print(f"   {name}: bare-loop process {t['bare']:.1f} s; `gallery build` {t['build']:.1f} s "
                  f"({t['inside_build']:.1f} s in build_gallery, model loads included; "
                  f"{t['build'] - t['inside_build']:.1f} s before it: start-up, imports), "
                  f"--no-captions {t['build_no_captions']:.1f} s, and --device cpu {t['build_no_captions_cpu']:.1f} s")
            print(f"      ratio build/bare {t['bare'] / t['build']:.2f}, --no-captions "
                  f"{t['bare'] / t['build_no_captions']:.2f}, and --device cpu {t['bare'] / t['build_no_captions_cpu']:.2f}"
                  f"   (target >= {target})   [{load()}]")
            print(f"      the first build with this cache, making what it lacked of the one-time exports: {t['first']:.1f} s")


if __name__ == "__main__":
    main()
