"""The explanation in words: plain sentences, with the numbers, about an analogy report.

Everything the user reads comes from the templates in ``prompts/explain.json`` (data, not code), and
every number in the text is formatted (:func:`fmt`) from the value that ``report.as_dict()`` puts in the
JSON, so the text and the JSON always carry the same numbers. Every function here takes those dicts
(``AnalogyReport.as_dict()``, ``SpaceResult.as_dict()``, ``Hit.as_dict()``, ``AnalogyInput.as_dict()``)
and returns markdown; nothing is computed or changed.

Public API:

* :func:`templates` () -> dict: the parsed ``prompts/explain.json`` (also read by
  :mod:`pipeline.text_answer` and :mod:`pipeline.chat`); :func:`fmt` (number) -> str.
* :func:`explanation` (report dict) -> chat messages ``[{"role": "assistant", "content": markdown}]``,
  built from :func:`inputs_message`, :func:`space_message`, the agreement summary and
  :func:`without_exclusion_message`.
* :func:`agreement_summary` (agreement dict, image space dict, caption space dict | None) -> str: the
  sentences of ``report.agreement["summary"]`` about :func:`pipeline.agreement.space_agreement`'s numbers.
* :func:`verdict_sentences` (space dict, input dicts) -> one sentence per verdict; :func:`why_sentences`
  (space dict) -> the offset named, right or wrong, the calibrated threshold (issue 11's fields).
* References and names: :func:`item_ref`, :func:`input_ref`, :func:`space_name`,
  :func:`exclusion_word`, :func:`labels_text`.
"""
from __future__ import annotations

import json
from functools import lru_cache

from .analogy import ROLES
from .config import PROMPTS_DIR
from .ground_truth import ground_truth_sentences
from .thresholds import threshold_sentence

TEMPLATES_PATH = PROMPTS_DIR / "explain.json"


@lru_cache(maxsize=1)
def templates() -> dict:
    """The parsed ``prompts/explain.json`` (see its ``_doc`` key)."""
    return json.loads(TEMPLATES_PATH.read_text(encoding="utf-8"))


def fmt(x) -> str:
    """A number as the explainer writes it (``number_format``, e.g. 0.123456 -> "0.123"); None -> "?";
    bools and strings as they are."""
    if x is None:
        return "?"
    if isinstance(x, (bool, str)):
        return str(x)
    return templates()["number_format"].format(x)


# --- references and names -----------------------------------------------------------------------


def item_ref(hit: dict) -> str:
    """``#12 cats/tabby.jpg (tabby)`` from a hit dict (``Hit.as_dict()``)."""
    t = templates()["messages"]
    if hit.get("label"):
        return t["item_ref_label"].format(id=hit["id"], path=hit["path"], label=hit["label"])
    return t["item_ref"].format(id=hit["id"], path=hit["path"])


def input_ref(inp: dict) -> str:
    """An input (``AnalogyInput.as_dict()``): ``#id name`` for gallery items, else its name."""
    if inp.get("id") is None:
        return str(inp["name"])
    return templates()["messages"]["item_ref"].format(id=inp["id"], path=inp["name"])


def space_name(space: str) -> str:
    """The name of a space key ("caption", "word", "image:pooled", ...) in words ("caption space", ...)."""
    names = templates()["spaces"]
    return names.get(space, names["image"])


def exclusion_word(exclude: bool) -> str:
    """"on" / "off" for the exclusion setting."""
    t = templates()["messages"]
    return t["exclusion_on"] if exclude else t["exclusion_off"]


def labels_text(inp: dict, n: int) -> str:
    """An input's first ``n`` top labels with their probabilities: ``tabby (p = 0.512), ...``."""
    t = templates()["messages"]
    return t["label_separator"].join(t["label_score"].format(name=l["name"], probability=fmt(l["probability"]))
                                     for l in inp["top_labels"][:n])


def _ranks(without: dict) -> dict:
    ranks = without.get("input_ranks") or {}
    return {"rank_a": ranks.get("A"), "rank_b": ranks.get("B"), "rank_c": ranks.get("C")}


def _winner_name(without: dict, inputs: list[dict]) -> str | None:
    """The input that wins without exclusion, as a reference (``#id path`` or its name)."""
    role = without.get("winner")
    if role is None:
        return None
    return input_ref(inputs[ROLES.index(role)])


# --- the messages -------------------------------------------------------------------------------


