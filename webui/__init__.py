"""The web page of the Image Analogy Explainer (Gradio 6), served by ``app.py``.

- :mod:`webui.page`: :func:`build_demo`, the three tabs, each with its events wired beside its components;
- :mod:`webui.handlers`: :class:`Handlers`, what the events call (validate, call the Explorer, format),
  each returning a named result;
- :mod:`webui.guard`: :func:`user_facing`, the handlers' error guard;
- :mod:`webui.browsing`: the browse panels (a page of thumbnails at a time, a filter, a click picks);
- :mod:`webui.format`: HTML and Markdown from the pipeline's reports;
- :mod:`webui.gradio_stubs`: Gradio imported without rewriting its type stubs (half of its import time).

Importing this package loads no model. It imports Gradio, after :func:`webui.gradio_stubs.stop_stub_writing`.
"""
from .gradio_stubs import stop_stub_writing

stop_stub_writing()  # before anything below imports Gradio

from .guard import GENERIC_ERROR, user_facing
from .handlers import Handlers
from .page import CONCURRENCY_ID, MODEL_CONCURRENCY, QUEUE_MAX_SIZE, THEME, build_demo

__all__ = ["CONCURRENCY_ID", "GENERIC_ERROR", "Handlers", "MODEL_CONCURRENCY", "QUEUE_MAX_SIZE", "THEME", "build_demo",
           "user_facing"]
