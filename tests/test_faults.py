"""Faults in the cache: damaged files are detected and rebuilt, never used; killed builds resume.

Every file of a gallery's store (its manifest, the activation arrays, each FAISS index and its
manifest, the caption vectors and their manifest) is damaged in turn, in several seeded ways
(truncated at a random length, one byte flipped at a random offset, emptied, overwritten with random
bytes); each time the gallery is opened again with the real models and must give exactly the vectors,
captions and search results of the undamaged cache, say what it rebuilt where the store keeps a
message (``Gallery.index_messages``), and leave a healed cache behind. The app's web copies
(thumbnails, previews, figures) are damaged the same way. A gallery build in a subprocess is killed
with SIGKILL at seeded random points, several times over, and the final run's cache is byte-identical
to an uninterrupted build's.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.gallery import SPACES, build_gallery, store_dir_for
from pipeline.index import load_index
from pipeline.storage import read_array, read_json
from pipeline.web_copies import PREVIEW_SIZE, THUMB_SIZE, WebCopies, figure_copy
from tests.conftest import REPO

N_IMAGES = 16
DAMAGE_SEED = 11
DAMAGES = ("truncated", "flipped", "emptied", "garbage")


def synthetic_images(folder: Path, n: int, seed: int = 0) -> Path:
    """``n`` distinct small PNGs (smooth colour fields from a seeded 8x8 grid), so builds are quick."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        grid = rng.integers(0, 256, (8, 8, 3)).astype(np.uint8)
        Image.fromarray(grid).resize((96, 96), Image.BILINEAR).save(folder / f"img-{i:03d}.png")
    return folder


def damage(path: Path, how: str, rng: random.Random) -> str:
    """Damage ``path`` in place; -> what was done, for messages."""
    data = path.read_bytes()
    if how == "truncated":
        cut = rng.randrange(1, len(data))
        path.write_bytes(data[:cut])
        return f"truncated to {cut} of {len(data)} bytes"
    if how == "flipped":
        at = rng.randrange(len(data))
        path.write_bytes(data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1:])
        return f"byte {at} of {len(data)} flipped"
    if how == "emptied":
        path.write_bytes(b"")
        return "emptied"
    if how == "garbage":
        path.write_bytes(rng.randbytes(len(data)))
        return f"{len(data)} random bytes"
    raise ValueError(how)


def snapshot(gallery) -> dict:
    """What a user gets from a gallery: items, raw arrays, captions, and top-5 search results of a
    few queries in every space."""
    out = {"items": [(i.path, i.sha256, i.label) for i in gallery.items],
           "pooled": np.array(gallery.pooled), "logits": np.array(gallery.logits),
           "captions": list(gallery.captions.texts), "caption_vectors": np.array(gallery.captions.vectors)}
    for space in SPACES:
        vectors = gallery.vectors(space)
        found = gallery.index(space).search(vectors[:4], 5)
        out[space] = (found.ids.tolist(), np.round(found.scores, 5).tolist())
    return out


def assert_same(got: dict, want: dict, what: str) -> None:
    assert got["items"] == want["items"], what
    assert np.array_equal(got["pooled"], want["pooled"]), what
    assert np.array_equal(got["logits"], want["logits"]), what
    assert got["captions"] == want["captions"], what
    np.testing.assert_allclose(got["caption_vectors"], want["caption_vectors"], atol=1e-6, err_msg=what)
    for space in SPACES:
        assert got[space] == want[space], (what, space)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, settings, default_explorer):
    """A small gallery built once (labels captions, every space indexed and saved), and its snapshot."""
    base = tmp_path_factory.mktemp("faults")
    root = synthetic_images(base / "gallery", N_IMAGES)
    local = settings.replace(cache_dir=base / "cache", captioner="labels")
    gallery, stats = build_gallery(root, local, default_explorer.models)
    assert stats.computed == N_IMAGES
    want = snapshot(gallery)  # builds and saves every index
    assert not gallery.index_messages or all("no saved index" in m for m in gallery.index_messages)
    return {"root": root, "settings": local, "store": gallery.store, "want": want, "models": default_explorer.models}


def store_files(store: Path) -> list[str]:
    names = sorted(p.name for p in store.iterdir() if p.is_file() and not p.name.endswith(".tmp"))
    assert {"manifest.json", "pooled.npy", "logits.npy"} <= set(names)
    assert sum(n.startswith("index-") and n.endswith(".faiss") for n in names) == len(SPACES)
    assert sum(n.startswith("caption-vectors-") for n in names) == 2
    return names


