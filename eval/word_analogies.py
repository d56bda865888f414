"""Suite ``word-analogies``: the Google analogy benchmark on GloVe, reproduced exactly, then measured
honestly.

The questions are ``questions-words.txt`` (Mikolov et al. 2013; 19,544 questions in 14 sections,
shipped inside gensim, Apache-2.0) or any file in its format: ``: section`` lines, then one question
``A B C D`` a line (A : B :: C : D).

**Reproduced exactly.** As gensim 4.4.0's ``KeyedVectors.evaluate_word_analogies`` scores it: words
are matched case-insensitively (``str.upper``; a word stands for the first, most frequent, of the first
N rows with that upper case), a question with any word outside the first N words (``--restrict-vocab``,
default 300,000, gensim's default) is skipped, the answer is 3CosAdd's best of the first N words other
than A, B and C, and it is right when its upper case is D's. ``results["gensim"]`` holds these counts,
total and per section (``tests/test_word_analogies.py`` runs gensim itself and compares them).

**Measured honestly.** Then every method and baseline (named as in the CLI), with the inputs
excluded (every row whose word matches A, B or C) and with nothing excluded, accuracy at 1 and at 5,
and where the unexcluded answer lands (A, B, C, the right word, another word); per section.

The product never imports gensim: the default questions file is found where gensim is installed
(:func:`default_questions_file`, which locates the package without importing it), else
``--questions`` is required.
"""
from __future__ import annotations

import hashlib
import importlib.util
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.errors import QuestionsError
from pipeline.models import Models
from pipeline.models.glove import NAME, PACKAGE
from pipeline.vectors import ALL_METHODS

from .common import bar, library_versions
from .report import Report
from .word_report import write_markdown
from .word_search import rank_questions

SUITE = "word-analogies"
DEFAULT_RESTRICT_VOCAB = 300_000
TOP = 5
LANDINGS = ("A", "B", "C", "right", "other")
METHOD_NAMES = {"3cosadd": "3CosAdd", "3cosmul": "3CosMul", "pairdirection": "PairDirection",
                "only-c": "ONLY-C", "ignore-a": "IGNORE-A", "add-opposite": "ADD-OPPOSITE", "multiply": "MULTIPLY"}


def default_questions_file() -> Path:
    """gensim's copy of ``questions-words.txt``, located without importing gensim."""
    spec = importlib.util.find_spec("gensim")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "test" / "test_data" / "questions-words.txt"
        if path.is_file():
            return path
    raise QuestionsError("no questions file given and gensim (which ships questions-words.txt) is not "
                         "installed: pass --questions FILE, or pip install -r requirements-test.txt")


def read_questions(path: Path) -> list[tuple[str, list[tuple[str, str, str, str]]]]:
    """Sections of a questions file, parsed as gensim does: a line starting with ``": "`` opens a
    section (its name: the line with leading ``:`` and spaces stripped); other lines are questions of
    4 words, any other line is skipped; a question before the first section is an error."""
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except OSError as exc:
        raise QuestionsError(f"{path}: cannot read the questions ({exc.strerror or exc})") from exc
    except UnicodeDecodeError as exc:
        raise QuestionsError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    sections: list[tuple[str, list]] = []
    for number, line in enumerate(text.splitlines(keepends=True)):
        if line.startswith(": "):
            sections.append((line.lstrip(": ").strip(), []))
            continue
        words = line.split()
        if len(words) != 4:
            continue
        if not sections:
            raise QuestionsError(f"{path}: line {number + 1} is a question before any ': section' line")
        sections[-1][1].append(tuple(words))
    if not any(questions for _, questions in sections):
        raise QuestionsError(f"{path}: no questions found (expected ': section' lines, then 'A B C D' lines)")
    return sections


@dataclass
class Encoded:
    """The questions whose four words are all among the first N: ``rows`` (Q, 4) canonical rows of A,
    B, C, D; ``section`` (Q,) section index; ``names`` the section names; ``asked`` questions per
    section before skipping."""

    rows: np.ndarray
    section: np.ndarray
    names: list[str]
    asked: list[int]


def encode(sections, folded_index: dict[str, int]) -> Encoded:
    """Look every question word up in ``folded_index`` (upper-cased key -> first row, over the first
    N words: :attr:`pipeline.words.WordVectors.folded_index`, gensim's ``ok_vocab``)."""
    first = folded_index
    rows, section = [], []
    for s, (_, questions) in enumerate(sections):
        for words in questions:
            ids = [first.get(w.upper()) for w in words]
            if None not in ids:
                rows.append(ids)
                section.append(s)
    return Encoded(np.array(rows, dtype=np.int64).reshape(-1, 4), np.array(section, dtype=np.int64),
                   [name for name, _ in sections], [len(q) for _, q in sections])


