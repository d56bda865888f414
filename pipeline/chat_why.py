"""The chat's answers about *why* (issue 11): what B - A means, where the network looks, the geometry,
right or wrong, where the expected answer ranks, and the calibrated thresholds.

Each ``reply_*`` function has the chat's handler signature ``(explorer, report, question) -> (markdown,
report)`` (:mod:`pipeline.chat` registers them under the intents of ``prompts/explain.json``) and never
changes the current report. They read the fields :func:`pipeline.insight.space_insight` puts in each
space's JSON (computed now for a report made without them); the heatmaps are computed on request
(seconds). Every sentence comes from ``prompts/why.json`` (``chat``) and the modules that own the
wording of each field.
"""
from __future__ import annotations

from dataclasses import replace

from .explain import exclusion_word, fmt, ground_truth_lines, input_ref, item_ref, space_name
from .geometry import geometry_sentence
from .intents import roles_in, spaces_in
from .models.heatmaps import heatmap_sentence
from .thresholds import rule_text, threshold_sentence
from .wording import why


def _data(explorer, report) -> dict:
    """``report.as_dict()`` with the insight fields of every space (computed now when missing)."""
    if report.insight is None:
        report = replace(report, insight=explorer.insight(report))
    return report.as_dict()


def _name(space: dict) -> str:
    return space_name(space["space"]).capitalize()


def _terms(terms: list[dict]) -> str:
    t = why("chat")
    return t["term_separator"].join(t["term_score"].format(term=x["term"], score=fmt(x["score"])) for x in terms) \
        or t["offset_none"]


def reply_offset(explorer, report, question):
    """What B - A asks for, per space: its terms with their scores, the answer's move, the alignment."""
    t = why("chat")
    blocks = []
    for space in spaces_in(question, _data(explorer, report)):
        terms = space["offset_terms"]
        lines = [t["offset_title"].format(space=space_name(space["space"]), basis=terms["basis_text"]),
                 t["offset_toward"].format(terms=_terms(terms["toward"])),
                 t["offset_away"].format(terms=_terms(terms["away"]))]
        if terms["answer_toward"] or terms["answer_away"]:
            lines.append(t["offset_answer"].format(toward=_terms(terms["answer_toward"]),
                                                   away=_terms(terms["answer_away"])))
        if terms["alignment"] is not None:
            lines.append(t["offset_alignment"].format(alignment=fmt(terms["alignment"]), along=fmt(terms["along"])))
        blocks.append("\n".join(lines) + "\n\n" + terms["sentence"])
    return "\n\n".join(blocks), report


def reply_geometry(explorer, report, question):
    """Where things sit, per space: the plane, how much it preserves, whether the query leaves C's
    neighbourhood."""
    t = why("chat")
    blocks = []
    for space in spaces_in(question, _data(explorer, report)):
        drawn = space["geometry"]
        lines = [t["geometry_title"].format(space=space_name(space["space"])), geometry_sentence(drawn)]
        if "query_outside_circle" in drawn:
            key = "geometry_query_outside" if drawn["query_outside_circle"] else "geometry_query_inside"
            lines.append(t[key].format(offset_norm=fmt(drawn["offset_norm"]), nn_radius=fmt(drawn["nn_radius"])))
        blocks.append(" ".join(lines))
    blocks.append(t["geometry_where"])
    return "\n\n".join(blocks), report


def heatmap_summary(data: dict, maps: dict, roles) -> str:
    """Where the network looks, in words: for each of ``roles`` (A, B, C, D) its similarity to the
    query and to C alone and how its two maps correlate, then whether D's two maps agree. ``data``:
    the report's JSON; ``maps``: :meth:`pipeline.models.heatmaps.SimilarityMaps.as_dict`."""
    t = why("chat")
    refs = {inp["role"]: input_ref(inp) for inp in data["inputs"]}
    refs["D"] = t["answer_ref"].format(ref=item_ref(data["image_space"]["results"][0]))
    lines = [t["heatmaps_title"].format(method=maps["method"])]
    for row in maps["images"]:
        if row["role"] in roles:
            lines.append(t["heatmaps_row"].format(role=row["role"], ref=refs[row["role"]],
                                                  query=fmt(row["similarity"]["query"]), c=fmt(row["similarity"]["c"]),
                                                  correlation=fmt(row.get("correlation"))))
    return "\n".join(lines) + "\n\n" + heatmap_sentence(maps)


def reply_heatmaps(explorer, report, question):
    """Where the network looks in the inputs named (all when none is) and in the answer D (seconds)."""
    summary = heatmap_summary(report.as_dict(), explorer.heatmaps(report).as_dict(), set(roles_in(question)) | {"D"})
    return summary + "\n\n" + why("chat")["heatmaps_where"], report


def reply_right(explorer, report, question):
    """Right or wrong per space, and whether ONLY-C is right too."""
    t = why("chat")
    lines = [t["right_title"]]
    for space in spaces_in(question, _data(explorer, report)):
        said = ground_truth_lines(space)
        lines.append(" ".join(said) if said else t["right_unknown"].format(space_name=_name(space)))
    return "\n\n".join(lines), report


def reply_why_not_right(explorer, report, question):
    """Where the expected answer ranks in each space, with its score against the answer's."""
    t = why("chat")
    lines = [t["why_not_title"].format(method=report.method, exclusion=exclusion_word(report.exclude))]
    for space in spaces_in(question, _data(explorer, report)):
        expected = space.get("expected")
        if not expected:
            lines.append("- " + t["right_unknown"].format(space_name=_name(space)))
            continue
        names = ", ".join(expected.get("paths") or [f"#{i}" for i in expected["ids"]])
        if expected["best"] is None:
            lines.append(t["why_not_excluded"].format(space_name=_name(space), expected=names))
        elif expected["correct"]:
            lines.append(t["why_not_correct"].format(space_name=_name(space), expected=names,
                                                     score=fmt(expected["score"])))
        else:
            top = space["results"][0]
            lines.append(t["why_not_wrong"].format(
                space_name=_name(space), expected=names, rank=expected["rank"], score=fmt(expected["score"]),
                answer=item_ref(top), answer_score=fmt(top["score"]), gap=fmt(top["score"] - expected["score"]),
                only_c_rank=expected["only_c_rank"]))
    return "\n".join(lines), report


def reply_threshold(explorer, report, question):
    """The calibrated near-duplicate threshold of each space, with the gallery's numbers behind it."""
    t = why("chat")
    lines = [t["threshold_title"].format(rule=rule_text())]
    for space in spaces_in(question, _data(explorer, report)):
        calibration = space["near_duplicate_calibration"]
        percentiles = calibration["nn_cosine_percentiles"]
        lines.append(t["threshold_row"].format(
            sentence=threshold_sentence(calibration, space_name(space["space"])), items=calibration["items_measured"],
            p50=fmt(percentiles.get("50")), p99=fmt(percentiles.get("99")),
            share=f"{100 * calibration['share_with_near_duplicate']:.1f}%"))
    return "\n".join(lines), report


#: intent name (prompts/explain.json) -> reply
HANDLERS = {"offset": reply_offset, "geometry": reply_geometry, "heatmaps": reply_heatmaps, "right": reply_right,
            "why_not_right": reply_why_not_right, "threshold": reply_threshold}
