"""The Analogy tab's third column: word space (GloVe) beside image space and caption space.

:func:`word_space_html` shows a report's ``word_space`` (:class:`pipeline.word_space.WordSpaceReport`):
the free word analogy's answer, its top k and what would win without exclusion, each input's words and
where they came from, and the answer among the gallery's items (the other columns' layout, from
:func:`webui.format.space_html`).
"""
from __future__ import annotations

from html import escape as esc

from pipeline.explain import templates

from . import format as fmt

TITLE = "Word space"


def word_space_html(report) -> str:
    """HTML of a report's word space (``report.word_space`` may be None: GloVe not installed)."""
    word = getattr(report, "word_space", None)
    if word is None:
        return f"<h3>{TITLE}</h3><p>Word vectors are not available here (the GloVe package is not installed).</p>"
    lines = [f'<h3>{TITLE} <small>(GloVe 6B 50-d)</small></h3>', '<div class="iae-words">']
    t = templates()["messages"]  # the explanation's words for an input's words and their source
    for i in word.inputs:
        known = t["word_separator"].join(i.phrase.words) or t["word_none_known"]
        source = t["word_sources"].get(i.source, i.source)
        missing = f"; not in GloVe: {esc(', '.join(i.phrase.missing))}" if i.phrase.missing else ""
        lines.append(f"<div><b>{i.role}</b> “{esc(i.phrase.text)}” ({source}): "
                     f"{esc(known)}{missing}</div>")
    lines.append("</div>")
    if word.space is None:
        lines.append(f"<p>No word-space answer: {', '.join(word.missing_inputs)} has no word vector.</p>")
        return "\n".join(lines)
    lines.append(word_answer_html(word.word_answer))
    lines.append(fmt.space_html(word.space, "Among the gallery's items"))
    return "\n".join(lines)


def word_answer_html(answer: dict) -> str:
    """The free word analogy over GloVe's vocabulary (a ``word_answer`` dict of
    :mod:`pipeline.word_space`): the word, its top k and what would win without exclusion."""
    wo = answer["without_exclusion"]
    top = ", ".join(f"{esc(t['word'])} {t['score']:.3f}" for t in answer["top"])
    who = f"input {wo['winner']}" if wo["winner"] else "not an input"
    score = f"score {answer['score']:.3f}, " if answer["score"] is not None else ""
    return (f'<div class="iae-word-answer"><b>As a word analogy:</b> {esc(answer["word"] or "-")} '
            f'({score}among the {answer["vocab_size"]:,} most frequent words)</div>\n'
            f'<div style="font-size:0.85em">top {len(answer["top"])}: {top}</div>\n'
            f'<div class="iae-word-without" style="font-size:0.85em">without exclusion: {esc(wo["word"])} '
            f'({who})</div>')
