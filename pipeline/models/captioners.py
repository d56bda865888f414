"""Captioners: where an image's caption comes from, and the rule that picks one.

Three sources, each recorded with the caption it made (:class:`Caption`):

- ``blip:<model>``: BLIP (:class:`BlipCaptioner`), the production captioner. Needs the model from the
  Hugging Face hub or a local folder; seconds per image on a CPU, fast on a GPU.
- ``labels``: a template over the classifier's top-k ImageNet labels (:class:`LabelsCaptioner`),
  e.g. "a photo of a tiger cat, or perhaps an Egyptian cat". Always available, offline, instant.
- ``file``: human captions shipped with a gallery (:class:`FileCaptions`).

:func:`resolve_captioner` is the ``auto`` rule. It never falls back silently: every fallback comes
with a one-line announcement for the user.

torch, transformers and huggingface_hub are imported lazily, by :class:`BlipCaptioner` only, so that
label and file captions cost no heavy import.
"""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from ..config import PROMPTS_DIR
from ..errors import CaptionerUnavailable, GalleryError, SettingsError, error_line
from ..images import IMAGE_SUFFIXES

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

#: Rough CPU cost of BLIP-base captioning (seconds per image, batch of 8, a few cores). Used only to
#: tell the user how long ``--captioner blip`` would take on a CPU.
CPU_BLIP_SECONDS_PER_IMAGE = 2.5

#: How long to wait for the Hugging Face hub before declaring it unreachable (seconds).
HUB_PROBE_TIMEOUT_S = 3.0

CAPTIONER_NAMES = ("file", "blip", "labels")

_FILE_ANNOUNCEMENT = (
    "Captions: human captions from the gallery's caption files; "
    "items without one are captioned automatically (announced separately)."
)


# --------------------------------------------------------------------------------------------------
# Label captions


# Words whose spelling misleads the vowel rule for "a"/"an" (matched as word prefixes, lower case).
_A_BEFORE_VOWEL_LETTER = ("uni", "use", "usu", "uti", "eu", "ewe", "one", "once")
_AN_BEFORE_CONSONANT_LETTER = ("hour", "honest", "honor", "honour", "heir")
# Letters whose spoken name starts with a vowel sound, for acronyms ("an MP3 player", "a CD player").
_VOWEL_SOUND_LETTERS = "AEFHILMNORSX"


def indefinite_article(phrase: str) -> str:
    """``"a"`` or ``"an"`` for ``phrase``, by sound: "an espresso", "an Egyptian cat", "a unicycle",
    "an hourglass", "a CD player"."""
    word = phrase.strip().split(" ")[0] if phrase.strip() else ""
    if not word:
        return "a"
    if len(word) >= 2 and word[:2].isupper():  # an acronym is read letter by letter
        return "an" if word[0] in _VOWEL_SOUND_LETTERS else "a"
    lower = word.lower()
    if lower.startswith(_A_BEFORE_VOWEL_LETTER):
        return "a"
    if lower.startswith(_AN_BEFORE_CONSONANT_LETTER):
        return "an"
    return "an" if lower[0] in "aeiou" else "a"


def _clean_label(label: str) -> str:
    """Keras-style ``tiger_cat`` -> ``tiger cat``; a WordNet lemma list keeps its first lemma."""
    return label.replace("_", " ").split(",")[0].strip()