def evaluate(unit: np.ndarray, canonical: np.ndarray, encoded: Encoded, methods=ALL_METHODS,
             eps: float = 1e-3, progress=None) -> dict:
    """Per question and method: the excluded top-5 and unexcluded top-5 (as canonical rows), and
    gensim's prediction (3CosAdd). ``unit``: (N, D) unit rows of the first N words; ``canonical``:
    (N,) each row's canonical row (:meth:`pipeline.words.WordVectors.canonical_rows`).

    Returns ``{"excluded": {m: (Q, 5)}, "not_excluded": {m: (Q, 5)}, "gensim": (Q,) or None,
    "fallbacks": {m: int}, "candidates": float}``; rows are canonical (a word's first row).
    """
    variants: dict[int, list[int]] = {}
    for row in np.flatnonzero(canonical != np.arange(len(canonical))):
        variants.setdefault(int(canonical[row]), []).append(int(row))
    abc = encoded.rows[:, :3]
    excluded = [sorted({int(r) for w in q for r in [w, *variants.get(int(w), [])]}) for q in abc]
    need = np.array([TOP + len(x) for x in excluded], dtype=np.int64)
    ranked = rank_questions(unit, abc, tuple(methods), need, eps=eps, depth=max(128, int(need.max(initial=0))),
                            progress=progress)
    out = {"excluded": {}, "not_excluded": {}, "gensim": None, "fallbacks": ranked.fallbacks,
           "candidates": ranked.candidates}
    for m in methods:
        ex = np.empty((len(abc), TOP), dtype=np.int64)
        plain = np.empty((len(abc), TOP), dtype=np.int64)
        for q, rows in enumerate(ranked.rows[m]):
            plain[q] = canonical[rows[:TOP]]
            ex[q] = canonical[[r for r in rows if r not in excluded[q]][:TOP]]
        out["excluded"][m], out["not_excluded"][m] = ex, plain
    if "3cosadd" in methods:
        out["gensim"] = np.array([_gensim_prediction(rows, set(q.tolist()), canonical)
                                  for rows, q in zip(ranked.rows["3cosadd"], abc)], dtype=np.int64)
    return out


def _gensim_prediction(rows: np.ndarray, inputs: set[int], canonical: np.ndarray) -> int:
    """gensim's rule: of the 5 best rows other than the inputs' own rows, the first whose word is
    not an input's (else the fifth); returned as a canonical row."""
    best = [int(r) for r in rows if int(r) not in inputs][:TOP]
    return next((int(canonical[r]) for r in best if int(canonical[r]) not in inputs), int(canonical[best[-1]]))


def _counts(correct: np.ndarray) -> dict:
    total = int(correct.size)
    right = int(np.count_nonzero(correct))
    return {"accuracy": right / total if total else None, "correct": right, "total": total}


def score(encoded: Encoded, answers: dict, methods=ALL_METHODS) -> dict:
    """``{"totals": {...}, "sections": {name: {...}}, "gensim": {...}}`` from :func:`evaluate`'s answers:
    per method ``{"excluded": {accuracy, correct, total, accuracy_at_5, correct_at_5},
    "not_excluded": {... plus "lands": {A, B, C, right, other}}}``."""
    expected = encoded.rows[:, 3]
    a, b, c = encoded.rows[:, 0], encoded.rows[:, 1], encoded.rows[:, 2]

    def block(mask) -> dict:
        out = {}
        for m in methods:
            entry = {}
            for kind in ("excluded", "not_excluded"):
                top = answers[kind][m][mask]
                counts = _counts(top[:, 0] == expected[mask])
                at5 = _counts((top == expected[mask, None]).any(axis=1))
                counts.update(accuracy_at_5=at5["accuracy"], correct_at_5=at5["correct"])
                entry[kind] = counts
            first = answers["not_excluded"][m][mask, 0]
            lands = {"A": first == a[mask], "B": first == b[mask], "C": first == c[mask], "right": first == expected[mask]}
            lands = {k: int(np.count_nonzero(v)) for k, v in lands.items()}
            lands["other"] = int(mask.sum()) - sum(lands.values())
            entry["not_excluded"]["lands"] = lands
            out[m] = entry
        return out

    everything = np.ones(len(expected), dtype=bool)
    result = {"totals": block(everything),
              "sections": {name: block(encoded.section == s) for s, name in enumerate(encoded.names)}}
    if answers.get("gensim") is not None:
        right = answers["gensim"] == expected
        result["gensim"] = {"total": _counts(right),
                            "sections": {name: _counts(right[encoded.section == s]) for s, name in enumerate(encoded.names)}}
    return result


def run(settings, args, argv=None) -> Report:
    """Run the suite: ``args.questions`` (None: gensim's file), ``args.restrict_vocab``."""
    started = time.perf_counter()
    path = Path(args.questions) if args.questions else default_questions_file()
    sections = read_questions(path)
    words = Models(settings).word_vectors
    restricted = words.restrict_vocab(args.restrict_vocab)
    encoded = encode(sections, restricted.folded_index)
    if not len(encoded.rows):
        raise QuestionsError(f"{path}: no question has all four words among the first {len(restricted):,} "
                             "words; raise --restrict-vocab")
    with bar(desc="word analogies", unit="query") as progress:
        answers = evaluate(restricted.unit, restricted.canonical_rows(), encoded, eps=settings.cosmul_eps,
                           progress=progress.update)
    results = score(encoded, answers)
    asked = sum(encoded.asked)
    results["run"] = {
        "suite": SUITE,
        "command": shlex.join(["python", "-m", "eval", *(argv if argv is not None else sys.argv[1:])]),
        "questions_file": str(path), "questions_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "vectors": {"name": NAME, "package": PACKAGE, "words": len(words), "dim": words.dim},
        "restrict_vocab": len(restricted), "asked": asked, "answered": int(len(encoded.rows)),
        "skipped": asked - int(len(encoded.rows)),
        "sections": {name: {"asked": n, "answered": int(np.count_nonzero(encoded.section == s))}
                     for s, (name, n) in enumerate(zip(encoded.names, encoded.asked))},
        "cosmul_eps": settings.cosmul_eps, "full_scans": answers["fallbacks"],
        "candidates_per_question": round(answers["candidates"], 1), "libraries": library_versions(),
        "seconds": round(time.perf_counter() - started, 2),
    }
    report = Report(SUITE, "Word analogies: the Google benchmark on GloVe 6B 50-d", results)
    write_markdown(report, results)
    return report
