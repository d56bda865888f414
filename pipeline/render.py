"""Plain-text rendering of results for the terminal (the CLI's non-JSON output)."""
from __future__ import annotations

import textwrap

from .analogy import SpaceResult
from .explain import why_sentences

WIDTH = 58


def table(headers: list[str], rows: list[list]) -> str:
    """A simple left-aligned text table."""
    cells = [[str(h) for h in headers]] + [["" if v is None else str(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def build_summary(out: dict) -> str:
    lines = [f"gallery {out['gallery']['root']}: {out['items']} items, {out['computed']} computed, "
             f"{out['reused']} reused, {len(out['skipped'])} skipped ({out['seconds']:.1f} s)"]
    for skipped in out["skipped"][:20]:
        lines.append(f"  skipped {skipped['path']}: {skipped['reason']}")
    if len(out["skipped"]) > 20:
        lines.append(f"  ... and {len(out['skipped']) - 20} more (see --json)")
    if out["gallery"].get("captioners"):
        lines.append(f"captions by: {', '.join(out['gallery']['captioners'])}")
    if out["gallery"].get("caption_announcement"):
        lines.append(out["gallery"]["caption_announcement"])
    return "\n".join(lines)


def labels_table(rows: list[dict]) -> str:
    blocks = []
    for row in rows:
        body = table(["rank", "label", "probability"],
                     [[i + 1, l["name"], f"{l['probability']:.3f}"] for i, l in enumerate(row["labels"])])
        blocks.append(f"{row['image']}\n{body}")
    return "\n\n".join(blocks)


def space_lines(result: SpaceResult | None, title: str) -> list[str]:
    """One space's answers, what wins without exclusion, baselines and verdicts, as lines."""
    if result is None:
        return [title, "(no captions in this gallery)"]
    lines = [f"{title}  [{result.method}{'' if result.exclude else ', no exclusion'}]"]
    for rank, hit in enumerate(result.results, 1):
        lines.append(f"{rank}. {hit.score:+.3f}  {hit.path}" + (f"  ({hit.label})" if hit.label else ""))
    wo = result.without_exclusion
    winner = f"input {wo['winner']}" if wo["winner"] else "not an input"
    lines.append(f"without exclusion: {winner}; ranks {input_ranks(wo['input_ranks'])}")
    only_c = result.baselines.get("only-c")
    if only_c:
        lines.append(f"ONLY-C answer: {only_c.path}")
    lines.append(f"verdicts: {', '.join(result.verdicts)}")
    m = result.measurements
    if "offset_consistency" in m:
        lines.append(f"|b-a| {m['offset_norm']:.3f} = {m['offset_relative']:.2f} x NN distance; "
                     f"cos(b-a, d-c) {m['offset_consistency']:+.3f}; cos(d, c) {m['cos_answer_c']:+.3f}")
    return lines


def input_ranks(ranks: dict[str, int | None]) -> str:
    """``{"A": 3, "B": None, ...}`` as "A #3, B (not among them), ..." (None: outside the candidates)."""
    return ", ".join(f"{role} #{rank}" if rank else f"{role} (not among them)" for role, rank in ranks.items())


def baselines_line(baselines: dict[str, dict | None], key: str) -> str:
    """"baselines: ONLY-C x, IGNORE-A y, ..." from named answers (``{method: {key: name, ...} or None}``)."""
    return "baselines: " + ", ".join(f"{method.upper()} {pick[key] if pick else '-'}" for method, pick in baselines.items())


def why_lines(space: dict | None) -> list[str]:
    """An explained space's named offset, right or wrong, and calibrated threshold, as lines
    (``space``: the report's JSON of the space; nothing before the explanation)."""
    return why_sentences(space) if space else []


def side_by_side(left: list[str], right: list[str], width: int = WIDTH) -> str:
    left = [piece for line in left for piece in (textwrap.wrap(line, width) or [""])]
    right = [piece for line in right for piece in (textwrap.wrap(line, width) or [""])]
    n = max(len(left), len(right))
    left += [""] * (n - len(left))
    right += [""] * (n - len(right))
    return "\n".join(f"{a.ljust(width)} | {b}".rstrip() for a, b in zip(left, right))


def analogy_report(report) -> str:
    a, b, c = report.inputs
    head = [f"{a.name} : {b.name} :: {c.name} : ?",
            f"gallery: {report.gallery['root']} ({report.gallery['items']} items); backbone {report.gallery['backbone']}"]
    if report.gallery.get("captioners"):
        head.append(f"captions by: {', '.join(report.gallery['captioners'])}")
    for inp in report.inputs:
        top = ", ".join(f"{l.name} {l.probability:.2f}" for l in inp.labels[:3])
        head.append(f"  {inp.role}: {inp.name}: sees {top}" + (f"; caption \"{inp.caption}\"" if inp.caption else ""))
    body = side_by_side(space_lines(report.image_space, f"IMAGE SPACE ({report.image_space.space})")
                        + why_lines(report.space_dict("image_space")),
                        space_lines(report.caption_space, "CAPTION SPACE") + why_lines(report.space_dict("caption_space")))
    tail = [word_space_text(report.word_space), ""] if report.word_space else []
    if report.text_answer:
        tail.append(f"caption space answers in words: \"{report.text_answer['text']}\" ({report.text_answer['score']:.3f})")
    if report.agreement:
        tail.append(f"agreement: {report.agreement.get('summary', '')}")
    return "\n".join(head + ["", body, ""] + tail).rstrip()


def explanation(report) -> str:
    return "\n\n".join(message["content"] for message in report.explanation)


def word_answer(out: dict) -> str:
    """A free word analogy (``pipeline.words.WordAnswer.as_dict()``) as text."""
    inputs = {i["role"]: i for i in out["inputs"]}
    question = " : ".join(inputs[r]["text"] for r in "AB") + " :: " + inputs["C"]["text"] + " : ?"
    lines = [f"{question}  [{out['method']}{'' if out['exclude'] else ', no exclusion'}; "
             f"answers among the {out['vocab_size']:,} most frequent words]"]
    lines += [f"{rank}. {hit['score']:+.3f}  {hit['word']}" for rank, hit in enumerate(out["top"], 1)]
    wo = out["without_exclusion"]
    who = f"input {wo['winner']}" if wo["winner"] else "not an input"
    lines.append(f"without exclusion: {wo['word']} ({wo['score']:+.3f}), {who}; ranks {input_ranks(wo['input_ranks'])}")
    lines.append(baselines_line(out["baselines"], "word"))
    for role in "ABC":
        i = inputs[role]
        if len(i["words"]) != 1 or i["missing"]:
            lines.append(f"{role} \"{i['text']}\": mean of {' + '.join(i['words']) or 'no word'}"
                         + (f"; not in GloVe: {', '.join(i['missing'])}" if i["missing"] else ""))
    return "\n".join(lines)


def with_figures(text: str, figures: dict[str, str] | None) -> str:
    """``text``, then the figures written (``--figures``), one line each."""
    if not figures:
        return text
    return text + "\n\nfigures:\n" + "\n".join(f"  {name}: {path}" for name, path in figures.items())


def word_space_text(word) -> str:
    """Word space of a report (:class:`pipeline.word_space.WordSpaceReport`) as text: each input's
    words and their source, the answer among the gallery's items, and the free word analogy."""
    lines = ["WORD SPACE (GloVe)"]
    for i in word.inputs:
        known = " + ".join(i.phrase.words) or "no word in GloVe"
        lines.append(f"  {i.role}: \"{i.phrase.text}\" ({i.source}): {known}"
                     + (f"; not in GloVe: {', '.join(i.phrase.missing)}" if i.phrase.missing else ""))
    if word.space is None:
        lines.append(f"no word-space answer: {', '.join(word.missing_inputs)} without a word vector")
        return "\n".join(lines)
    lines += space_lines(word.space, "among the gallery's items")
    lines += ["in GloVe's vocabulary:"] + ["  " + line for line in word_answer(word.word_answer).splitlines()]
    return "\n".join(lines)


def class_report(out: dict) -> str:
    """A question about classes (:meth:`pipeline.class_questions.ClassQuestionReport.as_dict`) as text:
    per space, the answer among class centroids and among items, with verdicts, the winner without
    exclusion and the inputs' ranks, and the baselines' answers; then the free word analogy of the labels."""
    q = out["question"]
    lines = [f"classes {q['A']} : {q['B']} :: {q['C']} : ?  [{q['method']}{'' if q['exclude'] else ', no exclusion'}]"]
    for key, title in (("image_space", f"IMAGE SPACE ({q['layer']})"), ("caption_space", "CAPTION SPACE"),
                       ("word_space", "WORD SPACE (GloVe)")):
        space = out.get(key)
        lines += ["", title]
        if space is None:
            lines.append("(not available: no vectors for this space or for an input class)")
            continue
        for kind, name in (("among_classes", "class"), ("among_items", "item")):
            answer = space[kind]
            wo = answer["without_exclusion"]
            top = ", ".join(f"{hit[name]}{' (' + hit['label'] + ')' if hit.get('label') else ''} {hit['score']:+.3f}"
                            for hit in answer["top"])
            lines.append(f"among {kind.split('_')[1]}: {top}")
            lines.append(f"  without exclusion: {wo[name]} ({'input ' + wo['winner'] if wo['winner'] else 'not an input'}); "
                         f"ranks {input_ranks(wo['input_ranks'])}; verdicts: {', '.join(answer['verdicts'])}")
            lines.append("  " + baselines_line(answer["baselines"], name))
    if out.get("word_space") and out["word_space"].get("word_answer"):
        lines += ["", "in GloVe's vocabulary:"] + ["  " + line for line in word_answer(out["word_space"]["word_answer"]).splitlines()]
    return "\n".join(lines)
