"""The explainer: plain words, with the numbers, about an analogy report. Pure code over result objects.

Everything the user reads comes from the templates in ``prompts/explain.json`` (data, not code), and
every number in the text is formatted (``number_format``) from the value that ``report.as_dict()``
puts in the JSON, so the text and the JSON always carry the same numbers.

Public API:

* :func:`complete_report` (explorer, report) -> None: fills ``report.text_answer``,
  ``report.agreement`` and ``report.explanation``, adds the caption-space lexical check
  (``caption_space.measurements["repeats_c"]``) and records the near-duplicate threshold used
  (``measurements["near_duplicate_threshold"]``) in each space. Called by ``Explorer.analogy``.
* :func:`text_answer` (explorer, inputs, method) -> dict | None: the caption-space query answered in
  words, the nearest sentence in a vocabulary of ImageNet class captions and the gallery's captions.
* :func:`agreement` (report, gallery) -> dict: how the two spaces' answers compare.
* :func:`repeats_c` (answer caption, C's caption, C's label) -> (what, phrase) | None: the lexical check.
* :func:`explanation` (report) -> list of chat messages ``{"role": "assistant", "content": markdown}``.
* :func:`answer_question` (explorer, report, question) -> (reply markdown, report): follow-up questions,
  matched to the intents listed in ``prompts/explain.json`` (:func:`match_intent`), re-running the
  pipeline (``explorer.analogy(..., explain=False)``) where the answer needs another method, layer,
  k or exclusion setting.
"""
from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from . import vectors as vec
from .config import LAYERS, PROMPTS_DIR
from .storage import CacheError, read_array, read_json, write_array, write_json
from .errors import RerunImpossible

TEMPLATES_PATH = PROMPTS_DIR / "explain.json"
ROLES = ("A", "B", "C")


@lru_cache(maxsize=1)
def templates() -> dict:
    """The parsed ``prompts/explain.json`` (see its ``_doc`` key)."""
    return json.loads(TEMPLATES_PATH.read_text(encoding="utf-8"))


def fmt(x) -> str:
    """A number as the explainer writes it (``number_format``, e.g. 0.123456 -> "0.123")."""
    if x is None:
        return "?"
    if isinstance(x, (bool, str)):
        return str(x)
    return templates()["number_format"].format(x)


def _r6(x: float) -> float:
    """Rounded as :meth:`pipeline.analogy.Hit.as_dict` rounds floats for the JSON."""
    return round(float(x), 6)


# --- references to items ------------------------------------------------------------------------


def _item_ref(hit: dict) -> str:
    """``#12 cats/tabby.jpg (tabby)`` from a hit dict (``Hit.as_dict()``)."""
    t = templates()["messages"]
    if hit.get("label"):
        return t["item_ref_label"].format(id=hit["id"], path=hit["path"], label=hit["label"])
    return t["item_ref"].format(id=hit["id"], path=hit["path"])


def _input_ref(inp: dict) -> str:
    """An input (``AnalogyInput.as_dict()``): ``#id name`` for gallery items, else its name."""
    if inp.get("id") is None:
        return str(inp["name"])
    return templates()["messages"]["item_ref"].format(id=inp["id"], path=inp["name"])


def _space_name(space: str) -> str:
    return templates()["spaces"]["caption" if space == "caption" else "image"]


def _exclusion_word(exclude: bool) -> str:
    t = templates()["messages"]
    return t["exclusion_on"] if exclude else t["exclusion_off"]


# --- lexical check ------------------------------------------------------------------------------


def _contains_phrase(text: str, phrase: str) -> bool:
    """Case-insensitive whole-word (word-boundary) occurrence of ``phrase`` in ``text``."""
    phrase = " ".join(phrase.split())
    if not phrase:
        return False
    pattern = r"(?<!\w)" + r"\s+".join(re.escape(w) for w in phrase.split(" ")) + r"(?!\w)"
    return re.search(pattern, text, flags=re.IGNORECASE) is not None


