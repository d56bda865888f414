"""The evaluation suites end to end (``python -m eval ...``) on imagen in CI-sized settings, with the
real classifier, text model, FAISS and photos; plus fast tests of the suites' helpers and entry point.

The slow tests share the session's imagen gallery (``imagen_explorer``), so the suites load cached
vectors instead of recomputing them.
"""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from eval import cli, report as R, transforms as T
from eval.agreement import draw_triples
from pipeline import vectors as V
from pipeline.labels import wnid_to_index
from tests.conftest import small_transform_questions

REPO = Path(__file__).resolve().parent.parent


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    code = cli.main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# --- fast: entry point, helpers ------------------------------------------------------------------


@pytest.mark.parametrize("suite, flag", [("reproduce-2017", "--best"), ("transforms", "--originals"),
                                         ("agreement", "--top-k")])
def test_each_suite_has_help(suite, flag):
    done = subprocess.run([sys.executable, "-m", "eval", suite, "--help"], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert flag in done.stdout and "--gallery" in done.stdout and "--seed" in done.stdout


def test_missing_gallery_is_one_plain_line(tmp_path, capsys):
    code, out, err = run_cli(["agreement", "--gallery", str(tmp_path / "nope"), "--out", str(tmp_path / "o"),
                              "--cache-dir", str(tmp_path / "c")], capsys)
    assert code == 2
    assert err.startswith("error: gallery folder") and "does not exist" in err
    assert "Traceback" not in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists()


def test_unknown_transform_is_one_plain_line(tmp_path, capsys):
    code, _, err = run_cli(["transforms", "--gallery", str(tmp_path), "--out", str(tmp_path / "o"),
                            "--transforms", "sepia", "--cache-dir", str(tmp_path / "c")], capsys)
    assert code == 2 and "unknown transform(s) sepia" in err and "Traceback" not in err


def test_transform_functions_change_what_they_should():
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, size=(40, 60, 3), dtype=np.uint8))
    out = {name: fn(image) for name, (_, fn) in T.TRANSFORMS.items()}
    assert all(o.mode == "RGB" for o in out.values())
    assert out["rot90"].size == (40, 60) and out["zoom"].size == (60, 40) and out["blur"].size == (60, 40)
    grey = np.asarray(out["greyscale"])
    assert (grey[..., 0] == grey[..., 1]).all() and (grey[..., 1] == grey[..., 2]).all()
    np.testing.assert_array_equal(np.asarray(out["hflip"]), np.asarray(image)[:, ::-1])
    np.testing.assert_array_equal(np.asarray(out["rot90"]), np.rot90(np.asarray(image)))
    assert np.asarray(out["tint"])[..., 0].mean() > np.asarray(image)[..., 0].mean()
    assert np.asarray(out["blur"]).std() < np.asarray(image).std()


def test_draw_questions_is_seeded_balanced_and_right():
    table = np.arange(5 * 4).reshape(5, 4) + 100  # 5 originals, 3 transforms
    q = T.draw_questions(table, 60, seed=3)
    again = T.draw_questions(table, 60, seed=3)
    np.testing.assert_array_equal(q.ids, again.ids)
    assert not np.array_equal(q.ids, T.draw_questions(table, 60, seed=4).ids)
    assert (q.x != q.y).all()
    assert np.bincount(q.transform).tolist() == [20, 20, 20]
    for (a, b, c, d), t, x, y in zip(q.ids, q.transform, q.x, q.y):
        assert (a, b, c, d) == (table[x, 0], table[x, 1 + t], table[y, 0], table[y, 1 + t])


def test_categorise_hand_case():
    # originals 0, 1, 2 at ids 0..2; transform 0 copies at ids 3..5; transform 1 copies at 6..8
    photo_of = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2])
    transform_of = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2])
    q = T.Questions(ids=np.array([[0, 3, 1, 4]] * 5), transform=np.zeros(5, int), x=np.zeros(5, int),
                    y=np.ones(5, int))
    top1 = np.array([4, 1, 7, 5, 8])  # right; C itself; C's other transform; t(another photo); other
    assert T.categorise(top1, q, photo_of, transform_of).tolist() == [0, 1, 2, 3, 4]
    assert T.categorise(np.array([3, 0, 6, 2, 4]), q, photo_of, transform_of).tolist() == [1, 1, 4, 4, 0]


