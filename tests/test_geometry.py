"""The geometry of a question (pipeline/geometry.py) and its pictures (pipeline/figures.py)."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from pipeline import figures, geometry
from pipeline import vectors as vec

COFFEE = ("coffee/original.jpg", "coffee/greyscale.jpg", "cat/original.jpg")


def _unit_rows(n, d, seed):
    return vec.l2_normalize(np.random.default_rng(seed).normal(size=(n, d)))


def _point(geo, role):
    return next(p for p in geo.points if p.role == role)


def test_c_and_the_3cosadd_query_project_exactly():
    a, b, c = _unit_rows(3, 64, 0)
    geo = geometry.question_geometry(a, b, c, method="3cosadd")
    assert geo.plane_kind == "offset"
    e1, e2, _ = geometry.plane_basis(c, b - a)
    assert abs(e1 @ e2) < 1e-12 and e1 @ e1 == pytest.approx(1) and e2 @ e2 == pytest.approx(1)
    pc, pq = _point(geo, "C"), _point(geo, "query")
    assert (pc.x, pc.y) == pytest.approx((1.0, 0.0), abs=1e-9)
    query = (b - a + c).astype(np.float64)
    # the query lies in the plane: its coordinates rebuild it exactly
    np.testing.assert_allclose(pq.x * e1 + pq.y * e2, query, atol=1e-6)
    # and the arrows keep their true length: |C -> query| = |A -> B| = |b - a|
    pa, pb = _point(geo, "A"), _point(geo, "B")
    assert np.hypot(pq.x - pc.x, pq.y - pc.y) == pytest.approx(np.linalg.norm(b - a), abs=1e-6)
    assert np.hypot(pb.x - pa.x, pb.y - pa.y) == pytest.approx(np.linalg.norm(b - a), abs=1e-6)
    assert geo.offset_norm == pytest.approx(np.linalg.norm(b - a), abs=1e-6)


def test_preserved_is_the_mean_distance_ratio_in_0_1():
    points = _unit_rows(12, 32, 1).astype(np.float64)
    e1, e2, _ = geometry.plane_basis(points[0], points[1] - points[2])
    projected = np.stack([points @ e1, points @ e2], axis=1)
    ratios = [np.linalg.norm(projected[i] - projected[j]) / np.linalg.norm(points[i] - points[j])
              for i in range(12) for j in range(i + 1, 12)]
    assert geometry.preserved_ratio(points, projected) == pytest.approx(np.mean(ratios))
    assert 0.0 <= geometry.preserved_ratio(points, projected) <= 1.0
    # points already in a plane are drawn exactly
    flat = np.outer(np.linspace(-1, 1, 5), e1) + np.outer(np.linspace(0, 2, 5) ** 2, e2)
    assert geometry.preserved_ratio(flat, np.stack([flat @ e1, flat @ e2], axis=1)) == pytest.approx(1.0)


def test_zero_offset_falls_back_to_the_answer_and_methods_without_a_query_say_so():
    a, c = _unit_rows(2, 16, 2)
    gallery = _unit_rows(10, 16, 3)
    geo = geometry.question_geometry(a, a, c, vectors=gallery, answer=4)
    assert geo.plane_kind == "answer"
    d = gallery[4]
    e1, e2, _ = geometry.plane_basis(c, np.zeros(16), d - c)
    np.testing.assert_allclose([_point(geo, "answer").x, _point(geo, "answer").y], [d @ e1, d @ e2], atol=1e-6)
    geo = geometry.question_geometry(a, a, c)
    assert geo.plane_kind == "any"
    out = geometry.question_geometry(a, _unit_rows(1, 16, 4)[0], c, method="3cosmul").as_dict()
    assert "query" not in {p["role"] for p in out["points"]}
    assert "no single query point" in out["query_text"]
    with pytest.raises(ValueError):
        geometry.question_geometry(a, a, c, method="nonsense")


def test_each_gallery_item_is_drawn_once_with_its_first_role():
    a, b, c = _unit_rows(3, 16, 5)
    gallery = _unit_rows(8, 16, 6)
    geo = geometry.question_geometry(a, b, c, vectors=gallery, answer=3, top=[3, 5, 0], neighbours=[5, 6, 0],
                                     input_ids=(0, 1, 2), nn_distance=0.4)
    roles = [(p.role, p.id) for p in geo.points]
    assert roles == [("A", 0), ("B", 1), ("C", 2), ("query", None), ("answer", 3), ("top", 5), ("neighbour", 6)]
    out = geo.as_dict()
    assert out["nn_radius"] == 0.4 and isinstance(out["plane"], str) and 0 <= out["preserved"] <= 1
    assert out["query_outside_circle"] == bool(np.linalg.norm(b - a) > 0.4)


def _png_size(data: bytes) -> tuple[int, int]:
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG"
    image.load()
    return image.size


def test_geometry_png_is_drawn_from_the_json_numbers(tmp_path):
    a, b, c = _unit_rows(3, 16, 7)
    gallery = _unit_rows(8, 16, 8)
    out = geometry.question_geometry(a, b, c, vectors=gallery, answer=3, top=[4, 5], neighbours=[6],
                                     nn_distance=0.5).as_dict()
    data = figures.geometry_png(out, title="test")
    width, height = _png_size(data)
    assert width > 300 and height > 300
    moved = {**out, "points": [dict(p, x=p["x"] + 0.3) if p["role"] == "answer" else p for p in out["points"]]}
    assert figures.geometry_png(moved, title="test") != data
    path = figures.write_png(tmp_path / "geometry-image.png", data)
    assert path.read_bytes() == data


def test_heatmap_png_overlays_each_map():
    image = (np.random.default_rng(0).random((224, 224, 3)) * 255).astype(np.uint8)
    heat = np.zeros((7, 7), np.float32)
    heat[3, 3] = 1.0
    blended = figures.overlay(image, heat)
    assert blended.shape == image.shape and blended.dtype == np.uint8
    assert not np.array_equal(blended[112, 112], image[112, 112])
    width, height = _png_size(figures.heatmap_png(image, [("toward the query", heat), ("toward C", heat.T)], "D"))
    assert width > height > 100


@pytest.mark.slow
def test_default_gallery_question_geometry(default_explorer, tmp_path):
    report = default_explorer.analogy(list(COFFEE), explain=False)
    gallery = default_explorer.gallery
    ids = [inp.item_id for inp in report.inputs]
    for space, result in (("image:pooled", report.image_space), ("caption", report.caption_space)):
        a, b, c = (inp.vectors[space] for inp in report.inputs)
        neighbours = geometry.neighbour_ids(gallery.index(space), c, 5, exclude=ids)
        sims = gallery.vectors(space) @ c
        brute = [int(i) for i in np.argsort(-sims, kind="stable") if int(i) not in ids][:5]
        assert neighbours == brute
        geo = geometry.question_geometry(a, b, c, vectors=gallery.vectors(space), answer=result.top.id,
                                         top=[h.id for h in result.results], neighbours=neighbours,
                                         input_ids=ids, nn_distance=gallery.typical_nn_distance(space))
        out = geo.as_dict()
        assert 0.0 < out["preserved"] <= 1.0
        answer = next(p for p in out["points"] if p["role"] == "answer")
        # x is the cosine with c, so the answer's x is cos(D, C)
        assert answer["x"] == pytest.approx(result.measurements["cos_answer_c"], abs=1e-5)
        assert out["offset_norm"] == pytest.approx(result.measurements["offset_norm"], abs=1e-5)
        _png_size(figures.write_png(tmp_path / f"geometry-{space}.png", figures.geometry_png(out)).read_bytes())