def repeats_c(answer_caption: str | None, c_caption: str | None, c_label: str | None) -> tuple[str, str] | None:
    """The caption-space lexical cheat: does the answer's caption repeat C's caption or C's label?

    Returns ``("caption", C's caption)`` or ``("label", C's label)`` for the first that the answer's
    caption contains (case-insensitive, on word boundaries), else None.
    """
    if not answer_caption:
        return None
    for what, phrase in (("caption", c_caption), ("label", c_label)):
        if phrase and _contains_phrase(answer_caption, phrase):
            return what, phrase
    return None


def lexical_check(space_result, c_input) -> dict:
    """Measurements of the lexical check for a caption-space :class:`SpaceResult`:
    ``repeats_c`` (bool), ``repeats_c_what`` ("caption" | "label" | None), ``repeats_c_phrase``."""
    top = space_result.top
    found = repeats_c(top.caption if top else None, c_input.caption, c_input.label)
    return {"repeats_c": found is not None, "repeats_c_what": found[0] if found else None,
            "repeats_c_phrase": found[1] if found else None}


# --- the text answer ----------------------------------------------------------------------------

_VOCABULARY_MEMORY: dict[tuple[str, str, str], tuple[list[str], np.ndarray]] = {}
_LOCK = threading.Lock()
_CLASS_LOCK = threading.Lock()


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:80]


def _norm_text(text: str) -> str:
    return " ".join(text.lower().split())


def class_caption_texts(labels_captioner) -> list[str]:
    """The 1,000 ImageNet class names as captions, worded as the labels captioner words a confident
    prediction ("a photo of a tiger cat"), in class order, duplicates (two "crane"s) removed."""
    from .labels import imagenet_classes

    texts = [labels_captioner.caption_one([(c.name, 1.0)]) for c in imagenet_classes()]
    return list(dict.fromkeys(texts))


def class_vocabulary(models, cache_dir: Path, text_model: str) -> tuple[list[str], np.ndarray]:
    """ImageNet class captions and their sentence embeddings ``(M, D)`` float32, L2-normalised.

    Computed once per text model (and wording): cached in memory and on disk under
    ``<cache_dir>/vocabulary/`` (``.npy`` with its SHA-256 in a ``.json`` beside it; a damaged file is
    recomputed, an unwritable cache only costs recomputing next time).
    """
    texts = class_caption_texts(models.labels_captioner)
    digest = hashlib.sha256(("\n".join(texts) + "\n" + text_model).encode()).hexdigest()
    key = (str(cache_dir), text_model, digest)
    with _CLASS_LOCK:  # one thread embeds, the others wait for its result
        if key not in _VOCABULARY_MEMORY:
            _VOCABULARY_MEMORY[key] = _load_or_embed(models, Path(cache_dir), text_model, texts, digest)
        return _VOCABULARY_MEMORY[key]


def _load_or_embed(models, cache_dir: Path, text_model: str, texts: list[str], digest: str):
    """(texts, (M, D) float32 normalised vectors) from the disk cache, else embedded and saved."""
    base = cache_dir / "vocabulary" / f"imagenet-classes-{_safe(text_model)}-{digest[:16]}"
    vectors = None
    try:
        meta = read_json(base.with_suffix(".json"))
        cached = read_array(base.with_suffix(".npy"), meta["sha256"], mmap=False)
        if meta.get("texts") == texts and cached.shape[0] == len(texts):
            vectors = cached
    except (CacheError, KeyError, TypeError):
        vectors = None
    if vectors is None:
        vectors = np.asarray(models.embed_texts(texts), dtype=np.float32)
        try:
            checksum = write_array(base.with_suffix(".npy"), vectors)
            write_json(base.with_suffix(".json"), {"texts": texts, "sha256": checksum, "text_model": text_model})
        except CacheError:
            pass
    return texts, vec.l2_normalize(vectors)


