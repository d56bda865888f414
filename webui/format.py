"""HTML and Markdown for the page: pure functions from the pipeline's reports and records to text.

Everything taken from a user or a file (upload names, captions, labels, report text) is escaped here:
:func:`esc` for HTML, :func:`md_escape` for Markdown. No Gradio.
"""
from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any

VERDICTS = {  # verdict -> (colour, what it means)
    "input": ("#b91c1c", "Without exclusion the answer would be one of the inputs A, B or C."),
    "only-c": ("#c2410c", "The answer is simply C's nearest neighbour (the ONLY-C baseline gives it too)."),
    "ignore-a": ("#a16207", "The answer is the IGNORE-A answer: A made no difference."),
    "near-duplicate": ("#7e22ce", "The answer is a near-duplicate of C."),
    "genuine": ("#15803d", "None of the cheats applies: a genuine answer."),
}

# The classes used below; each element also carries its style inline, for pages without this CSS.
CSS = """
.iae-badge {display:inline-block; color:#fff; border-radius:999px; padding:1px 10px; margin:2px 4px 2px 0;
            font-size:0.85em; font-weight:600;}
.iae-without {border-left:4px solid #b91c1c; background:rgba(185,28,28,0.08); padding:4px 8px; margin:6px 0;}
.iae-without.iae-ok {border-left-color:#15803d; background:rgba(21,128,61,0.08);}
.iae-measure {font-size:0.85em; opacity:0.8;}
"""


def esc(value: Any) -> str:
    """``value`` as text safe inside HTML (None becomes the empty string)."""
    return html.escape("" if value is None else str(value))


def md_escape(text: Any) -> str:
    """Text shown literally in Markdown (file names of uploads can hold any character)."""
    return re.sub(r"([\\`*_{}\[\]()<>#+!|~])", r"\\\1", "" if text is None else str(text))


def badge(verdict: str) -> str:
    colour, meaning = VERDICTS.get(verdict, ("#475569", verdict))
    return (f'<span class="iae-badge" title="{esc(meaning)}" style="background:{colour};color:#fff;'
            f'border-radius:999px;padding:1px 10px;margin:2px 4px 2px 0;display:inline-block;'
            f'font-size:0.85em;font-weight:600">{esc(verdict)}</span>')


def item_name(item) -> str:
    """A gallery item's short name: its ImageNet label where it has one, else its path without suffix."""
    return item.label if item.wnid and item.label else item.path.rsplit(".", 1)[0]


def hit_caption(rank: int, hit) -> str:
    """Caption of a result thumbnail: ``rank. score · label · caption``."""
    parts = [f"{hit.score:.3f}", hit.label or Path(hit.path).name]
    if hit.caption:
        parts.append(hit.caption)
    return f"{rank}. " + " · ".join(parts)


def without_exclusion_html(winner: str | None, name: str, input_ranks: dict[str, int]) -> str:
    """The "Without exclusion it would have been ..." line, red when an input would win (``winner``:
    its role, else None) and green otherwise; ``name``: what would win; ``input_ranks``: role -> rank
    (1 = best) with nothing excluded."""
    ranks = " · ".join(f"{role} #{rank}" for role, rank in input_ranks.items())
    if winner:
        text = f"Without exclusion it would have been <b>{esc(winner)} itself</b> ({esc(name)})"
    else:
        text = f"Without exclusion it would have been the same answer, <b>not an input</b> ({esc(name)})"
    colour, background = ("#b91c1c", "rgba(185,28,28,0.08)") if winner else ("#15803d", "rgba(21,128,61,0.08)")
    return (f'<div class="iae-without{"" if winner else " iae-ok"}" style="border-left:4px solid {colour};'
            f'background:{background};padding:4px 8px;margin:6px 0">{text}. Input ranks: {esc(ranks)}.</div>')


def space_html(result, title: str) -> str:
    """Header of one space's column: top answer, verdict badges, without-exclusion line, measurements,
    and the top-k answers as a table (full captions; the thumbnails below cut them short)."""
    if result is None:
        return f"<h3>{esc(title)}</h3><p>This gallery has no captions, so there is no caption-space answer.</p>"
    lines = [f"<h3>{esc(title)} <small>({esc(result.space)}, {esc(result.method)})</small></h3>"]
    top = result.top
    if top is None:
        lines.append("<p>No answer: every gallery item was excluded.</p>")
    else:
        label = f" ({esc(top.label)})" if top.label else ""
        lines.append(f"<div><b>Answer:</b> #{top.id} {esc(top.path)}{label}, score {top.score:.3f}</div>")
        lines.append("<div>" + "".join(badge(v) for v in result.verdicts) + "</div>")
    wo = result.without_exclusion
    would_win = wo["top"]
    if isinstance(would_win, str):
        name = would_win
    else:
        name = would_win.path if wo["winner"] else f"#{would_win.id} {would_win.path}"
    lines.append(without_exclusion_html(wo["winner"], name, wo["input_ranks"]))
    m = result.measurements
    if "offset_consistency" in m:
        lines.append(f'<div class="iae-measure" style="font-size:0.85em;opacity:0.8">|b − a| = {m["offset_norm"]:.3f} '
                     f'({m["offset_relative"]:.2f}× the typical neighbour distance) · cos(b − a, d − c) = '
                     f'{m["offset_consistency"]:+.3f} · cos(D, C) = {m["cos_answer_c"]:+.3f}</div>')
    if result.results:
        lines.append(top_table(["label", "caption"], [(hit.score, [hit.label or "", hit.caption or hit.path])
                                                      for hit in result.results]))
    return "\n".join(lines)