class LabelsCaptioner:
    """Captions from the classifier's labels, worded by the templates in ``prompts/captions.json``.

    The JSON's ``_doc`` key documents every field; thresholds and wording are data, not code.
    """

    name = "labels"

    def __init__(self, templates_path: Path = PROMPTS_DIR / "captions.json"):
        spec = json.loads(Path(templates_path).read_text(encoding="utf-8"))
        self.confident_min = float(spec["confident_min"])
        self.close_ratio = float(spec["close_ratio"])
        self.pair_min = float(spec["pair_min"])
        self.templates: dict[str, str] = dict(spec["templates"])
        self.no_article = {s.lower() for s in spec.get("no_article", [])}

    def with_article(self, label: str) -> str:
        """``"espresso"`` -> ``"an espresso"``; plurals and mass nouns listed in the JSON stay bare."""
        label = _clean_label(label)
        if label.lower() in self.no_article:
            return label
        return f"{indefinite_article(label)} {label}"

    def caption_one(self, prediction: list[tuple[str, float]]) -> str:
        """One caption from one image's top-k ``(label, probability)`` pairs, most likely first."""
        if not prediction:
            return self.templates["empty"]
        first_label, p1 = prediction[0]
        first = self.with_article(first_label)
        if len(prediction) > 1:
            second_label, p2 = prediction[1]
            close = p2 >= self.close_ratio * p1
            if close and p1 + p2 >= self.pair_min:
                return self.templates["two_labels"].format(first=first, second=self.with_article(second_label))
        else:
            close = False
        if p1 >= self.confident_min and not close:
            return self.templates["confident"].format(first=first)
        return self.templates["uncertain"].format(first=first)

    def caption_predictions(self, predictions: list[list[tuple[str, float]]]) -> list[str]:
        """Captions for a batch: ``predictions`` holds, per image, the top-k ``(ImageNet class name,
        probability)`` pairs sorted by probability, highest first."""
        return [self.caption_one(list(p)) for p in predictions]


# --------------------------------------------------------------------------------------------------
# BLIP


def _hub_offline() -> bool:
    """Offline mode as huggingface_hub saw it at import, or as the environment says now."""
    from huggingface_hub import constants  # deferred with BLIP: only loading BLIP asks the hub

    def is_true(value: str | None) -> bool:
        return (value or "").strip().upper() in {"1", "ON", "YES", "TRUE"}

    env = is_true(os.environ.get("HF_HUB_OFFLINE")) or is_true(os.environ.get("TRANSFORMERS_OFFLINE"))
    return bool(constants.HF_HUB_OFFLINE) or env


def _hub_reachable(timeout: float = HUB_PROBE_TIMEOUT_S) -> bool:
    """One quick request to the hub endpoint. Without it, an unreachable hub costs minutes of retries
    (huggingface_hub backs off 2 + 4 + 8 + 8 s per file) before transformers gives up."""
    # deferred with BLIP: only loading BLIP asks the hub
    from huggingface_hub import constants
    from huggingface_hub.utils import get_session

    try:
        get_session().head(constants.ENDPOINT, timeout=timeout)
    except Exception:  # any answer at all means reachable; no answer means not
        return False
    return True


def blip_name(model: str) -> str:
    """The captioner name ``BlipCaptioner(model)`` has, without loading it: ``blip:<hub id>``, or
    ``blip:<folder name>`` for a local folder."""
    path = Path(model).expanduser()
    return f"blip:{path.resolve().name if path.is_dir() else model}"


class BlipCaptioner:
    """BLIP image captioning (``BlipProcessor`` + ``BlipForConditionalGeneration``).

    ``model`` is a hub id (default ``Salesforce/blip-image-captioning-base``) or a local folder
    written by ``save_pretrained``. On CUDA the weights are float16. Any load failure raises
    :class:`CaptionerUnavailable` with a one-line reason; offline (``HF_HUB_OFFLINE=1`` or no
    network) that happens within seconds, using a cached copy of the model when there is one.
    """

    def __init__(self, model: str, device: str = "cpu", max_new_tokens: int = 30):
        self.model_id = model
        self.device = device
        self.max_new_tokens = int(max_new_tokens)
        local = Path(model).expanduser().is_dir()
        self.name = blip_name(model)

        advice = "Use --captioner labels for offline label captions."
        # Offline or hub unreachable: load from the local cache only, so failure is instant.
        reason = None
        if not local and _hub_offline():
            reason = "HF_HUB_OFFLINE is set and it is not in the local Hugging Face cache"
        elif not local and not _hub_reachable():
            reason = "the Hugging Face hub is unreachable and it is not in the local cache"
        load_kwargs = {"local_files_only": True} if reason else {}

        try:
            # deferred: torch and transformers take seconds to import; only BLIP captions need them
            import torch
            from transformers import BlipForConditionalGeneration, BlipProcessor

            self.dtype = torch.float16 if str(device).startswith("cuda") else torch.float32
            self.processor = BlipProcessor.from_pretrained(model, **load_kwargs)
            self.model = BlipForConditionalGeneration.from_pretrained(model, dtype=self.dtype, **load_kwargs)
            self.model.to(device).eval()
        except Exception as exc:
            why = f"BLIP model {model!r} could not be loaded ({reason or error_line(exc, cause=True)})"
            raise CaptionerUnavailable(f"{why}. {advice}", reason=why) from exc

    def caption(self, images: list["Image.Image"], batch_size: int = 8) -> list[str]:
        """One caption per image, generated in batches of ``batch_size`` (at most ``max_new_tokens``
        new tokens each), special tokens removed, whitespace stripped."""
        import torch  # deferred, as in __init__ (already loaded by then)

        captions: list[str] = []
        for start in range(0, len(images), max(1, int(batch_size))):
            batch = [im.convert("RGB") for im in images[start : start + batch_size]]
            inputs = self.processor(images=batch, return_tensors="pt").to(self.device, self.dtype)
            with torch.inference_mode():
                ids = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens)
            captions.extend(t.strip() for t in self.processor.batch_decode(ids, skip_special_tokens=True))
        return captions


