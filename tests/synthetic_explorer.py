"""A synthetic gallery for the explainer's tests: hand-made 16-d vectors (to make each verdict fire)
through the real pipeline code (no model loads), and the checks that an explanation carries the JSON's
numbers. Shared by test_explain, test_agreement, test_text_answer and test_chat."""
from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from pipeline.config import Settings
from pipeline.explain import fmt, templates
from pipeline.explorer import AnalogyReport, Explorer
from pipeline.gallery import Captions, Gallery, GalleryItem
from pipeline.models import Models
from pipeline.models.captioners import LabelsCaptioner
from pipeline.models.head import ClassifierHead

DIM = 16


# ------------------------------------------------------------------------------------------------
# Synthetic galleries through the real pipeline code (no model loads)


def unit(*pairs: tuple[int, float]) -> np.ndarray:
    """A unit vector of DIM from (axis, weight) pairs."""
    v = np.zeros(DIM, np.float32)
    for axis, weight in pairs:
        v[axis] += weight
    return v / np.linalg.norm(v)


class FakeModels:
    """Stands in for pipeline.models.Models in the synthetic 16-d galleries only: their caption space
    is hand-made 16-d vectors (to make each verdict fire), which a 384-d sentence model cannot share.
    Text vectors come from a hash of the text. The real MiniLM is used by the captioned-gallery test
    and the imagen test below."""

    classifier_name = "synthetic-convnet"

    def __init__(self, dim: int = DIM, word_cache: Path | None = None):
        self.dim = dim
        self.labels_captioner = LabelsCaptioner()
        self.classifier = SimpleNamespace(name="synthetic-convnet")
        self.embedded = 0
        self.word_cache = word_cache

    @property
    def word_vectors(self):
        """The real GloVe vectors (word space needs no stand-in), loaded once per session."""
        return _real_word_vectors(str(self.word_cache))

    def classifier_head(self):
        """A seeded random last layer (1000 x DIM) for the synthetic pooled space, so that its offsets
        are named in (meaningless but real) ImageNet classes."""
        weight = np.random.default_rng(7).normal(size=(1000, self.dim)).astype(np.float32)
        return ClassifierHead(weight, np.zeros(1000, np.float32), "synthetic-convnet")

    def embed_texts(self, texts):
        self.embedded += len(texts)
        rows = []
        for text in texts:
            seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
            v = np.random.default_rng(seed).normal(size=self.dim)
            rows.append(v / np.linalg.norm(v))
        return np.asarray(rows, np.float32)


@lru_cache(maxsize=1)
def _real_word_vectors(cache_dir: str):
    return Models(Settings(cache_dir=Path(cache_dir))).word_vectors


def distractors(n: int = 8, seed: int = 0) -> list[np.ndarray]:
    """Items far from everything on axes 0-4: mostly along axes 5..15."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        v = np.zeros(DIM, np.float32)
        v[5 + i % (DIM - 5)] = 1.0
        v[5:] += 0.3 * rng.random(DIM - 5).astype(np.float32)
        out.append(v / np.linalg.norm(v))
    return out


def make_explorer(tmp_path: Path, vectors: list[np.ndarray], texts: list[str] | None = None,
                  labels: list[str | None] | None = None, caption_vectors: np.ndarray | None = None) -> Explorer:
    """An Explorer over a synthetic gallery: pooled vectors as given (image:pooled space), captions
    ``texts`` (default "caption i") with caption vectors equal to the pooled ones unless given."""
    n = len(vectors)
    settings = Settings(cache_dir=tmp_path / "cache")
    pooled = np.stack(vectors).astype(np.float32)
    logits = np.random.default_rng(1).normal(size=(n, 1000)).astype(np.float32) * 3
    items = [GalleryItem(i, f"item{i}.png", hashlib.sha256(str(i).encode()).hexdigest(),
                         labels[i] if labels else None) for i in range(n)]
    root = tmp_path / "gallery"
    root.mkdir(exist_ok=True)
    gallery = Gallery(root, items, pooled, logits, tmp_path / "store", "synthetic-convnet", settings)
    texts = texts or [f"caption {i}" for i in range(n)]
    gallery.captions = Captions(texts, ["file"] * n, pooled.copy() if caption_vectors is None else caption_vectors,
                                "synthetic-text")
    explorer = Explorer(settings, models=FakeModels(word_cache=tmp_path.parent / "glove-words"))
    explorer.gallery = gallery
    return explorer


def space_numbers(space: dict) -> list[str]:
    """The numbers of a space's JSON that the explanation must carry, formatted as the explainer does."""
    m = space["measurements"]
    numbers = [fmt(space["results"][0]["score"])]
    numbers += [fmt(m[k]) for k in ("offset_norm", "typical_nn_distance", "offset_relative",
                                    "offset_consistency", "cos_answer_c")]
    ranks = space["without_exclusion"]["input_ranks"]
    numbers.append(f"{ranks['A']}/{ranks['B']}/{ranks['C']}")
    if "only-c" in space["verdicts"]:
        numbers.append(fmt(space["baselines"]["only-c"]["score"]))
    if "ignore-a" in space["verdicts"]:
        numbers.append(fmt(space["baselines"]["ignore-a"]["score"]))
    if "near-duplicate" in space["verdicts"]:
        numbers.append(fmt(m["near_duplicate_threshold"]))
    return numbers


