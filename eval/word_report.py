"""Markdown and plots of the ``word-analogies`` suite (see :mod:`eval.word_analogies`)."""
from __future__ import annotations

from pipeline.vectors import ALL_METHODS, BASELINES, METHODS

from .report import Report, grouped_bars, md_table, new_figure, pct, stacked_bars

NAMES = {"3cosadd": "3CosAdd", "3cosmul": "3CosMul", "pairdirection": "PairDirection", "only-c": "ONLY-C",
         "ignore-a": "IGNORE-A", "add-opposite": "ADD-OPPOSITE", "multiply": "MULTIPLY"}
LANDS = ("A", "B", "C", "right", "other")


def _methods(results) -> list[str]:
    return [m for m in ALL_METHODS if m in results["totals"]]


def _lands_shares(entry) -> dict[str, float]:
    lands = entry["not_excluded"]["lands"]
    total = sum(lands.values())
    return {k: (lands[k] / total if total else None) for k in LANDS}


def summary(results) -> str:
    """The 'What this means' paragraph, from the numbers."""
    t, run = results["totals"], results["run"]
    lines = [f"Of {run['asked']:,} questions, {run['answered']:,} have all four words among GloVe's "
             f"{run['restrict_vocab']:,} most frequent words and are scored ({run['skipped']:,} skipped, as gensim "
             f"skips them)."]
    if "3cosadd" in t:
        add = t["3cosadd"]
        lands = _lands_shares(add)
        g = results.get("gensim", {}).get("total")
        lines.append(
            f"3CosAdd with the inputs excluded, the field's standard score, gets **{pct(add['excluded']['accuracy'])}**"
            + (f" ({g['correct']:,} of {g['total']:,}, exactly gensim's `evaluate_word_analogies`)" if g else "")
            + f". With nothing excluded it gets {pct(add['not_excluded']['accuracy'])}: the nearest word to "
            f"B - A + C is C itself in {pct(lands['C'])} of questions, B in {pct(lands['B'])}, A in "
            f"{pct(lands['A'])}, so the benchmark's accuracy depends on the exclusion of the inputs.")
    baselines = [m for m in BASELINES if m in t]
    if baselines and "3cosadd" in t:
        best = max(baselines, key=lambda m: t[m]["excluded"]["accuracy"] or 0)
        gap = (t["3cosadd"]["excluded"]["accuracy"] or 0) - (t[best]["excluded"]["accuracy"] or 0)
        lines.append("With the same exclusion the baselines, which skip or reverse part of the arithmetic, get "
                     + ", ".join(f"{NAMES[m]} {pct(t[m]['excluded']['accuracy'])}" for m in baselines)
                     + f"; 3CosAdd is {abs(gap) * 100:.1f} points {'above' if gap >= 0 else 'below'} the best of "
                     f"them, {NAMES[best]}.")
        if "only-c" in t:
            weak = [name for name, sec in results["sections"].items() if sec["3cosadd"]["excluded"]["total"]
                    and (sec["3cosadd"]["excluded"]["accuracy"] or 0) - (sec["only-c"]["excluded"]["accuracy"] or 0) < 0.05]
            if weak:
                lines.append(f"In {len(weak)} of {len(results['sections'])} sections 3CosAdd beats ONLY-C (C's "
                             f"nearest word) by less than 5 points: {', '.join(weak)}.")
    others = [m for m in METHODS if m in t and m != "3cosadd"]
    if others:
        lines.append("Other methods, inputs excluded: " + ", ".join(
            f"{NAMES[m]} {pct(t[m]['excluded']['accuracy'])}" for m in others) + ".")
    return " ".join(lines)


def totals_table(results) -> str:
    rows = []
    for m in _methods(results):
        e = results["totals"][m]
        shares = _lands_shares(e)
        rows.append([NAMES[m], pct(e["excluded"]["accuracy"]), pct(e["excluded"]["accuracy_at_5"]),
                     pct(e["not_excluded"]["accuracy"]), pct(e["not_excluded"]["accuracy_at_5"]),
                     *(pct(shares[k]) for k in LANDS)])
    return md_table(["method", "excluded @1", "excluded @5", "nothing excluded @1", "nothing excluded @5",
                     "unexcluded answer is A", "... B", "... C", "... the right word", "... another word"], rows)


