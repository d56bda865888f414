#!/usr/bin/env python
"""Benchmark the web app (not a test): start-up time and analogy latency through the running server.

For each gallery (the embedded default gallery, and imagen or any ``--gallery DIR``):

1. start ``python app.py`` once, which builds the gallery cache if it is missing ("first start": cold
   or warm depending on the cache), and stop it;
2. start it again and time process start -> the page answering ("cached start");
3. with that server running, send ``--requests`` analogy requests over random gallery triples through
   ``gradio_client`` (each uploads its three images, as a browser would; the result thumbnails are
   not downloaded, since a browser fetches them lazily and in parallel) and report the first
   request, then the p50 and p95 of the others.

Prints a small table. Example::

    .venv/bin/python scripts/bench_app.py --gallery ../shared/data/imagen --requests 30
"""
from __future__ import annotations

import argparse
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
DEFAULT_IMAGEN = REPO.parent / "shared" / "data" / "imagen"
POLL_SECONDS = 0.02  # how often the page is asked for while the app starts: the start is timed to within this
sys.path.insert(0, str(REPO))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``python app.py`` in a subprocess (its own process group), with its output in a log file."""

    def __init__(self, gallery: Path | None, cache_dir: Path | None, log_path: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        command = [sys.executable, str(REPO / "app.py"), "--host", "127.0.0.1", "--port", str(self.port)]
        if gallery is not None:
            command += ["--gallery", str(gallery)]
        if cache_dir is not None:
            command += ["--cache-dir", str(cache_dir)]
        self.log = log_path.open("w")
        env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1"}
        self.started = time.perf_counter()
        self.process = subprocess.Popen(command, cwd=REPO, stdout=self.log, stderr=subprocess.STDOUT, env=env,
                                        start_new_session=True)

    def wait_ready(self, timeout: float) -> float:
        """Seconds from process start until the page answers 200."""
        deadline = self.started + timeout
        while time.perf_counter() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"app.py exited with status {self.process.returncode}; see {self.log.name}")
            try:
                if httpx.get(self.url, timeout=2).status_code == 200:
                    return time.perf_counter() - self.started
            except httpx.HTTPError:
                pass
            time.sleep(POLL_SECONDS)
        raise TimeoutError(f"app.py was not ready after {timeout:.0f} s; see {self.log.name}")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log.close()


def gallery_files(gallery: Path | None, cache_dir: Path | None) -> tuple[Path, list[str]]:
    from pipeline.config import Settings
    from pipeline.default_gallery import default_gallery_dir
    from pipeline.gallery import scan_folder

    if gallery is None:
        settings = Settings.from_env().replace(cache_dir=cache_dir)
        gallery = default_gallery_dir(settings.cache_dir)
    return gallery, scan_folder(gallery)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def bench_one(name: str, gallery: Path | None, args, logs: Path) -> dict:
    row = {"gallery": name}
    warm = Server(gallery, args.cache_dir, logs / f"{name}-first.log")  # builds the cache if it is missing
    try:
        row["first_start_s"] = warm.wait_ready(args.start_timeout)
    finally:
        warm.stop()
    server = Server(gallery, args.cache_dir, logs / f"{name}.log")
    try:
        row["start_s"] = server.wait_ready(args.start_timeout)
        from gradio_client import Client, handle_file

        root, files = gallery_files(gallery, args.cache_dir)
        row["items"] = len(files)
        rng = random.Random(args.seed)
        client = Client(server.url, verbose=False, download_files=False)  # a browser fetches result images in parallel
        times = []
        for _ in range(args.requests):
            triple = rng.sample(files, 3)
            started = time.perf_counter()
            out = client.predict(*(handle_file(str(root / f)) for f in triple), "3cosadd", "pooled", True, 5,
                                 api_name="/analogy")
            times.append(time.perf_counter() - started)
            assert len(out[2]) == 5, "expected five image-space answers"
        row["first_request_s"] = times[0]
        rest = times[1:] or times
        row["p50_ms"] = 1000 * statistics.median(rest)
        row["p95_ms"] = 1000 * percentile(rest, 95)
        row["n"] = len(rest)
    finally:
        server.stop()
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gallery", type=Path, default=DEFAULT_IMAGEN if DEFAULT_IMAGEN.is_dir() else None,
                        help="a second gallery to time besides the default one (default: ../shared/data/imagen when present)")
    parser.add_argument("--no-gallery", action="store_true", help="time only the embedded default gallery")
    parser.add_argument("--no-default", action="store_true", help="skip the embedded default gallery")
    parser.add_argument("--cache-dir", type=Path, help="cache folder passed to app.py (default: the app's own)")
    parser.add_argument("--requests", type=int, default=30, help="analogy requests per gallery (default 30)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--start-timeout", type=float, default=1800, help="seconds to wait for start-up")
    args = parser.parse_args(argv)
    if args.requests < 2:
        parser.error("--requests must be at least 2")

    logs = Path(tempfile.mkdtemp(prefix="bench-app-"))
    rows = []
    if not args.no_default:
        rows.append(bench_one("default", None, args, logs))
    if args.gallery is not None and not args.no_gallery:
        rows.append(bench_one(args.gallery.name, args.gallery, args, logs))

    header = ["gallery", "items", "first start (s)", "cached start (s)", "1st request (s)", "p50 (ms)", "p95 (ms)", "n"]
    table = [[r["gallery"], r["items"], f"{r['first_start_s']:.1f}", f"{r['start_s']:.1f}", f"{r['first_request_s']:.2f}",
              f"{r['p50_ms']:.0f}", f"{r['p95_ms']:.0f}", r["n"]] for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *table)]
    print(" | ".join(h.ljust(w) for h, w in zip(header, widths)))
    print("-|-".join("-" * w for w in widths))
    for line in table:
        print(" | ".join(str(x).ljust(w) for x, w in zip(line, widths)))
    print(f"(server logs in {logs}; cpu count {os.cpu_count()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