def inputs_message(data: dict, n_labels: int = 3) -> str:
    """Message 1: what the classifier and the captioner see in A, B, C (from ``report.as_dict()``)."""
    t = templates()["messages"]
    gallery = data.get("gallery") or {}
    lines = [t["inputs_title"].format(backbone=gallery.get("backbone"), items=gallery.get("items"))]
    for inp in data["inputs"]:
        ref = input_ref(inp) + (t["gallery_label"].format(label=inp["label"]) if inp.get("label") else "")
        if inp.get("caption"):
            lines.append(t["input_line"].format(role=inp["role"], ref=ref, labels=labels_text(inp, n_labels),
                                                captioner=inp.get("captioner"), caption=inp["caption"]))
        else:
            lines.append(t["input_line_no_caption"].format(role=inp["role"], ref=ref, labels=labels_text(inp, n_labels)))
    text = "\n".join(lines)
    if gallery.get("caption_announcement"):
        text += "\n\n" + t["caption_announcement"].format(announcement=gallery["caption_announcement"])
    return text


def verdict_sentences(space: dict, inputs: list[dict]) -> list[str]:
    """One plain sentence per verdict of a space (``SpaceResult.as_dict()``), with its numbers;
    ``inputs``: the report's input dicts (to name the input that wins without exclusion)."""
    t = templates()["verdicts"]
    m = space["measurements"]
    without = space["without_exclusion"]
    out = []
    for verdict in space["verdicts"]:
        if verdict == "input":
            out.append(t["input"].format(role=without["winner"], name=_winner_name(without, inputs), **_ranks(without)))
        elif verdict == "only-c" and _right_only_c(space):
            # right, and so is ONLY-C: the numbers cannot say whether the offset helped, or did nothing
            out.append(t["only-c_expected"].format(score=fmt(space["baselines"][verdict]["score"]),
                                                   ground_truth=" ".join(ground_truth_lines(space))))
        elif verdict in ("only-c", "ignore-a"):
            out.append(t[verdict].format(score=fmt(space["baselines"][verdict]["score"])))
        elif verdict == "near-duplicate":
            out.append(t["near-duplicate"].format(cos_answer_c=fmt(m.get("cos_answer_c")),
                                                  threshold=fmt(m.get("near_duplicate_threshold"))))
        elif verdict == "genuine":
            out.append(t["genuine"].format(cos_answer_c=fmt(m.get("cos_answer_c"))))
        else:
            out.append(t["unknown"].format(verdict=verdict))
    return out


def ground_truth_lines(space: dict) -> list[str]:
    """Right or wrong, when the gallery knows (:func:`pipeline.ground_truth.ground_truth_sentences`
    of an explained space's ``expected``); [] when it does not."""
    expected = space.get("expected")
    if not expected:
        return []
    only_c = space["baselines"].get("only-c")
    names = dict(zip(expected["ids"], expected.get("paths") or []))
    return ground_truth_sentences(expected, space_name(space["space"]).capitalize(), names,
                                  only_c["path"] if only_c else None)


def why_sentences(space: dict, ground_truth: bool = True) -> list[str]:
    """What an explained space (``SpaceResult.as_dict()`` with the fields of
    :func:`pipeline.insight.space_insight`) adds in words: the offset named, right or wrong (with
    ``ground_truth``), the calibrated near-duplicate threshold; [] before insight."""
    out = []
    if space.get("offset_terms"):
        out.append(space["offset_terms"]["sentence"])
    if ground_truth:
        out += ground_truth_lines(space)
    if space.get("near_duplicate_calibration"):
        out.append(threshold_sentence(space["near_duplicate_calibration"], space_name(space["space"])))
    return out


def _right_only_c(space: dict) -> bool:
    """The answer is ONLY-C's and the expected one (the only-c verdict then says right or wrong)."""
    return "only-c" in space["verdicts"] and bool((space.get("expected") or {}).get("correct"))


