"""The handlers' error guard: :func:`user_facing`.

A handler raises ``gr.Error`` for what the user must fix; the pipeline raises its user errors
(:class:`pipeline.errors.UserError`). Wrapped by :func:`user_facing`, both reach the user as one line,
logged in one line without a traceback; anything else is a bug: logged with its traceback, shown as
:data:`GENERIC_ERROR`.
"""
from __future__ import annotations

import functools
import logging
from typing import Callable

import gradio as gr

from pipeline.errors import UserError, error_line

log = logging.getLogger("iae.app")

MAX_LOGGED_CHARS = 300
GENERIC_ERROR = ("Something went wrong on our side while answering. The error was logged; "
                 "please try again, or try other images.")


def user_facing(fn: Callable) -> Callable:
    """Run a handler; a ``gr.Error`` it raises, or a pipeline user error (as ``gr.Error(one line)``),
    reaches the user and is logged in one line, without a traceback; anything unexpected is logged
    with its traceback and becomes a generic ``gr.Error``."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error as exc:
            exc.print_exception = False
            _log_refusal(fn, exc.message)
            raise
        except UserError as exc:
            message = error_line(exc)
            _log_refusal(fn, message)
            raise gr.Error(message, title="Cannot do that", print_exception=False) from None
        except Exception:
            log.exception("unexpected error in %s", handler_name(fn))
            raise gr.Error(GENERIC_ERROR, title="Error", print_exception=False) from None

    return wrapper


def handler_name(fn: Callable) -> str:
    """The name a log line gives a handler: a function's name, the wrapped function's for a
    ``functools.partial`` (which has none of its own)."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    return getattr(fn, "__name__", type(fn).__name__)


def _log_refusal(fn: Callable, message) -> None:
    """One log line: whitespace runs as one space, at most :data:`MAX_LOGGED_CHARS` characters, other
    control characters escaped (a message may quote an upload's name, which the client chose)."""
    text = " ".join(str(message).split())
    if len(text) > MAX_LOGGED_CHARS:
        text = text[:MAX_LOGGED_CHARS] + "..."
    text = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)
    log.warning("refused %s: %s", handler_name(fn), text)

