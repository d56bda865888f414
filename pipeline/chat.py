"""The chat: follow-up questions about an analogy report, answered in words with the numbers.

A question is matched to the first intent of ``prompts/explain.json`` with a pattern in it
(:func:`match_intent`); its ``_reply_*`` function answers from the report, or from a re-run of the
question through :meth:`pipeline.explorer.Explorer.analogy` where the answer needs another method,
layer, k or exclusion setting. Every sentence comes from ``prompts/explain.json`` (through
:mod:`pipeline.explain`).

Public API:

* :func:`answer_question` (explorer, report, question) -> (reply markdown, report).
* :func:`match_intent` (question) -> intent name | None; :func:`capabilities` () -> the list of what
  the chat answers, one markdown line each.
* :func:`literal_markdown` (text) -> Markdown that shows ``text`` as typed (a question echoed in a
  reply, the question itself in the app's chat).

The answers about *why* (the offset named, the geometry, where the network looks, right or wrong,
the thresholds) are in :mod:`pipeline.chat_why`.
"""
from __future__ import annotations

import re
from pathlib import Path

from . import vectors as vec
from .config import LAYERS
from .errors import RerunImpossible
from .chat_why import HANDLERS as WHY_HANDLERS
from .intents import match_intent, roles_in, spaces_in
from .explain import (exclusion_word, fmt, input_ref, item_ref, labels_text, space_message, space_name, templates,
                      without_exclusion_message, word_space_message)


_PUNCTUATION = re.compile(r"[!-/:-@\[-`{-~]")


def literal_markdown(text: str) -> str:
    """``text`` written so that a Markdown renderer shows it as typed: every ASCII punctuation character
    backslash-escaped (CommonMark lets any be), so no image, link, HTML tag, emphasis, heading, list or
    code span is made of it (``![x](http://elsewhere/x.png)`` stays those characters and nothing is
    fetched)."""
    return _PUNCTUATION.sub(r"\\\g<0>", text)


def capabilities() -> str:
    """The list of follow-ups the explainer answers, one line each."""
    t = templates()["replies"]
    return "\n".join(t["capability"].format(description=i["description"], example=i["example"])
                     for i in templates()["intents"])


def _rerun(explorer, report, explain: bool = False, **changes):
    """The same question through ``explorer.analogy(..., explain=explain)`` with some parameters
    changed; RerunImpossible when an uploaded input's file is gone."""
    refs = []
    for inp in report.inputs:
        if inp.item_id is not None:
            refs.append(inp.item_id)
        elif inp.source and Path(inp.source).is_file():
            refs.append(inp.source)
        else:
            raise RerunImpossible(templates()["replies"]["rerun_impossible"].format(role=inp.role, name=inp.name))
    params = {"method": report.method, "layer": report.layer, "exclude": report.exclude, "top_k": report.top_k,
              "expected": report.expected}
    params.update(changes)
    return explorer.analogy(refs, explain=explain, **params)


def _top_rows(space: dict, k: int) -> str:
    """A markdown block: the space's name, then its top k answers as a numbered list."""
    t = templates()["replies"]
    rows = [t["top_space"].format(space_name=space_name(space["space"]).capitalize())]
    for rank, hit in enumerate(space["results"][:k], start=1):
        template = t["top_row_caption"] if hit.get("caption") else t["top_row"]
        rows.append(template.format(rank=rank, ref=item_ref(hit), score=fmt(hit["score"]), caption=hit.get("caption")))
    if not space["results"]:
        rows.append(t["top_none"])
    return "\n".join(rows)


def _short_hit(hit: dict | None) -> str:
    return item_ref(hit) if hit else templates()["replies"]["compare_none"]


def _verdicts_text(verdicts: list[str]) -> str:
    return templates()["replies"]["verdict_separator"].join(verdicts)


# --- the replies: (explorer, report, question) -> (markdown, the report that is current after it) ------


def _reply_help(explorer, report, question):
    return templates()["replies"]["help"].format(capabilities=capabilities()), report


def _reply_why(explorer, report, question):
    data = report.as_dict()
    t = templates()["replies"]
    lines = [t["why_title"].format(method=report.method, layer=report.layer)]
    for space in spaces_in(question, data):
        text = data.get("text_answer") if space["space"] == "caption" else None
        lines.append(space_message(space, data["inputs"], text))
    return "\n\n".join(lines), report