# --------------------------------------------------------------------------------------------------
# Human captions


def _norm_rel(path: str) -> str:
    """A gallery-relative path as a lookup key: forward slashes, no leading ``./``."""
    key = path.strip().replace("\\", "/")
    while key.startswith("./"):
        key = key[2:]
    return key


class FileCaptions:
    """Human captions for a gallery folder: captions.csv (header: file,caption; file is the path
    relative to the gallery root, forward slashes) and/or <image>.txt sidecars (same stem + .txt next
    to the image: photo.jpg -> photo.txt or photo.jpg.txt). CSV wins if both.

    Empty captions are ignored; in the CSV a later row for the same file replaces an earlier one.
    """

    name = "file"
    CSV_NAME = "captions.csv"

    def __init__(self, root: Path, captions: dict[str, str] | None = None):
        self.root = Path(root).expanduser().resolve()
        self._captions: dict[str, str] = dict(captions or {})

    @classmethod
    def from_folder(cls, root: Path) -> "FileCaptions":
        root = Path(root).expanduser().resolve()
        captions = cls._read_sidecars(root)
        captions.update(cls._read_csv(root / cls.CSV_NAME))  # the CSV wins
        return cls(root, captions)

    @staticmethod
    def _read_csv(path: Path) -> dict[str, str]:
        if not path.is_file():
            return {}
        try:
            with path.open(newline="", encoding="utf-8-sig") as f:
                reader = csv.DictReader(f)
                if not reader.fieldnames or not {"file", "caption"} <= {h.strip() for h in reader.fieldnames}:
                    raise GalleryError(f"{path}: the header must be 'file,caption', found {reader.fieldnames}")
                out = {}
                for row in reader:
                    row = {(k or "").strip(): v for k, v in row.items()}
                    file, caption = (row.get("file") or "").strip(), " ".join((row.get("caption") or "").split())
                    if file and caption:
                        out[_norm_rel(file)] = caption
                return out
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise GalleryError(f"{path}: cannot read captions ({exc}). It must be UTF-8 text with a header "
                               "'file,caption'.") from exc

    @staticmethod
    def _read_sidecars(root: Path) -> dict[str, str]:
        out: dict[str, str] = {}
        for txt in sorted(root.rglob("*.txt")):
            image = FileCaptions._sidecar_image(txt)
            if image is None:
                continue
            try:
                caption = " ".join(txt.read_text(encoding="utf-8", errors="replace").split())
            except OSError as exc:
                raise GalleryError(f"{txt}: cannot read this caption file ({exc.strerror or exc}).") from exc
            key = image.relative_to(root).as_posix()
            if caption and (key not in out or txt.name == image.name + ".txt"):  # photo.jpg.txt beats photo.txt
                out[key] = caption
        return out

    @staticmethod
    def _sidecar_image(txt: Path) -> Path | None:
        """The image a ``.txt`` file describes, or ``None`` when it is not a sidecar."""
        inner = txt.with_suffix("")  # photo.jpg.txt -> photo.jpg ; photo.txt -> photo
        if inner.suffix.lower() in IMAGE_SUFFIXES and inner.is_file():
            return inner
        for suffix in IMAGE_SUFFIXES:
            for candidate in (inner.with_name(inner.name + suffix), inner.with_name(inner.name + suffix.upper())):
                if candidate.is_file():
                    return candidate
        return None

    def lookup(self, image_path: Path) -> str | None:
        """The caption of an image, given by its path (absolute, or relative to the gallery root)."""
        path = Path(image_path).expanduser()
        if path.is_absolute():
            try:
                path = path.resolve().relative_to(self.root)
            except ValueError:
                return None
        return self._captions.get(_norm_rel(path.as_posix()))

    def __len__(self) -> int:
        return len(self._captions)