def space_message(space: dict, inputs: list[dict], text: dict | None = None) -> str:
    """Messages 2 and 3: one space's answer, its verdicts explained, the offset's size and
    consistency, whether the answer is C's nearest neighbour, and which input wins without exclusion.
    ``space`` is ``SpaceResult.as_dict()``; ``text`` the report's text answer (caption space)."""
    t = templates()["messages"]
    m = space["measurements"]
    without = space["without_exclusion"]
    head = t["space_title"].format(space_name=space_name(space["space"]).capitalize(), space=space["space"],
                                   method=space["method"], exclusion=exclusion_word(space["exclude"]))
    blocks, parts = [], []  # blocks: markdown paragraphs or lists; parts: sentences of one paragraph
    if not space["results"]:
        blocks.append(head + t["no_answer"])
    else:
        top = space["results"][0]
        answer = head + t["answer"].format(ref=item_ref(top), score=fmt(top["score"]))
        if top.get("caption"):
            answer += t["answer_caption"].format(caption=top["caption"])
        blocks.append(answer)
        blocks.append("\n".join([t["verdicts_intro"]] + [t["verdict_item"].format(sentence=s)
                                                          for s in verdict_sentences(space, inputs)]))
        why = why_sentences(space, ground_truth=not _right_only_c(space))
        if why:
            blocks.append(" ".join(why))
        small = m.get("offset_relative") is not None and m["offset_relative"] < templates()["offset_small_below"]
        parts.append(t["offset"].format(offset_norm=fmt(m.get("offset_norm")), offset_relative=fmt(m.get("offset_relative")),
                                        typical_nn_distance=fmt(m.get("typical_nn_distance")),
                                        offset_comment=t["offset_small"] if small else t["offset_large"],
                                        offset_consistency=fmt(m.get("offset_consistency")),
                                        cos_answer_c=fmt(m.get("cos_answer_c"))))
        only_c = space["baselines"].get("only-c")
        if only_c is None:
            parts.append(t["nearest_c_none"])
        elif only_c["id"] == top["id"]:
            parts.append(t["nearest_c_yes"].format(score=fmt(only_c["score"])))
        else:
            parts.append(t["nearest_c_no"].format(ref=item_ref(only_c), score=fmt(only_c["score"])))
    if without.get("winner"):
        parts.append(t["winner_input"].format(role=without["winner"], name=_winner_name(without, inputs), **_ranks(without)))
    else:
        parts.append(t["winner_none"].format(**_ranks(without)))
    blocks.append(" ".join(parts))
    parts = []
    if space["space"] == "caption":
        if "repeats_c" in m and space["results"]:
            if m["repeats_c"]:
                parts.append(t["repeats_c_yes"].format(caption=space["results"][0].get("caption"),
                                                       what=m.get("repeats_c_what"), phrase=m.get("repeats_c_phrase")))
            else:
                parts.append(t["repeats_c_no"])
        if text:
            parts.append(t["text_answer"].format(text=text["text"], source=text["source"], score=fmt(text["score"]),
                                                 n_classes=text["vocabulary"]["imagenet_classes"],
                                                 n_captions=text["vocabulary"]["gallery_captions"]))
    if parts:
        blocks.append(" ".join(parts))
    return "\n\n".join(blocks)


def word_space_message(word: dict | None, inputs: list[dict]) -> str:
    """Message 4: word space (``report.as_dict()["word_space"]``, None without GloVe): each input's
    words and where they come from, the free word analogy over GloVe's vocabulary, then the answer
    among the gallery's items as in the other spaces (:func:`space_message`)."""
    t = templates()["messages"]
    if word is None:
        return t["no_word_space"]
    lines = [t["word_title"]]
    for i in word["inputs"]:
        missing = t["word_missing"].format(missing=", ".join(i["missing"])) if i["missing"] else ""
        source = t["word_sources"].get(i["source"], i["source"])
        known = t["word_separator"].join(i["words"]) or t["word_none_known"]
        lines.append(t["word_input"].format(role=i["role"], text=i["text"], source=source, words=known, missing=missing))
    if word["missing_inputs"]:
        return "\n".join(lines + ["", t["word_no_answer"].format(roles=", ".join(word["missing_inputs"]))])
    blocks = ["\n".join(lines)]
    a, b = word["inputs"][0], word["inputs"][1]
    if a["words"] == b["words"]:
        blocks.append(t["word_same_offset"].format(text=t["word_separator"].join(a["words"])))
    answer = word["word_answer"]
    without = answer["without_exclusion"]
    who = t["word_who_input"].format(role=without["winner"]) if without["winner"] else t["word_who_other"]
    blocks.append(t["word_answer"].format(vocab_size=f"{answer['vocab_size']:,}", word=answer["word"] or "-",
                                          score=fmt(answer["score"]), without=without["word"], who=who))
    blocks.append(space_message(word, inputs))
    return "\n\n".join(blocks)


def agreement_summary(agreement: dict, image_space: dict, caption_space: dict | None,
                      word: dict | None = None) -> str:
    """The sentences about how the spaces' answers compare (``report.agreement["summary"]``).

    ``agreement``: :func:`pipeline.agreement.space_agreement`'s dict; ``image_space``,
    ``caption_space``: ``SpaceResult.as_dict()`` (caption_space None when the gallery has no captions);
    ``word``: :func:`pipeline.agreement.word_agreement`'s dict (None without word space).
    """
    t = templates()["agreement"]
    if caption_space is None:
        return t["unavailable"].format(why=t["no_caption_space"])
    if agreement["same_item"] is None:
        return t["unavailable"].format(why=t["no_answer"])
    sentences = _image_caption_sentences(agreement, image_space, caption_space)
    if word is not None:
        sentences.append(word_agreement_sentence(word))
    return " ".join(s for s in sentences if s)


