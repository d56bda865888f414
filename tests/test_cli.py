"""The command line, end to end with the real packaged model: labels, gallery build, analogy, errors."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from pipeline.cli import main
from tests.bad_inputs import make_corpus
from tests.conftest import REPO, imagen_file


def run_cli(*args: str, cache: Path) -> subprocess.CompletedProcess:
    """``python -m pipeline ARGS`` in a real subprocess (exit status and streams as a user sees them)."""
    env = dict(os.environ, PYTHONPATH=str(REPO), IAE_CACHE_DIR=str(cache))
    return subprocess.run([sys.executable, "-m", "pipeline", *args], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=600)


@pytest.fixture
def coffee_png(tmp_path) -> Path:
    import skimage.data

    path = tmp_path / "coffee.png"
    Image.fromarray(skimage.data.coffee()).save(path)
    return path


@pytest.fixture
def small_gallery(tmp_path, imagen_dir) -> Path:
    """12 imagen photos of 4 classes, copied to a folder of their own."""
    folder = tmp_path / "gallery"
    folder.mkdir()
    for label in ("sheep", "camel", "seal", "hippopotamus"):
        for i in range(3):
            src = imagen_file(imagen_dir, label, i)
            shutil.copy(src, folder / src.name)
    return folder


def test_help_on_every_command(capsys):
    for argv in (["--help"], ["gallery", "--help"], ["gallery", "build", "--help"], ["labels", "--help"],
                 ["caption", "--help"], ["analogy", "--help"], ["explain", "--help"]):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 0
        assert "usage:" in capsys.readouterr().out


def test_labels_on_coffee_gives_espresso_first(coffee_png, session_cache, capsys):
    assert main(["labels", str(coffee_png), "--json", "--cache-dir", str(session_cache)]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["labels"][0]["name"] == "espresso"
    assert rows[0]["labels"][0]["probability"] > 0.5
    assert len(rows[0]["labels"]) == 5
    assert main(["labels", str(coffee_png), "--cache-dir", str(session_cache)]) == 0
    out = capsys.readouterr().out
    assert "espresso" in out.splitlines()[3]  # header, rule, then rank 1


def test_second_build_computes_nothing(small_gallery, tmp_path, imagen_dir, capsys):
    cache = tmp_path / "cache"
    args = ["gallery", "build", str(small_gallery), "--json", "--cache-dir", str(cache), "--captioner", "labels"]
    assert main(args) == 0
    first = json.loads(capsys.readouterr().out)
    assert (first["items"], first["computed"], first["reused"]) == (12, 12, 0)
    assert main(args) == 0
    second = json.loads(capsys.readouterr().out)
    assert (second["items"], second["computed"], second["reused"]) == (12, 0, 12)
    # one new image: only it is computed
    shutil.copy(imagen_file(imagen_dir, "lion"), small_gallery / "new_lion.jpg")
    assert main(args) == 0
    third = json.loads(capsys.readouterr().out)
    assert (third["items"], third["computed"], third["reused"]) == (13, 1, 12)


def test_bad_inputs_get_one_line_errors_and_leave_the_cache_intact(small_gallery, tmp_path, session_cache):
    cache = tmp_path / "cache"
    built = run_cli("gallery", "build", str(small_gallery), "--captioner", "labels", cache=cache)
    assert built.returncode == 0, built.stderr
    store = next((cache / "galleries").iterdir())
    before = {p.name: p.read_bytes() for p in store.iterdir() if p.is_file()}

    corpus = {case.name: case for case in make_corpus(tmp_path / "bad")}
    bad = [corpus["text_renamed_jpg"].path, corpus["truncated_jpeg"].path, corpus["zero_bytes"].path,
           corpus["bomb_png"].path, tmp_path / "no-such-file.jpg"]
    huge = tmp_path / "huge.png"  # a real 20000x20000 PNG (small on disk: one colour)
    Image.new("1", (20000, 20000)).save(huge)
    bad.append(huge)
    a, b = sorted(small_gallery.iterdir())[:2]
    for path in bad:
        for argv in (["labels", str(path)], ["analogy", a.name, b.name, str(path), "--gallery", str(small_gallery),
                                             "--captioner", "labels"]):
            result = run_cli(*argv, cache=cache)
            assert result.returncode == 2, (argv, result.stdout, result.stderr)
            lines = result.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
            assert "Traceback" not in result.stderr
            assert path.name in lines[0] or "no-such-file" in lines[0]
    after = {p.name: p.read_bytes() for p in store.iterdir() if p.is_file()}
    assert after == before


@pytest.mark.slow
@pytest.mark.parametrize("a,b,c,expected", [
    ("sheep", "camel", "seal", "hippopotamus"),
    ("flute", "oboe", "domestic cat", "lion"),
    ("brassiere", "maillot", "guacamole", "burrito"),
])
def test_talk_analogies_on_imagen(imagen_explorer, imagen_dir, capsys, a, b, c, expected):
    """The talk's three best analogies: top-5 with scores, the winner without exclusion, ONLY-C."""
    settings = imagen_explorer.settings
    paths = [str(imagen_file(imagen_dir, label)) for label in (a, b, c)]
    common = ["--gallery", str(imagen_dir), "--cache-dir", str(settings.cache_dir), "--captioner", "labels"]
    assert main(["analogy", *paths, "--json", *common]) == 0
    out = json.loads(capsys.readouterr().out)
    image = out["image_space"]
    assert len(image["results"]) == 5
    scores = [r["score"] for r in image["results"]]
    assert scores == sorted(scores, reverse=True)
    input_names = {Path(p).name for p in paths}
    assert not input_names & {Path(r["path"]).name for r in image["results"]}  # inputs excluded
    assert image["without_exclusion"]["winner"] in ("A", "B", "C", None)
    assert set(image["without_exclusion"]["input_ranks"]) == {"A", "B", "C"}
    assert image["baselines"]["only-c"]["path"]
    assert image["verdicts"]
    assert out["caption_space"]["results"]
    # the plain output shows the same things
    assert main(["analogy", *paths, *common]) == 0
    text = capsys.readouterr().out
    assert "without exclusion:" in text and "ONLY-C answer:" in text
    assert image["results"][0]["path"] in text
    assert f"{image['results'][0]['score']:+.3f}" in text


def test_caption_without_a_gallery_announces_its_fallback(coffee_png, session_cache, capsys, monkeypatch):
    """Offline, auto captioning cannot load BLIP: the labels captioner is used, and the user is told."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["caption", str(coffee_png), "--json", "--cache-dir", str(session_cache)]) == 0
    captured = capsys.readouterr()
    rows = json.loads(captured.out)
    assert rows[0]["captioner"] == "labels" and "espresso" in rows[0]["caption"]
    assert "BLIP" in captured.err and "label" in captured.err
