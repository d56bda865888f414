"""The caption-space text model on a CPU through tokenizers + onnxruntime, with the real packaged
all-MiniLM-L6-v2: the same vectors as sentence-transformers (within 1e-4) on real captions and odd
texts, no torch in a process that embeds through it, and its cached export reused, or rebuilt when
damaged.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_faults import damage  # noqa: E402

from pipeline.labels import imagenet_classes  # noqa: E402
from pipeline.models import torch_build_has_gpu  # noqa: E402
from pipeline.models.captioners import LabelsCaptioner  # noqa: E402
from pipeline.models.text import (DEFAULT_TEXT_MODEL, OnnxSentenceEncoder, OnnxUnsupported,  # noqa: E402
                                  SentenceTransformerEncoder, TextEmbedder, read_sentence_model_spec,
                                  resolve_text_model_path)

REPO = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "transformers", "sentence_transformers")


def odd_texts() -> list[str]:
    """Texts at the edges: empty, blank, 1,000 words (past the 256-token limit), unicode of several
    scripts and emoji, control and zero-width characters, one 5,000-character word."""
    rng = random.Random(13)
    words = [c.name for c in imagenet_classes()]
    return ["", "   ", "word " * 1000, " ".join(rng.choice(words) for _ in range(1000)),
            "Ünïcödé café naïve façade 北京 東京 서울 Привет мир 🙂🚀 ﬁ", "\x00\t\n odd \u200b zero\u00a0width \r\n",
            "a" * 5000, "ß" * 300, "A PHOTO OF AN ESPRESSO!!!", "a photo of " + "very " * 300 + "small dog"]


def real_captions() -> list[str]:
    """About 320 captions as LabelsCaptioner writes them for imagen photos: every fourth ImageNet class
    stated plainly, then two-label and hedged captions."""
    captioner, classes = LabelsCaptioner(), imagenet_classes()
    texts = [captioner.caption_one([(c.name, 0.9)]) for c in classes[::4]]
    texts += [captioner.caption_one([(classes[i].name, 0.45), (classes[i + 1].name, 0.35)]) for i in range(0, 999, 17)]
    texts += [captioner.caption_one([(classes[i].name, 0.2)]) for i in range(5, 1000, 23)]
    return texts


def packaged_model_copy(folder: Path, pooling: dict | None = None) -> Path:
    """A copy of the packaged model's folder (its weights linked, not copied), with ``pooling`` changed
    in ``1_Pooling/config.json``."""
    packaged = Path(resolve_text_model_path(DEFAULT_TEXT_MODEL))
    shutil.copytree(packaged, folder, ignore=shutil.ignore_patterns("*.safetensors"))
    (folder / "model.safetensors").symlink_to(packaged / "model.safetensors")
    config = folder / "1_Pooling" / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), **(pooling or {})}))
    return folder


CLS_POOLING = {"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False}


@pytest.fixture(scope="module")
def onnx_embedder(settings):
    """The ONNX embedder on the session cache (exported there once)."""
    embedder = TextEmbedder(cache_dir=settings.cache_dir)
    assert embedder.runtime == "onnxruntime, cpu" and embedder.fallback_reason is None
    return embedder


@pytest.fixture(scope="module")
def sentence_transformer():
    return SentenceTransformerEncoder(resolve_text_model_path(DEFAULT_TEXT_MODEL), "cpu")


@pytest.mark.slow
def test_onnx_equals_sentence_transformers_on_real_captions_and_odd_texts(onnx_embedder, sentence_transformer):
    texts = real_captions() + odd_texts()
    assert len(texts) > 300
    got = onnx_embedder.encode(texts)
    want = sentence_transformer.encode(texts, 64)
    assert got.shape == (len(texts), 384) and got.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    difference = np.abs(got - want).max(axis=1)
    assert difference.max() < 1e-4, (difference.max(), texts[int(difference.argmax())][:80])
    # the same tokens as transformers' tokenizer under sentence-transformers (truncated at 256)
    reference = sentence_transformer.model[0].tokenizer
    tokenizer = onnx_embedder._encoder.tokenizer
    for text in odd_texts():
        ids = tokenizer.encode(text).ids
        assert ids == reference(text, truncation=True, max_length=256)["input_ids"], text[:40]
    assert len(tokenizer.encode("word " * 1000).ids) == 256
    # batching and sorting by length do not change a row, and rows come back in order
    some = slice(None, None, 7)
    small_batches = onnx_embedder.encode(texts[some][::-1], batch_size=5)[::-1]
    np.testing.assert_allclose(small_batches, got[some], atol=1e-5)
    assert onnx_embedder.encode([]).shape == (0, 384)
    # the export runs onnxruntime's fused BERT ops (one Attention op per layer)
    import onnx

    ops = [node.op_type for node in onnx.load(str(onnx_embedder._encoder.onnx_path)).graph.node]
    assert ops.count("Attention") == 6 and "EmbedLayerNormalization" in ops


@pytest.mark.slow
def test_a_fresh_process_embeds_through_onnx_without_torch(onnx_embedder, sentence_transformer, settings):
    """With the export cached, importing the text module, creating Models (device ``auto`` where the
    installed torch has no GPU build) and embedding texts loads neither torch, transformers nor
    sentence-transformers."""
    texts = ["a photo of a tench", "", "北京 🙂", "word " * 1000]
    device = "cpu" if torch_build_has_gpu() else "auto"
    code = (
        "import json, sys\n"
        f"heavy = {HEAVY!r}\n"
        "import pipeline.models.text\n"
        "after_import = [m for m in heavy + ('onnxruntime',) if m in sys.modules]\n"
        "from pipeline.config import Settings\n"
        "from pipeline.models import Models\n"
        f"models = Models(Settings(cache_dir={str(settings.cache_dir)!r}, device={device!r}))\n"
        f"vectors = models.embed_texts({texts!r})\n"
        "print(json.dumps({'after_import': after_import, 'after_embedding': [m for m in heavy if m in sys.modules],\n"
        "                  'device': models.device, 'runtime': models.text_embedder.runtime,\n"
        "                  'vectors': vectors.tolist()}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["after_import"] == [] and report["after_embedding"] == [], report
    assert (report["device"], report["runtime"]) == ("cpu", "onnxruntime, cpu")
    vectors = np.array(report["vectors"], dtype=np.float32)
    np.testing.assert_allclose(vectors, onnx_embedder.encode(texts), atol=1e-6)
    np.testing.assert_allclose(vectors, sentence_transformer.encode(texts, 64), atol=1e-4)


@pytest.mark.slow
def test_the_export_is_reused_and_a_damaged_one_rebuilt(onnx_embedder, tmp_path):
    """A warm cache is used as it is; an export damaged in any way (or its checksum file) is never run:
    it is exported again, and the vectors are the same as before."""
    cache = tmp_path / "cache"
    (cache / "onnx").mkdir(parents=True)
    source = onnx_embedder._encoder.onnx_path
    for path in (source, source.with_suffix(".json")):
        shutil.copy2(path, cache / "onnx" / path.name)
    texts = ["a photo of an espresso", "a photo of a tabby cat, or perhaps a tiger cat"]
    want = onnx_embedder.encode(texts)

    def load() -> tuple[OnnxSentenceEncoder, int]:
        encoder = OnnxSentenceEncoder(resolve_text_model_path(DEFAULT_TEXT_MODEL), cache, label=DEFAULT_TEXT_MODEL)
        np.testing.assert_allclose(encoder.encode(texts, 64), want, atol=1e-6)
        return encoder, encoder.onnx_path.stat().st_mtime_ns

    encoder, stamp = load()
    assert encoder.onnx_path == cache / "onnx" / source.name and stamp == source.stat().st_mtime_ns  # reused
    assert load()[1] == stamp
    rng = random.Random(13)
    for name, how in [(source.name, "flipped"), (source.name, "truncated"), (source.name, "emptied"),
                      (source.with_suffix(".json").name, "garbage")]:
        what = damage(cache / "onnx" / name, how, rng)
        encoder, new_stamp = load()
        assert new_stamp != stamp, f"{name} {what}: not rebuilt"
        stamp = new_stamp
    assert sorted(p.name for p in (cache / "onnx").iterdir()) == sorted([source.name, source.with_suffix(".json").name])


def test_folders_the_onnx_path_cannot_run_exactly_are_refused_with_a_reason(tmp_path):
    packaged = Path(resolve_text_model_path(DEFAULT_TEXT_MODEL))
    assert read_sentence_model_spec(packaged) == {"dim": 384, "max_seq_length": 256, "do_lower_case": False}
    with pytest.raises(OnnxUnsupported, match="not a local folder"):
        read_sentence_model_spec(Path("sentence-transformers/all-mpnet-base-v2"))

    cls = packaged_model_copy(tmp_path / "cls", CLS_POOLING)
    with pytest.raises(OnnxUnsupported, match="mean pooling only"):
        read_sentence_model_spec(cls)
    dense = packaged_model_copy(tmp_path / "dense")
    modules = json.loads((dense / "modules.json").read_text())
    modules.append({"idx": 3, "name": "3", "path": "3_Dense", "type": "sentence_transformers.models.Dense"})
    (dense / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(OnnxUnsupported, match="modules"):
        read_sentence_model_spec(dense)
    no_limit = packaged_model_copy(tmp_path / "no-limit")
    (no_limit / "sentence_bert_config.json").unlink()
    with pytest.raises(OnnxUnsupported, match="sentence_bert_config.json"):
        read_sentence_model_spec(no_limit)


@pytest.mark.slow
def test_a_model_the_onnx_path_cannot_run_falls_back_to_sentence_transformers(tmp_path, onnx_embedder):
    """CLS pooling (not what the ONNX path does) runs through sentence-transformers, which honours it;
    the reason is recorded, and nothing is exported."""
    folder = packaged_model_copy(tmp_path / "minilm-cls", CLS_POOLING)
    embedder = TextEmbedder(str(folder), device="cpu", cache_dir=tmp_path / "cache")
    assert embedder.runtime == "sentence-transformers, cpu" and "mean pooling only" in embedder.fallback_reason
    assert not (tmp_path / "cache" / "onnx").exists()
    texts = ["a photo of an espresso", "a red fruit"]
    vectors = embedder.encode(texts)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.abs(vectors - onnx_embedder.encode(texts)).max() > 1e-2  # CLS, not the mean
