"""Suite ``agreement``: on random triples, do image space and caption space give the same answer,
and how often does each cheat?

Each question is a seeded random triple of distinct gallery items, answered through
:meth:`pipeline.explorer.Explorer.analogy` (inputs excluded) for every image layer; the comparison of
the two spaces is :meth:`pipeline.explorer.Explorer.agreement` (same item, same label, top-k overlap,
caption similarity of the two answers: :func:`pipeline.agreement.space_agreement`), and the cheats are
the verdicts of each space (:func:`pipeline.analogy.verdicts_for`) plus caption space's lexical check
(``repeats_c`` in its measurements, :func:`pipeline.agreement.lexical_check`: the answer's caption
repeats C's caption or label).
"""
from __future__ import annotations

import time

import numpy as np

from pipeline.analogy import VERDICTS
from pipeline.errors import GalleryError
from pipeline.thresholds import gallery_calibration

from .common import SPACE_NAMES, bar, provenance, provenance_markdown, spaces_for
from .report import Report, grouped_bars, md_table, new_figure, num, pct

SUITE = "agreement"
HAS_C_LABEL = "answer has C's label"
REPEATS_C = "repeats C's caption or label"
EXTRA = ("no verdict but input", HAS_C_LABEL)


def draw_triples(n_items: int, n: int, seed: int) -> np.ndarray:
    """(n, 3) ids of distinct items per row, seeded."""
    if n_items < 4:
        raise GalleryError(f"agreement needs a gallery of at least 4 items (3 inputs and an answer); it has {n_items}")
    rng = np.random.default_rng(seed)
    return np.stack([rng.choice(n_items, size=3, replace=False) for _ in range(n)]).astype(np.int64)


def _verdict_flags(space_result, c_label) -> dict[str, bool]:
    verdicts = set(space_result.verdicts)
    top = space_result.top
    flags = {v: v in verdicts for v in VERDICTS}
    flags["no verdict but input"] = not (verdicts & {"only-c", "ignore-a", "near-duplicate"})
    flags[HAS_C_LABEL] = bool(top is not None and c_label and top.label == c_label)
    return flags