def test_draw_triples_distinct_and_seeded():
    t = draw_triples(10, 50, seed=1)
    assert t.shape == (50, 3) and all(len(set(row)) == 3 for row in t.tolist())
    np.testing.assert_array_equal(t, draw_triples(10, 50, seed=1))
    with pytest.raises(ValueError, match="at least 4"):
        draw_triples(3, 5, seed=0)


def test_report_helpers(tmp_path):
    assert R.pct(0.9234) == "92.3%" and R.pct(float("nan")) == "n/a" and R.num(None) == "n/a"
    table = R.md_table(["a", "b"], [["x|y", 1]])
    assert table.splitlines() == ["| a | b |", "| :--- | ---: |", "| x\\|y | 1 |"]
    assert R.jsonable({"x": np.float32(0.5), "n": float("nan"), "a": np.arange(2), 1: (np.int64(3),)}) == \
        {"x": 0.5, "n": None, "a": [0, 1], "1": [3]}
    rep = R.Report("s", "Title", {"v": float("inf")})
    rep.section("Summary", "text")
    fig, ax = R.new_figure()
    R.grouped_bars(ax, ["g"], {"s": [0.5]}, "y")
    rep.figure("p.png", fig)
    written = rep.write(tmp_path / "out")
    assert [p.name for p in written] == ["results.json", "results.md", "p.png"]
    assert json.loads((tmp_path / "out" / "results.json").read_text()) == {"v": None}
    assert (tmp_path / "out" / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "## Summary" in (tmp_path / "out" / "results.md").read_text()


# --- slow: the suites on imagen ------------------------------------------------------------------


def _pngs(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("*.png"))


def _check_common(out: Path, suite: str, settings) -> dict:
    data = json.loads((out / "results.json").read_text())
    md = (out / "results.md").read_text()
    run = data["run"]
    assert run["suite"] == suite and run["seed"] == 0
    assert run["command"].startswith(f"python -m eval {suite}")
    assert run["models"]["classifier"].startswith("efficientnet-lite0")
    assert run["models"]["classifier_key"].startswith("efficientnet-lite0@")
    assert run["models"]["captioners"] == ["labels"] and run["models"]["text_model"]
    assert len(run["gallery"]["content_digest"]) == 64
    for lib in ("numpy", "faiss-cpu", "torch", "onnxruntime"):
        assert run["libraries"][lib], lib
    assert "**What this means.**" in md and "## How this was produced" in md
    for png in _pngs(out):
        assert f"]({png})" in md
        with Image.open(out / png) as im:
            assert im.format == "PNG" and im.size[0] > 200
    assert _pngs(out)
    return data


@pytest.mark.slow
def test_reproduce_2017_on_imagen(imagen_explorer, imagen_dir, tmp_path, capsys):
    settings = imagen_explorer.settings
    out = tmp_path / "reproduce"
    code, stdout, err = run_cli(["reproduce-2017", "--gallery", str(imagen_dir), "--out", str(out),
                                 "--cache-dir", str(settings.cache_dir), "--layers", "pooled", "--best", "5"], capsys)
    assert code == 0, err
    assert "What this means" in stdout and "results.md" in stdout
    data = _check_common(out, "reproduce-2017", settings)
    gallery = imagen_explorer.gallery
    wnids = {item.wnid for item in gallery.items}
    overlap = wnids & set(wnid_to_index())
    c = data["classifier"]
    assert c["classes"] == len(wnids) == 200
    assert c["overlap"] == len(overlap) == 150  # the talk's number
    assert c["overlap_images"] == sum(item.wnid in overlap for item in gallery.items)
    assert 0.8 < c["top5"] <= 1.0 and 0.5 < c["top1"] <= c["top5"]
    assert set(data["nearest_centroid"]) == {"image:pooled", "caption"}
    for space, entry in data["nearest_centroid"].items():
        assert 0.2 < entry["loo_accuracy"] <= 1.0, space
    for space, t in data["triples"].items():
        assert t["triples"] == 200 * 199 * 198
        assert sum(t["nearest_counts"].values()) == t["triples"]
        assert math.isclose(sum(t["nearest_shares"].values()), 1.0, abs_tol=1e-9)
        assert t["nearest_shares"]["b"] == pytest.approx(t["nearest_shares"]["c"])  # B - A + C is symmetric
        assert t["nearest_is_input_share"] > 0.99  # the talk: always an input
        shares = t["excluded_verdict_shares"]
        assert all(0.0 <= v <= 1.0 for v in shares.values())
        assert len(t["best_analogies"]) == 5
        scores = [b["score"] for b in t["best_analogies"]]
        assert scores == sorted(scores, reverse=True)
        assert [a["analogy"] for a in t["talk_analogies"]] == [
            "sheep : camel :: seal : hippopotamus", "flute : oboe :: domestic cat : lion",
            "brassiere : maillot :: guacamole : burrito"]
        for a in t["talk_analogies"]:
            assert 1 <= a["expected_rank"] <= 197 and a["answer_is_expected"] == (a["expected_rank"] == 1)
    examples = {e["file_prefix"]: e for e in data["examples"]}
    assert all(e["id"] is not None for e in examples.values())
    croquet = examples["n03134739_1193"]
    assert croquet["path"].startswith("n03134739_1193_")
    assert croquet["classifier_top5"][0]["name"] == "tennis ball"  # the talk's 'ImageNet whining' example
    md = (out / "results.md").read_text()
    assert "| classes in ImageNet-1k (by WordNet id) | 150 | 150 |" in md and "92.3%" in md


@pytest.mark.slow
def test_transforms_on_imagen_ci_sized(imagen_explorer, imagen_dir, tmp_path, capsys):
    settings = imagen_explorer.settings
    out = tmp_path / "transforms"
    args = ["transforms", "--gallery", str(imagen_dir), "--out", str(out), "--cache-dir", str(settings.cache_dir),
            "--originals", "20", "--questions", "120", "--layers", "pooled", "--seed", "0"]
    code, _, err = run_cli(args, capsys)
    assert code == 0, err
    data = _check_common(out, "transforms", settings)
    run = data["run"]
    work = Path(run["work_dir"])
    assert not work.resolve().is_relative_to(REPO)  # never copies photos into the repository
    assert run["originals"] == 20 and data["setup"]["gallery_items"] == 20 * 7
    assert len(list((work / "original").glob("*.jpg"))) == 20 and len(list((work / "hflip").glob("*.jpg"))) == 20
    assert set(data["spaces"]) == {"image:pooled", "caption"}
    for space, entry in data["spaces"].items():
        assert set(entry["methods"]) == set(V.ALL_METHODS)
        for method, m in entry["methods"].items():
            for excl in ("excluded", "not_excluded"):
                per = m[excl]
                assert sum(per[t]["questions"] for t in T.TRANSFORMS) == 120 == per["all"]["questions"]
                for t, cell in per.items():
                    assert 0.0 <= cell["acc@1"] <= cell["acc@5"] <= 1.0
                    assert math.isclose(sum(cell["answers"].values()), 1.0, abs_tol=1e-9)
                    if excl == "excluded":
                        assert cell["answers"]["an input (A, B or C)"] == 0.0
        # without exclusion 3CosAdd's top answer is almost always an input in image space
    pooled = data["spaces"]["image:pooled"]["methods"]
    assert pooled["3cosadd"]["not_excluded"]["all"]["answers"]["an input (A, B or C)"] > 0.8
    assert pooled["only-c"]["excluded"]["hflip"]["acc@1"] > 0.5  # the mirror image is C's nearest neighbour

    # Deterministic: the same seed gives the same numbers (from cached vectors this time).
    out2 = tmp_path / "again"
    code, _, err = run_cli(args[:3] + ["--out", str(out2)] + args[5:], capsys)
    assert code == 0, err
    again = json.loads((out2 / "results.json").read_text())
    assert again["spaces"] == data["spaces"] and again["run"]["work_dir"] == run["work_dir"]


@pytest.mark.slow
def test_transforms_scoring_equals_solve_space(imagen_explorer, imagen_dir):
    """The suite's vectorised scoring gives the pipeline's answers (solve_space) question by question."""
    from pipeline.analogy import gallery_input, solve_space

    settings = imagen_explorer.settings
    explorer, _, questions = small_transform_questions(imagen_explorer, imagen_dir)
    gallery = explorer.gallery
    methods = list(V.ALL_METHODS)
    for space in ("image:pooled", "image:probs", "caption"):
        raw = T.score_questions(gallery, space, questions.ids, methods, settings.cosmul_eps, chunk=4)
        for j, (a, b, c, d) in enumerate(questions.ids):
            inputs = [gallery_input(gallery, role, int(i)) for role, i in zip("ABC", (a, b, c))]
            for m_i, method in enumerate(methods):
                for key, exclude in (("excl", True), ("incl", False)):
                    result = solve_space(gallery, inputs, space, method, exclude=exclude, top_k=len(gallery))
                    where = (space, method, j, key)
                    _same_answer_up_to_ties(result.results, int(raw[f"top1_{key}"][m_i, j]), where)
                    _same_rank_up_to_ties(result.results, int(d), int(raw[f"rank_{key}"][m_i, j]), where)
                    if not exclude:
                        assert not result.excluded


TIE = 1e-5  # float32 rounding of one matrix product against another (batched) one


def _same_answer_up_to_ties(hits, top1: int, where) -> None:
    """The suite's top-1 is solve_space's, or ties with it (e.g. B and C under IGNORE-A, nothing excluded,
    score exactly equal in exact arithmetic)."""
    if hits[0].id == top1:
        return
    score = {h.id: h.score for h in hits}
    assert top1 in score and abs(score[top1] - hits[0].score) < TIE, where


def _same_rank_up_to_ties(hits, target: int, rank: int, where) -> None:
    exact = [h.id for h in hits].index(target) + 1
    if rank == exact:
        return
    s_t = hits[exact - 1].score
    ahead = sum(h.score > s_t + TIE for h in hits)
    level = sum(h.score >= s_t - TIE for h in hits)
    assert ahead + 1 <= rank <= level, where


@pytest.mark.slow
def test_agreement_on_imagen_ci_sized(imagen_explorer, imagen_dir, tmp_path, capsys):
    settings = imagen_explorer.settings
    out = tmp_path / "agreement"
    code, stdout, err = run_cli(["agreement", "--gallery", str(imagen_dir), "--out", str(out), "--cache-dir",
                                 str(settings.cache_dir), "--questions", "40", "--layers", "pooled", "probs",
                                 "--json"], capsys)
    assert code == 0, err
    assert json.loads(stdout)["run"]["questions"] == 40  # --json prints results.json
    data = _check_common(out, "agreement", settings)
    assert set(data["agreement"]) == {"pooled", "probs"}
    for layer, a in data["agreement"].items():
        for key in ("same_item", "same_label", "same_label_is_C_label", "top_k_overlap_mean", "top_k_overlap_any"):
            assert 0.0 <= a[key] <= 1.0, (layer, key)
        assert a["same_item"] <= a["same_label"] and a["same_label_is_C_label"] <= a["same_label"]
        assert a["same_label_questions"] == 40
        assert math.isclose(sum(a["top_k_overlap_histogram"].values()), 1.0, abs_tol=1e-9)
    assert set(data["cheats"]) == {"image:pooled", "image:probs", "caption"}
    for space, shares in data["cheats"].items():
        assert all(0.0 <= v <= 1.0 for v in shares.values())
        assert shares["genuine"] <= shares["no verdict but input"]
    assert data["cheats"]["image:pooled"]["input"] > 0.9
