"""The embedded default gallery: works with no network and no data folder.

Ten colour photos that ship inside scikit-image (public domain) and scikit-learn (two CC-BY photos,
credited in the gallery's CREDITS.txt), each with three controlled transforms (greyscale, mirror,
red tint). The transforms make ground-truth analogies: coffee : greyscale coffee :: cat : ? should be
the greyscale cat. Captions are written by us from what each subject and transform is, and are read
by the ``file`` captioner, so caption space works offline too.

The photos are not committed to the project; :func:`materialize` writes them into a cache folder.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import skimage.data
from PIL import Image, ImageOps

from .errors import CacheError
from .storage import atomic_write_bytes, read_json, write_json

VERSION = 1


@dataclass(frozen=True)
class Subject:
    name: str  # folder name and label
    noun: str  # what the photo shows, for captions
    source: str  # how to load it


SUBJECTS = (
    Subject("astronaut", "an astronaut in a spacesuit", "skimage:astronaut"),
    Subject("coffee", "a cup of coffee on a saucer", "skimage:coffee"),
    Subject("cat", "a tabby cat", "skimage:chelsea"),
    Subject("rocket", "a rocket on a launch pad", "skimage:rocket"),
    Subject("motorcycle", "a motorcycle in a garage", "skimage-file:motorcycle_left.png"),
    Subject("galaxies", "galaxies in deep space", "skimage:hubble_deep_field"),
    Subject("retina", "the retina of an eye", "skimage:retina"),
    Subject("tissue", "stained tissue under a microscope", "skimage:immunohistochemistry"),
    Subject("temple", "a temple with a pagoda roof", "sklearn:china.jpg"),
    Subject("flower", "a flower", "sklearn:flower.jpg"),
)

RED = (255, 40, 40)


def greyscale(image: Image.Image) -> Image.Image:
    """``image`` in greyscale, kept as 3-channel RGB."""
    return ImageOps.grayscale(image).convert("RGB")


def tint(image: Image.Image, colour: tuple[int, int, int] = RED, strength: float = 0.45) -> Image.Image:
    """``image`` (as RGB) blended with a plain ``colour``: ``strength`` 0 keeps it, 1 is the colour."""
    overlay = Image.new("RGB", image.size, colour)
    return Image.blend(image.convert("RGB"), overlay, strength)


TRANSFORMS = {
    "original": ("a photo of {noun}", lambda im: im),
    "greyscale": ("a black and white photo of {noun}", greyscale),
    "mirror": ("a mirrored photo of {noun}", ImageOps.mirror),
    "red": ("a red-tinted photo of {noun}", tint),
}

CREDITS = """Photos in this gallery come from packages installed with the project:
- astronaut, coffee, cat (chelsea), rocket, motorcycle, galaxies (hubble_deep_field), retina, tissue
  (immunohistochemistry): scikit-image's data module, public domain or CC0 (see skimage/data/README.txt).
- temple (china.jpg) and flower (flower.jpg): scikit-learn's sample images, licensed
  Creative Commons Attribution 2.0; china.jpg by danielbuechele and flower.jpg by vultilion on
  Flickr (see sklearn/datasets/images/README.txt).
Greyscale, mirrored and red-tinted copies are made by the Image Analogy Explainer.
"""


def _load_subject(source: str) -> Image.Image:
    kind, _, name = source.partition(":")
    if kind == "skimage":
        array = getattr(skimage.data, name)()
    elif kind == "skimage-file":
        return Image.open(Path(skimage.data.__file__).parent / name).convert("RGB")
    elif kind == "sklearn":
        # deferred: scikit-learn takes over a second to import, and is needed only the first time
        # the gallery is written into a cache
        from sklearn.datasets import load_sample_image

        array = load_sample_image(name)
    else:
        raise ValueError(f"unknown source {source!r}")  # a bug in SUBJECTS, not the user's doing
    return Image.fromarray(np.asarray(array, dtype=np.uint8)).convert("RGB")


def materialize(folder: Path) -> Path:
    """Write the default gallery into ``folder`` (once; later calls return at once) and return it.

    Layout: ``<subject>/<transform>.jpg`` (label = folder name), ``captions.csv``, ``CREDITS.txt``.
    """
    folder = Path(folder)
    marker = folder / ".default-gallery.json"
    try:
        if read_json(marker).get("version") == VERSION:
            return folder
    except (CacheError, AttributeError):  # missing, damaged or not an object: write the gallery again
        pass
    rows = []
    for subject in SUBJECTS:
        image = _load_subject(subject.source)
        image.thumbnail((512, 512), Image.BICUBIC)
        for transform, (template, apply) in TRANSFORMS.items():
            relative = f"{subject.name}/{transform}.jpg"
            buffer = io.BytesIO()
            apply(image).save(buffer, format="JPEG", quality=90)
            atomic_write_bytes(folder / relative, buffer.getvalue())
            rows.append((relative, template.format(noun=subject.noun)))
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["file", "caption"])
    writer.writerows(rows)
    atomic_write_bytes(folder / "captions.csv", text.getvalue().encode())
    atomic_write_bytes(folder / "CREDITS.txt", CREDITS.encode())
    write_json(marker, {"version": VERSION, "items": len(rows)})
    return folder


def default_gallery_dir(cache_dir: Path) -> Path:
    return Path(cache_dir) / "default-gallery"


EXAMPLES = (
    ("coffee/original.jpg", "coffee/greyscale.jpg", "cat/original.jpg"),
    ("rocket/original.jpg", "rocket/mirror.jpg", "flower/original.jpg"),
    ("temple/original.jpg", "temple/red.jpg", "astronaut/original.jpg"),
)
"""Example triples for the default gallery: the transform of A -> B applied to C has one right answer."""