def run(explorer, args, argv=None) -> Report:
    started = time.perf_counter()
    gallery = explorer.gallery
    if gallery.captions is None:
        raise GalleryError("agreement needs caption space; build the gallery with captions")
    triples = draw_triples(len(gallery), args.questions, args.seed)
    layers = list(args.layers)
    spaces = spaces_for(layers)
    k = args.top_k
    per_layer = {layer: {"same_item": [], "same_label": [], "same_label_is_C": [], "overlap": [],
                         "caption_similarity": []} for layer in layers}
    flags = {space: {name: [] for name in (*VERDICTS, *EXTRA)} for space in spaces}
    repeats, examples = [], []
    with bar(total=len(triples) * len(layers), desc="answering triples", unit="q") as progress:
        for q, (a, b, c) in enumerate(triples):
            c_label = gallery.items[int(c)].label
            for li, layer in enumerate(layers):
                report = explorer.analogy([int(a), int(b), int(c)], method=args.method, layer=layer, exclude=True,
                                          top_k=k, explain=False)
                ag = explorer.agreement(report)
                stats = per_layer[layer]
                stats["same_item"].append(bool(ag["same_item"]))
                if ag["same_label"] is not None:
                    stats["same_label"].append(bool(ag["same_label"]))
                    stats["same_label_is_C"].append(bool(ag["same_label"]) and report.image_space.top.label == c_label)
                stats["overlap"].append(float(ag["top_k_overlap"]["measure"]))
                stats["caption_similarity"].append(float(ag["caption_similarity"]))
                for name, value in _verdict_flags(report.image_space, c_label).items():
                    flags[f"image:{layer}"][name].append(value)
                if li == 0:  # caption space does not depend on the image layer
                    for name, value in _verdict_flags(report.caption_space, c_label).items():
                        flags["caption"][name].append(value)
                    repeats.append(bool(report.caption_space.measurements["repeats_c"]))
                    if q < 5:
                        examples.append(_example(report, ag, gallery))
                progress.update(1)

    agreement_results = {}
    for layer, stats in per_layer.items():
        overlap = np.array(stats["overlap"])
        agreement_results[layer] = {
            "same_item": float(np.mean(stats["same_item"])),
            "same_label": float(np.mean(stats["same_label"])) if stats["same_label"] else None,
            "same_label_questions": len(stats["same_label"]),
            "same_label_is_C_label": float(np.mean(stats["same_label_is_C"])) if stats["same_label"] else None,
            "top_k_overlap_mean": float(overlap.mean()),
            "top_k_overlap_any": float(np.mean(overlap > 0)),
            "top_k_overlap_histogram": {str(i): float(np.mean(np.isclose(overlap * k, i))) for i in range(k + 1)},
            "caption_similarity_mean": float(np.mean(stats["caption_similarity"])),
        }
    cheats = {space: {name: float(np.mean(values)) for name, values in f.items()} for space, f in flags.items()}
    cheats["caption"][REPEATS_C] = float(np.mean(repeats))
    both = {}
    for layer in layers:
        image_ok = np.array(flags[f"image:{layer}"]["no verdict but input"])
        caption_ok = np.array(flags["caption"]["no verdict but input"])
        same = np.array(per_layer[layer]["same_item"])
        both[layer] = {"both_free_of_cheats": float(np.mean(image_ok & caption_ok)),
                       "same_item_and_both_free": float(np.mean(image_ok & caption_ok & same))}

    run_info = provenance(SUITE, explorer, argv, args.seed, {"layers": layers, "questions": int(len(triples)),
                                                              "method": args.method, "top_k": k})
    # the verdicts' near-duplicate thresholds: calibrated per space from the gallery (pipeline.thresholds)
    run_info["near_duplicate_thresholds"] = {space: gallery_calibration(gallery, space).threshold for space in spaces}
    run_info["seconds"] = round(time.perf_counter() - started, 2)
    results = {"run": run_info, "setup": {"candidates": len(gallery), "chance_same_item": 1.0 / (len(gallery) - 3)},
               "agreement": agreement_results, "cheats": cheats, "joint": both, "examples": examples}
    report = Report(SUITE, "Do image space and caption space agree?", results)
    _write_markdown(report, results, layers, spaces)
    _plots(report, results, layers, spaces)
    return report


def _example(report, ag, gallery) -> dict:
    def name(hit):
        return None if hit is None else {"id": hit.id, "path": hit.path, "label": hit.label}

    return {"A": report.inputs[0].name, "B": report.inputs[1].name, "C": report.inputs[2].name,
            "layer": report.layer, "image_answer": name(report.image_space.top),
            "image_verdicts": report.image_space.verdicts, "caption_answer": name(report.caption_space.top),
            "caption_verdicts": report.caption_space.verdicts, "agreement": ag.get("summary")}


def _ratio(part, whole) -> str:
    return pct(part / whole, 0) if part is not None and whole else "n/a"