@dataclass
class Vocabulary:
    """The text answer's vocabulary for one gallery's captions: ImageNet class captions first
    (positions 0..M-1), then the gallery's captions that are not already there (positions M..M+G-1),
    deduplicated case-insensitively.

    class_texts: M texts; class_vectors: (M, D) float32 L2-normalised; gallery_rows: (G,) int64, the
    gallery item whose caption sits at position M + g (the first item with that text); positions:
    normalised text -> position.
    """

    class_texts: list[str]
    class_vectors: np.ndarray
    gallery_rows: np.ndarray
    positions: dict[str, int]

    def __len__(self) -> int:
        return len(self.class_texts) + len(self.gallery_rows)

    def text(self, gallery, position: int) -> str:
        n = len(self.class_texts)
        return self.class_texts[position] if position < n else gallery.captions.texts[int(self.gallery_rows[position - n])]

    def source(self, position: int) -> str:
        names = templates()["vocabulary"]["sources"]
        return names["class"] if position < len(self.class_texts) else names["caption"]


_GALLERY_VOCABULARY: dict[int, tuple[object, tuple, Vocabulary]] = {}


def vocabulary(explorer, gallery) -> Vocabulary:
    """The :class:`Vocabulary` of a gallery with captions (cached in memory per captions object)."""
    class_texts, class_vectors = class_vocabulary(explorer.models, explorer.settings.cache_dir,
                                                  gallery.captions.text_model)
    key = (id(class_vectors), len(class_texts))
    with _LOCK:
        entry = _GALLERY_VOCABULARY.get(id(gallery.captions))
        if entry is not None and entry[0] is gallery.captions and entry[1] == key:
            return entry[2]
    positions = {_norm_text(t): i for i, t in enumerate(class_texts)}
    rows = []
    for row, text in enumerate(gallery.captions.texts):
        norm = _norm_text(text)
        if norm not in positions:
            positions[norm] = len(class_texts) + len(rows)
            rows.append(row)
    result = Vocabulary(class_texts, class_vectors, np.asarray(rows, dtype=np.int64), positions)
    with _LOCK:
        if len(_GALLERY_VOCABULARY) >= 8:
            _GALLERY_VOCABULARY.clear()
        _GALLERY_VOCABULARY[id(gallery.captions)] = (gallery.captions, key, result)
    return result


def text_answer(explorer, inputs, method: str) -> dict | None:
    """The caption-space query answered in words.

    The caption vectors (D,) of A, B, C score every sentence of the :func:`vocabulary` with
    ``method`` (the same formula as the gallery's caption space; gallery captions are scored from the
    caption index, so nothing big is copied); sentences equal to an input's caption are left out.
    Returns ``{"text", "source": "imagenet class" | "gallery caption", "score", "top": [{"text",
    "source", "score"}, ...], "method", "vocabulary": {"imagenet_classes": M, "gallery_captions": G}}``,
    or None when the gallery has no captions.
    """
    gallery = explorer.require_gallery()
    if gallery.captions is None or any("caption" not in inp.vectors for inp in inputs):
        return None
    vocab = vocabulary(explorer, gallery)
    a, b, c = (inp.vectors["caption"] for inp in inputs)
    sims = np.concatenate([vec.input_similarities(vocab.class_vectors, a, b, c),
                           gallery.index("caption").similarities(np.stack([a, b, c]), vocab.gallery_rows)])
    scores = vec.method_scores(sims, vec.gram_matrix(a, b, c), method, explorer.settings.cosmul_eps)
    excluded = {vocab.positions[_norm_text(inp.caption)] for inp in inputs
                if inp.caption and _norm_text(inp.caption) in vocab.positions}
    ids, values = vec.top_k(scores, int(templates()["text_answer_top_k"]), exclude=sorted(excluded))
    if len(ids) == 0:
        return None
    top = [{"text": vocab.text(gallery, int(i)), "source": vocab.source(int(i)), "score": _r6(v)}
           for i, v in zip(ids, values)]
    return {"text": top[0]["text"], "source": top[0]["source"], "score": top[0]["score"], "top": top,
            "method": method, "vocabulary": {"imagenet_classes": len(vocab.class_texts),
                                             "gallery_captions": len(vocab.gallery_rows)}}


