"""What the arithmetic meant, in the transforms suite (eval/offset_terms.py): the terms named for all
questions at once are, question by question, the terms the product names (pipeline.offsets through
pipeline.insight), and the alignment is the product's."""
from __future__ import annotations

import numpy as np
import pytest

from eval import offset_terms as OT
from eval import transforms as T
from pipeline import offsets
from pipeline.analogy import gallery_input
from pipeline.insight import offset_terms as product_terms
from tests.conftest import small_transform_questions


def test_named_terms_rank_like_the_product():
    rng = np.random.default_rng(3)
    names = [f"t{i}" for i in range(40)]
    scores = rng.integers(-3, 4, size=(25, 40)).astype(np.float64)  # many ties and zeros
    scores[0] = 0.0
    toward, away = OT.named_terms(scores, k=4)
    for row, (t, a) in enumerate(zip(toward, away)):
        want_t, want_a = offsets.rank_terms(scores[row], names, k=4)
        assert [names[i] for i in t if i >= 0] == [x.term for x in want_t]
        assert [names[i] for i in a if i >= 0] == [x.term for x in want_a]
    masks = T.offset_terms.transform_masks(np.array([0, 1, 1, 0]), ["x", "y"])
    assert masks["x"].tolist() == [True, False, False, True] and masks["all"].all()


@pytest.mark.slow
def test_batch_terms_and_alignment_equal_the_products_question_by_question(imagen_explorer, imagen_dir):
    explorer, transforms, questions = small_transform_questions(imagen_explorer, imagen_dir)
    gallery = explorer.gallery
    masks = OT.transform_masks(questions.transform, transforms)
    answers = questions.ids[:, 3][::-1].copy()  # any gallery ids will do as "3CosAdd's answers" here
    for space in ("image:pooled", "image:probs", "caption"):
        terms = OT.term_space(gallery, explorer.models, space)
        summary = OT.summarise_terms(terms, questions.ids, answers, masks)
        a, b, c, d = questions.ids.T
        toward, away = OT.named_terms(terms.scores(terms.coords[b].astype(np.float64) - terms.coords[a]))
        positive = []
        for j, ids in enumerate(questions.ids):
            inputs = [gallery_input(gallery, role, int(i)) for role, i in zip("ABC", ids[:3])]
            named = product_terms(gallery, explorer.models, inputs, space, int(ids[3]))
            assert [terms.names[i] for i in toward[j] if i >= 0] == [t.term for t in named.toward[:OT.TOP_TERMS]], (space, j)
            assert [terms.names[i] for i in away[j] if i >= 0] == [t.term for t in named.away[:OT.TOP_TERMS]], (space, j)
            positive.append(named.alignment is not None and named.alignment > 0)  # no move: no agreement
        every = summary["transforms"]["all"]
        assert every["alignment_positive_right"] == pytest.approx(np.mean(positive))
        assert every["questions"] == 9 == sum(summary["transforms"][t]["questions"] for t in transforms)
        for t in transforms:
            for entry in summary["transforms"][t]["toward"]:
                assert 0 < entry["share"] <= 1 and entry["term"] in terms.names
