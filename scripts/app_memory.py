#!/usr/bin/env python
"""Measure the web app's resident memory around a burst of very large uploads (issue 14, item 4; not a test).

1. start ``python app.py`` (the embedded default gallery, or ``--gallery DIR``) and wait for the page;
2. send one ordinary analogy and one classification with a small photo the gallery has never seen,
   so that every model an upload needs is loaded (the caption embedder is first used by an upload),
   and read the server's resident memory (``VmRSS`` of its process): the *baseline*;
3. the burst: ``--photos`` distinct photos of ``--megapixels`` (a real photo of the gallery scaled up,
   saved as JPEG), each sent as C of an analogy and to the classifier, ``--clients`` at once;
4. read the resident memory right after the burst and again after ``--idle`` seconds of nothing.

Prints one line per reading and the verdict against ``--target-mb`` (the issue's 500 MB). The server
runs in its own process group and is stopped at the end. Example::

    .venv/bin/python scripts/app_memory.py --photos 4 --megapixels 40 --idle 20
"""
from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from bench_app import Server, gallery_files  # noqa: E402  (the same app.py subprocess as the benchmark)


def resident_mb(pid: int) -> float:
    """Resident memory of process ``pid`` in MB (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def large_photos(sources: list[Path], count: int, megapixels: float, folder: Path) -> list[Path]:
    """``count`` distinct JPEGs of about ``megapixels`` MP (3:2), each a gallery photo rotated and rescaled."""
    from PIL import Image

    width = int(math.sqrt(megapixels * 1e6 * 3 / 2))
    height = int(megapixels * 1e6 // width)
    photos = []
    for n in range(count):
        with Image.open(sources[n % len(sources)]) as im:
            big = im.convert("RGB").rotate(n * 3 + 1).resize((width, height), Image.Resampling.BILINEAR)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"photo-{n}-{width}x{height}.jpg"
        big.save(path, "JPEG", quality=85)
        del big
        photos.append(path)
    return photos


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gallery", type=Path, help="folder of images (default: the embedded default gallery)")
    parser.add_argument("--cache-dir", type=Path, help="the app's cache folder (default: its own default)")
    parser.add_argument("--photos", type=int, default=4)
    parser.add_argument("--megapixels", type=float, default=40.0)
    parser.add_argument("--clients", type=int, default=4, help="requests sent at once")
    parser.add_argument("--idle", type=float, default=20.0, help="seconds of nothing before the last reading")
    parser.add_argument("--target-mb", type=float, default=500.0)
    parser.add_argument("--start-timeout", type=float, default=600.0)
    args = parser.parse_args(argv)

    from gradio_client import Client, handle_file

    root, files = gallery_files(args.gallery, args.cache_dir)
    ordinary = [str(root / f) for f in files[:3]]
    with tempfile.TemporaryDirectory(prefix="app-memory-") as tmp:
        tmp = Path(tmp)
        started = time.perf_counter()
        photos = large_photos([root / f for f in files[3:]], args.photos, args.megapixels, tmp)
        sizes = ", ".join(f"{p.stat().st_size / 2**20:.1f} MiB" for p in photos)
        print(f"made {len(photos)} photos of {args.megapixels:g} MP ({sizes}) in {time.perf_counter() - started:.0f} s")
        server = Server(args.gallery, args.cache_dir, tmp / "app.log")
        try:
            print(f"server ready in {server.wait_ready(args.start_timeout):.0f} s: {resident_mb(server.process.pid):.0f} MB")
            client = Client(server.url, verbose=False, download_files=False)
            small = large_photos([root / files[-1]], 1, 0.3, tmp / "small")[0]
            client.predict(handle_file(ordinary[0]), handle_file(ordinary[1]), handle_file(str(small)), "3cosadd",
                           "pooled", True, 5, api_name="/analogy")
            client.predict(handle_file(str(small)), api_name="/classify")
            baseline = resident_mb(server.process.pid)
            print(f"baseline (after an analogy and a classification of a new 0.3 MP photo): {baseline:.0f} MB")

            def send(photo: Path) -> None:
                own = Client(server.url, verbose=False, download_files=False)
                own.predict(handle_file(ordinary[0]), handle_file(ordinary[1]), handle_file(str(photo)), "3cosadd",
                            "pooled", True, 5, api_name="/analogy")
                own.predict(handle_file(str(photo)), api_name="/classify")

            started = time.perf_counter()
            with ThreadPoolExecutor(args.clients) as pool:
                list(pool.map(send, photos))
            after = resident_mb(server.process.pid)
            print(f"after the burst ({2 * len(photos)} requests in {time.perf_counter() - started:.0f} s): {after:.0f} MB "
                  f"({after - baseline:+.0f} MB)")
            time.sleep(args.idle)
            idle = resident_mb(server.process.pid)
            verdict = "within" if idle - baseline <= args.target_mb else "OVER"
            print(f"after {args.idle:g} s idle: {idle:.0f} MB ({idle - baseline:+.0f} MB): {verdict} the "
                  f"{args.target_mb:g} MB target")
        finally:
            server.stop()
    return 0 if verdict == "within" else 1


if __name__ == "__main__":
    sys.exit(main())