# --- agreement ----------------------------------------------------------------------------------


def knn_intersection(ids1: list[int], ids2: list[int], k: int) -> tuple[float, list[int]]:
    """faiss ``knn_intersection_measure`` for one query: |top-k(1) ∩ top-k(2)| / k, and the common ids
    in the order of ``ids1``."""
    if k <= 0:
        return 0.0, []
    second = set(ids2[:k])
    common = [i for i in ids1[:k] if i in second]
    return len(common) / k, common


def agreement(report, gallery) -> dict:
    """How the image-space and caption-space answers compare.

    Returns ``{"same_item": bool, "same_label": bool | None (None where the gallery or the answers
    have no labels), "top_k_overlap": {"k", "measure", "common_ids"}, "caption_similarity": cos of the
    two answers' caption vectors, "image_answer": id, "caption_answer": id, "summary": str}``; the
    fields are None (and the summary says why) when there is no caption space or no answer.
    """
    t = templates()["agreement"]
    empty = {"same_item": None, "same_label": None, "top_k_overlap": None, "caption_similarity": None,
             "image_answer": None, "caption_answer": None}
    if report.caption_space is None:
        return {**empty, "summary": t["unavailable"].format(why=t["no_caption_space"])}
    image_top, caption_top = report.image_space.top, report.caption_space.top
    if image_top is None or caption_top is None:
        return {**empty, "summary": t["unavailable"].format(why=t["no_answer"])}
    same_item = image_top.id == caption_top.id
    same_label = None
    if gallery.labelled and image_top.label and caption_top.label:
        same_label = image_top.label == caption_top.label
    k = min(len(report.image_space.results), len(report.caption_space.results))
    measure, common = knn_intersection([h.id for h in report.image_space.results],
                                       [h.id for h in report.caption_space.results], k)
    similarity = None
    if gallery.captions is not None:
        caption_vectors = gallery.vectors("caption")
        similarity = _r6(np.clip(np.dot(caption_vectors[image_top.id], caption_vectors[caption_top.id]), -1, 1))
    result = {"same_item": same_item, "same_label": same_label,
              "top_k_overlap": {"k": k, "measure": _r6(measure), "common_ids": common},
              "caption_similarity": similarity, "image_answer": image_top.id, "caption_answer": caption_top.id}
    image_hit, caption_hit = image_top.as_dict(), caption_top.as_dict()
    sentences = []
    if same_item:
        sentences.append(t["same_item_yes"].format(ref=_item_ref(image_hit)))
    else:
        sentences.append(t["same_item_no"].format(image_ref=_item_ref(image_hit), caption_ref=_item_ref(caption_hit)))
    if same_label is True:
        sentences.append(t["same_label_yes"].format(label=image_top.label))
    elif same_label is False:
        sentences.append(t["same_label_no"].format(image_label=image_top.label, caption_label=caption_top.label))
    else:
        sentences.append(t["same_label_na"])
    ids = t["overlap_ids"].format(ids=", ".join(f"#{i}" for i in common)) if common else ""
    sentences.append(t["overlap"].format(k=k, common=len(common), measure=fmt(result["top_k_overlap"]["measure"]), ids=ids))
    if similarity is not None and not same_item:
        sentences.append(t["caption_similarity"].format(similarity=fmt(similarity), image_caption=image_top.caption,
                                                        caption_caption=caption_top.caption))
    result["summary"] = " ".join(s for s in sentences if s)
    return result


# --- the explanation ----------------------------------------------------------------------------


def _labels_text(inp: dict, n: int) -> str:
    t = templates()["messages"]
    return t["label_separator"].join(t["label_score"].format(name=l["name"], probability=fmt(l["probability"]))
                                     for l in inp["top_labels"][:n])