def _reply_top_k(explorer, report, question):
    """Top k of both spaces (at most ``Settings.max_top_k``); a larger k than the report's re-runs
    the question and makes that the current report."""
    t = templates()["replies"]
    match = re.search(r"\btop[\s-]*(\d+)", question, flags=re.IGNORECASE) or re.search(r"\b(\d+)\b", question)
    k = int(match.group(1)) if match else report.top_k
    k = max(1, min(k, explorer.settings.max_top_k))
    if k > report.top_k:
        report = _rerun(explorer, report, explain=True, top_k=k)
    data = report.as_dict()
    lines = [t["top_title"].format(k=k, method=report.method, layer=report.layer,
                                   exclusion=exclusion_word(report.exclude))]
    for space in spaces_in(question, data):
        lines.append(_top_rows(space, k))
    return "\n\n".join(lines), report


def _reply_without_exclusion(explorer, report, question):
    """A look-aside: re-run with nothing excluded; the current report stays the current one."""
    t = templates()["replies"]
    data = _rerun(explorer, report, exclude=False).as_dict()
    lines = [t["without_title"].format(method=report.method, layer=report.layer)]
    for space in spaces_in(question, data):
        lines.append(_top_rows(space, report.top_k))
    lines.append(without_exclusion_message(data))
    return "\n\n".join(lines), report


def _reply_compare_methods(explorer, report, question):
    """A look-aside: every method and baseline, top-1 per space; the current report stays."""
    t = templates()["replies"]
    title = t["compare_title"].format(layer=report.layer, exclusion=exclusion_word(report.exclude))
    lines = [t["compare_header"]]
    none = t["compare_none"]
    for method in vec.ALL_METHODS:
        data = _rerun(explorer, report, method=method).as_dict()
        image = data["image_space"]
        caption = data.get("caption_space")
        image_top = image["results"][0] if image["results"] else None
        caption_top = caption["results"][0] if caption and caption["results"] else None
        lines.append(t["compare_row"].format(
            method=method, image=_short_hit(image_top), image_score=fmt(image_top["score"]) if image_top else none,
            image_verdicts=_verdicts_text(image["verdicts"]) or none, caption=_short_hit(caption_top),
            caption_score=fmt(caption_top["score"]) if caption_top else none,
            caption_verdicts=_verdicts_text(caption["verdicts"]) if caption else none))
    return title + "\n\n" + "\n".join(lines), report


def _layer_in(question: str) -> str | None:
    q = question.lower()
    if re.search(r"\b(probs|probabilities|softmax)\b", q):
        return "probs"
    for layer in LAYERS:
        if re.search(rf"\b{layer}\b", q):
            return layer
    return None


def _reply_layer(explorer, report, question):
    """A named layer: re-run and make it the current report. No layer named: compare the layers."""
    t = templates()["replies"]
    layer = _layer_in(question)
    if layer is not None:
        report = _rerun(explorer, report, explain=True, layer=layer)
        data = report.as_dict()
        return (t["layer_title"].format(layer=layer, method=report.method) + "\n\n"
                + space_message(data["image_space"], data["inputs"])), report
    title = t["layers_title"].format(method=report.method, exclusion=exclusion_word(report.exclude))
    lines = [t["layers_header"]]
    none = t["compare_none"]
    for name in LAYERS:
        image = _rerun(explorer, report, layer=name).as_dict()["image_space"]
        top = image["results"][0] if image["results"] else None
        lines.append(t["layers_row"].format(layer=name, answer=_short_hit(top), score=fmt(top["score"]) if top else none,
                                            verdicts=_verdicts_text(image["verdicts"]) or none))
    return title + "\n\n" + "\n".join(lines), report


def _reply_method(explorer, report, question):
    """Re-run with the named method and make it the current report."""
    t = templates()["replies"]
    q = question.lower().replace("pair direction", "pairdirection")
    method = next((m for m in vec.ALL_METHODS if re.search(rf"(?<![\w-]){re.escape(m)}(?![\w-])", q)), None)
    if method is None:
        return _reply_unknown(explorer, report, question)
    report = _rerun(explorer, report, explain=True, method=method)
    contents = [m["content"] for m in report.explanation[1:-1]]
    return t["method_title"].format(method=method, layer=report.layer) + "\n\n" + "\n\n".join(contents), report


