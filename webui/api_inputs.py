"""Strict checks of what API callers send, run before Gradio touches it.

Gradio turns a bad input into a traceback in the log and ``{"error": null}`` for the caller when the
value fails its own preprocessing (``top_k="5"`` or ``None`` on a slider, a plain string where a file is
expected, too few inputs), echoes a 1 MiB method name back in full, and lets ``exclude="false"`` through
to be truthy. Here every input is checked as sent, by the validator bound to its component, before
Gradio preprocesses anything; a refusal is a one-line :class:`ApiInputError` naming the input and what
it accepts (a long value is shown as a 40-character prefix), shown to the caller as a ``gr.Error``
without a traceback, and logged in one line.

The validators are plain functions ``(value, name, ...) -> the value to use`` that raise
:class:`ApiInputError`; :func:`install` runs them on a ``gr.Blocks``. The values they accept are what
the page itself sends, so the page works exactly as before.
"""
from __future__ import annotations

import functools
import logging
import math
import os
import reprlib
from typing import Any, Callable, Mapping, Sequence

import gradio as gr
from gradio.utils import get_upload_folder

from pipeline.config import LAYERS
from pipeline.errors import ApiInputError
from pipeline.intents import MAX_QUESTION_CHARS
from pipeline.vectors import ALL_METHODS

log = logging.getLogger("iae.api")

SHOWN_CHARS = 40
MAX_PATH_CHARS = 4096
MAX_FILTER_CHARS = 200  # the gallery filter box (the page's text box has the same cap)
FILE_META = {"_type": "gradio.FileData"}
_repr = reprlib.Repr()  # bounded work on any value (Python 3.11 sets the limits as attributes)
_repr.maxlevel, _repr.maxdict, _repr.maxlist, _repr.maxtuple = 2, 3, 3, 3
_repr.maxstring = _repr.maxother = _repr.maxlong = SHOWN_CHARS + 10

Check = Callable[[Any, str], Any]  # (value as sent, input name) -> value, or ApiInputError


def shown(value: Any) -> str:
    """``value`` as an error message shows it: its repr, cut to :data:`SHOWN_CHARS` characters + "..."
    (the work is bounded however large the value is)."""
    text = repr(value[:SHOWN_CHARS + 1]) if isinstance(value, str) else _repr.repr(value)
    return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + "..."


def choice(value: Any, name: str, choices: Sequence[str], what: str = "value") -> str:
    """One of ``choices`` (exactly, as a string)."""
    if isinstance(value, str) and value in choices:
        return value
    raise ApiInputError(f"{name}: {shown(value)} is not a {what}; give one of: {', '.join(choices)}.")


def method(value: Any, name: str = "method") -> str:
    """An analogy method or baseline of :data:`pipeline.vectors.ALL_METHODS`."""
    return choice(value, name, ALL_METHODS, "method")


def layer(value: Any, name: str = "layer") -> str:
    """An image-space layer of :data:`pipeline.config.LAYERS`."""
    return choice(value, name, LAYERS, "layer")


def exclude(value: Any, name: str = "exclude") -> bool:
    """A real boolean: ``"false"``, ``"no"``, ``0`` or ``None`` are refused rather than read as truthy."""
    if isinstance(value, bool):
        return value
    raise ApiInputError(f"{name}: {shown(value)} is not a boolean; give true or false (a JSON boolean, "
                        "not a string or a number).")


def top_k(value: Any, name: str = "top_k", *, max_top_k: int) -> int:
    """A whole number from 1 to ``max_top_k`` (``Settings.max_top_k``): an int, or a float with no
    fraction (``5.0``, as some JSON writers send it); not a string, a boolean or ``None``."""
    whole = None
    if isinstance(value, int) and not isinstance(value, bool):
        whole = value
    elif isinstance(value, float) and math.isfinite(value) and value.is_integer():
        whole = int(value)
    if whole is None or not 1 <= whole <= max_top_k:
        raise ApiInputError(f"{name}: {shown(value)} is not a whole number from 1 to {max_top_k}; give one, "
                            "such as 5 (a JSON number, not a string).")
    return whole


