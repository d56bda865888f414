"""Start only what a command needs: importing the CLI or the app loads no heavy library; a question
about gallery items answered from the cache loads no model, the first one after ``gallery build``
included, and answers exactly as it does with the models loaded; what a build leaves in the store
(file hashes, label captions, the captioner's decision, space measurements) is reused, and refused
when stale or damaged."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from pipeline.config import Settings
from pipeline.explorer import Explorer
from pipeline.features import store_dir_for
from pipeline.file_hashes import FILE_NAME as HASHES_FILE, hash_files
from pipeline.images import file_sha256
from pipeline.models import Models
from pipeline.space_stats import FILE_NAME as STATS_FILE, measured
from tests.conftest import REPO, imagen_file

HEAVY = ("torch", "transformers", "sentence_transformers", "onnxruntime", "matplotlib", "sklearn")

# Runs python -m pipeline ARGS and prints, at exit, the heavy modules it imported (one JSON line on stderr).
PROBE = ("import atexit, json, runpy, sys\n"
         "atexit.register(lambda: print('MODULES ' + json.dumps(sorted(m for m in %r if m in sys.modules)), "
         "file=sys.stderr))\n"
         "sys.argv = ['pipeline'] + sys.argv[1:]\n"
         "runpy.run_module('pipeline', run_name='__main__', alter_sys=True)\n") % (HEAVY + ("gradio", "faiss"),)


def run_probed(*args: str, env: dict | None = None) -> tuple[subprocess.CompletedProcess, list[str]]:
    """``python -m pipeline ARGS`` in a subprocess: (the process, the heavy modules it imported)."""
    result = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, cwd=REPO,
                            env=dict(os.environ, PYTHONPATH=str(REPO), **(env or {})), timeout=900)
    lines = [line for line in result.stderr.splitlines() if line.startswith("MODULES ")]
    assert lines, result.stderr[-3000:]
    return result, json.loads(lines[-1].removeprefix("MODULES "))


def imported_by(statement: str) -> list[str]:
    """The heavy modules a fresh interpreter holds after ``statement``."""
    code = f"import json, sys\n{statement}\nprint(json.dumps(sorted(m for m in {HEAVY + ('gradio',)!r} if m in sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                            env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_importing_the_cli_or_the_app_loads_no_heavy_library():
    assert imported_by("import pipeline.cli") == []
    assert imported_by("import app") == ["gradio"]  # the app's page is Gradio; nothing else heavy
    result, modules = run_probed("--help")
    assert result.returncode == 0 and "usage:" in result.stdout
    assert [m for m in modules if m != "faiss"] == []


def test_the_convnet_is_known_without_loading_it(settings):
    """The cache key and name a gallery needs come from the weights file, and equal the loaded ones."""
    lazy, loaded = Models(settings), Models(settings)
    key, name = lazy.classifier_key, lazy.classifier_name
    assert "classifier" not in vars(lazy)  # not loaded
    assert (key, name) == (loaded.classifier.model_key, loaded.classifier.name)
    assert lazy.classifier_head().model_key == key and "classifier" not in vars(lazy)


@pytest.fixture(scope="module")
def fresh_build(tmp_path_factory, settings, imagen_dir):
    """12 imagen photos built by ``gallery build`` (captioner auto, the hub offline) into a new cache
    that holds only the ONNX export: the build itself must make every vocabulary a question reads."""
    Models(settings).classifier  # the ONNX export, once per session
    root = tmp_path_factory.mktemp("startup") / "photos"
    root.mkdir()
    for label in ("sheep", "camel", "seal", "hippopotamus"):
        for i in range(3):
            shutil.copy(imagen_file(imagen_dir, label, i), root)
    cache = root.parent / "cache"
    shutil.copytree(settings.cache_dir / "onnx", cache / "onnx")
    for name in list((cache / "onnx").glob("*-head.*")):
        name.unlink()  # the classifier head too is made by the build
    env = {"HF_HUB_OFFLINE": "1"}
    built, _ = run_probed("gallery", "build", str(root), "--cache-dir", str(cache), "--json", env=env)
    assert built.returncode == 0, built.stderr[-3000:]
    return {"root": root, "cache": cache, "env": env, "build": json.loads(built.stdout)}


def cache_files(cache: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``cache``: relative path -> (size, modification time in ns)."""
    return {str(p.relative_to(cache)): (p.stat().st_size, p.stat().st_mtime_ns) for p in cache.rglob("*") if p.is_file()}


