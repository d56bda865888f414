"""Import Gradio without letting it rewrite its type stubs: :func:`stop_stub_writing`.

Gradio's component metaclass calls ``gradio.component_meta.create_or_modify_pyi`` for every component
class it creates: it reads the class's module, parses it with :mod:`ast` and (re)writes a ``.pyi``
stub beside it. For Gradio's own component classes (81 in Gradio 6.31) that is about half of
``import gradio`` (``python -c "import gradio"`` on this project's 2-core machine: 3.0-4.4 s with it,
2.0-2.4 s without), on every start of the app, and it writes into ``site-packages``
(gradio-app/gradio#10121: on a read-only install the write is swallowed and a later read fails).
The stubs it would write ship in Gradio's wheel; they are only for type checkers. For this
project's own component subclasses (:mod:`webui.page`) it would write a ``page.pyi`` that shadows the
module for type checkers.

:func:`stop_stub_writing` replaces that one function by one that does nothing: when
``gradio.component_meta`` is loaded (an import hook, installed before Gradio is imported; the
package imports it first), or at once if Gradio is already imported (then only classes created
afterwards are spared, and the start is not faster). Nothing else in Gradio changes.
"""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from types import ModuleType

STUB_MODULE = "gradio.component_meta"
STUB_WRITER = "create_or_modify_pyi"


def write_no_stub(component_class: type, class_name: str, events: list) -> None:
    """Stands in for Gradio's ``create_or_modify_pyi(component_class, class_name, events)``: writes nothing."""


def _replace_stub_writer(module: ModuleType) -> None:
    if hasattr(module, STUB_WRITER):  # a Gradio without it needs nothing replaced
        setattr(module, STUB_WRITER, write_no_stub)


class _StubWriterRemover(importlib.abc.MetaPathFinder):
    """Finds ``gradio.component_meta`` as the standard path finder does, and replaces its stub
    writer as soon as the module has run (before any component class is created)."""

    def find_spec(self, fullname, path, target=None):
        if fullname != STUB_MODULE:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        run_module = spec.loader.exec_module

        def exec_module(module: ModuleType) -> None:
            run_module(module)
            _replace_stub_writer(module)

        spec.loader.exec_module = exec_module  # this spec's own loader: other modules are untouched
        return spec


def stop_stub_writing() -> None:
    """Make Gradio's component classes skip writing ``.pyi`` stubs, in this process. Call it before
    the first ``import gradio`` to also make that import faster; calling it again does nothing more."""
    if STUB_MODULE in sys.modules:
        _replace_stub_writer(sys.modules[STUB_MODULE])
    elif not any(isinstance(finder, _StubWriterRemover) for finder in sys.meta_path):
        sys.meta_path.insert(0, _StubWriterRemover())


def stub_writing_stopped() -> bool:
    """Whether Gradio is imported and its stub writer replaced (for tests and the benchmark)."""
    module = sys.modules.get(STUB_MODULE)
    return module is not None and getattr(module, STUB_WRITER, None) is write_no_stub
