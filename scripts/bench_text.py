"""Benchmark (not a test): the caption-space text model on a CPU, onnxruntime path against
sentence-transformers (the reference), measured in the same run.

    .venv/bin/python scripts/bench_text.py [--rounds 3] [--repeats 3]

Prints (machines are noisy, and this one may be shared: compare the ratios, not the seconds):
- the one-time ONNX export into a fresh cache folder (torch + transformers, once per model),
- whole fresh processes, median of ``--repeats``: seconds to import the text module, load the
  model (warm export cache for onnxruntime) and embed one caption, and the whole process from start
  to exit, for each path; whether the onnxruntime process imported torch,
- steady state in one process: captions per second over the 1,000 ImageNet class captions
  (LabelsCaptioner's "a photo of ..." wording, batch 64) and over 1,000-word texts (truncated to 256
  tokens), both paths alternating for ``--rounds`` rounds: median rates and the median of the
  rounds' ratios,
- the largest difference between the two paths' vectors.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pipeline.labels import imagenet_classes  # noqa: E402
from pipeline.models.captioners import LabelsCaptioner  # noqa: E402

FIRST_USE = {
    "onnxruntime": ("from pipeline.models.text import TextEmbedder",
                    "encoder = TextEmbedder(cache_dir={cache!r}); assert encoder.runtime == 'onnxruntime, cpu'"),
    "sentence-transformers": ("import sentence_transformers; "
                              "from pipeline.models.text import SentenceTransformerEncoder, resolve_text_model_path",
                              "encoder = SentenceTransformerEncoder(resolve_text_model_path('all-MiniLM-L6-v2'), 'cpu')"),
}
FIRST_USE_SCRIPT = """
import time, json, sys
t0 = time.perf_counter()
{import_line}
t1 = time.perf_counter()
{load_line}
t2 = time.perf_counter()
encoder.encode(["a photo of an espresso"], 64)
t3 = time.perf_counter()
print(json.dumps({{"import": t1 - t0, "load": t2 - t1, "first_encode": t3 - t2, "torch": "torch" in sys.modules}}))
"""


def first_use(path: str, cache: Path) -> dict:
    """One fresh process: import, load, first encode (seconds), and the whole process's wall time."""
    import_line, load_line = FIRST_USE[path]
    code = FIRST_USE_SCRIPT.format(import_line=import_line, load_line=load_line.format(cache=str(cache)))
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["process"] = time.perf_counter() - started
    return result


def throughput(encoder, texts: list[str]) -> float:
    started = time.perf_counter()
    encoder.encode(texts, 64)
    return len(texts) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5, help="steady-state rounds per path (median is kept)")
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per path (median is kept)")
    args = parser.parse_args()
    captioner = LabelsCaptioner()
    captions = [captioner.caption_one([(c.name, 1.0)]) for c in imagenet_classes()]
    words = [c.name for c in imagenet_classes()]
    rng = np.random.default_rng(13)
    long_texts = [" ".join(rng.choice(words, 1000)) for _ in range(64)]

    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the start (a shared machine inflates every "
          "time; the ratios are what to compare)")
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp)
        from pipeline.models.text import SentenceTransformerEncoder, TextEmbedder, resolve_text_model_path

        started = time.perf_counter()
        onnx = TextEmbedder(cache_dir=cache)
        export_s = time.perf_counter() - started
        print(f"one-time ONNX export + load (fresh cache): {export_s:.1f} s -> {onnx._encoder.onnx_path.name}")

        runs = {path: [] for path in FIRST_USE}
        for _ in range(args.repeats):  # alternate, so that both see the same load on the machine
            for path in FIRST_USE:
                runs[path].append(first_use(path, cache))
        median = {path: {key: statistics.median(r[key] for r in rows) for key in ("import", "load", "first_encode", "process")}
                  for path, rows in runs.items()}
        print(f"\nfresh process, median of {args.repeats} (seconds)   import    load  1st encode   to 1st vector   whole process")
        for path, m in median.items():
            print(f"  {path:<38} {m['import']:6.2f}  {m['load']:6.2f}  {m['first_encode']:10.3f}  "
                  f"{m['import'] + m['load'] + m['first_encode']:14.2f}  {m['process']:14.2f}")
        o, s = median["onnxruntime"], median["sentence-transformers"]
        to_first = lambda m: m["import"] + m["load"] + m["first_encode"]  # noqa: E731
        print(f"  ratio sentence-transformers / onnxruntime: to 1st vector {to_first(s) / to_first(o):.1f}x, "
              f"whole process {s['process'] / o['process']:.1f}x")
        print(f"  onnxruntime processes imported torch: {any(r['torch'] for r in runs['onnxruntime'])}")

        reference = SentenceTransformerEncoder(resolve_text_model_path("all-MiniLM-L6-v2"), "cpu")
        for name, texts in (("1,000 class captions", captions), ("64 texts of 1,000 words", long_texts)):
            rates = {"onnxruntime": [], "sentence-transformers": []}
            for _ in range(args.rounds):  # alternate, so that both see the same load on the machine
                rates["onnxruntime"].append(throughput(onnx, texts))
                rates["sentence-transformers"].append(throughput(reference, texts))
            ratio = statistics.median(o / s for o, s in zip(rates["onnxruntime"], rates["sentence-transformers"]))
            print(f"\nsteady state, {name} (texts/s, median of {args.rounds}): "
                  f"onnxruntime {statistics.median(rates['onnxruntime']):.1f}, "
                  f"sentence-transformers {statistics.median(rates['sentence-transformers']):.1f}, "
                  f"ratio (median of the rounds' ratios) {ratio:.2f}x")
            difference = np.abs(onnx.encode(texts) - reference.encode(texts, 64)).max()
            print(f"  largest |onnxruntime - sentence-transformers| over the vectors: {difference:.2e} (bound 1e-4)")
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
