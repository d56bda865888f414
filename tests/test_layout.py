"""The project's layout rules, read from the source (nothing is imported): no import cycle among the
project's modules (imports inside functions included), no import inside a function unless a comment
says it defers a heavy dependency, no module over its size limit, and nothing pyflakes finds (an
undefined name, an unused import or variable) unless its line says ``# noqa`` and why."""
from __future__ import annotations

import ast
import io
import re
from pathlib import Path

from tests.conftest import REPO

PACKAGES = ("pipeline", "eval", "webui", "scripts")
TOP_MODULES = ("app.py",)
MAX_LINES = 450
LINE_LIMITS = {"app.py": 250}  # the argument parser, main and the launch; the page lives in webui/
# Where an import inside a function must say (in a comment on its line or just above) that it is
# deferred, and why.
FUNCTION_IMPORT_RULE_IN = ("pipeline", "eval", "webui")
DEFERRED_COMMENT = re.compile(r"#.*\bdefer", re.IGNORECASE)


def source_files() -> dict[str, Path]:
    """Module name -> file, for every Python file of the project's packages and top-level modules."""
    files = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")) if (REPO / package).is_dir() else []:
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            files[".".join(parts)] = path
    for name in TOP_MODULES:
        if (REPO / name).exists():
            files[name.removesuffix(".py")] = REPO / name
    return files


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """ids of the nodes inside ``if TYPE_CHECKING:`` blocks (imports for annotations only)."""
    inside = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            inside |= {id(child) for stmt in node.body for child in ast.walk(stmt)}
    return inside


def resolve(name: str, modules: set[str]) -> str | None:
    """The project module that ``name`` (a dotted import target) lives in, or None (not the project's)."""
    while name and name not in modules:  # pipeline.vectors.ALL_METHODS -> pipeline.vectors
        name = name.rpartition(".")[0]
    return name or None


def imports_of(module: str, path: Path, modules: set[str], tree: ast.AST | None = None) -> list[tuple[str, ast.stmt]]:
    """(imported project module, import statement) for every import in the file, at any depth
    (``tree``: the file already parsed)."""
    tree = tree or ast.parse(path.read_text(encoding="utf-8"))
    skip = _type_checking_nodes(tree)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            targets = {resolve(alias.name, modules) for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".") if package else []
                base = ".".join([*parts[:len(parts) - (node.level - 1)], *([base] if base else [])])
            # "from pkg import sub" imports the module pkg.sub; "from mod import name", the module mod
            targets = {f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else resolve(base, modules)
                       for alias in node.names}
        else:
            continue
        found += [(target, node) for target in sorted(t for t in targets if t and t != module)]
    return found


def import_graph() -> dict[str, set[str]]:
    files = source_files()
    return {module: {target for target, _ in imports_of(module, path, set(files))} for module, path in files.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_graph_reader_sees_function_level_imports_and_finds_cycles(tmp_path):
    path = tmp_path / "m.py"
    path.write_text("from . import b\ndef f():\n    from .c import X\n    import pkg.d\n")
    modules = {"pkg.m", "pkg.b", "pkg.c", "pkg.d"}
    assert sorted(t for t, _ in imports_of("pkg.m", path, modules)) == ["pkg.b", "pkg.c", "pkg.d"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycle_among_the_projects_modules():
    graph = import_graph()
    assert "pipeline.gallery" in graph and "pipeline.captions" in graph["pipeline.gallery"]
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_imports_inside_functions_only_defer_heavy_dependencies_and_say_so():
    files = source_files()
    offences = []
    for module, path in files.items():
        relative = path.relative_to(REPO).as_posix()
        if not relative.startswith(FUNCTION_IMPORT_RULE_IN):
            continue
        lines = path.read_text(encoding="utf-8").splitlines()
        tree = ast.parse("\n".join(lines))
        project = {id(node): target for target, node in imports_of(module, path, set(files), tree)}
        for function in ast.walk(tree):
            if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(function):
                if not isinstance(node, (ast.Import, ast.ImportFrom)):
                    continue
                if id(node) in project:
                    offences.append(f"{relative}:{node.lineno} imports {project[id(node)]} inside a function")
                elif not any(DEFERRED_COMMENT.search(line) for line in lines[max(0, node.lineno - 4):node.end_lineno]):
                    offences.append(f"{relative}:{node.lineno} imports inside a function without a "
                                    "'# deferred: why' comment")
    assert not offences, "\n".join(sorted(set(offences)))


def test_no_module_is_over_its_size_limit():
    too_long = []
    for path in sorted(p.relative_to(REPO).as_posix() for p in source_files().values()):
        limit = LINE_LIMITS.get(path, MAX_LINES)
        lines = len((REPO / path).read_text(encoding="utf-8").splitlines())
        if lines > limit:
            too_long.append(f"{path} has {lines} lines, over {limit}: split it by job")
    assert not too_long, "\n".join(too_long)


def test_pyflakes_finds_nothing():
    """An undefined name is a NameError waiting for the one path no test takes (a follow-up question
    about an upload once failed so); unused imports and variables are dead code. A line may keep one
    on purpose (a re-export, an import for its side effect) with ``# noqa`` and the reason."""
    from pyflakes.api import check  # deferred: a test tool, only this test needs it
    from pyflakes.reporter import Reporter

    found, errors = io.StringIO(), io.StringIO()
    paths = [*source_files().values(), *sorted((REPO / "tests").glob("*.py"))]
    for path in paths:
        check(path.read_text(encoding="utf-8"), str(path.relative_to(REPO)), Reporter(found, errors))
    lines = {p.relative_to(REPO).as_posix(): p.read_text(encoding="utf-8").splitlines() for p in paths}
    offences = []
    for message in found.getvalue().splitlines():
        file, number = message.split(":")[:2]
        if "# noqa" not in lines[file][int(number) - 1]:
            offences.append(message)
    assert len(paths) > 100 and not errors.getvalue(), errors.getvalue()
    assert not offences, "\n".join(offences)