def expected_message(name: str) -> str | None:
    """The message a damaged ``name`` must leave in index_messages (None: recomputed silently)."""
    if name in ("manifest.json", "pooled.npy", "logits.npy"):
        return "gallery cache damaged, recomputing"
    if name.startswith("index-"):
        space = name[len("index-"):].split(".faiss")[0]
        space = "caption" if space == "caption" else space.replace("image-", "image:")
        return f"rebuilt {space} index"
    return None


def test_every_damaged_store_file_is_detected_rebuilt_and_healed(reference, tmp_path):
    store_names = store_files(reference["store"])
    rng = random.Random(DAMAGE_SEED)
    trials = 0
    for name in store_names:
        for how in DAMAGES:
            cache = tmp_path / f"trial-{trials}"
            shutil.copytree(reference["settings"].cache_dir, cache)
            local = reference["settings"].replace(cache_dir=cache)
            store = store_dir_for(reference["root"], local)
            done = damage(store / name, how, rng)
            what = f"{name} {done}"

            gallery, stats = build_gallery(reference["root"], local, reference["models"])
            assert_same(snapshot(gallery), reference["want"], what)
            message = expected_message(name)
            if message is not None:
                assert any(message in m for m in gallery.index_messages), (what, gallery.index_messages)
            if name in ("manifest.json", "pooled.npy", "logits.npy"):
                assert stats.computed == N_IMAGES, what  # never taken from the damaged file
            else:
                assert stats.computed == 0, what

            # the cache healed: the next open rebuilds nothing and says nothing
            again, stats = build_gallery(reference["root"], local, reference["models"])
            assert_same(snapshot(again), reference["want"], f"{what}, reopened")
            assert stats.computed == 0 and again.index_messages == [], (what, again.index_messages)
            manifest = read_json(store / "manifest.json")
            read_array(store / "pooled.npy", manifest["arrays"]["pooled"])
            read_array(store / "logits.npy", manifest["arrays"]["logits"])
            vectors_meta = next(store.glob("caption-vectors-*.json"))
            read_array(vectors_meta.with_suffix(".npy"), read_json(vectors_meta)["sha256"])
            shutil.rmtree(cache)
            trials += 1
    assert trials == len(store_names) * len(DAMAGES)
    print(f"{trials} damaged store files ({len(store_names)} files x {len(DAMAGES)} kinds of damage): "
          "all detected and rebuilt")


def test_a_damaged_index_is_refused_by_its_checksum_and_rebuilt(reference, tmp_path):
    """The FAISS file itself, damaged where a reader would not notice (the index still loads), is
    caught by the checksum in its manifest; the index used is the rebuilt one."""
    cache = tmp_path / "c"
    shutil.copytree(reference["settings"].cache_dir, cache)
    local = reference["settings"].replace(cache_dir=cache)
    store = store_dir_for(reference["root"], local)
    path = store / "index-image-pooled.faiss"
    import faiss

    index = faiss.read_index(str(path))
    vectors = faiss.rev_swig_ptr(index.get_xb(), index.ntotal * index.d).reshape(index.ntotal, index.d)
    vectors[[0, 1]] = vectors[[1, 0]]  # a swapped pair of rows: still a valid index, wrong answers
    faiss.write_index(index, str(path))
    with pytest.raises(Exception, match="checksum"):
        load_index(path, np.zeros((N_IMAGES, index.d), np.float32) + 1 / np.sqrt(index.d),
                   {"space": "image:pooled"})
    gallery, _ = build_gallery(reference["root"], local, reference["models"])
    assert_same(snapshot(gallery), reference["want"], "swapped rows")
    assert any("rebuilt image:pooled index" in m and "checksum mismatch" in m for m in gallery.index_messages)


def test_a_torn_shard_is_ignored_and_its_images_recomputed(reference, tmp_path):
    cache = tmp_path / "c"
    shutil.copytree(reference["settings"].cache_dir, cache)
    local = reference["settings"].replace(cache_dir=cache)
    store = store_dir_for(reference["root"], local)
    (store / "manifest.json").unlink()  # as if the build had been killed before consolidating
    (store / "shards").mkdir(exist_ok=True)
    (store / "shards" / "torn.npz").write_bytes(b"PK\x03\x04" + os.urandom(200))
    gallery, stats = build_gallery(reference["root"], local, reference["models"])
    assert stats.computed == N_IMAGES
    assert any("ignored damaged shard torn.npz" in m for m in gallery.index_messages), gallery.index_messages
    assert_same(snapshot(gallery), reference["want"], "torn shard")
    assert not list((store / "shards").glob("*.npz"))


# --- the app's web copies ------------------------------------------------------------------------