def example_index(value: Any, name: str = "example", *, count: int) -> int:
    """The index of one of ``count`` examples of a ``gr.Dataset`` (what the page sends for a click on
    one): a whole number from 0 to ``count - 1``."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < count:
        return value
    raise ApiInputError(f"{name}: {shown(value)} is not an example; give the index of one of the {count} "
                        f"examples (0 to {count - 1}).")


def question(value: Any, name: str = "question") -> str:
    """Text with something in it, at most :data:`pipeline.intents.MAX_QUESTION_CHARS` characters."""
    if not isinstance(value, str):
        raise ApiInputError(f"{name}: {shown(value)} is not text; give the question as a string, "
                            "for example \u201cwhy?\u201d.")
    if len(value) > MAX_QUESTION_CHARS:
        raise ApiInputError(f"{name}: {len(value):,} characters, over the limit of {MAX_QUESTION_CHARS:,}; "
                            "ask a shorter question.")
    if not value.strip():
        raise ApiInputError(f"{name}: empty; type a question first, for example \u201cwhy?\u201d or \u201chelp\u201d.")
    return value


def filter_text(value: Any, name: str = "query", max_chars: int | None = None) -> str:
    """The gallery filter: text of at most ``max_chars`` (default :data:`MAX_FILTER_CHARS`) characters;
    ``None`` is the empty filter."""
    max_chars = MAX_FILTER_CHARS if max_chars is None else max_chars
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ApiInputError(f"{name}: {shown(value)} is not text; give words to look for in labels and file names.")
    if len(value) > max_chars:
        raise ApiInputError(f"{name}: {len(value):,} characters, over the limit of {max_chars:,}; "
                            "filter by a few words.")
    return value


def uploaded_image(value: Any, name: str = "image", folder: str | os.PathLike | None = None) -> str | None:
    """A file the server was given by an upload: Gradio's file payload ``{"path": ..., "meta":
    {"_type": "gradio.FileData"}, ...}`` whose path, symlinks resolved, is a regular file inside
    ``folder`` (Gradio's upload folder, :func:`upload_folder`). ``None`` (no image) passes, for the
    handler to say what is missing. A plain string, a server path, a URL or a gallery id is refused,
    with one message whether or not such a file exists (so nothing can be probed)."""
    if value is None:
        return None
    how = "upload the image and send the file (with gradio_client: handle_file(path))"
    if not isinstance(value, dict) or value.get("meta") != FILE_META:
        raise ApiInputError(f"{name}: {shown(value)} is not an uploaded file; {how}.")
    path = value.get("path")
    if not _is_upload(path, folder if folder is not None else upload_folder()):
        raise ApiInputError(f"{name}: {shown(path)} is not a file uploaded to this server (or it is gone); {how}.")
    return path


def _is_upload(path: Any, folder: str | os.PathLike) -> bool:
    if not isinstance(path, str) or not path or len(path) > MAX_PATH_CHARS or "\x00" in path or not os.path.isabs(path):
        return False
    real = os.path.realpath(path)
    root = os.path.realpath(folder)
    return real.startswith(root.rstrip(os.sep) + os.sep) and os.path.isfile(real)


def report_name(value: Any, name: str = "name", *, names: Sequence[str]) -> str | None:
    """The name of an evaluation report folder, one of ``names`` (newest first); ``None`` or ``""``
    for the newest."""
    if value is None or value == "":
        return None
    if isinstance(value, str) and value in names:
        return value
    listed = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
    raise ApiInputError(f"{name}: {shown(value)} is not an evaluation report; give one of: {listed or '(none yet)'}, "
                        "or nothing for the newest.")


def upload_folder() -> str:
    """The folder Gradio keeps uploads in (``GRADIO_TEMP_DIR``, else ``<tmp>/gradio``)."""

    return get_upload_folder()


# --- running the checks before Gradio ------------------------------------------------------------


def check_event(block_fn, inputs: list, checks: Mapping[int, Check]) -> None:
    """Check one event's inputs as sent: their number (for any event: Gradio's own check raises a
    bare ValueError), then each input whose component has a check. ``checks`` maps component ids to
    checks. Raises :class:`ApiInputError`."""
    components = list(block_fn.inputs)
    checked = [i for i, c in enumerate(components) if c._id in checks and not getattr(c, "stateful", False)]
    if len(inputs) < len(components) or (checked and len(inputs) != len(components)):
        shown_inputs = [_input_name(block_fn, i) for i, c in enumerate(components) if not getattr(c, "skip_api", False)]
        takes = f"takes {len(shown_inputs)} input{'s' * (len(shown_inputs) != 1)} ({', '.join(shown_inputs)})"
        kept = len(components) - len(shown_inputs)  # session state: the page sends null in its place
        if kept and len(inputs) == len(shown_inputs):
            raise ApiInputError(f"{_event_name(block_fn)}: {takes}, and {kept} null{'s' * (kept != 1)} in place of "
                                f"what the server keeps when called as the page calls it; got {len(inputs)} values. "
                                "Call it by name (POST /gradio_api/call/NAME) to send the inputs alone.")
        raise ApiInputError(f"{_event_name(block_fn)}: {takes}; got {len(inputs)}.")
    for i in checked:
        checks[components[i]._id](inputs[i], _input_name(block_fn, i))


def install(blocks, checks: Mapping[Any, Check]) -> None:
    """Run ``checks`` ({component: check}) on the inputs of every event of ``blocks`` as they are
    sent, before Gradio preprocesses them; also refuse any event called with too few inputs, and any
    ``gr.Dataset`` input (the examples' clicks, whose handlers Gradio writes) that is not the index of
    one of its examples. A refusal reaches the caller as ``gr.Error(one line)`` (no traceback in the
    log) and is logged in one line. Hooks ``Blocks.preprocess_data`` (Gradio 6), through which every
    event's inputs pass."""

    by_id = {block._id: functools.partial(example_index, count=len(block.raw_samples))
             for block in blocks.blocks.values() if isinstance(block, gr.Dataset)}
    by_id.update((component._id, check) for component, check in checks.items())
    original = blocks.preprocess_data

    async def preprocess_data(block_fn, inputs, state, explicit_call=False):
        try:
            check_event(block_fn, inputs, by_id)
        except ApiInputError as exc:
            log.warning("refused %s: %s", _event_name(block_fn), exc)
            raise gr.Error(str(exc), title="Invalid input", print_exception=False) from None
        return await original(block_fn, inputs, state, explicit_call)

    blocks.preprocess_data = preprocess_data


def _event_name(block_fn) -> str:
    return f"/{block_fn.api_name}" if block_fn.api_name else f"event {block_fn.name or block_fn._id}"


def _input_name(block_fn, index: int) -> str:
    names = getattr(block_fn, "input_parameter_names", None) or []
    if index < len(names) and names[index]:
        return str(names[index])
    return str(getattr(block_fn.inputs[index], "label", None) or f"input {index + 1}")