# --------------------------------------------------------------------------------------------------
# The auto rule


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = seconds / 60
    if minutes < 90:
        return f"{minutes:.0f} min"
    return f"{minutes // 60:.0f} h {minutes % 60:.0f} min"


def resolve_captioner(
    requested: str,
    *,
    n_items: int,
    device: str,
    file_captions_available: bool,
    blip_model: str,
    blip_cpu_item_limit: int,
    try_blip: Callable[[], object] | None = None,
) -> tuple[str, str | None]:
    """Pick the captioner: ``(name, announcement)`` with name in ``{"file", "blip", "labels"}``.

    ``requested`` is ``auto``, ``blip``, ``labels`` or ``file``; ``device`` is the resolved device
    (``cpu`` or ``cuda``). ``try_blip``, when given, loads BLIP (e.g. ``lambda: BlipCaptioner(...)``)
    and raises :class:`CaptionerUnavailable` when it cannot.

    auto: ``file`` when the gallery has file captions (items without one are captioned by calling
    this again with ``file_captions_available=False`` and ``n_items`` = how many lack one); else
    ``blip`` on a GPU, or on a CPU for at most ``blip_cpu_item_limit`` items; else ``labels``, with
    the BLIP time it saved. A BLIP that fails to load gives ``labels`` and the reason.
    Explicit requests are honoured or raise :class:`CaptionerUnavailable`; never a silent fallback.
    The announcement is ``None`` only when nothing needs saying.
    """
    gpu = str(device).startswith("cuda")
    cpu_estimate = _duration(n_items * CPU_BLIP_SECONDS_PER_IMAGE)

    def load_blip() -> None:
        if try_blip is not None:
            try_blip()

    if requested == "labels":
        return "labels", None

    if requested == "file":
        if not file_captions_available:
            raise CaptionerUnavailable(
                "--captioner file: the gallery has no captions.csv and no .txt sidecars. "
                "Add them, or use --captioner auto."
            )
        return "file", _FILE_ANNOUNCEMENT

    if requested == "blip":
        load_blip()  # CaptionerUnavailable propagates: an explicit request never falls back silently
        if not gpu and n_items > blip_cpu_item_limit:
            return "blip", f"Captions: BLIP ({blip_model}) on CPU for {n_items} images takes about {cpu_estimate} (~{CPU_BLIP_SECONDS_PER_IMAGE} s/image)."
        return "blip", None

    if requested != "auto":
        raise SettingsError(f"unknown captioner {requested!r}: choose one of auto, {', '.join(CAPTIONER_NAMES)}")

    if file_captions_available:
        return "file", _FILE_ANNOUNCEMENT
    if not gpu and n_items > blip_cpu_item_limit:
        return "labels", (
            f"Captions: ImageNet-label templates, because BLIP ({blip_model}) on CPU would take about "
            f"{cpu_estimate} for {n_items} images (~{CPU_BLIP_SECONDS_PER_IMAGE} s/image). "
            "Use --captioner blip to wait for it, or run on a GPU."
        )
    try:
        load_blip()
    except CaptionerUnavailable as exc:
        return "labels", f"Captions: ImageNet-label templates, because {exc.reason.rstrip('.')}."
    return "blip", None
