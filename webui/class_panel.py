"""The Analogy tab's questions about classes: A, B and C chosen as labels of the gallery, answered by
:meth:`pipeline.explorer.Explorer.class_analogy` (among class centroids and among items, in image,
caption and word space), shown as one HTML column per space: each answer with its verdict badges, what
would win without exclusion and the inputs' ranks, the baselines' answers and the top k (the photo
question's layout, from :mod:`webui.format`), word space's also as a word analogy; then what the
verdicts shown mean.
"""
from __future__ import annotations

from pipeline.errors import AnalogyError

from . import format as fmt
from .format import esc
from .word_panel import word_answer_html

SPACES = (("image_space", "Image space"), ("caption_space", "Caption space"), ("word_space", "Word space"))
ANSWERS = (("among_classes", "class", "Among classes"), ("among_items", "item", "Among items"))  # (key, name, title)
COLUMN_STYLE = "flex:1;min-width:240px;overflow-wrap:anywhere"  # long file names wrap inside their column


def gallery_classes(gallery) -> list[str]:
    """The gallery's labels, sorted (the choices of the class pickers)."""
    return sorted({item.label for item in gallery.items if item.label})


def class_examples(gallery, talk: tuple[tuple[str, str, str], ...]) -> list[list[str]]:
    """The talk's class questions whose three labels this gallery has."""
    known = set(gallery_classes(gallery))
    return [list(t) for t in talk if set(t) <= known]


def _answer_html(answer: dict, key: str, title: str) -> str:
    """One answer of a class question: among class centroids (``key`` "class") or among items ("item",
    each with its label): the answer and its verdicts, what would win without exclusion with the
    inputs' ranks, the baselines' answers and the top k."""
    if answer[key] is None:
        return f"<div><b>{title}:</b> no answer: every candidate was excluded.</div>"
    labelled = key == "item"
    label = f" ({esc(answer['label'])})" if labelled and answer.get("label") else ""
    wo = answer["without_exclusion"]
    baselines = " · ".join(f"{method.upper()} {esc(pick[key])}" for method, pick in answer["baselines"].items()
                           if pick)
    rows = [(t["score"], [t[key], t.get("label") or ""] if labelled else [t[key]]) for t in answer["top"]]
    return "\n".join([
        f"<div><b>{title}:</b> {esc(answer[key])}{label}, score {answer['score']:.3f}</div>",
        "<div>" + "".join(fmt.badge(v) for v in answer["verdicts"]) + "</div>",
        fmt.without_exclusion_html(wo["winner"], wo[key], wo["input_ranks"]),
        f'<div class="iae-measure" style="font-size:0.85em;opacity:0.8">baselines: {baselines}</div>',
        fmt.top_table(["item", "label"] if labelled else ["class"], rows)])


def class_report_html(out: dict) -> str:
    """HTML of :meth:`pipeline.class_questions.ClassQuestionReport.as_dict`: three columns (image,
    caption, word space), each the answer among class centroids and among items (word space also as a
    word analogy over GloVe's vocabulary), then what the verdicts shown mean."""
    q = out["question"]
    columns, verdicts = [], []
    for key, title in SPACES:
        space = out.get(key)
        if space is None:
            body = "<p>Not available (no vectors for an input class in this space).</p>"
        else:
            body = "".join(_answer_html(space[part], name, heading) for part, name, heading in ANSWERS)
            verdicts += [v for part, _, _ in ANSWERS for v in space[part]["verdicts"]]
            if space.get("word_answer"):
                body += word_answer_html(space["word_answer"])
        columns.append(f'<div class="iae-class-space" style="{COLUMN_STYLE}"><h3>{title}</h3>{body}</div>')
    head = (f"<h3>Classes: {esc(q['A'])} : {esc(q['B'])} :: {esc(q['C'])} : ? "
            f"<small>({esc(q['method'])}, exclusion {'on' if q['exclude'] else 'off'})</small></h3>")
    return (head + '<div style="display:flex;gap:16px;flex-wrap:wrap">' + "".join(columns) + "</div>"
            + fmt.verdict_legend(verdicts))


def solve_classes(explorer, a, b, c, method: str = "3cosadd", layer: str = "pooled", exclude: bool = True,
                  top_k: float = 5) -> str:
    """A : B :: C : ? about classes, as HTML; AnalogyError (shown as one line) when a class is missing."""
    missing = [role for role, label in zip("ABC", (a, b, c)) if not label]
    if missing:
        raise AnalogyError(f"choose a class for {', '.join(missing)}")
    report = explorer.class_analogy([a, b, c], method=method, layer=layer, exclude=bool(exclude), top_k=int(top_k))
    return class_report_html(report.as_dict())
