"""The Analogy tab's questions about classes: A, B and C chosen as labels of the gallery, answered by
:meth:`pipeline.explorer.Explorer.class_analogy` (among class centroids and among items, in image,
caption and word space), shown as one HTML block per space.
"""
from __future__ import annotations

from html import escape as esc

from pipeline.errors import AnalogyError

SPACES = (("image_space", "Image space"), ("caption_space", "Caption space"), ("word_space", "Word space"))


def gallery_classes(gallery) -> list[str]:
    """The gallery's labels, sorted (the choices of the class pickers)."""
    return sorted({item.label for item in gallery.items if item.label})


def class_examples(gallery, talk: tuple[tuple[str, str, str], ...]) -> list[list[str]]:
    """The talk's class questions whose three labels this gallery has."""
    known = set(gallery_classes(gallery))
    return [list(t) for t in talk if set(t) <= known]


def _answer_html(answer: dict, name: str, title: str) -> str:
    wo = answer["without_exclusion"]
    top = ", ".join(f"{esc(str(t[name]))}{' (' + esc(t['label']) + ')' if t.get('label') else ''} {t['score']:.3f}"
                    for t in answer["top"])
    who = f"input {wo['winner']}" if wo["winner"] else "not an input"
    badges = " ".join(f'<span class="iae-badge">{esc(v)}</span>' for v in answer["verdicts"])
    return (f"<div><b>{title}:</b> {esc(str(answer[name]))} {badges}</div>"
            f'<div style="font-size:0.85em">top: {top}</div>'
            f'<div style="font-size:0.85em">without exclusion: {esc(str(wo[name]))} ({who})</div>')


def class_report_html(out: dict) -> str:
    """HTML of :meth:`pipeline.class_questions.ClassQuestionReport.as_dict`: three columns (image,
    caption, word space), each the answer among class centroids and among items."""
    q = out["question"]
    columns = []
    for key, title in SPACES:
        space = out.get(key)
        body = "<p>Not available (no vectors for an input class in this space).</p>" if space is None else (
            _answer_html(space["among_classes"], "class", "Among classes")
            + _answer_html(space["among_items"], "item", "Among items"))
        if key == "word_space" and space is not None and space.get("word_answer"):
            w = space["word_answer"]
            body += (f'<div class="iae-word-answer"><b>As a word analogy:</b> {esc(w["word"] or "-")} '
                     f'(without exclusion: {esc(w["without_exclusion"]["word"])})</div>')
        columns.append(f'<div class="iae-class-space" style="flex:1;min-width:240px"><h3>{title}</h3>{body}</div>')
    head = (f"<h3>Classes: {esc(q['A'])} : {esc(q['B'])} :: {esc(q['C'])} : ? "
            f"<small>({esc(q['method'])}, exclusion {'on' if q['exclude'] else 'off'})</small></h3>")
    return head + '<div style="display:flex;gap:16px;flex-wrap:wrap">' + "".join(columns) + "</div>"


def solve_classes(explorer, a, b, c, method: str = "3cosadd", layer: str = "pooled", exclude: bool = True,
                  top_k: float = 5) -> str:
    """A : B :: C : ? about classes, as HTML; AnalogyError (shown as one line) when a class is missing."""
    missing = [role for role, label in zip("ABC", (a, b, c)) if not label]
    if missing:
        raise AnalogyError(f"choose a class for {', '.join(missing)}")
    report = explorer.class_analogy([a, b, c], method=method, layer=layer, exclude=bool(exclude), top_k=int(top_k))
    return class_report_html(report.as_dict())
