"""The word-analogies suite: gensim's own numbers reproduced to the question, the exact search checked
against brute force, the report and the command line (real GloVe vectors, real gensim)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from eval import word_analogies as WA
from eval import word_search as WS
from pipeline import vectors as vec
from pipeline.models import Models
from tests.conftest import REPO

gensim_models = pytest.importorskip("gensim.models")
from gensim.test.utils import datapath  # noqa: E402  (after the skip: gensim is a test requirement)

QUESTIONS = datapath("questions-words.txt")


@pytest.fixture(scope="module")
def words(settings):
    return Models(settings).word_vectors


@pytest.fixture(scope="module")
def keyed_vectors(words):
    """gensim's KeyedVectors over the very same (raw) vectors and words."""
    kv = gensim_models.KeyedVectors(words.dim)
    kv.add_vectors(words.keys, np.asarray(words.vectors))
    return kv


def _ours(words, questions, restrict_vocab, methods=("3cosadd",)):
    restricted = words.restrict_vocab(restrict_vocab)
    encoded = WA.encode(WA.read_questions(questions), restricted.folded_index)
    answers = WA.evaluate(restricted.unit, restricted.canonical_rows(), encoded, methods=methods)
    return encoded, answers, WA.score(encoded, answers, methods)


def _correct_questions(encoded, answers, folded):
    """Per section, the set of (A, B, C, D) upper-case tuples answered right, as gensim lists them."""
    out = {}
    right = answers["gensim"] == encoded.rows[:, 3]
    for s, name in enumerate(encoded.names):
        rows = encoded.rows[(encoded.section == s) & right]
        out[name] = {tuple(folded[r] for r in row) for row in rows}
    return out


def test_the_default_questions_file_is_found_without_importing_gensim():
    assert WA.default_questions_file().samefile(QUESTIONS)
    sections = WA.read_questions(WA.default_questions_file())
    assert len(sections) == 14 and sum(len(q) for _, q in sections) == 19_544
    assert sections[0][0] == "capital-common-countries" and sections[0][1][0] == ("Athens", "Greece", "Baghdad", "Iraq")


@pytest.mark.slow
def test_gensim_numbers_equal_ours_to_the_question(words, keyed_vectors):
    restrict = 30_000  # 14,877 questions in all 14 sections; about 40 s with gensim on one BLAS thread
    encoded, answers, ours = _ours(words, QUESTIONS, restrict)
    with threadpool_limits(limits=1):  # gensim's one small product per question: BLAS threads only wait
        total, sections = keyed_vectors.evaluate_word_analogies(QUESTIONS, restrict_vocab=restrict)
    assert [s["section"] for s in sections[:-1]] == encoded.names
    assert ours["gensim"]["total"]["correct"] == len(sections[-1]["correct"])
    assert ours["gensim"]["total"]["total"] == len(sections[-1]["correct"]) + len(sections[-1]["incorrect"])
    assert abs(ours["gensim"]["total"]["accuracy"] - total) < 1e-12
    # the same questions right and wrong, section by section; and the suite's 3CosAdd equals it here
    folded = words.restrict_vocab(restrict).folded_keys
    mine = _correct_questions(encoded, answers, folded)
    for section in sections[:-1]:
        assert mine[section["section"]] == set(section["correct"]), section["section"]
        counts = ours["sections"][section["section"]]["3cosadd"]["excluded"]
        assert counts["correct"] == len(section["correct"])
        assert counts["total"] == len(section["correct"]) + len(section["incorrect"])


def test_gensim_case_rules_and_skips_on_a_file_of_odd_questions(words, keyed_vectors, tmp_path):
    """Mixed case, words whose upper case is shared by rarer rows (first/ﬁrst, strasse/straße), a word
    outside the vocabulary, a line that is not a question: gensim's counts, at 400,000 words."""
    path = tmp_path / "odd.txt"
    path.write_text(": odd\nMAN King woman Queen\nfirst second ﬁrst third\nstrasse street straße road\n"
                    "france PARIS japan tokyo\nnot a question\nqwxzzyq king man queen\n: empty\n: more\n"
                    "big bigger small smaller\nﬁrst last begin end\n", encoding="utf-8")
    encoded, answers, ours = _ours(words, path, 400_000)
    total, sections = keyed_vectors.evaluate_word_analogies(str(path), restrict_vocab=400_000)
    assert encoded.names == ["odd", "empty", "more"] and encoded.asked == [5, 0, 2]
    for section in sections[:-1]:
        counts = ours["gensim"]["sections"][section["section"]]
        assert counts["correct"] == len(section["correct"])
        assert counts["total"] == len(section["correct"]) + len(section["incorrect"])
    assert ours["gensim"]["total"]["correct"] == len(sections[-1]["correct"])