def test_damaged_web_copies_are_made_again(reference, default_explorer, tmp_path):
    gallery, _ = build_gallery(reference["root"], reference["settings"], reference["models"])
    rng = random.Random(DAMAGE_SEED)
    checked = 0
    for size, kind in ((THUMB_SIZE, "thumbs"), (PREVIEW_SIZE, "previews")):
        first = WebCopies(gallery, size, kind)
        good = {i: first.path(i).read_bytes() for i in range(N_IMAGES)}
        for i, how in zip(range(N_IMAGES), DAMAGES * N_IMAGES):
            damage(first.path(i), how, rng)
        fresh = WebCopies(gallery, size, kind)  # a new process: copies on disk are checked once
        for i in range(N_IMAGES):
            path = fresh.path(i)
            assert path.read_bytes() == good[i], (kind, i)
            assert fresh.find_hash(hashlib.sha256(good[i]).hexdigest()) == i
            checked += 1
        assert len(list(fresh.folder.glob("*.jpg"))) == N_IMAGES  # the damaged ones were replaced
    # an evaluation figure's copy, damaged, is written again
    figure = tmp_path / "accuracy.png"
    Image.new("RGB", (30, 20), "white").save(figure)
    copy = figure_copy(figure, tmp_path / "figures")
    copy.write_bytes(copy.read_bytes()[:20])
    assert figure_copy(figure, tmp_path / "figures").read_bytes() == figure.read_bytes()
    assert figure_copy(tmp_path / "missing.png", tmp_path / "figures") is None
    (tmp_path / "fake.png").write_text("not a png")
    assert figure_copy(tmp_path / "fake.png", tmp_path / "figures") is None
    print(f"{checked} damaged web copies made again")


def test_making_missing_thumbnails_reads_none_of_the_others(reference, tmp_path):
    gallery, _ = build_gallery(reference["root"], reference["settings"], reference["models"])
    first = WebCopies(gallery, THUMB_SIZE, "thumbs")
    first.folder = tmp_path / "thumbs-160"
    progress = []
    assert first.make_missing(range(N_IMAGES), lambda *step: progress.append(step)) == N_IMAGES
    assert progress[-1] == (N_IMAGES, N_IMAGES, "thumbnails")
    good = {i: first.path(i).read_bytes() for i in range(N_IMAGES)}
    first.path(0).unlink()
    first.path(1).unlink()
    damaged = first.path(2)
    damaged.write_bytes(b"damaged")
    fresh = WebCopies(gallery, THUMB_SIZE, "thumbs")  # a new process
    fresh.folder = first.folder
    assert fresh.make_missing(range(N_IMAGES)) == 2  # only the two without a file
    assert damaged.read_bytes() == b"damaged"  # the others were not read
    assert fresh.path(2).read_bytes() == good[2]  # the damaged one is found when it is first used, and made again
    assert [fresh.path(i).read_bytes() for i in range(N_IMAGES)] == [good[i] for i in range(N_IMAGES)]
    assert fresh.make_missing(range(N_IMAGES)) == 0


def test_an_unwritable_store_still_shows_images(reference, tmp_path):
    gallery, _ = build_gallery(reference["root"], reference["settings"], reference["models"])
    copies = WebCopies(gallery, PREVIEW_SIZE, "previews")
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    copies.folder = blocker / "previews-512"
    shown = copies.path(3)
    assert isinstance(shown, Image.Image) and max(shown.size) <= PREVIEW_SIZE


# --- killed builds -------------------------------------------------------------------------------

KILL_IMAGES = 96
KILL_CHUNK = 16  # images per shard in the killed builds: 6 shards
KILL_TRIALS = 3  # independent folders, each killed up to KILL_ROUNDS times before a last, full run
KILL_ROUNDS = 3
KILL_SEED = 2024
BUILD = ("import sys\n"
         "import pipeline.gallery as g\n"
         "g.CHUNK = int(sys.argv[1])\n"
         "from pipeline.cli import main\n"
         "sys.exit(main(sys.argv[2:]))\n")


def _build_command(root: Path, cache: Path) -> list[str]:
    return [sys.executable, "-c", BUILD, str(KILL_CHUNK), "gallery", "build", str(root), "--cache-dir", str(cache),
            "--device", "cpu", "--no-captions", "--json"]


def _check_store_is_consistent(store: Path) -> None:
    """What a kill may leave: whole shards and, if any, a manifest whose arrays match its checksums."""
    for shard in (store / "shards").glob("*.npz"):
        with np.load(shard, allow_pickle=False) as data:
            assert len(data["hashes"]) == len(data["pooled"]) == len(data["logits"])
    if (store / "manifest.json").exists():
        manifest = read_json(store / "manifest.json")
        read_array(store / "pooled.npy", manifest["arrays"]["pooled"])
        read_array(store / "logits.npy", manifest["arrays"]["logits"])