def inputs_message(data: dict, n_labels: int = 3) -> str:
    """Message 1: what the classifier and the captioner see in A, B, C (from ``report.as_dict()``)."""
    t = templates()["messages"]
    gallery = data.get("gallery") or {}
    lines = [t["inputs_title"].format(backbone=gallery.get("backbone"), items=gallery.get("items"))]
    for inp in data["inputs"]:
        ref = _input_ref(inp) + (t["gallery_label"].format(label=inp["label"]) if inp.get("label") else "")
        if inp.get("caption"):
            lines.append(t["input_line"].format(role=inp["role"], ref=ref, labels=_labels_text(inp, n_labels),
                                                captioner=inp.get("captioner"), caption=inp["caption"]))
        else:
            lines.append(t["input_line_no_caption"].format(role=inp["role"], ref=ref, labels=_labels_text(inp, n_labels)))
    text = "\n".join(lines)
    if gallery.get("caption_announcement"):
        text += "\n\n" + t["caption_announcement"].format(announcement=gallery["caption_announcement"])
    return text


def _ranks(without: dict) -> dict:
    ranks = without.get("input_ranks") or {}
    return {"rank_a": ranks.get("A"), "rank_b": ranks.get("B"), "rank_c": ranks.get("C")}


def _winner_name(without: dict, inputs: list[dict]) -> str | None:
    """The input that wins without exclusion, as a reference (``#id path`` or its name)."""
    role = without.get("winner")
    if role is None:
        return None
    return _input_ref(inputs[ROLES.index(role)])


def verdict_sentences(space: dict, inputs: list[dict]) -> list[str]:
    """One plain sentence per verdict of a space (``SpaceResult.as_dict()``), with its numbers."""
    t = templates()["verdicts"]
    m = space["measurements"]
    without = space["without_exclusion"]
    out = []
    for verdict in space["verdicts"]:
        if verdict == "input":
            out.append(t["input"].format(role=without["winner"], name=_winner_name(without, inputs), **_ranks(without)))
        elif verdict in ("only-c", "ignore-a"):
            out.append(t[verdict].format(score=fmt(space["baselines"][verdict]["score"])))
        elif verdict == "near-duplicate":
            if m.get("near_duplicate_threshold") is not None:
                out.append(t["near-duplicate"].format(cos_answer_c=fmt(m.get("cos_answer_c")),
                                                      threshold=fmt(m["near_duplicate_threshold"])))
            else:
                out.append(t["near-duplicate-no-threshold"].format(cos_answer_c=fmt(m.get("cos_answer_c"))))
        elif verdict == "genuine":
            out.append(t["genuine"].format(cos_answer_c=fmt(m.get("cos_answer_c"))))
        else:
            out.append(t["unknown"].format(verdict=verdict))
    return out


def space_message(space: dict, inputs: list[dict], text: dict | None = None) -> str:
    """Messages 2 and 3: one space's answer, its verdicts explained, the offset's size and
    consistency, whether the answer is C's nearest neighbour, and which input wins without exclusion.
    ``space`` is ``SpaceResult.as_dict()``; ``text`` the report's text answer (caption space)."""
    t = templates()["messages"]
    m = space["measurements"]
    without = space["without_exclusion"]
    head = t["space_title"].format(space_name=_space_name(space["space"]).capitalize(), space=space["space"],
                                   method=space["method"], exclusion=_exclusion_word(space["exclude"]))
    blocks, parts = [], []  # blocks: markdown paragraphs or lists; parts: sentences of one paragraph
    if not space["results"]:
        blocks.append(head + t["no_answer"])
    else:
        top = space["results"][0]
        answer = head + t["answer"].format(ref=_item_ref(top), score=fmt(top["score"]))
        if top.get("caption"):
            answer += t["answer_caption"].format(caption=top["caption"])
        blocks.append(answer)
        blocks.append("\n".join([t["verdicts_intro"]] + [t["verdict_item"].format(sentence=s)
                                                          for s in verdict_sentences(space, inputs)]))
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
            parts.append(t["nearest_c_no"].format(ref=_item_ref(only_c), score=fmt(only_c["score"])))
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


