"""The Ray engine: the same featuriser on Ray Data workers writes the same cache as a local build.

The slow test starts a local Ray instance (2 CPUs, no dashboard), builds the same 40 imagen photos with
both engines into two stores, and compares the vectors; the others check the featuriser and the worker
plan without Ray."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from pipeline.distributed import Featuriser, RayBuildError, plan_workers
from pipeline.gallery import build_gallery
from pipeline.models import Models
from pipeline.storage import read_json

# Ray Data reads deprecated settings of its own DataContext when it runs a dataset.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.*")


def test_workers_use_gpus_where_the_cluster_has_them():
    assert plan_workers({"CPU": 16.0, "GPU": 4.0}, "auto") == {
        "workers": 4, "device": "cuda", "threads": None, "remote_args": {"num_gpus": 1}}
    assert plan_workers({"CPU": 2.0}, "auto") == {
        "workers": 2, "device": "cpu", "threads": 1, "remote_args": {"num_cpus": 1}}
    assert plan_workers({"CPU": 8.0, "GPU": 2.0}, "cpu")["device"] == "cpu"
    with pytest.raises(RayBuildError, match="no GPUs"):
        plan_workers({"CPU": 8.0}, "cuda")


def test_featuriser_decodes_safely_and_refuses_files_it_cannot_see(tmp_path, settings, imagen_dir):
    good = sorted(imagen_dir.glob("*.jpg"))[0]
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    featuriser = Featuriser(settings.backbone, "cpu", str(settings.cache_dir), settings.max_pixels,
                            settings.max_file_bytes, threads=1)
    out = featuriser({"path": np.array([str(good), str(bad)]), "sha256": np.array(["h1", "h2"])})
    assert out["ok"].tolist() == [True, False]
    assert out["reason"][0] == "" and "bad.jpg" in out["reason"][1]
    assert out["pooled"].shape == (2, 1280) and out["logits"].shape == (2, 1000)
    assert not out["pooled"][1].any()
    local = Models(settings).classify([Image.open(good).convert("RGB")])
    np.testing.assert_allclose(out["pooled"][0], local.pooled[0], rtol=1e-5, atol=1e-5)
    with pytest.raises(FileNotFoundError, match="shared filesystem"):
        featuriser({"path": np.array([str(tmp_path / "gone.jpg")]), "sha256": np.array(["h3"])})


@pytest.mark.slow
def test_a_ray_build_equals_the_local_build(tmp_path, settings, imagen_dir):
    ray = pytest.importorskip("ray")
    files = sorted(imagen_dir.glob("*.jpg"))[::25][:40]
    local_dir, ray_dir = tmp_path / "local", tmp_path / "ray"
    for folder in (local_dir, ray_dir):
        folder.mkdir()
        for f in files:
            shutil.copyfile(f, folder / f.name)
    (ray_dir / "broken.jpg").write_bytes(b"\xff\xd8 truncated")  # rejected the same way by both engines
    (local_dir / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    models = Models(settings)
    local, local_stats = build_gallery(local_dir, settings, models, with_captions=False)
    ray.init(num_cpus=2, include_dashboard=False)
    try:
        distributed, ray_stats = build_gallery(ray_dir, settings, models, with_captions=False, engine="ray")
        # a worker that cannot see a file stops the build and says why (not "image is bad")
        from pipeline.distributed import compute_features_ray
        from pipeline.gallery import FeatureTable

        with pytest.raises(RayBuildError, match="cannot see .*gone.jpg.*shared filesystem"):
            compute_features_ray(ray_dir, [("gone.jpg", "h")], FeatureTable(tmp_path / "s", "m"), settings,
                                 lambda *a: None)
    finally:
        ray.shutdown()
    assert ray_stats.computed == local_stats.computed == 41
    assert ray_stats.items == local_stats.items == 40
    assert [s[0] for s in ray_stats.skipped] == [s[0] for s in local_stats.skipped] == ["broken.jpg"]
    assert [i.sha256 for i in distributed.items] == [i.sha256 for i in local.items]
    np.testing.assert_allclose(distributed.pooled, local.pooled, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(distributed.logits, local.logits, rtol=1e-5, atol=1e-5)
    # the same cache format: a manifest with checksummed arrays, shards consolidated away
    manifest = read_json(distributed.store / "manifest.json")
    assert manifest["model"] == read_json(local.store / "manifest.json")["model"]
    assert not list((distributed.store / "shards").glob("*.npz"))
    # and a rebuild with either engine reuses everything
    _, again = build_gallery(ray_dir, settings, models, with_captions=False)
    assert again.computed == 0 and again.reused == 40


def test_an_unreachable_cluster_fails_fast_with_a_plain_message(tmp_path, settings):
    pytest.importorskip("ray")
    from pipeline.distributed import compute_features_ray
    from pipeline.gallery import FeatureTable

    table = FeatureTable(tmp_path, "m")
    with pytest.raises(RayBuildError, match="cannot reach the Ray cluster at 127.0.0.1:1"):
        compute_features_ray(tmp_path, [("a.jpg", "h")], table, settings, lambda *a: None, address="127.0.0.1:1")


@pytest.mark.slow
def test_a_ray_build_captions_with_blip_on_the_workers(tmp_path, settings, imagen_dir, tiny_blip):
    ray = pytest.importorskip("ray")
    from pipeline.captions import read_caption_cache

    files = sorted(imagen_dir.glob("*.jpg"))[::100][:6]
    blip = settings.replace(captioner="blip", blip_model=str(tiny_blip), blip_max_new_tokens=4)
    local_dir, ray_dir = tmp_path / "local", tmp_path / "ray"
    for folder in (local_dir, ray_dir):
        folder.mkdir()
        for f in files:
            shutil.copyfile(f, folder / f.name)
    local_models = Models(blip)
    local, _ = build_gallery(local_dir, blip, local_models)
    ray_models = Models(blip)
    ray.init(num_cpus=2, include_dashboard=False)
    try:
        distributed, _ = build_gallery(ray_dir, blip, ray_models, engine="ray")
    finally:
        ray.shutdown()
    name = f"blip:{tiny_blip.name}"
    assert local_models._blip is not None and ray_models._blip is None  # the workers captioned, not the driver
    assert distributed.captions.captioners == local.captions.captioners == [name] * len(files)
    assert distributed.captions.texts == local.captions.texts
    cache = f"captions-{name.replace(':', '_')}.json"
    assert read_caption_cache(distributed.store / cache) == read_caption_cache(local.store / cache)
    assert len(read_caption_cache(distributed.store / cache)) == len(files)
