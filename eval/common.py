"""What every suite shares: settings, opening a gallery with progress, provenance, spaces."""
from __future__ import annotations

import datetime as _dt
import platform
import shlex
import sys
from importlib import metadata
from pathlib import Path

from tqdm import tqdm

from pipeline.config import LAYERS, Settings
from pipeline.errors import SettingsError
from pipeline.explorer import Explorer
from pipeline.progress import show_progress, tqdm_progress

LIBRARIES = ("numpy", "faiss-cpu", "torch", "onnxruntime", "sentence-transformers", "transformers", "pillow",
             "matplotlib")


#: How the reports name each space.
SPACE_NAMES = {"image:pooled": "image (pooled)", "image:logits": "image (logits)", "image:probs": "image (probs)",
               "caption": "caption"}


def bar(iterable=None, total: int | None = None, desc: str = "", unit: str = "it"):
    """A tqdm bar on stderr (disabled where :func:`pipeline.progress.show_progress` says no bars)."""
    return tqdm(iterable, total=total, desc=desc, unit=unit, file=sys.stderr, leave=False,
                disable=not show_progress(), mininterval=0.5)


def spaces_for(layers: list[str], captions: bool = True) -> list[str]:
    """Space keys for image layers (in the given order) plus ``caption``."""
    for layer in layers:
        if layer not in LAYERS:
            raise SettingsError(f"unknown layer {layer!r}: choose from {', '.join(LAYERS)}")
    return [f"image:{layer}" for layer in layers] + (["caption"] if captions else [])


def open_explorer(settings: Settings, gallery_dir: Path, with_captions: bool = True):
    """An Explorer with ``gallery_dir`` built or loaded (tqdm progress on stderr)."""
    explorer = Explorer(settings)
    explorer.open_gallery(Path(gallery_dir), tqdm_progress(show_progress()), with_captions=with_captions)
    return explorer


def library_versions() -> dict[str, str | None]:
    out = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def provenance(suite: str, explorer, argv: list[str] | None, seed: int, extra: dict | None = None) -> dict:
    """What produced a report: command, seed, gallery (root, items, content digest), models, settings,
    library versions, time."""
    gallery = explorer.gallery
    settings = explorer.settings
    captions = gallery.captions if gallery is not None else None
    command = shlex.join(["python", "-m", "eval", *(argv if argv is not None else sys.argv[1:])])
    out = {
        "suite": suite,
        "command": command,
        "seed": seed,
        "gallery": {
            "root": str(gallery.root) if gallery is not None else None,
            "items": len(gallery) if gallery is not None else 0,
            "content_digest": gallery.digest if gallery is not None else None,
            "skipped": len(explorer.build_stats.skipped) if explorer.build_stats else 0,
        },
        "models": {
            "classifier": explorer.models.classifier.name,
            "classifier_key": explorer.models.classifier.model_key,
            "captioner_setting": settings.captioner,
            "captioners": sorted(set(captions.captioners)) if captions else [],
            "caption_announcement": captions.announcement if captions else None,
            "text_model": captions.text_model if captions else None,
        },
        "settings": {"near_duplicate_threshold": settings.near_duplicate_threshold,
                     "cosmul_eps": settings.cosmul_eps, "device": settings.device},
        "libraries": library_versions(),
        "generated_at": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
    }
    if extra:
        out.update(extra)
    return out


def provenance_markdown(run: dict) -> str:
    """The 'How this was produced' section."""
    m, g, libs = run["models"], run["gallery"], run["libraries"]
    lines = [
        f"- Command: `{run['command']}`",
        f"- Seed: {run['seed']}; generated {run['generated_at']} in {run.get('seconds', 0):.1f} s",
        f"- Gallery: `{g['root']}`, {g['items']} items, content digest `{g['content_digest'][:16]}`"
        + (f" ({g['skipped']} files skipped)" if g.get("skipped") else ""),
        f"- Classifier: {m['classifier']} (weights `{m['classifier_key']}`)",
        f"- Captioner(s): {', '.join(m['captioners']) or 'none'} (setting `{m['captioner_setting']}`); "
        f"text model: {m['text_model']}",
        f"- Near-duplicate threshold: cos > {run['settings']['near_duplicate_threshold']}; "
        f"3CosMul eps: {run['settings']['cosmul_eps']}",
        "- Libraries: " + ", ".join(f"{k} {v}" for k, v in libs.items() if v),
    ]
    if m.get("caption_announcement"):
        lines.append(f"- Caption note: {m['caption_announcement']}")
    return "\n".join(lines)
