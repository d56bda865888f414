"""Gallery building on real images: labels, content-hash reuse, damaged caches, default gallery."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline import default_gallery
from pipeline.gallery import GalleryError, build_gallery, label_for, scan_folder
from pipeline.images import IMAGE_SUFFIXES
from pipeline.models import Models
from tests.conftest import imagen_file


def test_labels_from_imagen_names_folders_and_csv():
    assert label_for("n01443537_4691_goldfish.jpg", {}) == ("goldfish", "n01443537")
    assert label_for("x/n02121808_123_domestic_cat.jpg", {}) == ("domestic cat", "n02121808")
    assert label_for("cats/tabby.png", {"cats/tabby.png": "ignored"}) == ("cats", None)
    assert label_for("tabby.png", {"tabby.png": "cat"}) == ("cat", None)
    assert label_for("tabby.png", {}) == (None, None)


def test_scan_skips_hidden_files_non_images_and_links_out_of_the_folder(tmp_path):
    root = tmp_path / "g"
    (root / "sub").mkdir(parents=True)
    (root / ".hidden").mkdir()
    outside = tmp_path / "outside.png"
    for path in (root / "a.png", root / "sub" / "b.JPG", root / ".hidden" / "c.png", outside):
        Image.new("RGB", (8, 8)).save(path, format="PNG")
    (root / "notes.txt").write_text("hi")
    os.symlink(outside, root / "escape.png")
    os.symlink(root / "a.png", root / "inside_link.png")
    assert scan_folder(root) == ["a.png", "inside_link.png", "sub/b.JPG"]


def reference_scan(root: Path) -> list[str]:
    """What scan_folder returned before it used os.scandir: Path.rglob, a resolve per file."""
    real_root = root.resolve()
    found = []
    for path in root.rglob("*"):
        relative = path.relative_to(root)
        if any(part.startswith(".") for part in relative.parts) or path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        resolved = path.resolve()
        if resolved.is_relative_to(real_root) and resolved.is_file():
            found.append(relative.as_posix())
    return sorted(found)


def test_scan_equals_the_path_rglob_reference_on_a_tricky_tree(tmp_path):
    outside = tmp_path / "outside"
    (outside / "deep").mkdir(parents=True)
    (outside / "deep" / "o.jpg").write_bytes(b"x")
    root = tmp_path / "g"
    for folder in ("a/b/c", "a/.h/d", "x.jpg", "e f", "ünï"):  # a folder named like an image, spaces, accents
        (root / folder).mkdir(parents=True)
    for name in ("a/1.jpg", "a/b/2.JPEG", "a/b/c/3.png", "a/.h/d/4.jpg", "a/.5.jpg", "e f/6.WebP", "ünï/7.gif",
                 "8.tar.jpg", "9.", "10.txt", "x.jpg/11.bmp", "12.jpg.txt"):
        (root / name).write_bytes(b"x")
    os.symlink(outside / "deep" / "o.jpg", root / "out.jpg")  # a file outside
    os.symlink(outside, root / "outdir")  # a folder outside: not followed
    os.symlink(root / "a", root / "a_again")  # a folder inside: not followed either
    os.symlink(root / "a" / "1.jpg", root / "a" / "b" / "in.jpg")  # a file inside
    os.symlink(root / "a" / "b", root / "dir.jpg")  # a folder named like an image
    os.symlink(tmp_path / "missing.jpg", root / "broken.jpg")
    os.mkfifo(root / "pipe.jpg")
    shown = scan_folder(root)
    assert shown == reference_scan(root)
    assert shown == ["8.tar.jpg", "a/1.jpg", "a/b/2.JPEG", "a/b/c/3.png", "a/b/in.jpg", "e f/6.WebP",
                     "x.jpg/11.bmp", "ünï/7.gif"]
    deep = root / "/".join(["n"] * 300)  # deeper than one would recurse comfortably
    deep.mkdir(parents=True)
    (deep / "z.png").write_bytes(b"x")
    assert scan_folder(root) == reference_scan(root)


def test_build_errors_are_plain(tmp_path, settings):
    models = Models(settings)
    with pytest.raises(GalleryError, match="does not exist"):
        build_gallery(tmp_path / "missing", settings, models)
    (tmp_path / "empty").mkdir()
    with pytest.raises(GalleryError, match="no image files"):
        build_gallery(tmp_path / "empty", settings, models)
    (tmp_path / "file.jpg").write_bytes(b"x")
    with pytest.raises(GalleryError, match="not a folder"):
        build_gallery(tmp_path / "file.jpg", settings, models)


def test_undecodable_files_are_skipped_and_reported(tmp_path, settings, imagen_dir):
    root = tmp_path / "g"
    root.mkdir()
    shutil.copy(imagen_file(imagen_dir, "sheep"), root / "sheep.jpg")
    (root / "broken.jpg").write_bytes(b"not a jpeg")
    gallery, stats = build_gallery(root, settings.replace(cache_dir=tmp_path / "c"), Models(settings), with_captions=False)
    assert [i.path for i in gallery.items] == ["sheep.jpg"]
    assert stats.skipped and stats.skipped[0][0] == "broken.jpg" and "not an image" in stats.skipped[0][1]


def test_damaged_cache_is_detected_and_recomputed(tmp_path, settings, imagen_dir):
    root = tmp_path / "g"
    root.mkdir()
    for label in ("sheep", "camel", "seal"):
        shutil.copy(imagen_file(imagen_dir, label), root / f"{label}.jpg")
    local = settings.replace(cache_dir=tmp_path / "c")
    models = Models(settings)
    first, _ = build_gallery(root, local, models, with_captions=False)
    reference = np.array(first.pooled)
    pooled_file = first.store / "pooled.npy"
    data = bytearray(pooled_file.read_bytes())
    data[-10:] = b"\xff" * 10  # flip the last bytes: same size, wrong content
    pooled_file.write_bytes(bytes(data))
    again, stats = build_gallery(root, local, models, with_captions=False)
    assert stats.computed == 3
    assert any("damaged" in m for m in again.index_messages)
    np.testing.assert_allclose(np.array(again.pooled), reference, atol=1e-5)


def test_default_gallery_materializes_with_captions_and_credits(tmp_path):
    folder = default_gallery.materialize(tmp_path / "dg")
    files = scan_folder(folder)
    assert len(files) == len(default_gallery.SUBJECTS) * len(default_gallery.TRANSFORMS)
    assert "Creative Commons Attribution 2.0" in (folder / "CREDITS.txt").read_text()
    captions = (folder / "captions.csv").read_text().splitlines()
    assert captions[0] == "file,caption" and len(captions) == len(files) + 1
    for a, b, c in default_gallery.EXAMPLES:
        assert {a, b, c} <= set(files)
    grey = np.asarray(Image.open(folder / "coffee/greyscale.jpg"), dtype=np.int16)
    assert np.abs(grey[..., 0] - grey[..., 1]).max() <= 3  # really greyscale


def test_default_gallery_explorer_uses_file_captions(default_explorer):
    info = default_explorer.gallery_info()
    assert info["is_default"] and info["items"] == 40
    assert info["captioners"] == ["file"]
    gallery = default_explorer.gallery
    item = gallery.find("coffee/greyscale.jpg")
    assert gallery.captions.texts[item] == "a black and white photo of a cup of coffee on a saucer"