def check_explanation_matches_json(report: AnalogyReport) -> None:
    """The six messages of the explanation say what the report's JSON says, with its numbers: the
    inputs; image, caption and word space (each space's numbers, verdicts, answer, nearest
    neighbour); agreement; the inputs' ranks without exclusion in each space."""
    data = report.as_dict()
    messages = report.explanation
    assert len(messages) == 6 and all(m["role"] == "assistant" for m in messages)
    word = data["word_space"]
    spaces = [(data["image_space"], messages[1]["content"]), (data["caption_space"], messages[2]["content"])]
    if word is not None and word["results"]:
        spaces.append((word, messages[3]["content"]))
    for space, message in spaces:
        for number in space_numbers(space):
            assert number in message, (number, message)
        for verdict in space["verdicts"]:
            assert f"**{verdict}**" in message
        for other in set(templates()["verdicts"]) & {"input", "only-c", "ignore-a", "near-duplicate", "genuine"}:
            if other not in space["verdicts"]:
                assert f"**{other}**" not in message, (other, message)
        top = space["results"][0]
        assert f"#{top['id']} {top['path']}" in message
        nearest = "**is** C's nearest neighbour" if space["baselines"]["only-c"]["id"] == top["id"] else "**not** C's nearest neighbour"
        assert nearest in message
    if word is not None:
        assert messages[3]["content"].startswith("**Word space**")
        for inp in word["inputs"]:
            assert f'**{inp["role"]}** "{inp["text"]}"' in messages[3]["content"]
        if word["word_answer"]:
            answer = word["word_answer"]
            assert f"**{answer['word']}** (score {fmt(answer['score'])})" in messages[3]["content"]
    for inp in data["inputs"]:
        assert fmt(inp["top_labels"][0]["probability"]) in messages[0]["content"]
        assert inp["caption"] in messages[0]["content"]
    assert fmt(data["agreement"]["top_k_overlap"]["measure"]) in messages[4]["content"]
    for space in (data["image_space"], data["caption_space"]) + ((word,) if word and word["results"] else ()):
        ranks = space["without_exclusion"]["input_ranks"]
        assert f"{ranks['A']}/{ranks['B']}/{ranks['C']}" in messages[5]["content"]


A, B, C = unit((0, 1)), unit((1, 1)), unit((2, 1))
D = unit((1, 1), (0, -1), (2, 1))  # exactly b - a + c
X = unit((2, 1), (3, 0.5))  # close to c: C's nearest neighbour
Y = unit((1, 1), (2, 1), (4, 0.3))  # the IGNORE-A answer
Y_B = unit((1, 1), (2, 0.6), (4, 0.2))  # the IGNORE-A answer, further from c than D
B_NEAR_A = unit((0, 1), (1, 0.2))  # b ~ a: a tiny offset
C_TWIN = unit((2, 1), (5, 0.1))  # cos with c ~ 0.995
C_COUSIN = unit((2, 1), (5, 0.8))  # cos with c ~ 0.78