@pytest.mark.slow
def test_the_first_question_after_build_loads_no_model_and_equals_the_answer_with_models(fresh_build, monkeypatch):
    root, cache, env = fresh_build["root"], fresh_build["cache"], fresh_build["env"]
    assert fresh_build["build"]["prepared"]["steps"] >= 12
    question = ["analogy", "0", "3", "6", "--gallery", str(root), "--cache-dir", str(cache), "--json"]
    built = cache_files(cache)
    first, modules = run_probed(*question, env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    assert cache_files(cache) == built  # everything it read was made by the build: nothing written now
    assert [m for m in modules if m not in ("faiss",)] == [], modules
    again, modules_again = run_probed(*question, env=env)
    assert again.stdout == first.stdout and modules_again == modules

    # the same question in a process whose models are loaded
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    explorer = Explorer(Settings(cache_dir=cache, device="cpu"))
    explorer.models.classifier, explorer.models.text_embedder  # loaded on purpose
    explorer.open_gallery(root)
    report = explorer.analogy(["0", "3", "6"])
    assert json.loads(first.stdout) == json.loads(json.dumps(report.as_dict()))
    assert report.gallery["captioners"] == ["labels"] and "BLIP" in report.gallery["caption_announcement"]


def test_unchanged_files_are_not_hashed_again_and_changed_ones_are(tmp_path, imagen_dir):
    root, store = tmp_path / "photos", tmp_path / "store"
    root.mkdir()
    names = []
    for label in ("sheep", "camel"):
        shutil.copy(imagen_file(imagen_dir, label), root / f"{label}.jpg")
        names.append(f"{label}.jpg")
    old = time.time() - 60  # modified a minute ago: past the racy window
    for name in names:
        os.utime(root / name, (old, old))
    first = hash_files(root, names + ["missing.jpg"], store)
    assert first == [file_sha256(root / n) for n in names] + [None]
    stamp = (store / HASHES_FILE).stat().st_mtime_ns
    assert hash_files(root, names, store) == first[:2]
    assert (store / HASHES_FILE).stat().st_mtime_ns == stamp  # nothing hashed, nothing written

    # new content, even with the old size and modification time restored, is hashed again
    data = bytearray((root / "camel.jpg").read_bytes())
    data[-3] ^= 0xFF
    (root / "camel.jpg").write_bytes(bytes(data))
    os.utime(root / "camel.jpg", (old, old))
    assert hash_files(root, names, store) == [first[0], file_sha256(root / "camel.jpg")] != first[:2]

    # a damaged record is never trusted: everything is hashed again
    (store / HASHES_FILE).write_text((store / HASHES_FILE).read_text().replace(first[0], "0" * 64))
    assert hash_files(root, names, store)[0] == first[0]


def test_a_file_hashed_just_after_it_was_written_is_hashed_again(tmp_path, imagen_dir):
    root, store = tmp_path / "photos", tmp_path / "store"
    root.mkdir()
    shutil.copy(imagen_file(imagen_dir, "sheep"), root / "a.jpg")  # just written: racy
    hash_files(root, ["a.jpg"], store)
    stamp = (store / HASHES_FILE).stat().st_mtime_ns
    time.sleep(0.01)
    hash_files(root, ["a.jpg"], store)
    assert (store / HASHES_FILE).stat().st_mtime_ns != stamp  # hashed (and recorded) again


def test_space_measurements_are_kept_per_identity_and_damage_is_ignored(tmp_path):
    calls = []

    def compute(value):
        calls.append(value)
        return {"t": value / 3}

    identity = {"model": "m", "space": "image:pooled", "items_digest": "d1", "captions_digest": None}
    assert measured(tmp_path, "image:pooled", identity, "x", lambda: compute(1.0)) == {"t": 1 / 3}
    assert measured(tmp_path, "image:pooled", identity, "x", lambda: compute(2.0)) == {"t": 1 / 3}
    assert calls == [1.0]
    changed = dict(identity, items_digest="d2")
    assert measured(tmp_path, "image:pooled", changed, "x", lambda: compute(2.0)) == {"t": 2 / 3}
    # a new process (memory cleared) reads the exact value back; a damaged file is recomputed
    from pipeline import space_stats

    space_stats._MEMORY.clear()
    assert measured(tmp_path, "image:pooled", changed, "x", lambda: compute(3.0)) == {"t": 2 / 3}
    (tmp_path / STATS_FILE).write_text((tmp_path / STATS_FILE).read_text().replace("0.666", "0.777"))
    space_stats._MEMORY.clear()
    assert measured(tmp_path, "image:pooled", changed, "x", lambda: compute(3.0)) == {"t": 1.0}


def test_a_reopened_gallery_measures_nothing_again(fresh_build, monkeypatch):
    """The typical neighbour distance and the calibrations come back from the store, equal."""
    from pipeline import space_stats
    from pipeline.thresholds import gallery_calibration

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    explorer = Explorer(Settings(cache_dir=fresh_build["cache"], device="cpu"))
    gallery = explorer.open_gallery(fresh_build["root"])
    space_stats._MEMORY.clear()
    store = store_dir_for(fresh_build["root"], explorer.settings)
    stamp = (store / STATS_FILE).stat().st_mtime_ns
    distance = gallery.typical_nn_distance("image:pooled")
    calibration = gallery_calibration(gallery, "caption")
    assert (store / STATS_FILE).stat().st_mtime_ns == stamp  # read, not measured and written
    distinct = np.unique(gallery.vectors("image:pooled"), axis=0)
    from pipeline import vectors as vec

    assert distance == vec.typical_nn_distance(distinct)
    assert 0.85 <= calibration.threshold <= 0.995