def top_table(columns: list[str], rows: list[tuple[float, list]]) -> str:
    """A top-k table: rank, score (3 decimals), then ``columns``; ``rows``: (score, cells) in rank order,
    cells escaped here."""
    body = "".join(f'<tr><td>{rank}</td><td style="white-space:nowrap">{score:.3f}</td>'
                   + "".join(f"<td>{esc(cell)}</td>" for cell in cells)
                   + "</tr>" for rank, (score, cells) in enumerate(rows, 1))
    head = "".join(f"<th>{esc(column)}</th>" for column in ["#", "score", *columns])
    return ('<table class="iae-top" style="width:100%;font-size:0.85em;margin:4px 0">'
            f'<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>')


def verdict_legend(verdicts) -> str:
    """What each of ``verdicts`` means (each once, in the order of :data:`VERDICTS`), as a list under
    its badge; empty without verdicts."""
    shown = [v for v in VERDICTS if v in set(verdicts)]
    if not shown:
        return ""
    items = "".join(f"<li>{badge(v)} {esc(VERDICTS[v][1])}</li>" for v in shown)
    return f'<ul class="iae-legend" style="font-size:0.85em;list-style:none;padding-left:0">{items}</ul>'


def question_markdown(report) -> str:
    a, b, c = (md_escape(inp.name) for inp in report.inputs)
    exclusion = "inputs excluded" if report.exclude else "nothing excluded"
    return (f"### {a} : {b} :: {c} : ?\n"
            f"{report.method} · layer {report.layer} · {exclusion} · top {report.top_k}")


def text_answer_markdown(report) -> str:
    t = report.text_answer
    if not t:
        return ""
    return f"**Caption space, in words:** \u201c{t['text']}\u201d ({t['source']}, score {t['score']:.3f})"


def agreement_markdown(report) -> str:
    if not report.agreement:
        return ""
    return f"**Do the two spaces agree?** {report.agreement.get('summary', '')}"


def report_json(report) -> str:
    """The report as indented JSON text (a string: API clients take dicts with a "path" key for files)."""
    return json.dumps(report.as_dict(), indent=1, ensure_ascii=False, default=str)


def browse_note(first: int, last: int, matching: int, total: int, query: str = "") -> str:
    """The line above a browse panel showing images ``first`` to ``last`` (counted from 1) of the
    ``matching`` ones for ``query``, in a gallery of ``total``."""
    query = (query or "").strip()
    if not matching:
        return f"No gallery image matches \u201c{query}\u201d."
    paged = last - first + 1 < matching
    shown = f"{first:,}\u2013{last:,}" if paged else f"{matching:,}"
    if query:
        note = f"{matching:,} of {total:,} images match \u201c{query}\u201d."
        return note + (f" Showing {shown}." if paged else "")
    return f"Showing {shown} of {total:,} images." + (" Type to filter, or turn the page." if paged else "")


def info_markdown(info: dict, announcements: list[str]) -> str:
    """The line under the title: the gallery (``Explorer.gallery_info()``), its models, and notes."""
    captioners = ", ".join(info["captioners"]) or "none"
    lines = [f"**Gallery:** `{Path(info['root']).name}`{' (the embedded default gallery)' if info['is_default'] else ''}"
             f" · {info['items']} images · **classifier:** {info['backbone']} · **captions by:** {captioners}"
             + (f" · **sentence embeddings:** {info['text_model']}" if info.get("text_model") else "")]
    for note in [info.get("caption_announcement"), *announcements]:
        if note:
            lines.append(f"_{note}_")
    return "\n\n".join(lines)


def classifier_markdown(caption_row: dict, backbone: str, item=None) -> str:
    """What the classifier tab says under the labels: the caption (a row of ``Explorer.caption``), the
    captioner, the classifier and, for a gallery ``item``, which item it is."""
    lines = [f"**Caption:** \u201c{caption_row['caption']}\u201d", f"**Captioner:** {caption_row['captioner']}",
             f"**Classifier:** {backbone}"]
    if item is not None:
        lines.insert(0, f"**Gallery item** #{item.id} {item.path}" +
                     (f", labelled **{item.label}**" if item.label else ""))
    return "\n\n".join(lines)


def no_report_markdown(shown: Path | str) -> str:
    """What the Evaluation tab says when ``shown`` (the reports folder) holds no report."""
    return (f"No evaluation report yet: no folder with a `results.md` in `{shown}`. Run an evaluation "
            f"with `--out {shown}/<name>` (for example `python -m eval reproduce-2017 --gallery "
            f"../shared/data/imagen --out {shown}/2017`), then press Refresh.")


def report_markdown(text: str, name: str, folder_name: str, newest: bool) -> str:
    """A report's results.md ``text`` under a header naming it (report ``name`` in ``folder_name/``).
    Inline image links become a note: the figures are shown below, from copies, since the page cannot
    read the files the links point at."""
    text = re.sub(r"!\[([^\]]*)\]\(([^)\s]+)[^)]*\)", lambda m: f"*(figure: {Path(m.group(2)).name}, shown below)*", text)
    head = f"**Report:** `{name}`{' (the newest)' if newest else ''} in `{folder_name}/`\n\n"
    return head + text