def sections_table(results) -> str:
    methods = _methods(results)
    rows = []
    for name, s in results["sections"].items():
        run = results["run"]["sections"][name]
        rows.append([name, f"{run['answered']:,} / {run['asked']:,}",
                     *(pct(s[m]["excluded"]["accuracy"]) for m in methods),
                     pct(s["3cosadd"]["not_excluded"]["accuracy"]) if "3cosadd" in s else "n/a"])
    return md_table(["section", "scored / asked", *(NAMES[m] for m in methods), "3CosAdd, nothing excluded"], rows)


def gensim_table(results) -> str:
    g = results["gensim"]
    rows = [[name, f"{v['correct']:,}", f"{v['total']:,}", pct(v["accuracy"])] for name, v in g["sections"].items()]
    rows.append(["**total**", f"{g['total']['correct']:,}", f"{g['total']['total']:,}", pct(g["total"]["accuracy"])])
    return md_table(["section", "correct", "scored", "accuracy"], rows)


def provenance(run) -> str:
    v = run["vectors"]
    return "\n".join([
        f"- Command: `{run['command']}`; {run['seconds']:.1f} s",
        f"- Questions: `{run['questions_file']}` (SHA-256 `{run['questions_sha256'][:16]}`), {run['asked']:,} asked, "
        f"{run['answered']:,} scored",
        f"- Vectors: {v['name']} (`{v['package']}`), {v['words']:,} words x {v['dim']}; answers among the first "
        f"{run['restrict_vocab']:,}; 3CosMul eps {run['cosmul_eps']}",
        f"- Exact search: {run['candidates_per_question']:,} candidate rows per question on average; questions "
        "scored over every row (no certificate): " + ", ".join(f"{NAMES[m]} {n}" for m, n in run["full_scans"].items()),
        "- Libraries: " + ", ".join(f"{k} {val}" for k, val in run["libraries"].items() if val),
    ])


def write_markdown(report: Report, results: dict) -> None:
    """Sections and plots of the report."""
    report.section("Summary", summary(results))
    report.section("All questions", totals_table(results) + "\n\n*Excluded*: every word matching A, B or C "
                   "(case-insensitively) is left out of the answers, as the field does; *nothing excluded*: the "
                   "nearest word wins whatever it is. The last five columns say where the unexcluded top answer "
                   "lands.")
    report.section("Per section (accuracy @1, inputs excluded)", sections_table(results))
    if results.get("gensim"):
        report.section("gensim's numbers, reproduced", gensim_table(results) + "\n\n3CosAdd, inputs excluded, "
                       "case-insensitive, questions with a word outside the vocabulary skipped, gensim's rule for "
                       "picking the answer among the five best: these counts equal gensim 4.4.0's "
                       "`KeyedVectors.evaluate_word_analogies` on the same vectors, total and per section.")
    report.section("How this was produced", provenance(results["run"]))
    _plots(report, results)


def _plots(report: Report, results: dict) -> None:
    methods = _methods(results)
    t = results["totals"]
    labels = [NAMES[m] for m in methods]
    fig, ax = new_figure(9, 4.5)
    grouped_bars(ax, labels, {"inputs excluded @1": [t[m]["excluded"]["accuracy"] for m in methods],
                              "inputs excluded @5": [t[m]["excluded"]["accuracy_at_5"] for m in methods],
                              "nothing excluded @1": [t[m]["not_excluded"]["accuracy"] for m in methods]},
                 "accuracy")
    ax.set_title(f"Google analogies on GloVe 6B 50-d ({results['run']['answered']:,} questions)")
    report.figure("accuracy.png", fig)

    fig, ax = new_figure(9, 4.5)
    shares = {m: _lands_shares(t[m]) for m in methods}
    stacked_bars(ax, labels, {k: [shares[m][k] for m in methods] for k in LANDS}, "share of questions")
    ax.set_title("Where the answer lands with nothing excluded")
    report.figure("unexcluded_answer.png", fig)

    names = list(results["sections"])
    shown = [m for m in ("3cosadd", "only-c", "ignore-a") if m in methods]
    fig, ax = new_figure(12, 5)
    grouped_bars(ax, names, {NAMES[m]: [results["sections"][n][m]["excluded"]["accuracy"] for n in names]
                             for m in shown}, "accuracy @1, inputs excluded")
    ax.set_xticklabels(names, rotation=35, ha="right", fontsize=8)
    ax.set_title("Per section: 3CosAdd against C's nearest word (ONLY-C) and B + C (IGNORE-A)")
    report.figure("sections.png", fig)
