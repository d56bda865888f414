"""Solve A : B :: C : ? in one space of a gallery, and report honestly what the answer is.

:func:`prepare_inputs` turns references (gallery ids or paths, or any image file) into
:class:`AnalogyInput` objects with normalised vectors for every space. :func:`solve_space` scores the
gallery with a method (DESIGN.md section 2), applies exclusion, and returns a :class:`SpaceResult`
with the top-k answers, what would have won without exclusion (and each input's rank), the top answer
of every baseline, the verdicts, and the measurements behind them (the near-duplicate threshold it
used, calibrated per space from the gallery, and in caption space the lexical check of
:func:`pipeline.agreement.lexical_check`).

:data:`ROLES` names the three inputs everywhere (A, B, C in this order).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import vectors as vec
from .agreement import lexical_check
from .captions import caption_external
from .gallery import IMAGE_SPACES, Gallery, space_vectors
from .images import bytes_sha256, describe, file_sha256, load_image
from .labels import LabelScore, top_labels
from .errors import AnalogyError
from .thresholds import gallery_calibration

ROLES = vec.ROLES
VERDICTS = ("input", "only-c", "ignore-a", "near-duplicate", "genuine")


@dataclass
class AnalogyInput:
    """One of A, B, C. ``item_id`` is its gallery row when it is (or has the same content as) a
    gallery item, else None. ``vectors`` maps space keys to (D,) float32 L2-normalised vectors."""

    role: str
    name: str
    item_id: int | None
    sha256: str | None
    label: str | None
    labels: list[LabelScore]
    caption: str | None
    captioner: str | None
    vectors: dict[str, np.ndarray] = field(repr=False)
    source: str | None = None  # for an uploaded image: the file it came from (to ask again)

    def as_dict(self) -> dict:
        return {"role": self.role, "name": self.name, "id": self.item_id, "label": self.label,
                "top_labels": [{"name": l.name, "probability": round(l.probability, 4)} for l in self.labels],
                "caption": self.caption, "captioner": self.captioner}


@dataclass
class Hit:
    """A gallery item as an answer: ``score`` under the method that ranked it."""

    id: int
    path: str
    label: str | None
    score: float
    caption: str | None = None

    def as_dict(self) -> dict:
        # vars(), not dataclasses.asdict: the fields are scalars, and asdict's deep copy was 4 ms a question
        return {k: (vec.rounded(v) if isinstance(v, float) else v) for k, v in vars(self).items()}


@dataclass
class SpaceResult:
    """The answer in one space.

    without_exclusion: ``winner`` ("A", "B", "C" or None: which input would be the answer with
    nothing excluded), ``top`` (that answer: a Hit, or the input's name), ``input_ranks`` (1-based
    rank of each input among gallery items and inputs, nothing excluded).
    measurements: ``offset_norm`` |b - a|, ``typical_nn_distance``, ``offset_relative`` (their ratio),
    ``offset_consistency`` cos(b - a, d - c) for the top answer d, ``cos_answer_c`` cos(d, c) (these
    two only when there is an answer), ``scored_rows`` (rows scored exactly), ``near_duplicate_threshold``
    (the cosine above which the verdicts and exclusion count a near-duplicate: by default the
    gallery's calibrated one for the space), and in caption space
    the lexical check ``repeats_c``, ``repeats_c_what``, ``repeats_c_phrase``.
    """

    space: str
    method: str
    exclude: bool
    results: list[Hit]
    excluded: list[dict]
    without_exclusion: dict
    baselines: dict[str, Hit | None]
    verdicts: list[str]
    measurements: dict

    @property
    def top(self) -> Hit | None:
        return self.results[0] if self.results else None

    def as_dict(self) -> dict:
        wo = dict(self.without_exclusion)
        if isinstance(wo.get("top"), Hit):
            wo["top"] = wo["top"].as_dict()
        return {
            "space": self.space, "method": self.method, "exclude": self.exclude,
            "results": [h.as_dict() for h in self.results], "excluded": self.excluded,
            "without_exclusion": wo,
            "baselines": {k: (h.as_dict() if h else None) for k, h in self.baselines.items()},
            "verdicts": self.verdicts,
            "measurements": {k: (vec.rounded(v) if isinstance(v, float) else v) for k, v in self.measurements.items()},
        }


# --- inputs ------------------------------------------------------------------------------------


def prepare_inputs(gallery: Gallery, models, refs: list, captioner=None) -> list[AnalogyInput]:
    """A, B, C from references: a gallery id, a gallery path, or any image file path (or bytes).

    External images are decoded safely, classified, captioned (with ``captioner``, a callable
    (images, logits) -> [(text, captioner name)], default: the gallery's own rule) and embedded; if
    one has the same content as a gallery item it becomes that item. Raises AnalogyError or ImageError.
    """
    if len(refs) != 3:
        raise AnalogyError(f"an analogy needs three images A, B, C; got {len(refs)}")
    inputs: list[AnalogyInput | None] = [None, None, None]
    external = []
    for i, (role, ref) in enumerate(zip(ROLES, refs)):
        if ref is None or (isinstance(ref, str) and not ref.strip()):
            raise AnalogyError(f"image {role} is missing: pick a gallery image or upload one")
        item_id = gallery.find(ref) if not isinstance(ref, (bytes, bytearray)) else None
        if item_id is not None:
            inputs[i] = gallery_input(gallery, role, item_id)
            continue
        if isinstance(ref, (str, Path)) and not Path(ref).exists():
            raise AnalogyError(f"{role}: {ref} is neither a gallery item (id or path) nor an existing image file")
        image = load_image(ref, max_pixels=gallery.settings.max_pixels, max_bytes=gallery.settings.max_file_bytes,
                           min_short_side=models.classifier.decode_short_side)  # decoded as the gallery was
        digest = bytes_sha256(bytes(ref)) if isinstance(ref, (bytes, bytearray)) else file_sha256(ref)
        same = gallery.find_hash(digest)
        if same is not None:
            inputs[i] = gallery_input(gallery, role, same)
        else:
            external.append((i, role, describe(ref), digest, image, ref))
    if external:
        images = [e[4] for e in external]
        out = models.classify(images)
        captions = caption_external(gallery, models, images, out.logits) if captioner is None else captioner(images, out.logits)
        texts = [c[0] for c in captions]
        caption_vectors = models.embed_texts(texts) if gallery.captions is not None else None
        for j, (i, role, name, digest, _, ref) in enumerate(external):
            # the same normalisation as the gallery's own vectors (pipeline.gallery.space_vectors)
            vectors = {space: space_vectors(space, out.pooled[j:j + 1], out.logits[j:j + 1], None)[0]
                       for space in IMAGE_SPACES}
            if caption_vectors is not None:
                vectors["caption"] = vec.l2_normalize(caption_vectors[j])
            labels = top_labels(out.logits[j:j + 1], 5)[0]
            source = str(ref) if isinstance(ref, (str, Path)) else None
            inputs[i] = AnalogyInput(role, name, None, digest, labels[0].name, labels,
                                     captions[j][0], captions[j][1], vectors, source)
    return inputs  # type: ignore[return-value]


def gallery_input(gallery: Gallery, role: str, item_id: int) -> AnalogyInput:
    item = gallery.items[item_id]
    vectors = {space: gallery.vectors(space)[item_id] for space in _available_spaces(gallery)}
    caption = gallery.captions.texts[item_id] if gallery.captions else None
    captioner = gallery.captions.captioners[item_id] if gallery.captions else None
    return AnalogyInput(role, item.path, item_id, item.sha256, item.label, gallery.top_labels(item_id),
                        caption, captioner, vectors)


def _available_spaces(gallery: Gallery) -> list[str]:
    return list(IMAGE_SPACES) + (["caption"] if gallery.captions is not None else [])


# --- solving -----------------------------------------------------------------------------------


def solve_space(gallery: Gallery, inputs: list[AnalogyInput], space: str, method: str = "3cosadd",
                exclude: bool = True, top_k: int = 5, threshold: float | None = None,
                never: np.ndarray | None = None) -> SpaceResult:
    """Answer the analogy in one space (a key of :data:`pipeline.gallery.SPACES`, or any space of a
    gallery-like object with ``settings``, ``items``, ``captions``, ``vectors``, ``index`` and
    ``typical_nn_distance``, e.g. :class:`pipeline.word_space.WordSpaceGallery`).

    ``inputs``: A, B, C in :data:`ROLES` order, with a vector for ``space``. ``threshold``: the
    near-duplicate cosine (verdict and exclusion of uploads' near-duplicates); None (the default): the
    gallery's calibrated threshold for the space (:func:`pipeline.thresholds.gallery_calibration`,
    computed once per gallery). ``never``: gallery ids that are never an answer, with or without
    exclusion (items with no vector in this space); they score -inf. Returns the :class:`SpaceResult`
    with every measurement the answer and its verdicts rest on.
    """
    if method not in vec.ALL_METHODS:
        raise AnalogyError(f"unknown method {method!r}: choose one of {', '.join(vec.ALL_METHODS)}")
    if space not in inputs[0].vectors:
        raise AnalogyError(f"space {space!r} is not available for this gallery")
    settings = gallery.settings
    if threshold is None:
        threshold = gallery_calibration(gallery, space).threshold
    index = gallery.index(space)
    a, b, c = (inp.vectors[space] for inp in inputs)
    # (R, 3): cos(d, a), cos(d, b), cos(d, c) of the scored rows: all N (rows None) on an exact index,
    # else the candidate rows of an approximate one (see _scored_rows).
    rows, sims = _scored_rows(index, inputs, a, b, c, top_k, threshold)
    gram = vec.gram_matrix(a, b, c)
    eps = settings.cosmul_eps
    scores = {m: vec.method_scores(sims, gram, m, eps) for m in dict.fromkeys([method, *vec.BASELINES])}
    if never is not None and len(never):
        for values in scores.values():
            values[_positions(rows, never)] = -np.inf

    excluded = _exclusions(inputs, sims, threshold, rows)
    excluded_ids = [e["id"] for e in excluded] if exclude else []
    excluded_ids += [int(i) for i in never] if never is not None else []

    def hits(method_scores: np.ndarray, k: int, skip) -> list[Hit]:
        ids, values = vec.top_k(method_scores, k, exclude=_positions(rows, skip))
        return [_hit(gallery, _gallery_id(rows, i), float(s)) for i, s in zip(ids, values)]

    results = hits(scores[method], top_k, excluded_ids)
    baselines = {}
    for name in vec.BASELINES:
        top = hits(scores[name], 1, excluded_ids)
        baselines[name] = top[0] if top else None
    without = _without_exclusion(gallery, inputs, scores[method], gram, method, eps, rows)

    measurements = {"offset_norm": vec.offset_norm(a, b), "typical_nn_distance": gallery.typical_nn_distance(space),
                    "scored_rows": int(len(sims))}
    measurements["offset_relative"] = (measurements["offset_norm"] / measurements["typical_nn_distance"]
                                       if measurements["typical_nn_distance"] > 0 else float("inf"))
    verdicts: list[str] = []
    if results:
        d = gallery.vectors(space)[results[0].id]
        measurements["offset_consistency"] = vec.offset_consistency(a, b, c, d)
        measurements["cos_answer_c"] = float(np.clip(np.dot(d, c), -1, 1))
        verdicts = verdicts_for(results[0], without["winner"], baselines, measurements["cos_answer_c"], threshold)
    measurements["near_duplicate_threshold"] = float(threshold)
    if space == "caption":
        measurements.update(lexical_check(results[0] if results else None, inputs[ROLES.index("C")]))
    return SpaceResult(space, method, exclude, results, excluded if exclude else [], without, baselines,
                       verdicts, measurements)


def verdicts_for(top: Hit, winner: str | None, baselines: dict[str, Hit | None], cos_answer_c: float,
                 threshold: float) -> list[str]:
    """DESIGN.md's verdicts on a top-1 answer (several may hold; ``genuine`` when none does)."""
    verdicts = []
    if winner is not None:
        verdicts.append("input")
    if baselines.get("only-c") and baselines["only-c"].id == top.id:
        verdicts.append("only-c")
    if baselines.get("ignore-a") and baselines["ignore-a"].id == top.id:
        verdicts.append("ignore-a")
    if cos_answer_c > threshold:
        verdicts.append("near-duplicate")
    return verdicts or ["genuine"]


def _hit(gallery: Gallery, item_id: int, score: float) -> Hit:
    item = gallery.items[item_id]
    caption = gallery.captions.texts[item_id] if gallery.captions else None
    return Hit(item_id, item.path, item.label, score, caption)


def _exclusions(inputs: list[AnalogyInput], sims: np.ndarray, threshold: float, rows=None) -> list[dict]:
    """Gallery rows to exclude: inputs by id; for uploaded inputs, near-duplicates (cos > threshold).
    ``sims`` holds the scored rows (gallery ids ``rows``, or all rows when None)."""
    excluded: dict[int, str] = {}
    for column, inp in enumerate(inputs):
        if inp.item_id is not None:
            excluded.setdefault(inp.item_id, f"input {inp.role}")
        else:
            for row in np.flatnonzero(sims[:, column] > threshold):
                excluded.setdefault(_gallery_id(rows, row),
                                    f"near-duplicate of uploaded {inp.role} (cos {sims[row, column]:.3f})")
    return [{"id": i, "reason": r} for i, r in excluded.items()]


def _without_exclusion(gallery, inputs, gallery_scores, gram, method, eps, rows=None) -> dict:
    """What wins with nothing excluded, among gallery items and the (uploaded) inputs themselves.

    ``gallery_scores`` are the scored rows' (gallery ids ``rows``, or all rows when None). On an
    approximate index the ranks are among the candidate rows only: ``ranks_exact`` is then False (they
    are exact whenever the candidates hold every row that outscores the input, which the over-fetch
    makes likely for the small ranks that matter)."""
    external = [inp for inp in inputs if inp.item_id is None]
    # The inputs' own scores: their similarities to a, b, c are rows of the Gram matrix.
    input_scores = vec.method_scores(gram.astype(np.float32), gram, method, eps)
    candidates = np.concatenate([gallery_scores, input_scores[[ROLES.index(i.role) for i in external]]])
    order_ids, _ = vec.top_k(candidates, 1)
    best = int(order_ids[0])
    n = len(gallery_scores)
    if best >= n:
        winner_input = external[best - n]
        winner, top = winner_input.role, winner_input.name
    else:
        top = _hit(gallery, _gallery_id(rows, best), float(gallery_scores[best]))
        winner = next((inp.role for inp in inputs if inp.item_id == _gallery_id(rows, best)), None)
    positions = {inp.role: (_positions(rows, [inp.item_id])[0] if inp.item_id is not None else n + external.index(inp))
                 for inp in inputs}
    ranks = vec.ranks(candidates, [positions[r] for r in ROLES])
    return {"winner": winner, "top": top, "input_ranks": dict(zip(ROLES, ranks)), "ranks_exact": rows is None}


# --- exact answers on approximate indexes ------------------------------------------------------

#: Over-fetch of the approximate path: each candidate query fetches top_k + (inputs in the gallery) +
#: this many rows from the index, so that exclusion and the baselines still find their true top rows.
CANDIDATE_MARGIN = 150


def _scored_rows(index, inputs: list[AnalogyInput], a, b, c, top_k: int, threshold: float):
    """(rows, sims): the gallery rows to score and their exact (R, 3) cosines with a, b, c.

    Exact index: rows is None and every row is scored. Approximate index: rows (sorted int64 gallery
    ids) is the union of the index's top-K' rows for the linear queries of every method and baseline,
    c, b - a + c, b + c, c - (b - a) and b - a (PairDirection's offset; 3CosMul and MULTIPLY rank
    like b + c - a and b + c), plus an uploaded A or B itself (its near-duplicates are excluded),
    plus the inputs' own ids, with K' = top_k + inputs + CANDIDATE_MARGIN. Scores over these rows are exact, so the
    answers are the exact ones whenever the index found each linear query's true top K' (recall@10
    is measured at build time; the over-fetch makes this stricter condition hold in practice).
    When an uploaded input's own query still has rows above the near-duplicate ``threshold`` at its
    K'-th place, K' is doubled until none is cut off, so near-duplicate exclusion stays complete.
    """
    abc = np.stack([a, b, c])
    if index.exact:
        return None, index.similarities(abc)
    in_gallery = sorted({inp.item_id for inp in inputs if inp.item_id is not None})
    uploaded = [column for column, inp in enumerate(inputs) if inp.item_id is None]
    queries = np.stack([c, b - a + c, b + c, c - (b - a), b - a] + [(a, b)[col] for col in uploaded if col < 2])
    k = min(len(index), top_k + len(in_gallery) + CANDIDATE_MARGIN)
    while True:
        rows = index.candidates(queries, k, include=in_gallery)
        sims = index.similarities(abc, rows)
        cut_off = [column for column in uploaded if len(rows) >= k and np.sort(sims[:, column])[-k] > threshold]
        if not cut_off or k >= len(index):
            return rows, sims
        k = min(len(index), 2 * k)


def _gallery_id(rows, position) -> int:
    """Gallery id of a scored row's position (rows None: the position is the id)."""
    return int(position) if rows is None else int(rows[int(position)])


def _positions(rows, ids) -> list[int]:
    """Positions among the scored rows of gallery ``ids`` (those not scored are left out)."""
    ids = [int(i) for i in ids]
    if rows is None or not ids:
        return ids
    found = np.searchsorted(rows, ids)
    return [int(p) for p, i in zip(found, ids) if p < len(rows) and rows[p] == i]