def _write_markdown(report: Report, results, layers, spaces) -> None:
    run_info, ag, ch = results["run"], results["agreement"], results["cheats"]
    first = layers[0]
    k = run_info["top_k"]
    report.section("Summary", (
        f"**What this means.** For {run_info['questions']:,} random triples A : B :: C : ? of distinct gallery "
        f"items ({run_info['method']}, inputs excluded, {results['setup']['candidates']:,} candidates), image "
        f"space ({first} layer) and caption space give the same item in {pct(ag[first]['same_item'])} of "
        f"questions (chance: {pct(results['setup']['chance_same_item'], 2)}) and an answer with the same "
        f"label in {pct(ag[first]['same_label'])}; their top-{k} lists share {num(ag[first]['top_k_overlap_mean'] * k, 2)} "
        f"items on average. Random triples are not real analogies, and much of the agreement is C: "
        f"{_ratio(ag[first]['same_label_is_C_label'], ag[first]['same_label'])} of the same-label answers carry "
        f"C's own label ({pct(ag[first]['same_label_is_C_label'])} of all questions). Each answer alone carries "
        f"C's label in "
        f"{pct(ch[f'image:{first}'][HAS_C_LABEL])} (image) and "
        f"{pct(ch['caption'][HAS_C_LABEL])} (caption) of questions, and is the ONLY-C answer "
        f"(C's nearest neighbour) in {pct(ch[f'image:{first}']['only-c'])} and {pct(ch['caption']['only-c'])}. "
        f"Without exclusion an input would win in {pct(ch[f'image:{first}']['input'])} (image) and "
        f"{pct(ch['caption']['input'])} (caption); caption answers repeat C's caption or label in "
        f"{pct(ch['caption'][REPEATS_C])}."))
    rows = [[layer, pct(ag[layer]["same_item"]), pct(ag[layer]["same_label"]), pct(ag[layer]["same_label_is_C_label"]),
             num(ag[layer]["top_k_overlap_mean"]), pct(ag[layer]["top_k_overlap_any"]),
             num(ag[layer]["caption_similarity_mean"])] for layer in layers]
    report.section("Agreement of image space (per layer) with caption space", md_table(
        ["image layer", "same item at top-1", "same label at top-1", "…which is C's label",
         f"top-{k} overlap (mean of |∩|/k)",
         f"top-{k} lists share an item", "caption similarity of the two answers (mean cos)"], rows)
        + "\n\nComputed per question by `pipeline.agreement.space_agreement` (the app's agreement panel); the top-k "
          "overlap is faiss's knn-intersection measure.")
    names = [*VERDICTS, *EXTRA]
    rows = [[SPACE_NAMES.get(s, s)] + [pct(ch[s][n]) for n in names]
            + [pct(ch[s].get(REPEATS_C)) if s == "caption" else ""] for s in spaces]
    report.section("How often each space cheats (verdicts on the top-1 answer, inputs excluded)", md_table(
        ["space", *names, "caption repeats C"], rows)
        + "\n\nVerdicts as in DESIGN.md section 2 (several may hold): *input*: without exclusion A, B or C "
          "would be the answer; *only-c* / *ignore-a*: the answer is that baseline's answer; *near-duplicate*: "
          "cos(answer, C) > the space's near-duplicate threshold, calibrated from the gallery ("
        + ", ".join(f"{SPACE_NAMES.get(space, space)} {threshold:.3f}"
                    for space, threshold in run_info["near_duplicate_thresholds"].items())
        + "); *genuine*: none. *No verdict "
          "but input*: none of only-c, ignore-a, near-duplicate. *Caption repeats C*: the answer's caption "
          "contains C's caption or C's label (the lexical check).")
    rows = [[layer, pct(results["joint"][layer]["both_free_of_cheats"]),
             pct(results["joint"][layer]["same_item_and_both_free"])] for layer in layers]
    report.section("Both spaces at once", md_table(
        ["image layer", "both answers free of cheats (but input)", "…and the same item"], rows))
    if results["examples"]:
        rows = [[f"{e['A']} : {e['B']} :: {e['C']}", (e["image_answer"] or {}).get("path"),
                 ", ".join(e["image_verdicts"]), (e["caption_answer"] or {}).get("path"),
                 ", ".join(e["caption_verdicts"])] for e in results["examples"]]
        report.section(f"First questions ({first} layer)", md_table(
            ["A : B :: C", "image answer", "verdicts", "caption answer", "verdicts"], rows, align="lllll"))
    report.section("How this was produced", provenance_markdown(run_info))


def _plots(report, results, layers, spaces) -> None:
    ag, ch = results["agreement"], results["cheats"]
    fig, ax = new_figure(8, 4)
    grouped_bars(ax, layers, {"same item": [ag[l]["same_item"] for l in layers],
                              "same label": [ag[l]["same_label"] for l in layers],
                              "top-k overlap": [ag[l]["top_k_overlap_mean"] for l in layers]},
                 "share of questions")
    ax.set_xlabel("image layer (compared with caption space)")
    ax.set_title("Image space vs caption space")
    report.figure("agreement.png", fig)
    fig, ax = new_figure(10, 4.5)
    names = [*VERDICTS, *EXTRA]
    grouped_bars(ax, [SPACE_NAMES.get(s, s) for s in spaces], {n: [ch[s][n] for s in spaces] for n in names},
                 "share of questions")
    ax.set_title("Verdicts on the top-1 answer, inputs excluded")
    report.figure("verdicts.png", fig)
