"""Questions about classes in the product (CLI analogy --classes), on the real imagen photos: the answers
among class centroids are the evaluation's (pipeline.classes, tested against eval.metrics in
test_classes.py), the answers among items are the brute-force ones with the input classes excluded."""
from __future__ import annotations

import json

import pytest

from pipeline import vectors as vec
from pipeline.classes import class_answer, class_centroids
from pipeline.cli import main

TALK = [("sheep", "camel", "seal"), ("flute", "oboe", "domestic cat"), ("brassiere", "maillot", "guacamole")]


@pytest.mark.slow
@pytest.mark.parametrize("method", ["3cosadd", "3cosmul", "pairdirection"])
def test_class_questions_agree_with_the_evaluations_centroid_answers(imagen_explorer, method):
    gallery = imagen_explorer.gallery
    labels = [item.label for item in gallery.items]
    for space, key in (("image", "image:pooled"), ("caption", "caption")):
        classes, centroids = class_centroids(gallery.vectors(key), labels)
        for question in TALK:
            out = imagen_explorer.class_analogy(list(question), method=method).as_dict()
            assert [i["kind"] for i in out["inputs"]] == ["class"] * 3 and out["question"]["kind"] == "classes"
            got = out[f"{space}_space"]
            expected = class_answer(classes, centroids, *question, method=method).as_dict()
            assert [t["class"] for t in got["among_classes"]["top"]] == [t["class"] for t in expected["top"]]
            # among items: brute force, every item of the three input classes excluded
            index = {name: i for i, name in enumerate(classes)}
            a, b, c = (centroids[index[q]] for q in question)
            scores = vec.analogy_scores(gallery.vectors(key), a, b, c, method, gallery.settings.cosmul_eps)
            skip = [i for i, label in enumerate(labels) if label in question]
            ids, _ = vec.top_k(scores, 5, exclude=skip)
            assert [t["item"] for t in got["among_items"]["top"]] == [gallery.items[i].path for i in ids]
            assert got["among_items"]["excluded_items"] == len(skip) == 15
    # the evaluation's reproduce-2017 report: otter for seal, burrito for guacamole (pooled, 3CosAdd)
    if method == "3cosadd":
        assert imagen_explorer.class_analogy(list(TALK[0])).as_dict()["image_space"]["among_classes"]["class"] == "otter"
        assert imagen_explorer.class_analogy(list(TALK[2])).as_dict()["image_space"]["among_classes"]["class"] == "burrito"


@pytest.mark.slow
def test_cli_classes_in_json_and_text_and_unknown_classes_named(imagen_explorer, imagen_dir, capsys):
    common = ["--gallery", str(imagen_dir), "--cache-dir", str(imagen_explorer.settings.cache_dir),
              "--captioner", "labels"]
    assert main(["analogy", "sheep", "camel", "seal", "--classes", "--json", *common]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["inputs"] == [{"role": r, "kind": "class", "class": c} for r, c in zip("ABC", TALK[0])]
    word = out["word_space"]
    assert word["among_classes"]["class"] not in TALK[0] and word["word_answer"]["word"]
    assert word["among_classes"]["without_exclusion"]["winner"] in ("A", "B", "C", None)
    assert main(["analogy", "Sheep", "camel", "seal", "--classes", *common]) == 0
    text = capsys.readouterr().out
    assert "among classes: otter" in text and "WORD SPACE (GloVe)" in text
    image = out["image_space"]["among_classes"]  # the JSON above: the same question
    ranks = ", ".join(f"{role} #{rank}" for role, rank in image["without_exclusion"]["input_ranks"].items())
    assert f"ranks {ranks}; verdicts: {', '.join(image['verdicts'])}" in text
    assert f"baselines: ONLY-C {image['baselines']['only-c']['class']}, IGNORE-A" in text
    assert main(["analogy", "sheep", "unicorn", "seal", "--classes", *common]) == 2
    err = capsys.readouterr().err
    assert "no class named 'unicorn'" in err and "Traceback" not in err