@pytest.mark.slow
def test_builds_killed_at_random_points_resume_to_an_identical_cache(tmp_path, settings, default_explorer):
    """In each of KILL_TRIALS copies of a folder, the build is started and SIGKILLed up to KILL_ROUNDS
    times, each time once a seeded random number of new shards exist plus a seeded random delay (so
    the kill falls anywhere: starting up, decoding, between shards, consolidating); then it runs to
    the end. Its arrays and manifest equal, byte for byte, those of an uninterrupted build."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IAE_")}
    env["PYTHONPATH"] = str(REPO)
    cache = settings.cache_dir  # the session's: the ONNX model is already exported there
    source = synthetic_images(tmp_path / "source", KILL_IMAGES, seed=5)
    reference = tmp_path / "reference"
    shutil.copytree(source, reference)
    done = subprocess.run(_build_command(reference, cache), cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    reference_store = store_dir_for(reference, settings)
    want = read_json(reference_store / "manifest.json")

    chunks = -(-KILL_IMAGES // KILL_CHUNK)
    rng = random.Random(KILL_SEED)
    log = []
    for trial in range(KILL_TRIALS):
        folder = tmp_path / f"interrupted-{trial}"
        shutil.copytree(source, folder)
        store = store_dir_for(folder, settings)
        for _ in range(KILL_ROUNDS):
            before = len(list((store / "shards").glob("*.npz")))
            wanted_shards, delay = before + rng.randint(0, chunks - before), rng.uniform(0.0, 0.4)
            process = subprocess.Popen(_build_command(folder, cache), cwd=REPO, env=env,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + 300
            while (process.poll() is None and len(list((store / "shards").glob("*.npz"))) < wanted_shards
                   and time.monotonic() < deadline):
                time.sleep(0.005)
            time.sleep(delay)
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=60)
            killed = process.returncode == -signal.SIGKILL
            log.append({"trial": trial, "new_shards": wanted_shards - before, "delay": round(delay, 3),
                        "killed": killed, "shards_left": len(list((store / "shards").glob("*.npz"))),
                        "manifest": (store / "manifest.json").exists()})
            _check_store_is_consistent(store)
            if not killed:  # it finished first: nothing left to interrupt
                break

        final = subprocess.run(_build_command(folder, cache), cwd=REPO, env=env, capture_output=True, text=True,
                               timeout=600)
        assert final.returncode == 0, final.stderr[-2000:]
        stats = json.loads(final.stdout)
        assert stats["items"] == KILL_IMAGES and stats["computed"] + stats["reused"] == KILL_IMAGES
        assert not list((store / "shards").glob("*.npz"))
        got = read_json(store / "manifest.json")
        assert got["items"] == want["items"], trial
        assert got["arrays"] == want["arrays"], trial  # checksums of pooled.npy and logits.npy
        for name in ("pooled.npy", "logits.npy"):
            assert (store / name).read_bytes() == (reference_store / name).read_bytes(), (trial, name)
        log.append({"trial": trial, "final": {k: stats[k] for k in ("computed", "reused")}})
    kills = sum(entry.get("killed", False) for entry in log)
    # (a run may finish before its kill comes; the seeded points make most of them land mid-build)
    assert kills >= 2 and any(e.get("killed") and e["shards_left"] and not e["manifest"] for e in log), log
    print(f"{kills} SIGKILLs in {KILL_TRIALS} trials, each resumed to an identical cache:", log)


def test_blip_caption_cache_checksum_and_stale_temporaries(tmp_path):
    """A caption cache with a flipped byte is not used; old *.tmp files left by killed writes go."""
    import os
    import time

    from pipeline.captions import read_caption_cache, write_caption_cache
    from pipeline.gallery import remove_stale_temporaries

    path = tmp_path / "captions-blip.json"
    write_caption_cache(path, {"ab" * 32: "a dog on a sofa", "cd" * 32: "a red car"})
    assert read_caption_cache(path)["cd" * 32] == "a red car"
    path.write_bytes(path.read_bytes().replace(b"a red car", b"a red cat"))
    assert read_caption_cache(path) == {}
    path.write_bytes(b"{")
    assert read_caption_cache(path) == {}

    old, fresh = tmp_path / "shards" / "x.npz.1.tmp", tmp_path / "y.tmp"
    old.parent.mkdir()
    old.write_bytes(b"torn")
    fresh.write_bytes(b"being written")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    assert remove_stale_temporaries(tmp_path) == 1
    assert not old.exists() and fresh.exists()
