"""Reliability of the library and the CLI: hostile files, odd names, damaged and unwritable caches.

(The app's side of these promises, and load, are tested in tests/test_app*.py.)
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.gallery import build_gallery
from pipeline.models import Models
from pipeline.storage import CacheError, atomic_write_bytes
from tests.bad_inputs import make_corpus
from tests.conftest import REPO, imagen_file


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("corpus"))


def test_every_corpus_file_through_the_cli(corpus, session_cache, capsys):
    """Invalid files: one line on stderr and exit 2. Valid-but-odd files: labels, exit 0."""
    for case in corpus:
        code = main(["labels", str(case.path), "--json", "--cache-dir", str(session_cache)])
        out, err = capsys.readouterr()
        if case.valid:
            assert code == 0, (case.name, err)
            assert len(json.loads(out)[0]["labels"]) == 5
        else:
            assert code == 2, case.name
            assert err.count("\n") == 1 and err.startswith("error: "), (case.name, err)


def test_a_gallery_of_hostile_files_builds_from_the_good_ones(corpus, tmp_path, settings):
    """The corpus as a gallery folder: valid files become items, invalid ones are skipped with reasons."""
    root = corpus[0].path.parent
    gallery, stats = build_gallery(root, settings.replace(cache_dir=tmp_path / "c"), Models(settings), with_captions=False)
    valid = {c.path.name for c in corpus if c.valid and c.path.is_file() and c.path.resolve().is_relative_to(root.resolve())
             and c.path.suffix.lower() in {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif"}}
    names = {Path(item.path).name for item in gallery.items}
    assert names == valid
    skipped = {Path(p).name for p, _ in stats.skipped}
    for case in corpus:
        if not case.valid and case.path.suffix.lower() in {".jpg", ".png", ".gif"} and case.path.is_file():
            assert case.path.name in skipped, case.name
    # the link that leaves the folder is not an item
    assert not any("outside" in item.path for item in gallery.items)
    # second build: nothing recomputed, rejected files not retried
    _, again = build_gallery(root, settings.replace(cache_dir=tmp_path / "c"), Models(settings), with_captions=False)
    assert again.computed == 0 and len(again.skipped) == len(stats.skipped)


def test_non_utf8_file_names_round_trip_through_the_cache(tmp_path, settings, imagen_dir):
    root = tmp_path / "g"
    root.mkdir()
    name = os.fsdecode(b"caf\xe9.jpg")
    try:
        shutil.copy(imagen_file(imagen_dir, "sheep"), root / name)
    except (OSError, UnicodeError):
        pytest.skip("this filesystem refuses non-UTF-8 names")
    shutil.copy(imagen_file(imagen_dir, "camel"), root / "camel.jpg")
    local = settings.replace(cache_dir=tmp_path / "c")
    gallery, _ = build_gallery(root, local, Models(settings), with_captions=False)
    assert gallery.find(name) is not None
    _, stats = build_gallery(root, local, Models(settings), with_captions=False)
    assert stats.computed == 0


def test_an_unwritable_cache_is_a_clear_error(tmp_path, settings, imagen_dir):
    root = tmp_path / "g"
    root.mkdir()
    shutil.copy(imagen_file(imagen_dir, "sheep"), root / "sheep.jpg")
    blocker = tmp_path / "cache-is-a-file"
    blocker.write_text("not a folder")
    with pytest.raises(CacheError, match="cannot write"):
        build_gallery(root, settings.replace(cache_dir=blocker), Models(settings), with_captions=False)
    code = subprocess.run([sys.executable, "-m", "pipeline", "gallery", "build", str(root), "--no-captions",
                           "--cache-dir", str(blocker)], capture_output=True, text=True, cwd=REPO,
                          env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=300)
    assert code.returncode == 2 and code.stderr.startswith("error: cannot write") and "Traceback" not in code.stderr


def test_a_full_disk_is_a_clear_error_and_leaves_no_partial_file(tmp_path):
    """RLIMIT_FSIZE makes writes fail as on a full disk (EFBIG instead of ENOSPC), in a child process."""
    target = tmp_path / "big.bin"
    atomic_write_bytes(target, b"old content")
    script = (
        "import resource, signal, sys\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))\n"
        "from pipeline.storage import atomic_write_bytes, CacheError\n"
        "try:\n"
        f"    atomic_write_bytes({str(target)!r}, b'x' * 100000)\n"
        "except CacheError as e:\n"
        "    print(e); sys.exit(3)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO,
                            env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=60)
    assert result.returncode == 3, result.stderr
    assert "disk full" in result.stdout
    assert target.read_bytes() == b"old content"
    assert [p.name for p in tmp_path.iterdir()] == ["big.bin"]  # no temporary file left behind


def test_gallery_ids_cannot_name_files_outside_the_gallery(default_explorer):
    gallery = default_explorer.gallery
    for ref in ("../../etc/passwd", "/etc/passwd", "coffee/../../../../etc/passwd", "#-1", "99999", "-3",
                str(gallery.root / ".." / "x.jpg")):
        assert gallery.find(ref) is None, ref
    assert gallery.find("coffee/original.jpg") is not None
    assert gallery.find(str(gallery.root / "coffee" / "original.jpg")) is not None
