"""The errors that mean "the input or the environment is wrong": shown to users as plain one-line
messages (CLI: ``error: ...`` and exit 2; app: ``gr.Error``), never as tracebacks."""
from __future__ import annotations

from .analogy import AnalogyError
from .distributed import RayBuildError
from .gallery import GalleryError
from .images import ImageError
from .index import StaleIndexError
from .models.captioners import CaptionerUnavailable
from .models.convnet import BackboneUnavailable
from .storage import CacheError

USER_ERRORS: tuple[type[BaseException], ...] = (
    ImageError, GalleryError, AnalogyError, CacheError, StaleIndexError, CaptionerUnavailable,
    BackboneUnavailable, RayBuildError, ValueError, FileNotFoundError, PermissionError, IsADirectoryError,
)


def one_line(exc: BaseException) -> str:
    """The exception's message on one line; unexpected types are named so that bugs stay findable."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, USER_ERRORS):
        return text
    return f"{type(exc).__name__}: {text} (set IAE_DEBUG=1 for a traceback)"