def _reply_sees(explorer, report, question):
    t = templates()["replies"]
    m = templates()["messages"]
    data = report.as_dict()
    lines = [t["sees_title"]]
    for inp in data["inputs"]:
        if inp["role"] not in roles_in(question):
            continue
        label = m["gallery_label"].format(label=inp["label"]) if inp.get("label") else ""
        template = t["sees_line"] if inp.get("caption") else t["sees_line_no_caption"]
        lines.append(template.format(role=inp["role"], ref=input_ref(inp), labels=labels_text(inp, 5),
                                     captioner=inp.get("captioner"), caption=inp.get("caption"), gallery_label=label))
    return "\n".join(lines), report


def _reply_agreement(explorer, report, question):
    """The report's agreement summary (measured now for a report made without the explanation)."""
    agreement = report.agreement if report.agreement is not None else explorer.agreement(report)
    return templates()["messages"]["agreement_title"] + agreement["summary"], report


def _reply_text_answer(explorer, report, question):
    """The text answer's top sentences (computed now for a report made without the explanation)."""
    t = templates()["replies"]
    text = report.text_answer
    if report.caption_space is not None and text is None:
        text = explorer.text_answer(report.inputs, report.method)
    if not text:
        return t["text_none"], report
    lines = [t["text_title"].format(k=len(text["top"]))]
    lines += [t["text_row"].format(rank=i, text=row["text"], source=row["source"], score=fmt(row["score"]))
              for i, row in enumerate(text["top"], start=1)]
    return "\n".join(lines), report


def _space_details(report, key: str) -> str:
    t = templates()["replies"]
    data = report.as_dict()
    space = data.get(key)
    if space is None:
        return templates()["messages"]["no_caption_space"]
    text = data.get("text_answer") if key == "caption_space" else None
    baselines = [t["baselines_title"]]
    for name, hit in space["baselines"].items():
        baselines.append(t["baseline_row"].format(name=name, ref=_short_hit(hit),
                                                  score=fmt(hit["score"]) if hit else t["compare_none"]))
    blocks = [t["space_details_title"].format(space_name=space_name(space["space"]).capitalize()),
              space_message(space, data["inputs"], text), _top_rows(space, len(space["results"])), "\n".join(baselines)]
    return "\n\n".join(blocks)


def _reply_caption_space(explorer, report, question):
    return _space_details(report, "caption_space"), report


def _reply_image_space(explorer, report, question):
    return _space_details(report, "image_space"), report


def _reply_word_space(explorer, report, question):
    data = report.as_dict()
    return word_space_message(data["word_space"], data["inputs"]), report


ECHOED_CHARS = 80  # a question the chat cannot answer is quoted up to this many characters


def _reply_unknown(explorer, report, question):
    quoted = question.strip()
    quoted = quoted if len(quoted) <= ECHOED_CHARS else quoted[:ECHOED_CHARS] + "\u2026"
    return (templates()["replies"]["unknown"].format(question=literal_markdown(quoted), capabilities=capabilities()),
            report)


_HANDLERS = {
    "help": _reply_help, "compare_methods": _reply_compare_methods, "without_exclusion": _reply_without_exclusion,
    "top_k": _reply_top_k, "sees": _reply_sees, "layer": _reply_layer, "method": _reply_method, "why": _reply_why,
    "agreement": _reply_agreement, "text_answer": _reply_text_answer, "caption_space": _reply_caption_space,
    "image_space": _reply_image_space, "word_space": _reply_word_space, **WHY_HANDLERS,
}


def answer_question(explorer, report, question: str):
    """Answer a follow-up question about ``report``: ``(reply markdown, report)``.

    ``explorer``: the :class:`pipeline.explorer.Explorer` that made ``report`` (an
    :class:`pipeline.explorer.AnalogyReport`). The intent is matched by :func:`match_intent` (table
    in ``prompts/explain.json``). Answers are computed from the report, or from a re-run of the
    pipeline through ``explorer.analogy``. The returned report is the new one when the user switched
    what is asked (a named layer or method, a larger top k); look-asides (compare the methods or the
    layers, without exclusion) keep the current report, which is never changed. A question it cannot
    answer gets the list of what it can.
    """
    intent = match_intent(question or "")
    handler = _HANDLERS.get(intent or "", _reply_unknown)
    try:
        return handler(explorer, report, question or "")
    except RerunImpossible as exc:
        return str(exc), report