def without_exclusion_message(data: dict) -> str:
    """Message 5: what each space would answer with nothing excluded, and the inputs' ranks."""
    t = templates()["messages"]
    lines = [t["without_title"]]
    for key in ("image_space", "caption_space"):
        space = data.get(key)
        if space is None:
            continue
        without = space["without_exclusion"]
        name = _space_name(space["space"]).capitalize()
        if without.get("winner"):
            lines.append(t["without_input"].format(space_name=name, role=without["winner"],
                                                   name=_winner_name(without, data["inputs"]), **_ranks(without)))
        else:
            top = without.get("top")
            ref = _item_ref(top) if isinstance(top, dict) else str(top)
            score = top.get("score") if isinstance(top, dict) else None
            lines.append(t["without_other"].format(space_name=name, ref=ref, score=fmt(score), **_ranks(without)))
    return "\n".join(lines)


def explanation(report) -> list[dict]:
    """The explanation as chat messages ``[{"role": "assistant", "content": markdown}]``:
    (1) what the models see in A, B, C; (2) the image-space answer and its verdicts; (3) the
    caption-space answer, its verdicts, the lexical check and the text answer; (4) agreement;
    (5) what each space would answer without exclusion. Every number and name comes from
    ``report.as_dict()``."""
    data = report.as_dict()
    t = templates()["messages"]
    contents = [inputs_message(data), space_message(data["image_space"], data["inputs"])]
    if data["caption_space"] is not None:
        contents.append(space_message(data["caption_space"], data["inputs"], data.get("text_answer")))
    else:
        contents.append(t["no_caption_space"])
    if data.get("agreement"):
        contents.append(t["agreement_title"] + data["agreement"]["summary"])
    contents.append(without_exclusion_message(data))
    return [{"role": "assistant", "content": c} for c in contents]


def complete_report(explorer, report) -> None:
    """Fill ``report.text_answer``, ``report.agreement`` and ``report.explanation`` (in place).

    Also records in each space's measurements the ``near_duplicate_threshold`` the verdicts used
    (from the explorer's settings), and in caption space the lexical check (:func:`lexical_check`).
    """
    gallery = explorer.require_gallery()
    for space in (report.image_space, report.caption_space):
        if space is not None:
            space.measurements.setdefault("near_duplicate_threshold", float(explorer.settings.near_duplicate_threshold))
    if report.caption_space is not None:
        report.caption_space.measurements.update(lexical_check(report.caption_space, report.inputs[2]))
        report.text_answer = text_answer(explorer, report.inputs, report.method)
    else:
        report.text_answer = None
    report.agreement = agreement(report, gallery)
    report.explanation = explanation(report)


# --- follow-up questions ------------------------------------------------------------------------


def match_intent(question: str) -> str | None:
    """The name of the first intent of ``prompts/explain.json`` whose pattern occurs in ``question``."""
    for intent in templates()["intents"]:
        if any(re.search(p, question, flags=re.IGNORECASE) for p in intent["patterns"]):
            return intent["name"]
    return None


def capabilities() -> str:
    """The list of follow-ups the explainer answers, one line each."""
    t = templates()["replies"]
    return "\n".join(t["capability"].format(description=i["description"], example=i["example"])
                     for i in templates()["intents"])


def _rerun(explorer, report, **changes):
    """The same question through ``explorer.analogy(..., explain=False)`` with some parameters changed."""
    refs = []
    for inp in report.inputs:
        if inp.item_id is not None:
            refs.append(inp.item_id)
        elif inp.source and Path(inp.source).is_file():
            refs.append(inp.source)
        else:
            raise RerunImpossible(templates()["replies"]["rerun_impossible"].format(role=inp.role, name=inp.name))
    params = {"method": report.method, "layer": report.layer, "exclude": report.exclude, "top_k": report.top_k}
    params.update(changes)
    return explorer.analogy(refs, explain=False, **params)


def _roles_in(question: str) -> list[str]:
    """Inputs named in a question: capital A/B/C as words, or 'image c' / 'input b' in any case."""
    roles = set(re.findall(r"\b([ABC])\b", question))
    roles |= {r.upper() for r in re.findall(r"\b(?:image|input|picture|photo)\s+([abc])\b", question, flags=re.IGNORECASE)}
    return [r for r in ROLES if r in roles] or list(ROLES)


