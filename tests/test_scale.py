"""Scale: exact analogy answers on approximate indexes, incremental consolidation, and a gallery build
that survives SIGKILL. Real FAISS, the real solve path, the real CLI in a subprocess."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from pipeline import vectors as vec
from pipeline.analogy import CANDIDATE_MARGIN, AnalogyInput, solve_space
from pipeline.gallery import FeatureTable, Gallery, GalleryItem, build_gallery, store_dir_for
from pipeline.models import Models
from pipeline.storage import read_array, read_json
from scripts.bench_lib import BenchIndex, clustered_unit_vectors
from tests.conftest import REPO

SPACE = "image:pooled"
N, DIM = 6000, 96


# --- exact answers on approximate indexes -------------------------------------------------------


def synthetic_gallery(tmp_path, pooled: np.ndarray, settings, kind: str) -> Gallery:
    """A real Gallery over synthetic activations, with its pooled-space index of ``kind``."""
    items = [GalleryItem(i, f"img/{i:05d}.jpg", f"{i:064x}", f"cluster {i % 40}") for i in range(len(pooled))]
    gallery = Gallery(tmp_path, items, pooled, np.zeros((len(pooled), 8), np.float32), tmp_path / f"store-{kind}",
                      "synthetic", settings)
    gallery._indexes[SPACE] = BenchIndex.build(gallery.vectors(SPACE), kind)
    return gallery


def gallery_inputs(gallery: Gallery, ids) -> list[AnalogyInput]:
    return [AnalogyInput(role, gallery.items[i].path, int(i), gallery.items[i].sha256, None, [], None, None,
                         {SPACE: gallery.vectors(SPACE)[i]}) for role, i in zip("ABC", ids)]


def uploaded_input(role: str, vector: np.ndarray) -> AnalogyInput:
    return AnalogyInput(role, f"upload-{role}.png", None, None, None, [], None, None, {SPACE: vec.l2_normalize(vector)})


def summary(result) -> dict:
    """What a user sees of an answer (ids, scores to 4 places, baselines, verdicts, exclusions).
    Without exclusion, the winning score (IGNORE-A ties B with C exactly: either may win). Scores
    are rounded because the exact path and the candidate path multiply in different BLAS calls."""
    wo = result.without_exclusion
    top = wo["top"]
    return {"results": [h.id for h in result.results], "scores": [round(h.score, 4) for h in result.results],
            "baselines": {k: (h.id if h else None) for k, h in result.baselines.items()},
            "winner_is_input": wo["winner"] is not None, "top_score": round(top.score, 4) if hasattr(top, "id") else top,
            "verdicts": result.verdicts, "excluded": sorted(e["id"] for e in result.excluded)}


@pytest.fixture(scope="module")
def pooled():
    x = clustered_unit_vectors(N, DIM, seed=3)
    x[N - 20:] = x[:20]  # exact duplicates: exclusion by id must not drop the copies
    return x * np.linspace(0.5, 3.0, N, dtype=np.float32)[:, None]  # raw activations are not unit


@pytest.fixture(scope="module")
def galleries(tmp_path_factory, pooled, settings):
    tmp = tmp_path_factory.mktemp("synthetic")
    return {kind: synthetic_gallery(tmp, pooled, settings, kind) for kind in ("flat", "pq", "ivf", "hnsw")}


def same_answers(got, want, method: str, exclude: bool) -> bool:
    g, w = summary(got), summary(want)
    if exclude:
        return g == w
    # With the inputs in play, IGNORE-A and MULTIPLY score B and C identically (up to float rounding,
    # which differs between BLAS calls): compare what such ties cannot change.
    keys = ["winner_is_input", "top_score", "scores"] + (["results"] if method not in ("ignore-a", "multiply") else [])
    return all(g[k] == w[k] for k in keys)


@pytest.mark.parametrize("kind", ["pq", "ivf", "hnsw"])
def test_analogies_on_an_approximate_index_equal_exact_answers(galleries, kind):
    """The default approximate kind (pq, re-ranked) gives the exact answers to every question here;
    ivf and hnsw (on request) to nearly all: their candidates miss a true neighbour now and then
    (recall@10 about 0.97, as measured at build time)."""
    exact, approx = galleries["flat"], galleries[kind]
    assert not approx.index(SPACE).exact
    rng = np.random.default_rng(0)
    triples = [rng.choice(N, 3, replace=False) for _ in range(24)]
    checked_ranks, differing = 0, []
    for n, ids in enumerate(triples):
        method = vec.ALL_METHODS[n % len(vec.ALL_METHODS)]
        for exclude in (True, False):
            want = solve_space(exact, gallery_inputs(exact, ids), SPACE, method, exclude=exclude, top_k=5)
            got = solve_space(approx, gallery_inputs(approx, ids), SPACE, method, exclude=exclude, top_k=5)
            if not same_answers(got, want, method, exclude):
                differing.append((list(ids), method, exclude))
                continue
            assert got.without_exclusion["ranks_exact"] is False and want.without_exclusion["ranks_exact"] is True
            assert got.measurements["scored_rows"] < N == want.measurements["scored_rows"]
            # small ranks (the ones that matter) are exact within the candidates (as a multiset: exact
            # ties such as IGNORE-A's B and C may swap)
            small = [role for role, rank in want.without_exclusion["input_ranks"].items() if rank <= 20]
            assert (sorted(got.without_exclusion["input_ranks"][r] for r in small)
                    == sorted(want.without_exclusion["input_ranks"][r] for r in small))
            checked_ranks += len(small)
    assert checked_ranks > 10
    if kind == "pq":
        assert not differing
    else:
        assert len(differing) <= 0.2 * 2 * len(triples), differing
    # C has an exact duplicate in the gallery: exclusion is by id, so the copy stays and wins ONLY-C
    # (without exclusion C and its copy tie at cosine 1, so only the excluded answers are compared).
    ids = [25, 26, N - 20 + 7]
    want = solve_space(exact, gallery_inputs(exact, ids), SPACE, "only-c")
    got = solve_space(approx, gallery_inputs(approx, ids), SPACE, "only-c")
    assert [h.id for h in want.results] == [h.id for h in got.results] and want.results[0].id == 7


def test_uploaded_near_duplicates_are_excluded_on_an_approximate_index(galleries):
    exact, approx = galleries["flat"], galleries["pq"]
    x = exact.vectors(SPACE)
    rng = np.random.default_rng(1)
    c_upload = x[100] + 0.02 * rng.standard_normal(DIM).astype(np.float32) / np.sqrt(DIM)  # near-duplicate of 100
    for gallery in (exact, approx):
        inputs = gallery_inputs(gallery, [27, 28, 0])
        inputs[2] = uploaded_input("C", c_upload)
        result = solve_space(gallery, inputs, SPACE, "3cosadd", exclude=True)
        excluded = {e["id"]: e["reason"] for e in result.excluded}
        assert 100 in excluded and "near-duplicate of uploaded C" in excluded[100]
    want = solve_space(exact, [*gallery_inputs(exact, [27, 28]), uploaded_input("C", c_upload)], SPACE)
    got = solve_space(approx, [*gallery_inputs(approx, [27, 28]), uploaded_input("C", c_upload)], SPACE)
    assert summary(got) == summary(want)


def test_many_near_duplicates_of_an_upload_widen_the_candidates(tmp_path, settings):
    """More near-duplicates than the over-fetch holds: all are still found and excluded."""
    base = clustered_unit_vectors(3000, 32, seed=5)
    rng = np.random.default_rng(2)
    copies = CANDIDATE_MARGIN + 60
    base[:copies] = vec.l2_normalize(base[0] + 0.01 * rng.standard_normal((copies, 32)).astype(np.float32) / np.sqrt(32))
    results = {}
    for kind in ("flat", "pq"):
        gallery = synthetic_gallery(tmp_path, base, settings, kind)
        inputs = [*gallery_inputs(gallery, [1500, 1501]), uploaded_input("C", base[0])]
        results[kind] = solve_space(gallery, inputs, SPACE, "3cosadd")
    assert len(results["flat"].excluded) >= copies
    assert summary(results["pq"]) == summary(results["flat"])


def test_auto_index_of_a_gallery_is_saved_and_reloaded(tmp_path, settings, monkeypatch):
    from pipeline import index as ix

    monkeypatch.setattr(ix, "FLAT_MAX_ITEMS", 500)
    pooled = clustered_unit_vectors(1200, 48, seed=8)
    items = [GalleryItem(i, f"{i}.jpg", f"{i:064x}") for i in range(1200)]
    store = tmp_path / "store"
    first = Gallery(tmp_path, items, pooled, np.zeros((1200, 8), np.float32), store, "synthetic", settings)
    assert first.index(SPACE).kind == "pq" and first.index_messages  # built (and saved)
    again = Gallery(tmp_path, items, pooled, np.zeros((1200, 8), np.float32), store, "synthetic", settings)
    loaded = again.index(SPACE)
    assert loaded.kind == "pq" and not again.index_messages  # loaded from the manifest, not rebuilt
    assert loaded.info == first.index(SPACE).info
    assert again.typical_nn_distance(SPACE) > 0


# --- consolidation -------------------------------------------------------------------------------


def test_consolidate_writes_aligned_arrays_from_shards_without_holding_them(tmp_path):
    rng = np.random.default_rng(0)
    table = FeatureTable(tmp_path, "m")
    hashes, pooled, logits = [], [], []
    for shard in range(4):
        h = [f"{shard}-{i}" for i in range(50)]
        p = rng.standard_normal((50, 16)).astype(np.float32)
        l = rng.standard_normal((50, 10)).astype(np.float32)
        table.add_shard(h, p, l, {f"bad-{shard}": "not an image"})
        hashes += h
        pooled.append(p)
        logits.append(l)
    assert all(not isinstance(source, tuple) for source in table.sources)  # shard paths, not arrays
    order = rng.permutation(len(hashes))[:150]
    wanted = [hashes[i] for i in order]
    items = [GalleryItem(i, f"{h}.jpg", h) for i, h in enumerate(wanted)]
    out_pooled, out_logits = table.consolidate(tmp_path, wanted, items, tmp_path, lambda: "synthetic classifier")
    np.testing.assert_array_equal(out_pooled, np.concatenate(pooled)[order])
    np.testing.assert_array_equal(out_logits, np.concatenate(logits)[order])
    assert out_pooled.dtype == np.float32 and isinstance(out_pooled, np.memmap)
    manifest = read_json(tmp_path / "manifest.json")
    assert manifest["dims"] == {"pooled": 16, "logits": 10}
    read_array(tmp_path / "pooled.npy", manifest["arrays"]["pooled"])  # checksums hold
    read_array(tmp_path / "logits.npy", manifest["arrays"]["logits"])
    assert not list((tmp_path / "shards").glob("*.npz"))
    # the next build reads the consolidated arrays back as one memory-mapped source
    again = FeatureTable.load(tmp_path, "m")
    assert len(again.sources) == 1 and set(again.rows) == set(wanted) and "bad-2" in again.rejected


# --- a build killed mid-way resumes ---------------------------------------------------------------


@pytest.mark.slow
def test_a_build_killed_with_sigkill_resumes_and_equals_an_uninterrupted_build(tmp_path, imagen_dir, settings):
    files = sorted(imagen_dir.glob("*.jpg"))[:640]
    interrupted, reference = tmp_path / "interrupted", tmp_path / "reference"
    for folder in (interrupted, reference):
        folder.mkdir()
        for f in files:
            shutil.copyfile(f, folder / f.name)
    command = [sys.executable, "-m", "pipeline", "gallery", "build", str(interrupted), "--cache-dir",
               str(settings.cache_dir), "--device", "cpu", "--no-captions", "--json"]
    store = store_dir_for(interrupted, settings)
    env = {k: v for k, v in os.environ.items() if not k.startswith("IAE_")}
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 600
    while not list((store / "shards").glob("*.npz")):
        assert process.poll() is None, f"the build ended before it could be killed: {process.stderr.read()[-500:]}"
        assert time.monotonic() < deadline, "no shard was written in 10 minutes"
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    assert process.returncode == -signal.SIGKILL
    assert not (store / "manifest.json").exists()  # killed before consolidation
    saved = len(list((store / "shards").glob("*.npz")))

    rerun = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    stats = json.loads(rerun.stdout)
    assert stats["items"] == len(files)
    assert 0 < stats["computed"] < len(files), stats  # finished chunks were not recomputed
    assert stats["reused"] == len(files) - stats["computed"] >= saved * 128 - 128
    assert not list((store / "shards").glob("*.npz"))  # consolidated

    gallery, ref_stats = build_gallery(reference, settings, Models(settings), with_captions=False)
    assert ref_stats.computed == len(files)
    manifest = read_json(store / "manifest.json")
    assert [i["sha256"] for i in manifest["items"]] == [i.sha256 for i in gallery.items]
    assert [i["path"] for i in manifest["items"]] == [i.path for i in gallery.items]
    resumed_pooled = read_array(store / "pooled.npy", manifest["arrays"]["pooled"])
    resumed_logits = read_array(store / "logits.npy", manifest["arrays"]["logits"])
    np.testing.assert_allclose(resumed_pooled, gallery.pooled, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(resumed_logits, gallery.logits, rtol=1e-5, atol=1e-5)


def test_writing_an_array_incrementally_equals_np_save_and_fails_cleanly(tmp_path):
    from pipeline.storage import CacheError, write_array, writing_array

    data = np.random.default_rng(3).standard_normal((300, 7)).astype(np.float32)
    with writing_array(tmp_path / "a.npy", data.shape) as out:
        for start in range(0, 300, 64):
            out.array[start:start + 64] = data[start:start + 64]
    assert out.sha256 == write_array(tmp_path / "b.npy", data)  # the same bytes as np.save
    np.testing.assert_array_equal(read_array(tmp_path / "a.npy", out.sha256), data)
    with pytest.raises(RuntimeError, match="boom"), writing_array(tmp_path / "a.npy", (5, 2)) as out:
        raise RuntimeError("boom")
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), data)  # untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npy", "b.npy"]  # no temporary left
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(CacheError):
        with writing_array(blocker / "c.npy", (2, 2)):
            pass