def test_exact_search_equals_scoring_every_row(words):
    """rank_questions (lists, certificates) against every method scored over all rows, and the bounds
    against the rows they bound."""
    restricted = words.restrict_vocab(20_000)
    unit = restricted.unit
    encoded = WA.encode(WA.read_questions(QUESTIONS), restricted.folded_index)
    picks = np.random.default_rng(0).choice(len(encoded.rows), 40, replace=False)
    abc = encoded.rows[picks, :3]
    need = np.full(len(abc), 9)
    ranked = WS.rank_questions(unit, abc, vec.ALL_METHODS, need, depth=32, word_depth=64)
    for q, (a, b, c) in enumerate(abc):
        sims = vec.input_similarities(unit, unit[a], unit[b], unit[c])
        gram = vec.gram_matrix(unit[a], unit[b], unit[c])
        for m in vec.ALL_METHODS:
            scores = vec.method_scores(sims, gram, m)
            expected = vec.top_k(scores, 9)[0]
            # the same rows in the same order, but for rows whose scores tie within float32 rounding (the
            # dot products of a subset of rows can differ from the whole product's in the last bit)
            assert np.allclose(scores[ranked.rows[m][q]], scores[expected], rtol=0, atol=2e-6), (m, q)
            differ = ranked.rows[m][q] != expected
            assert np.all(np.abs(scores[ranked.rows[m][q][differ]] - scores[expected[differ]]) < 2e-6), (m, q)
    assert sum(ranked.fallbacks.values()) < len(abc) * len(vec.ALL_METHODS)  # the certificates do work
    # the bounds hold for every row outside the lists (the lists of the first questions, rebuilt here)
    a, b, c = (unit[abc[:8, i]] for i in range(3))
    lists = {name: WS.top_rows(unit, x * a + y * b + z * c, 32) for name, (x, y, z) in WS.QUESTION_LISTS.items()}
    lists["c"], lists["far_a"] = WS.top_rows(unit, c, 64), WS.top_rows(unit, -a, 64)
    lists["offset"] = WS.top_rows(unit, b - a, 64)
    for q in range(8):
        inside = np.unique(np.concatenate([rows[q] for rows, _ in lists.values()]))
        outside = np.setdiff1d(np.arange(len(unit)), inside)
        sims = vec.input_similarities(unit[outside], a[q], b[q], c[q])
        gram = vec.gram_matrix(a[q], b[q], c[q])
        cuts = {name: float(cut[q]) for name, (_, cut) in lists.items()}
        for m in ("3cosmul", "pairdirection", "multiply"):
            assert vec.method_scores(sims, gram, m).max() <= WS.outside_bound(m, cuts, gram, 1e-3) + 1e-6, m


def test_top_rows_holds_every_row_at_or_above_its_cut(words):
    unit = words.restrict_vocab(50_000).unit
    queries = np.random.default_rng(1).standard_normal((37, unit.shape[1])).astype(np.float32)
    rows, cuts = WS.top_rows(unit, queries, depth=20, block=1000, chunk=16)
    dots = unit @ queries.T
    for j in range(len(queries)):  # (blocked and whole products may differ in the last bit)
        assert set(np.flatnonzero(dots[:, j] >= cuts[j] + 1e-5)) <= set(rows[j].tolist())
        assert dots[rows[j], j].min() >= cuts[j] - 1e-5 and len(rows[j]) >= 20
        assert np.sort(dots[:, j])[-20] - WS.MARGIN == pytest.approx(cuts[j], abs=1e-5)


def _eval_cli(*args: str, cache) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO), IAE_CACHE_DIR=str(cache))
    return subprocess.run([sys.executable, "-m", "eval", "word-analogies", *args], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=600)


def test_the_suite_writes_its_report(session_cache, tmp_path):
    small = tmp_path / "small.txt"
    lines = open(QUESTIONS, encoding="utf-8").read().splitlines()
    family = lines.index(": family")
    small.write_text("\n".join(lines[:41] + lines[family:family + 41]) + "\n", encoding="utf-8")
    out = tmp_path / "report"
    result = _eval_cli("--questions", str(small), "--restrict-vocab", "30000", "--out", str(out), cache=session_cache)
    assert result.returncode == 0, result.stderr
    assert "3CosAdd" in result.stdout and "wrote" in result.stdout
    report = json.loads((out / "results.json").read_text())
    assert set(report["totals"]) == set(vec.ALL_METHODS)
    assert set(report["sections"]) == {"capital-common-countries", "family"}
    for per_method in [report["totals"], *report["sections"].values()]:
        for entry in per_method.values():
            for kind in ("excluded", "not_excluded"):
                assert {"accuracy", "correct", "total", "accuracy_at_5"} <= set(entry[kind])
                assert entry[kind]["correct"] <= entry[kind]["correct_at_5"] <= entry[kind]["total"]
            assert sum(entry["not_excluded"]["lands"].values()) == entry["excluded"]["total"]
    assert report["totals"]["only-c"]["not_excluded"]["lands"]["C"] == report["totals"]["only-c"]["excluded"]["total"]
    assert report["gensim"]["total"]["correct"] == report["totals"]["3cosadd"]["excluded"]["correct"]
    run = report["run"]
    assert run["asked"] == 80 and run["answered"] == 73 and run["skipped"] == 7 and run["restrict_vocab"] == 30_000
    md = (out / "results.md").read_text()
    assert "## Summary" in md and "gensim" in md
    assert {p.name for p in out.glob("*.png")} == {"accuracy.png", "unexcluded_answer.png", "sections.png"}


def test_bad_questions_files_are_one_line_errors(session_cache, tmp_path):
    early = tmp_path / "early.txt"
    early.write_text("man king woman queen\n: family\n", encoding="utf-8")
    empty = tmp_path / "empty.txt"
    empty.write_text(": nothing here\n", encoding="utf-8")
    for path, message in ((tmp_path / "missing.txt", "cannot read"), (early, "before any"), (empty, "no questions")):
        result = _eval_cli("--questions", str(path), "--out", str(tmp_path / "out"), cache=session_cache)
        assert result.returncode == 2 and result.stderr.startswith("error: ") and message in result.stderr
        assert result.stderr.count("\n") == 1
