"""Suite ``transforms``: ground-truth analogies x : t(x) :: y : t(y) over real photos.

1. A seeded sample of the gallery's photos (``--originals``) is copied, with one transformed copy per
   transform, into a work folder (:mod:`eval.transformed_copies`).
2. That folder is built as a gallery through :meth:`pipeline.explorer.Explorer.open_gallery`, so its
   vectors and captions are cached like any gallery's (a second run only loads them).
3. A seeded sample of questions A : B :: C : D = x : t(x) :: y : ?, with x != y originals and the
   transforms taken in turn, has one right answer, t(y), among all originals and copies.
4. Every question is scored in every space by every method and baseline with
   :func:`pipeline.vectors.method_scores` on the similarity columns that
   :func:`pipeline.analogy.solve_space` uses (:func:`score_questions`), with A, B, C excluded and not.
5. What the arithmetic meant (:mod:`eval.offset_terms`): per transform and space, the terms most often
   named for b - a, and how often D - C agrees with B - A.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline import vectors as vec

from . import offset_terms
from .common import SPACE_NAMES, bar, open_explorer, provenance, provenance_markdown, spaces_for
from .report import Report, grouped_bars, md_table, new_figure, num, pct, stacked_bars
from .transformed_copies import TRANSFORMS, build_table, parse_transforms, prepare_work_folder, select_originals

SUITE = "transforms"

OTHER_TRANSFORM = "C's other transform"
CATEGORIES = ("right: t(y)", "an input (A, B or C)", OTHER_TRANSFORM, "t of another photo", "something else")


# --- questions and scoring -----------------------------------------------------------------------


@dataclass
class Questions:
    """Q questions x : t(x) :: y : t(y). ``ids``: (Q, 4) gallery ids of A, B, C and the right answer D;
    ``transform``: (Q,) index into the transform list; ``x``, ``y``: (Q,) original indices."""

    ids: np.ndarray
    transform: np.ndarray
    x: np.ndarray
    y: np.ndarray


def draw_questions(table: np.ndarray, n: int, seed: int) -> Questions:
    """``table[i, 0]``: gallery id of original i; ``table[i, 1 + t]``: of its copy under transform t.
    Transforms are taken in turn (balanced); x and y are drawn uniformly with x != y."""
    n_orig, width = table.shape
    rng = np.random.default_rng(seed)
    t = np.arange(n) % (width - 1)
    x = rng.integers(0, n_orig, size=n)
    y = (x + rng.integers(1, n_orig, size=n)) % n_orig
    ids = np.stack([table[x, 0], table[x, 1 + t], table[y, 0], table[y, 1 + t]], axis=1)
    return Questions(ids.astype(np.int64), t, x, y)


def score_questions(gallery, space: str, ids: np.ndarray, methods, eps: float, chunk: int = 128,
                    progress=None) -> dict[str, np.ndarray]:
    """Rank and top-1 of every question under every method in one space.

    ``ids``: (Q, 4) gallery ids of A, B, C and the right answer. For each question the similarity
    columns are those of :func:`pipeline.analogy.solve_space` (``gallery.index(space).similarities``
    of the normalised a, b, c, computed for a block of questions at once) and the scores
    :func:`pipeline.vectors.method_scores`; ranks and top-1 follow :func:`pipeline.vectors.top_k`
    (higher first, ties to the lower id).

    Returns arrays of shape (M, Q) keyed ``rank_excl``, ``rank_incl`` (1-based rank of the right
    answer with A, B, C excluded / not), ``top1_excl``, ``top1_incl`` (gallery ids).
    """
    methods = list(methods)
    vectors = gallery.vectors(space)
    index = gallery.index(space)
    n = len(vectors)
    q = len(ids)
    out = {k: np.zeros((len(methods), q), dtype=np.int64) for k in ("rank_excl", "rank_incl", "top1_excl", "top1_incl")}
    positions = np.arange(n)
    for start in range(0, q, chunk):
        block = ids[start:start + chunk]
        queries = np.unique(block[:, :3])
        column = {int(i): j for j, i in enumerate(queries)}
        sims_all = index.similarities(vectors[queries])  # (N, len(queries))
        for row, (a, b, c, target) in enumerate(block):
            sims = sims_all[:, [column[int(a)], column[int(b)], column[int(c)]]]
            gram = vec.gram_matrix(vectors[a], vectors[b], vectors[c])
            scores = np.stack([vec.method_scores(sims, gram, m, eps) for m in methods]).astype(np.float64)
            st = scores[:, target][:, None]
            ahead = (scores > st) | ((scores == st) & (positions[None, :] < target))
            rank_incl = 1 + ahead.sum(axis=1)
            inputs = np.array([a, b, c])
            rank_excl = rank_incl - ahead[:, inputs].sum(axis=1)
            top1_incl = np.argmax(scores, axis=1)
            scores[:, inputs] = -np.inf
            top1_excl = np.argmax(scores, axis=1)
            j = start + row
            out["rank_incl"][:, j] = rank_incl
            out["rank_excl"][:, j] = rank_excl
            out["top1_incl"][:, j] = top1_incl
            out["top1_excl"][:, j] = top1_excl
        if progress:
            progress(len(block))
    return out


def categorise(top1: np.ndarray, questions: Questions, photo_of: np.ndarray, transform_of: np.ndarray) -> np.ndarray:
    """Category index (into :data:`CATEGORIES`) of each top-1 answer. ``photo_of[id]``: original index
    of a gallery item; ``transform_of[id]``: 0 for an original, 1 + t for transform t."""
    a, b, c, d = questions.ids.T
    t = 1 + questions.transform
    cat = np.full(len(top1), 4)
    other_t = (photo_of[top1] == questions.y) & (transform_of[top1] != 0) & (transform_of[top1] != t)
    cat[(transform_of[top1] == t) & (photo_of[top1] != questions.y)] = 3
    cat[other_t] = 2
    cat[(top1 == a) | (top1 == b) | (top1 == c)] = 1
    cat[top1 == d] = 0
    return cat


# --- the suite -----------------------------------------------------------------------------------


def run(settings, args, argv=None) -> Report:
    started = time.perf_counter()
    transforms = parse_transforms(args.transforms)
    originals = select_originals(Path(args.gallery), args.originals, args.seed)
    work = prepare_work_folder(Path(args.gallery), originals, transforms, args.work_dir, settings.cache_dir,
                               settings.max_pixels)
    explorer = open_explorer(settings, work.root)
    gallery = explorer.gallery
    n_orig = len(work.originals)
    table, photo_of, transform_of = build_table(gallery, work)
    questions = draw_questions(table, args.questions, args.seed)
    spaces = spaces_for(args.layers, captions=gallery.captions is not None)
    methods = list(vec.ALL_METHODS)
    threshold = settings.near_duplicate_threshold
    per_space = {}
    with bar(total=len(spaces) * len(questions.ids), desc="scoring questions", unit="q") as progress:
        for space in spaces:
            raw = score_questions(gallery, space, questions.ids, methods, settings.cosmul_eps,
                                  progress=progress.update)
            per_space[space] = summarise_space(gallery, space, raw, questions, methods, transforms, photo_of,
                                               transform_of, threshold)
            per_space[space]["terms"] = offset_terms.summarise_terms(
                offset_terms.term_space(gallery, explorer.models, space), questions.ids,
                raw["top1_excl"][methods.index("3cosadd")], offset_terms.transform_masks(questions.transform, transforms))
    run_info = provenance(SUITE, explorer, argv, args.seed, {
        "layers": list(args.layers), "questions": int(len(questions.ids)), "originals": n_orig,
        "originals_requested": args.originals, "transforms": transforms, "work_dir": str(work.root),
        "skipped_originals": [{"path": p, "reason": r} for p, r in work.skipped],
        "source_gallery": str(args.gallery)})
    run_info["seconds"] = round(time.perf_counter() - started, 2)
    results = {"run": run_info,
               "setup": {"transforms": {t: TRANSFORMS[t][0] for t in transforms}, "gallery_items": len(gallery),
                         "candidates": len(gallery), "methods": methods, "categories": list(CATEGORIES),
                         "chance_at_1": 1.0 / (len(gallery) - 3)},
               "spaces": per_space}
    report = Report(SUITE, "Ground-truth analogies over transformed photos", results)
    _write_markdown(report, results, spaces, methods, transforms)
    _plots(report, results, spaces, methods, transforms)
    return report


def summarise_space(gallery, space, raw, questions: Questions, methods, transforms, photo_of, transform_of,
                    threshold) -> dict:
    vectors = gallery.vectors(space)
    a, b, c, d = questions.ids.T
    out = {"methods": {}, "offsets": {}}
    masks = offset_terms.transform_masks(questions.transform, transforms)
    for m_i, method in enumerate(methods):
        entry = {}
        for excl in ("excl", "incl"):
            ranks = raw[f"rank_{excl}"][m_i]
            top1 = raw[f"top1_{excl}"][m_i]
            near_dup = np.einsum("ij,ij->i", vectors[top1], vectors[c]) > threshold
            cats = categorise(top1, questions, photo_of, transform_of)
            per = {}
            for name, mask in masks.items():
                per[name] = {
                    "acc@1": float(np.mean(ranks[mask] <= 1)), "acc@5": float(np.mean(ranks[mask] <= 5)),
                    "near_duplicate_of_C": float(np.mean(near_dup[mask])),
                    "answers": {cat: float(np.mean(cats[mask] == k)) for k, cat in enumerate(CATEGORIES)},
                    "questions": int(mask.sum()),
                }
            entry["excluded" if excl == "excl" else "not_excluded"] = per
        out["methods"][method] = entry
    u = vectors[b].astype(np.float64) - vectors[a]
    w = vectors[d].astype(np.float64) - vectors[c]
    norms_u, norms_w = np.linalg.norm(u, axis=1), np.linalg.norm(w, axis=1)
    consistency = np.einsum("ij,ij->i", u, w) / np.maximum(norms_u * norms_w, 1e-12)
    cos_dc = np.einsum("ij,ij->i", vectors[d], vectors[c])
    nn = gallery.typical_nn_distance(space)
    for name, mask in masks.items():
        out["offsets"][name] = {"offset_norm": float(norms_u[mask].mean()),
                                "offset_relative": float(norms_u[mask].mean() / nn) if nn > 0 else None,
                                "offset_consistency": float(consistency[mask].mean()),
                                "cos_right_answer_C": float(cos_dc[mask].mean())}
    out["typical_nn_distance"] = nn
    return out


# --- Markdown and plots --------------------------------------------------------------------------

def _summary(results, spaces, methods) -> str:
    setup, run_info = results["setup"], results["run"]
    sp = results["spaces"]
    transforms = run_info["transforms"]
    arithmetic = [m for m in methods if m in vec.METHODS]
    baselines = [m for m in methods if m in vec.BASELINES]

    def acc(space, method, t="all", key="acc@1", excl="excluded"):
        return sp[space]["methods"][method][excl][t][key]

    def name(space):
        return SPACE_NAMES.get(space, space)

    parts = [f"**What this means.** {run_info['questions']:,} questions x : t(x) :: y : ? over "
             f"{run_info['originals']:,} photos and {len(transforms)} transforms, each with one right answer, "
             f"t(y), among {setup['gallery_items']:,} candidates (chance at 1: {pct(setup['chance_at_1'], 3)})."]
    lines = []
    for space in spaces:
        best = max(arithmetic, key=lambda m: acc(space, m))
        best_cheat = max(baselines, key=lambda m: acc(space, m))
        lines.append(f"{name(space)}: 3CosAdd {pct(acc(space, '3cosadd'))}, best method {best} "
                     f"{pct(acc(space, best))}, best baseline {best_cheat} {pct(acc(space, best_cheat))}, ONLY-C "
                     f"{pct(acc(space, 'only-c'))}")
    gaps = {space: max(acc(space, m) for m in arithmetic) - max(acc(space, m) for m in baselines) for space in spaces}
    if all(g < 0.05 for g in gaps.values()):
        verdict = ("In no space does a method beat the best baseline by 5 points: C's neighbourhood answers about "
                   "as well as the arithmetic.")
    else:
        verdict = "A method beats the best baseline by 5 points or more in " + ", ".join(
            f"{name(s)} (+{100 * g:.1f} points)" for s, g in gaps.items() if g >= 0.05) + "."
    parts.append("Accuracy at 1 with the inputs excluded, all transforms together: " + "; ".join(lines) + ". "
                 + verdict)
    pooled = next((s for s in spaces if s.startswith("image:")), spaces[0])
    add = sp[pooled]["methods"]["3cosadd"]
    easy = max(transforms, key=lambda t: (acc(pooled, "only-c", t), t))
    parts.append(
        f"Why, in {name(pooled)}: without exclusion 3CosAdd's answer is an input in "
        f"{pct(add['not_excluded']['all']['answers']['an input (A, B or C)'])} of questions; with exclusion its "
        f"answer is another copy of C in {pct(add['excluded']['all']['answers'][OTHER_TRANSFORM] + add['excluded']['all']['answers'][CATEGORIES[0]])} "
        f"(the right one in {pct(add['excluded']['all']['answers'][CATEGORIES[0]])}) and a near-duplicate of C "
        f"(cos > {run_info['settings']['near_duplicate_threshold']}) in {pct(add['excluded']['all']['near_duplicate_of_C'])}. "
        f"The right answer is found where it is C's nearest neighbour anyway: {easy} gets "
        f"{pct(acc(pooled, '3cosadd', easy))} with 3CosAdd and {pct(acc(pooled, 'only-c', easy))} with "
        f"ONLY-C (on average cos({easy}(y), y) = {num(sp[pooled]['offsets'][easy]['cos_right_answer_C'])}). "
        f"Accuracy at 5 ({pct(acc(pooled, '3cosadd', key='acc@5'))}) is far higher than at 1 because the right "
        f"copy is usually near the top among C's other copies, just not first. "
        f"The offsets say why: a transform does not move different photos the same way; the mean "
        f"cos(t(x) - x, t(y) - y) is "
        + ", ".join(f"{num(sp[s]['offsets']['all']['offset_consistency'], 3)} ({name(s)})" for s in spaces)
        + " where a consistent offset would be near 1.")
    wins = []
    for space in spaces:
        for t in transforms:
            best = max(arithmetic, key=lambda m: acc(space, m, t))
            cheat = max(baselines, key=lambda m: acc(space, m, t))
            if acc(space, best, t) >= acc(space, cheat, t) + 0.05:
                wins.append(f"{t} in {name(space)} ({best} {pct(acc(space, best, t))} vs {cheat} "
                            f"{pct(acc(space, cheat, t))})")
    parts.append("Where a method beats every baseline by 5 points or more at 1: "
                 + ("; ".join(wins) if wins else "nowhere") + ".")
    return "\n\n".join(parts)


def _cell(per: dict) -> str:
    return f"{100 * per['acc@1']:.1f} / {100 * per['acc@5']:.1f}"


def _write_markdown(report: Report, results, spaces, methods, transforms) -> None:
    run_info, setup, sp = results["run"], results["setup"], results["spaces"]
    report.section("Summary", _summary(results, spaces, methods))
    report.section("Setup", (
        f"{run_info['originals']:,} photos drawn (seed {run_info['seed']}) from `{run_info['source_gallery']}`"
        + (f" ({len(run_info['skipped_originals'])} could not be decoded and were left out)"
           if run_info["skipped_originals"] else "")
        + f"; each copied with {len(transforms)} transforms into a work folder outside the repository. "
          f"The gallery searched is the originals plus every copy: {setup['gallery_items']:,} items. "
          f"{run_info['questions']:,} questions A : B :: C : D = x : t(x) :: y : ?, transforms in turn, x != y "
          f"drawn uniformly; the right answer is t(y). Methods and baselines as in DESIGN.md section 2; "
          f"'excluded' removes A, B, C from the candidates.\n\n"
        + md_table(["transform", "what it does"], [[t, d] for t, d in setup["transforms"].items()], align="ll")))
    for space in spaces:
        for excl, title in (("excluded", "inputs excluded"), ("not_excluded", "nothing excluded")):
            rows = [[m] + [_cell(sp[space]["methods"][m][excl][t]) for t in transforms]
                    + [_cell(sp[space]["methods"][m][excl]["all"])] for m in methods]
            report.section(f"Accuracy @1 / @5 (%), {SPACE_NAMES.get(space, space)}, {title}",
                           md_table(["method"] + transforms + ["all"], rows))
    rows = []
    for space in spaces:
        for m in ("3cosadd", "3cosmul", "pairdirection", "only-c"):
            for excl in ("excluded", "not_excluded"):
                per = sp[space]["methods"][m][excl]["all"]
                rows.append([SPACE_NAMES.get(space, space), m, "yes" if excl == "excluded" else "no"]
                            + [pct(per["answers"][c]) for c in CATEGORIES] + [pct(per["near_duplicate_of_C"])])
    report.section("What the top-1 answers are", md_table(
        ["space", "method", "excluded", *CATEGORIES, "near-duplicate of C"], rows, align="lll" + "r" * 6)
        + f"\n\nNear-duplicate: cos(answer, C) > {run_info['settings']['near_duplicate_threshold']} in that space. "
          "'C's other transform' is t'(y) for another transform t'; 't of another photo' is the right transform "
          "applied to the wrong photo.")
    rows = []
    for space in spaces:
        for t in transforms + ["all"]:
            o = sp[space]["offsets"][t]
            rows.append([SPACE_NAMES.get(space, space), t, num(o["offset_norm"]), num(o["offset_relative"], 2),
                         num(o["offset_consistency"]), num(o["cos_right_answer_C"])])
    report.section("The offsets", md_table(
        ["space", "transform", "|b - a|", "|b - a| / typical NN distance", "cos(b - a, t(y) - y)", "cos(t(y), y)"],
        rows, align="llrrrr")
        + "\n\nA transform that moves every photo the same way (consistency near 1) and further than the "
          "distance between neighbours is one the arithmetic can find; a small or inconsistent offset leaves "
          "the answer to C's neighbourhood.")
    report.section("What the arithmetic meant", offset_terms.markdown({s: sp[s]["terms"] for s in spaces},
                                                                      SPACE_NAMES, transforms))
    report.section("How this was produced", provenance_markdown(run_info)
                   + f"\n- Work folder (transformed copies): `{run_info['work_dir']}`")


def _plots(report, results, spaces, methods, transforms) -> None:
    sp = results["spaces"]
    for space in spaces:
        fig, ax = new_figure(11, 4.5)
        grouped_bars(ax, transforms + ["all"],
                     {m: [sp[space]["methods"][m]["excluded"][t]["acc@1"] for t in transforms + ["all"]] for m in methods},
                     "accuracy@1, inputs excluded")
        ax.set_title(f"x : t(x) :: y : ? in {SPACE_NAMES.get(space, space)}")
        report.figure(f"accuracy_{space.replace(':', '_')}.png", fig)
    fig, ax = new_figure(9, 4.5)
    labels = [SPACE_NAMES.get(s, s) for s in spaces]
    stacked_bars(ax, labels, {c: [sp[s]["methods"]["3cosadd"]["excluded"]["all"]["answers"][c] for s in spaces]
                              for c in CATEGORIES}, "share of 3CosAdd top-1 answers")
    ax.set_title("What 3CosAdd answers (inputs excluded)")
    report.figure("answers_3cosadd.png", fig)
