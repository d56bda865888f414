"""Measurement (not a test): are the vectors of the reduced JPEG decode faithful?

    .venv/bin/python scripts/faithful_decode.py [--imagen ../shared/data/imagen] [--upscaled 200]

The gallery decodes JPEGs reduced to the convnet's 256-pixel short side
(``load_image(..., min_short_side=classifier.decode_short_side)``). This prints, for the packaged
EfficientNet-Lite0 through onnxruntime:

1. imagen (all photos): the reduced decode against the full decode (the path before it), and how
   many photos the reduction touches at all (only those with a short side of 512 pixels or more);
2. ``--upscaled`` imagen photos enlarged to 12 MP (4032x3024 for 4:3 photos, the aspect kept),
   saved as JPEG quality 90 into a temporary folder, a quarter each with EXIF orientation 1, 6, 3
   and 8 (pixels stored turned so that the oriented image is the enlarged photo): the reduced decode
   of the 12 MP copy against the full decode of the original photo, and, as the floor that the
   enlarging and re-compressing alone set, the full decode of the 12 MP copy against the original;
3. for scale, the same original photos moved by one pixel (top row and left column cropped) against
   themselves: how much the labels move when nothing but the pixel grid changes.

For each: cosine of the L2-normalised pooled activations (mean, minimum), and the share of photos
whose top-1 label is unchanged, whose reference top-1 label is still among the top 5, and whose set
of top-5 labels and ordered top-5 labels are unchanged. ``--also 512`` adds reduced decodes to other
short sides, for comparison.
"""
from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.config import Settings  # noqa: E402
from pipeline.images import load_image  # noqa: E402
from pipeline.models import Models  # noqa: E402
from pipeline.vectors import l2_normalize  # noqa: E402

PHONE_PIXELS = 4032 * 3024
ORIENTATIONS = (1, 6, 3, 8)
# EXIF orientation -> how to store the pixels so that displaying them (exif_transpose) gives the image.
_STORED = {1: None, 3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}


def phone_copy(source: Path, target: Path, orientation: int = 1, quality: int = 90) -> Path:
    """Write ``source`` enlarged (bicubic, aspect kept) to about 12 MP (4032x3024 for a 4:3 photo) as
    a JPEG at ``target``, tagged with EXIF ``orientation`` (1, 3, 6 or 8) and its pixels stored turned
    to match, so that the oriented file shows the enlarged photo. Returns ``target``."""
    image = load_image(source)
    scale = math.sqrt(PHONE_PIXELS / (image.width * image.height))
    big = image.resize((round(image.width * scale), round(image.height * scale)), Image.BICUBIC)
    exif = Image.Exif()
    if orientation != 1:
        big = big.transpose(_STORED[orientation])
        exif[0x0112] = orientation
    big.save(target, "JPEG", quality=quality, exif=exif)
    return target


def agreement(reference, other) -> dict:
    """How far ``other`` (a ConvnetOutput) is from ``reference``, photo by photo (same rows):
    ``cos_mean``, ``cos_min`` of the L2-normalised pooled activations, and the shares (0..1) of rows
    with the same ``top1``, the reference's top label among the other's five (``top1_in_top5``), the
    same set of five labels (``top5``), the same five in order (``top5_ordered``)."""
    cos = np.sum(l2_normalize(reference.pooled) * l2_normalize(other.pooled), axis=1)
    ref5, oth5 = np.argsort(-reference.logits, axis=1)[:, :5], np.argsort(-other.logits, axis=1)[:, :5]
    return {"n": len(cos), "cos_mean": float(cos.mean()), "cos_min": float(cos.min()),
            "top1": float(np.mean(ref5[:, 0] == oth5[:, 0])),
            "top1_in_top5": float(np.mean([a[0] in b for a, b in zip(ref5, oth5)])),
            "top5": float(np.mean([set(a) == set(b) for a, b in zip(ref5, oth5)])),
            "top5_ordered": float(np.mean(np.all(ref5 == oth5, axis=1)))}


def classify_files(models: Models, paths: list[Path], min_short_side: int | None, batch: int = 32,
                   change: Callable[[Image.Image], Image.Image] = lambda image: image):
    """ConvnetOutput of ``paths`` decoded by ``load_image(..., min_short_side=...)`` then ``change``d,
    batch by batch."""
    from pipeline.models.convnet import ConvnetOutput

    parts = [models.classify([change(load_image(p, min_short_side=min_short_side)) for p in paths[i:i + batch]])
             for i in range(0, len(paths), batch)]
    return ConvnetOutput(np.concatenate([p.pooled for p in parts]), np.concatenate([p.logits for p in parts]))


def one_pixel_off(image: Image.Image) -> Image.Image:
    """``image`` without its top row and left column: the same photo, moved by one pixel."""
    return image.crop((1, 1, image.width, image.height))


def line(what: str, result: dict) -> str:
    return (f"{what:<50} n={result['n']:<4} cos mean {result['cos_mean']:.4f} min {result['cos_min']:.4f}  "
            f"top-1 {result['top1']:6.1%}  top-1 in top-5 {result['top1_in_top5']:6.1%}  "
            f"top-5 set {result['top5']:6.1%}  ordered {result['top5_ordered']:6.1%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--imagen", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/imagen")
    parser.add_argument("--upscaled", type=int, default=200, help="photos enlarged to 12 MP (default 200)")
    parser.add_argument("--cache-dir", type=Path, help="cache for the ONNX model (default: a temporary folder)")
    parser.add_argument("--also", type=int, nargs="*", default=[], metavar="SIDE",
                        help="also measure reduced decodes to these short sides (e.g. 512), for comparison")
    args = parser.parse_args()
    paths = sorted(args.imagen.resolve().glob("*.jpg"))
    with tempfile.TemporaryDirectory() as tmp:
        models = Models(Settings(cache_dir=args.cache_dir or Path(tmp) / "cache", device="cpu"))
        short_side = models.classifier.decode_short_side
        print(f"{models.classifier.name}, decode_short_side {short_side}, model key {models.classifier.model_key}")
        sides = [short_side, *args.also]

        full = classify_files(models, paths, None)
        for side in sides:
            touched = sum(min(Image.open(p).size) >= 2 * side for p in paths)
            print(line(f"imagen: reduced to {side} vs full decode ({touched} reduced)",
                       agreement(full, classify_files(models, paths, side))))

        step = max(1, len(paths) // args.upscaled)
        chosen = list(range(0, len(paths), step))[:args.upscaled]
        copies, started = [], time.perf_counter()
        for n, i in enumerate(chosen):
            copies.append(phone_copy(paths[i], Path(tmp) / paths[i].name, ORIENTATIONS[n % len(ORIENTATIONS)]))
        print(f"made {len(copies)} 12 MP copies in {time.perf_counter() - started:.0f} s")
        original = classify_files(models, [paths[i] for i in chosen], None)
        copy_full = classify_files(models, copies, None)
        for side in sides:
            copy_reduced = classify_files(models, copies, side)
            print(line(f"12 MP copy reduced to {side} vs original photo", agreement(original, copy_reduced)))
            print(line(f"12 MP copy reduced to {side} vs its full decode", agreement(copy_full, copy_reduced)))
        print(line("12 MP copy, full decode vs original (the floor)", agreement(original, copy_full)))
        print(line("original photo moved by one pixel vs original", agreement(
            original, classify_files(models, [paths[i] for i in chosen], None, change=one_pixel_off))))


if __name__ == "__main__":
    main()