def word_agreement_sentence(word: dict) -> str:
    """Where word space's answer stands against image and caption space's (``word``:
    :func:`pipeline.agreement.word_agreement`'s dict); "" when word space has no answer."""
    t = templates()["agreement"]
    if word["all_same_item"]:
        return t["word_all_same"]
    pairs = []
    for key, space in (("image_word", "image"), ("caption_word", "caption")):
        pair = word[key]
        if pair is None:
            continue
        name = space_name(space)
        if pair["same_item"]:
            pairs.append(t["word_pair_same"].format(space=name))
        else:
            label = {True: t["word_pair_label_same"], False: t["word_pair_label_other"]}.get(pair["same_label"], "")
            pairs.append(t["word_pair_other"].format(space=name, label=label))
    return t["word_pairs"].format(pairs=t["word_pair_separator"].join(pairs)) if pairs else ""


def _image_caption_sentences(agreement: dict, image_space: dict, caption_space: dict) -> list[str]:
    """:func:`agreement_summary`'s sentences about image and caption space (both have an answer)."""
    t = templates()["agreement"]
    image_hit, caption_hit = image_space["results"][0], caption_space["results"][0]
    sentences = []
    if agreement["same_item"]:
        sentences.append(t["same_item_yes"].format(ref=item_ref(image_hit)))
    else:
        sentences.append(t["same_item_no"].format(image_ref=item_ref(image_hit), caption_ref=item_ref(caption_hit)))
    if agreement["same_label"] is True:
        sentences.append(t["same_label_yes"].format(label=image_hit["label"]))
    elif agreement["same_label"] is False:
        sentences.append(t["same_label_no"].format(image_label=image_hit["label"], caption_label=caption_hit["label"]))
    else:
        sentences.append(t["same_label_na"])
    overlap = agreement["top_k_overlap"]
    common = overlap["common_ids"]
    ids = t["overlap_ids"].format(ids=t["overlap_id_separator"].join(t["overlap_id"].format(id=i) for i in common)) \
        if common else ""
    sentences.append(t["overlap"].format(k=overlap["k"], common=len(common), measure=fmt(overlap["measure"]), ids=ids))
    if agreement["caption_similarity"] is not None and not agreement["same_item"]:
        sentences.append(t["caption_similarity"].format(similarity=fmt(agreement["caption_similarity"]),
                                                        image_caption=image_hit["caption"],
                                                        caption_caption=caption_hit["caption"]))
    return sentences


def without_exclusion_message(data: dict) -> str:
    """Message 5: what each space would answer with nothing excluded, and the inputs' ranks
    (``data``: ``report.as_dict()``)."""
    t = templates()["messages"]
    lines = [t["without_title"]]
    for key in ("image_space", "caption_space", "word_space"):
        space = data.get(key)
        if space is None or space["without_exclusion"] is None:  # no space, or no answer in it
            continue
        without = space["without_exclusion"]
        name = space_name(space["space"]).capitalize()
        if without.get("winner"):
            lines.append(t["without_input"].format(space_name=name, role=without["winner"],
                                                   name=_winner_name(without, data["inputs"]), **_ranks(without)))
        else:
            top = without.get("top")
            ref = item_ref(top) if isinstance(top, dict) else str(top)
            score = top.get("score") if isinstance(top, dict) else None
            lines.append(t["without_other"].format(space_name=name, ref=ref, score=fmt(score), **_ranks(without)))
    return "\n".join(lines)


def explanation(data: dict) -> list[dict]:
    """The explanation of a report (``data``: ``report.as_dict()``, its text answer and agreement
    filled in) as chat messages ``[{"role": "assistant", "content": markdown}]``: (1) what the models
    see in A, B, C; (2) the image-space answer and its verdicts; (3) the caption-space answer, its
    verdicts, the lexical check and the text answer; (4) word space (when the report has it); (5)
    agreement; (6) what each space would answer without exclusion."""
    t = templates()["messages"]
    contents = [inputs_message(data), space_message(data["image_space"], data["inputs"])]
    if data["caption_space"] is not None:
        contents.append(space_message(data["caption_space"], data["inputs"], data.get("text_answer")))
    else:
        contents.append(t["no_caption_space"])
    if "word_space" in data:
        contents.append(word_space_message(data["word_space"], data["inputs"]))
    if data.get("agreement"):
        contents.append(t["agreement_title"] + data["agreement"]["summary"])
    contents.append(without_exclusion_message(data))
    return [{"role": "assistant", "content": c} for c in contents]