def _spaces_in(question: str, data: dict) -> list[dict]:
    """The spaces a question is about ('caption' / 'image' in it), else both (that exist)."""
    wants_caption = re.search(r"\bcaptions?\b", question, flags=re.IGNORECASE) is not None
    wants_image = re.search(r"\bimage\b|\bconvnet\b|\bactivations?\b", question, flags=re.IGNORECASE) is not None
    spaces = []
    if wants_image or not wants_caption:
        spaces.append(data["image_space"])
    if (wants_caption or not wants_image) and data.get("caption_space") is not None:
        spaces.append(data["caption_space"])
    return spaces


def _top_rows(space: dict, k: int) -> str:
    """A markdown block: the space's name, then its top k answers as a numbered list."""
    t = templates()["replies"]
    rows = [t["top_space"].format(space_name=_space_name(space["space"]).capitalize())]
    for rank, hit in enumerate(space["results"][:k], start=1):
        template = t["top_row_caption"] if hit.get("caption") else t["top_row"]
        rows.append(template.format(rank=rank, ref=_item_ref(hit), score=fmt(hit["score"]), caption=hit.get("caption")))
    if not space["results"]:
        rows.append(t["top_none"])
    return "\n".join(rows)


def _reply_help(explorer, report, question):
    return templates()["replies"]["help"].format(capabilities=capabilities()), report


def _reply_why(explorer, report, question):
    data = report.as_dict()
    t = templates()["replies"]
    lines = [t["why_title"].format(method=report.method, layer=report.layer)]
    for space in _spaces_in(question, data):
        text = data.get("text_answer") if space["space"] == "caption" else None
        lines.append(space_message(space, data["inputs"], text))
    return "\n\n".join(lines), report


def _reply_top_k(explorer, report, question):
    t = templates()["replies"]
    match = re.search(r"\btop[\s-]*(\d+)", question, flags=re.IGNORECASE) or re.search(r"\b(\d+)\b", question)
    k = int(match.group(1)) if match else report.top_k
    k = max(1, min(k, int(templates()["max_top_k"])))
    if k > report.top_k:
        report = _rerun(explorer, report, top_k=k)
        complete_report(explorer, report)
    data = report.as_dict()
    lines = [t["top_title"].format(k=k, method=report.method, layer=report.layer,
                                   exclusion=_exclusion_word(report.exclude))]
    for space in _spaces_in(question, data):
        lines.append(_top_rows(space, k))
    return "\n\n".join(lines), report


def _reply_without_exclusion(explorer, report, question):
    """A look-aside: re-run with nothing excluded; the current report stays the current one."""
    t = templates()["replies"]
    other = _rerun(explorer, report, exclude=False)
    complete_report(explorer, other)
    data = other.as_dict()
    lines = [t["without_title"].format(method=other.method, layer=other.layer)]
    for space in _spaces_in(question, data):
        lines.append(_top_rows(space, other.top_k))
    lines.append(without_exclusion_message(data))
    return "\n\n".join(lines), report


def _short_hit(hit: dict | None) -> str:
    return _item_ref(hit) if hit else templates()["replies"]["compare_none"]


def _reply_compare_methods(explorer, report, question):
    """A look-aside: every method and baseline, top-1 per space; the current report stays."""
    t = templates()["replies"]
    title = t["compare_title"].format(layer=report.layer, exclusion=_exclusion_word(report.exclude))
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
            image_verdicts=", ".join(image["verdicts"]) or none, caption=_short_hit(caption_top),
            caption_score=fmt(caption_top["score"]) if caption_top else none,
            caption_verdicts=", ".join(caption["verdicts"]) if caption else none))
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
        report = _rerun(explorer, report, layer=layer)
        complete_report(explorer, report)
        data = report.as_dict()
        return (t["layer_title"].format(layer=layer, method=report.method) + "\n\n"
                + space_message(data["image_space"], data["inputs"])), report
    title = t["layers_title"].format(method=report.method, exclusion=_exclusion_word(report.exclude))
    lines = [t["layers_header"]]
    none = t["compare_none"]
    for name in LAYERS:
        image = _rerun(explorer, report, layer=name).as_dict()["image_space"]
        top = image["results"][0] if image["results"] else None
        lines.append(t["layers_row"].format(layer=name, answer=_short_hit(top), score=fmt(top["score"]) if top else none,
                                            verdicts=", ".join(image["verdicts"]) or none))
    return title + "\n\n" + "\n".join(lines), report


