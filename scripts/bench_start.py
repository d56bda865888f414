#!/usr/bin/env python
"""Benchmark (not a test): what a user waits for at the start of a command, as whole processes.

    .venv/bin/python scripts/bench_start.py --cache-dir /tmp/iae-bench [--gallery ../shared/data/imagen]
        [--repeats 5] [--fresh 100] [--batch 1000] [--app]

Everything is measured in the same run, against a reference measured in that run (the machine is
shared: compare the ratios; the load average is printed before and after):

- **bare**: ``python -c`` that loads the gallery's cached ``pooled.npy``, normalises it and answers
  one 3CosAdd question by a product and a sort (the reference of the cached question);
- **cached question**: ``python -m pipeline analogy 0 1 8 --json`` on the built cache (target: at
  most 8x bare), and whether it imported torch, onnxruntime, sentence-transformers or transformers;
- **first question after build** (``--fresh N``): N photos of the gallery copied to a temporary
  folder, ``gallery build`` into a fresh cache (the ONNX export of the convnet copied from
  ``--cache-dir``, so no torch export is timed), then the first question and ``--repeats`` later ones
  (target: the first as fast as the later ones);
- **batch** (``--batch N``): ``analogy --batch`` over N seeded random triples of gallery items:
  questions per second after start-up (from the first answer line to the last; target >= 100/s) and
  the start-up itself (process start to the first line);
- **app** (``--app``): the cached start of ``app.py`` on the gallery (process start to the page
  answering; :mod:`scripts.bench_app`'s server; target: at most 3 s) next to ``python -c "import
  gradio"`` and to Gradio imported as the app imports it, its type-stub writing stopped
  (:mod:`webui.gradio_stubs`: the floor, since the page is Gradio), and the first analogy request after
  the start (three gallery photos uploaded through ``gradio_client``, recognised by content: no model
  loads).

The gallery is built into ``--cache-dir`` first if it is not there yet (not timed).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_IMAGEN = REPO.parent / "shared" / "data" / "imagen"
HEAVY = ("torch", "onnxruntime", "sentence_transformers", "transformers")

# Prints the heavy modules a command imported, at exit, on stderr (one JSON line).
MODULES_PROBE = ("import atexit, json, runpy, sys\n"
                 "atexit.register(lambda: print('MODULES ' + json.dumps(sorted(m for m in %r if m in sys.modules)), "
                 "file=sys.stderr))\n"
                 "sys.argv = ['pipeline'] + sys.argv[1:]\n"
                 "runpy.run_module('pipeline', run_name='__main__', alter_sys=True)\n") % (HEAVY,)

BARE = ("import sys, numpy as np\n"
        "p = np.load(sys.argv[1])\n"
        "v = p / np.linalg.norm(p, axis=1, keepdims=True)\n"
        "s = v @ (v[1] - v[0] + v[8])\n"
        "s[[0, 1, 8]] = -np.inf\n"
        "print(np.argsort(-s)[:5])\n")


def timed(command: list[str], **kwargs) -> tuple[float, subprocess.CompletedProcess]:
    started = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, **kwargs)
    seconds = time.perf_counter() - started
    if done.returncode not in (0, 1):
        raise RuntimeError(f"{' '.join(command[:6])} ... exited {done.returncode}: {done.stderr[-2000:]}")
    return seconds, done


def pipeline_command(*args: str, probe: bool = False) -> list[str]:
    return [sys.executable, "-c", MODULES_PROBE, *args] if probe else [sys.executable, "-m", "pipeline", *args]


def heavy_modules(stderr: str) -> list[str]:
    for line in stderr.splitlines():
        if line.startswith("MODULES "):
            return json.loads(line.removeprefix("MODULES "))
    return ["?"]


def median_seconds(command: list[str], repeats: int) -> float:
    return statistics.median(timed(command)[0] for _ in range(repeats))


def store_of(gallery: Path, cache_dir: Path) -> Path:
    sys.path.insert(0, str(REPO))
    from pipeline.config import Settings
    from pipeline.features import store_dir_for

    return store_dir_for(gallery, Settings.from_env().replace(cache_dir=cache_dir))


def bench_cached(gallery: Path, cache_dir: Path, repeats: int) -> dict:
    question = ["analogy", "0", "1", "8", "--gallery", str(gallery), "--cache-dir", str(cache_dir), "--json"]
    _, probe = timed(pipeline_command(*question, probe=True))
    bare = median_seconds([sys.executable, "-c", BARE, str(store_of(gallery, cache_dir) / "pooled.npy")], repeats)
    cached = median_seconds(pipeline_command(*question), repeats)
    return {"bare_s": bare, "cached_s": cached, "ratio": cached / bare, "heavy_imported": heavy_modules(probe.stderr)}


def bench_fresh(gallery: Path, cache_dir: Path, n: int, repeats: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-start-") as tmp:
        folder, cache = Path(tmp) / "photos", Path(tmp) / "cache"
        folder.mkdir()
        sys.path.insert(0, str(REPO))
        from pipeline.scan import scan_folder

        for relative in scan_folder(gallery)[:n]:
            shutil.copy(gallery / relative, folder / Path(relative).name)
        if (cache_dir / "onnx").is_dir():
            shutil.copytree(cache_dir / "onnx", cache / "onnx")
        build_s, _ = timed(pipeline_command("gallery", "build", str(folder), "--cache-dir", str(cache), "--json"))
        question = ["analogy", "0", "1", "2", "--gallery", str(folder), "--cache-dir", str(cache), "--json"]
        first_s, first = timed(pipeline_command(*question, probe=True))
        later = [timed(pipeline_command(*question))[0] for _ in range(repeats)]
    return {"items": n, "build_s": build_s, "first_s": first_s, "later_s": statistics.median(later),
            "ratio": first_s / statistics.median(later), "first_heavy_imported": heavy_modules(first.stderr)}


def bench_batch(gallery: Path, cache_dir: Path, n: int, seed: int) -> dict:
    sys.path.insert(0, str(REPO))
    from pipeline.scan import scan_folder

    items = len(scan_folder(gallery))
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
        questions = Path(tmp) / "questions.csv"
        questions.write_text("a,b,c\n" + "".join("{},{},{}\n".format(*rng.sample(range(items), 3)) for _ in range(n)))
        command = pipeline_command("analogy", "--batch", str(questions), "--gallery", str(gallery),
                                   "--cache-dir", str(cache_dir))
        started = time.perf_counter()
        process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        stamps = []
        for line in process.stdout:
            stamps.append(time.perf_counter())
            if '"error"' in line[:40]:
                raise RuntimeError(f"batch row failed: {line[:300]}")
        status = process.wait()
        total = time.perf_counter() - started
    if status != 0 or len(stamps) != n:
        raise RuntimeError(f"batch exited {status} with {len(stamps)} of {n} lines")
    rate = (n - 1) / (stamps[-1] - stamps[0]) if n > 1 else float("nan")
    return {"questions": n, "startup_s": stamps[0] - started, "total_s": total, "per_second": rate}


def bench_app(gallery: Path, cache_dir: Path, repeats: int) -> dict:
    sys.path.insert(0, str(REPO))
    from gradio_client import Client, handle_file

    from scripts.bench_app import Server
    from pipeline.scan import scan_folder

    logs = Path(tempfile.mkdtemp(prefix="bench-start-app-"))
    first = Server(gallery, cache_dir, logs / "first.log")  # makes what the app caches (thumbnails, previews)
    try:
        first.wait_ready(1800)
    finally:
        first.stop()
    gradio_s = median_seconds([sys.executable, "-c", "import gradio"], repeats)
    # the floor of the app's start: Gradio imported as the app imports it (webui.gradio_stubs first),
    # timed just before each start (the machine's speed drifts over a run)
    floor_command = [sys.executable, "-c", "import runpy; runpy.run_path('webui/gradio_stubs.py')"
                     "['stop_stub_writing'](); import gradio"]
    floors, starts, requests = [], [], []
    files = [gallery / f for f in scan_folder(gallery)[:3]]
    for n in range(repeats):
        floors.append(timed(floor_command)[0])
        server = Server(gallery, cache_dir, logs / f"cached-{n}.log")
        try:
            starts.append(server.wait_ready(600))
            client = Client(server.url, verbose=False, download_files=False)
            started = time.perf_counter()  # gallery photos uploaded: recognised by content, no model needed
            client.predict(*(handle_file(str(f)) for f in files), "3cosadd", "pooled", True, 5, api_name="/analogy")
            requests.append(time.perf_counter() - started)
        finally:
            server.stop()
    return {"cached_start_s": statistics.median(starts), "import_gradio_s": gradio_s,
            "start_over_import_gradio": statistics.median(starts) / gradio_s,
            "import_gradio_without_stub_writing_s": statistics.median(floors),
            "start_over_that": statistics.median(starts) / statistics.median(floors),
            "first_request_s": statistics.median(requests), "logs": str(logs)}


def rounded(value):
    """``value`` with every float rounded to 3 decimals (for printing)."""
    if isinstance(value, float):
        return round(value, 3)
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [rounded(v) for v in value]
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gallery", type=Path, default=DEFAULT_IMAGEN)
    parser.add_argument("--cache-dir", type=Path, required=True, help="the gallery's cache (built here if missing)")
    parser.add_argument("--repeats", type=int, default=5, help="runs of each command (the median is kept)")
    parser.add_argument("--fresh", type=int, default=0, help="first question after building N photos (0: skip)")
    parser.add_argument("--batch", type=int, default=0, help="questions in the --batch run (0: skip)")
    parser.add_argument("--app", action="store_true", help="also time the app's cached start")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    gallery, cache_dir = args.gallery.resolve(), args.cache_dir.resolve()
    load_before = os.getloadavg()
    timed(pipeline_command("gallery", "build", str(gallery), "--cache-dir", str(cache_dir), "--json"))
    results: dict = {"gallery": str(gallery), "cpus": os.cpu_count(), "load_before": load_before}
    results["cached_question"] = bench_cached(gallery, cache_dir, args.repeats)
    if args.fresh:
        results["first_after_build"] = bench_fresh(gallery, cache_dir, args.fresh, args.repeats)
    if args.batch:
        results["batch"] = bench_batch(gallery, cache_dir, args.batch, args.seed)
    if args.app:
        results["app"] = bench_app(gallery, cache_dir, args.repeats)
    results["load_after"] = os.getloadavg()
    print(json.dumps(rounded(results), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