def _reply_method(explorer, report, question):
    """Re-run with the named method and make it the current report."""
    t = templates()["replies"]
    q = question.lower().replace("pair direction", "pairdirection")
    method = next((m for m in vec.ALL_METHODS if re.search(rf"(?<![\w-]){re.escape(m)}(?![\w-])", q)), None)
    if method is None:
        return _reply_unknown(explorer, report, question)
    report = _rerun(explorer, report, method=method)
    complete_report(explorer, report)
    contents = [m["content"] for m in report.explanation[1:-1]]
    return t["method_title"].format(method=method, layer=report.layer) + "\n\n" + "\n\n".join(contents), report


def _reply_sees(explorer, report, question):
    t = templates()["replies"]
    m = templates()["messages"]
    data = report.as_dict()
    lines = [t["sees_title"]]
    for inp in data["inputs"]:
        if inp["role"] not in _roles_in(question):
            continue
        label = m["gallery_label"].format(label=inp["label"]) if inp.get("label") else ""
        template = t["sees_line"] if inp.get("caption") else t["sees_line_no_caption"]
        lines.append(template.format(role=inp["role"], ref=_input_ref(inp), labels=_labels_text(inp, 5),
                                     captioner=inp.get("captioner"), caption=inp.get("caption"), gallery_label=label))
    return "\n".join(lines), report


def _reply_agreement(explorer, report, question):
    if report.agreement is None:
        complete_report(explorer, report)
    return templates()["messages"]["agreement_title"] + report.agreement["summary"], report


def _reply_text_answer(explorer, report, question):
    t = templates()["replies"]
    if report.caption_space is not None and report.text_answer is None:
        complete_report(explorer, report)
    text = report.text_answer
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
    blocks = [t["space_details_title"].format(space_name=_space_name(space["space"]).capitalize()),
              space_message(space, data["inputs"], text), _top_rows(space, len(space["results"])), "\n".join(baselines)]
    return "\n\n".join(blocks)


def _reply_caption_space(explorer, report, question):
    return _space_details(report, "caption_space"), report


def _reply_image_space(explorer, report, question):
    return _space_details(report, "image_space"), report


def _reply_unknown(explorer, report, question):
    return templates()["replies"]["unknown"].format(question=question.strip(), capabilities=capabilities()), report


_HANDLERS = {
    "help": _reply_help, "compare_methods": _reply_compare_methods, "without_exclusion": _reply_without_exclusion,
    "top_k": _reply_top_k, "sees": _reply_sees, "layer": _reply_layer, "method": _reply_method, "why": _reply_why,
    "agreement": _reply_agreement, "text_answer": _reply_text_answer, "caption_space": _reply_caption_space,
    "image_space": _reply_image_space,
}


def answer_question(explorer, report, question: str):
    """Answer a follow-up question about ``report``: ``(reply markdown, report)``.

    The intent is matched by :func:`match_intent` (table in ``prompts/explain.json``). Answers are
    computed from the report, or from a re-run of the pipeline through ``explorer.analogy(...,
    explain=False)``. The returned report is the new one when the user switched what is asked (a
    named layer or method, a larger top k); look-asides (compare the methods or the layers, without
    exclusion) keep the current report. A question it cannot answer gets the list of what it can.
    """
    intent = match_intent(question or "")
    handler = _HANDLERS.get(intent or "", _reply_unknown)
    try:
        return handler(explorer, report, question or "")
    except RerunImpossible as exc:
        return str(exc), report
