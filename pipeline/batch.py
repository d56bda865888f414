"""Many questions in one process: ``python -m pipeline analogy --batch FILE``.

FILE (or ``-`` for standard input) holds one question per line, as CSV with a header or as JSON Lines:

* CSV: a header naming the columns ``a,b,c`` and optionally ``method``, ``layer``, ``expected`` (any
  order, any case), then one row per line (quoting as usual; no line breaks inside a field);
* JSON Lines: one object per line with the keys ``a``, ``b``, ``c`` and optionally ``method``,
  ``layer``, ``expected``.

A, B and C are gallery ids, paths inside the gallery, or image files (as on the command line);
``method`` and ``layer`` default to the command's ``--method`` and ``--layer``; ``expected`` names the
right answers (gallery ids or paths; several separated by ``;`` in CSV, a list in JSON). The format is
told by the suffix (``.csv``; ``.jsonl``, ``.ndjson``, ``.json``), else by the first line. Blank lines
are skipped. Rows are numbered by their line in the file (the header is line 1).

:func:`read_questions` streams the file (constant memory, linear time; a line longer than
:data:`MAX_LINE_BYTES` is skipped unread, as a bad row); :func:`run_batch` answers each question and
writes one JSON line per row: the object of ``analogy --json`` with ``row`` first (and, when the row
gives ``expected``, the judgement of each space against it), or ``{"row": n, "error": "..."}`` for a
row that cannot be answered (also said on stderr as one line); the run goes on. A file that cannot be
read as questions at all (missing, a folder, no header, unknown columns, not text) is a
:class:`pipeline.errors.BatchFileError`.
"""
from __future__ import annotations

import csv
import functools
import json
import multiprocessing
import os
import stat
import sys
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

from threadpoolctl import threadpool_limits
from tqdm import tqdm

from .config import LAYERS
from .errors import AnalogyError, BatchFileError, UserError, error_line
from .explorer import Explorer
from .insight import judge_answer
from .ordered import in_order
from .vectors import ALL_METHODS

COLUMNS = ("a", "b", "c", "method", "layer", "expected")
REQUIRED = ("a", "b", "c")
#: A line (row) longer than this is refused without being held in memory.
MAX_LINE_BYTES = 64 * 1024
#: Bytes read at a time when counting lines or skipping an over-long one.
BLOCK = 1 << 20
JSON_SUFFIXES = (".jsonl", ".ndjson", ".json")
EXPECTED_SEPARATOR = ";"
#: Exit statuses of a batch run (the file itself unreadable: 2, as every command-line error).
EXIT_ALL_ANSWERED, EXIT_SOME_ROWS_FAILED = 0, 1
#: Worker processes answering the questions of a long batch (a question is mostly small numpy steps
#: that hold the interpreter lock: on 2 cores, 2 threads answered only 1.05-1.24x as many as 1).
ANSWER_PROCESSES = min(4, os.cpu_count() or 1)
#: A batch of at most this many lines is answered in this process: starting workers (imports, the
#: gallery opened again) would take longer than its questions.
IN_PROCESS_LINES = 64


@dataclass
class Question:
    """One row: ``refs`` A, B, C as written; ``method``/``layer`` None for the command's default;
    ``expected`` gallery refs of the right answers, or None."""

    row: int
    refs: tuple[str, str, str]
    method: str | None = None
    layer: str | None = None
    expected: list[str] | None = None


@dataclass
class BadRow:
    """A row that is not a question: ``error`` says why, on one line."""

    row: int
    error: str


# --- reading ---------------------------------------------------------------------------------------


def _lines(stream: BinaryIO) -> Iterator[tuple[int, bytes | None]]:
    """(line number, bytes without the line break) for each line; bytes None for a line over
    :data:`MAX_LINE_BYTES` (skipped block by block, never held)."""
    number = 0
    while True:
        line = stream.readline(MAX_LINE_BYTES + 1)
        if not line:
            return
        number += 1
        if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
            while line and not line.endswith(b"\n"):
                line = stream.readline(BLOCK)
            yield number, None
            continue
        yield number, line.rstrip(b"\r\n")


def _text(number: int, raw: bytes) -> str:
    """A line as text; UnicodeDecodeError's position named in a BadRow-ready ValueError."""
    if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]  # a UTF-8 byte-order mark
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at column {exc.start + 1}); "
                         "save the file as UTF-8") from None


def _choice(value, allowed: tuple[str, ...], what: str) -> tuple[str | None, str | None]:
    """(the value, lower case, or None when empty; None) when it is one of ``allowed``, else
    (None, the error)."""
    if value in ("", None):
        return None, None
    if isinstance(value, str) and value.strip().lower() in allowed:
        return value.strip().lower(), None
    return None, f"unknown {what} {str(value)[:40]!r}: choose one of {', '.join(allowed)}"


def _fields(values: dict, number: int) -> Question | BadRow:
    """A Question from a row's {column: value}, or a BadRow saying what is wrong with it."""
    refs = []
    for key in REQUIRED:
        value = values.get(key)
        if value is None or (isinstance(value, str) and not value.strip()):
            return BadRow(number, f"{key.upper()} is missing or empty: give a gallery id, a gallery path or an image file")
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            return BadRow(number, f"{key.upper()} is a JSON {type(value).__name__}: give a gallery id (a whole "
                                  "number), a gallery path or an image file")
        refs.append(str(value).strip())
    method, error = _choice(values.get("method"), ALL_METHODS, "method")
    if error is None:
        layer, error = _choice(values.get("layer"), LAYERS, "layer")
    if error is not None:
        return BadRow(number, error)
    expected = values.get("expected")
    if isinstance(expected, str):
        expected = [e.strip() for e in expected.split(EXPECTED_SEPARATOR) if e.strip()] or None
    elif isinstance(expected, int) and not isinstance(expected, bool):
        expected = [str(expected)]
    elif isinstance(expected, list) and all(isinstance(e, (str, int)) and not isinstance(e, bool) for e in expected):
        expected = [str(e).strip() for e in expected if str(e).strip()] or None
    elif expected is not None:
        return BadRow(number, "expected must be gallery ids or paths (a list in JSON, separated by ';' in CSV)")
    return Question(number, (refs[0], refs[1], refs[2]), method, layer, expected)


def _csv_header(number: int, text: str, name: str) -> list[str]:
    columns = [c.strip().lower() for c in next(csv.reader([text]), [])]
    unknown = [c for c in columns if c not in COLUMNS]
    if unknown:
        raise BatchFileError(f"{name}: line {number} is the CSV header, and {unknown[0][:40]!r} is not a column "
                             f"(columns: {', '.join(COLUMNS)}; a, b, c required)")
    missing = [c for c in REQUIRED if c not in columns]
    if missing:
        raise BatchFileError(f"{name}: the CSV header (line {number}) lacks the column {missing[0]!r}: it needs "
                             f"a,b,c and may add {', '.join(COLUMNS[3:])}")
    if len(set(columns)) != len(columns):
        raise BatchFileError(f"{name}: the CSV header (line {number}) names a column twice")
    return columns


def _csv_row(number: int, text: str, columns: list[str]) -> Question | BadRow:
    try:
        cells = next(csv.reader([text], strict=True), [])
    except csv.Error as exc:
        return BadRow(number, f"not a CSV row ({exc})")
    if len(cells) != len(columns):
        return BadRow(number, f"{len(cells)} fields, but the header has {len(columns)} ({','.join(columns)})")
    return _fields(dict(zip(columns, cells)), number)


def _json_row(number: int, text: str) -> Question | BadRow:
    try:
        value = json.loads(text)
    except ValueError as exc:
        return BadRow(number, f"not valid JSON ({str(exc)[:120]})")
    if not isinstance(value, dict):
        return BadRow(number, f"a JSON {type(value).__name__}, not an object with keys a, b, c")
    lowered = {str(k).lower(): v for k, v in value.items()}
    unknown = [k for k in lowered if k not in COLUMNS]
    if unknown:
        return BadRow(number, f"unknown key {unknown[0][:40]!r} (keys: {', '.join(COLUMNS)})")
    return _fields(lowered, number)


def read_questions(stream: BinaryIO, name: str, json_lines: bool | None = None) -> Iterator[Question | BadRow]:
    """Questions and bad rows of a batch file opened in binary (see the module docstring), one line
    at a time. ``json_lines``: the format (None: told by the first non-blank line). Raises
    BatchFileError when the file cannot be questions at all."""
    columns: list[str] | None = None
    for number, raw in _lines(stream):
        if raw is None:
            if columns is None and not json_lines:
                raise BatchFileError(f"{name}: line {number} is over {MAX_LINE_BYTES // 1024} KiB: not a batch file header")
            yield BadRow(number, f"over {MAX_LINE_BYTES // 1024} KiB long: not a question")
            continue
        try:
            text = _text(number, raw)
        except ValueError as exc:
            if columns is None and not json_lines:
                raise BatchFileError(f"{name}: line {number} is {exc}") from None
            yield BadRow(number, str(exc))
            continue
        if not text.strip():
            continue
        if json_lines is None:
            json_lines = text.lstrip().startswith("{")
        if json_lines:
            yield _json_row(number, text)
        elif columns is None:
            columns = _csv_header(number, text, name)
        else:
            yield _csv_row(number, text, columns)


def open_batch(path: str) -> tuple[BinaryIO, str, bool | None, int | None]:
    """(binary stream, name, format: True JSON Lines / False CSV / None unknown, lines or None) of
    ``path`` (``-``: standard input). Counting lines is one fast pass over a regular file, for the
    progress bar. Raises BatchFileError for a missing file, a folder or anything not a regular file."""
    if path == "-":
        return sys.stdin.buffer, "standard input", None, None
    file = Path(path)
    try:
        mode = os.stat(file).st_mode
    except OSError as exc:
        raise BatchFileError(f"{path}: cannot read the batch file ({exc.strerror or exc}). "
                             "Give a CSV (a,b,c[,method,layer,expected]) or JSON Lines file.") from None
    if not stat.S_ISREG(mode):
        raise BatchFileError(f"{path}: not a regular file. Give a CSV or JSON Lines file of questions.")
    suffix = file.suffix.lower()
    json_lines = True if suffix in JSON_SUFFIXES else False if suffix == ".csv" else None
    try:
        stream = file.open("rb")
        lines = 0
        for block in iter(lambda: stream.read(BLOCK), b""):
            lines += block.count(b"\n")
        stream.seek(0)
    except OSError as exc:
        raise BatchFileError(f"{path}: cannot read the batch file ({exc.strerror or exc})") from None
    return stream, str(path), json_lines, lines


# --- answering ------------------------------------------------------------------------------------


def judge_expected(gallery, report, expected_ids: list[int]) -> dict:
    """Each solved space of ``report`` judged against the gallery ids ``expected_ids``
    (:func:`pipeline.insight.judge_answer`: correct, only_c_correct, rank), keyed like the report."""
    wanted = (sorted(set(expected_ids)), "given")
    judged: dict = {"ids": wanted[0]}
    for key, result in (("image_space", report.image_space), ("caption_space", report.caption_space)):
        verdict = judge_answer(gallery, report.inputs, result, wanted) if result is not None else None
        judged[key] = verdict.as_dict() if verdict is not None else None
    return judged


def answer(explorer, question: Question, method: str, layer: str | None, exclude: bool, top_k: int) -> dict:
    """The JSON object of one question: ``row``, then ``analogy --json``'s object (and ``expected``
    when the row names expected answers). Raises UserError for a question that cannot be answered."""
    gallery = explorer.require_gallery()
    expected_ids = None
    if question.expected is not None:
        expected_ids = [gallery.find(ref) for ref in question.expected]
        unknown = [ref for ref, i in zip(question.expected, expected_ids) if i is None]
        if unknown:
            raise AnalogyError(f"expected {unknown[0][:80]!r} is not a gallery item (give a gallery id or path)")
    report = explorer.analogy(list(question.refs), method=question.method or method, layer=question.layer or layer,
                              exclude=exclude, top_k=top_k)
    out = {"row": question.row, **report.as_dict()}
    if expected_ids is not None:
        out["expected"] = judge_expected(gallery, report, expected_ids)
    return out


def answer_line(explorer, row: "Question | BadRow", method: str, layer: str | None, exclude: bool,
                top_k: int) -> tuple[str, int, str | None]:
    """(the JSON line of ``row``, its row number, None), or (``{"row", "error"}`` as JSON, the row
    number, the error) for a bad row or a question that cannot be answered (IAE_DEBUG=1 raises what
    is not a user error)."""
    if isinstance(row, Question):
        try:
            return json.dumps(answer(explorer, row, method, layer, exclude, top_k)), row.row, None
        except Exception as exc:  # a row that fails is reported and the run goes on
            if os.environ.get("IAE_DEBUG") and not isinstance(exc, UserError):
                raise
            row = BadRow(row.row, error_line(exc))
    return json.dumps({"row": row.row, "error": row.error}), row.row, row.error


_worker_explorer = None  # a worker process's own Explorer, its gallery open (_open_worker)
_worker_blas = None  # keeps the worker's BLAS at one thread


def _open_worker(settings, gallery_root: Path) -> None:
    """A worker process's start: its own Explorer on the same cache and gallery (only read: the
    parent built it), BLAS on one thread."""
    global _worker_explorer, _worker_blas
    _worker_blas = threadpool_limits(1, "blas")
    _worker_explorer = Explorer(settings)
    _worker_explorer.open_gallery(gallery_root)


def _worker_line(row, method: str, layer: str | None, exclude: bool, top_k: int) -> tuple[str, int, str | None]:
    return answer_line(_worker_explorer, row, method, layer, exclude, top_k)


def answering_pool(explorer, lines: int | None, workers: int | None = None):
    """(executor, its function of a row, how many work at once): ``workers`` spawned worker processes
    (default :data:`ANSWER_PROCESSES`; 1 for a batch of at most :data:`IN_PROCESS_LINES` lines), each
    opening the gallery of ``explorer`` itself; with one worker, a thread of this process on ``explorer``."""
    if workers is None:
        workers = 1 if lines is not None and lines <= IN_PROCESS_LINES else ANSWER_PROCESSES
    if workers <= 1:
        return ThreadPoolExecutor(1, thread_name_prefix="answer"), functools.partial(answer_line, explorer), 1
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_open_worker,
                               initargs=(explorer.settings, explorer.require_gallery().root))
    return pool, _worker_line, workers


def run_batch(explorer, batch: tuple, *, method: str, layer: str | None, exclude: bool, top_k: int,
              out=None, show_bar: bool = True, workers: int | None = None) -> int:
    """Answer every question of ``batch`` (what :func:`open_batch` returned) with ``explorer`` (its
    gallery open), one JSON line each on ``out`` (default stdout), in the file's order, a tqdm bar and
    one line per bad row on stderr. The questions are answered by :func:`answering_pool` (``workers``
    processes; default: all cores up to 4, none for a short batch), a few rows ahead of the output.
    Returns :data:`EXIT_ALL_ANSWERED` or :data:`EXIT_SOME_ROWS_FAILED`."""
    out = out or sys.stdout
    stream, name, json_lines, lines = batch
    failed = answered = 0
    pool, line_of, workers = answering_pool(explorer, lines, workers)
    line_of = functools.partial(line_of, method=method, layer=layer, exclude=exclude, top_k=top_k)
    # One BLAS thread: a question's products are small, and on 2 busy cores OpenBLAS's thread pool
    # made each question 3x slower (16 against 47 ms with other work running).
    with stream, threadpool_limits(1, "blas"), pool, \
            tqdm(total=lines, unit="q", desc="questions", file=sys.stderr, disable=not show_bar, dynamic_ncols=True) as bar:
        rows = read_questions(stream, name, json_lines)
        for line, row, error in in_order(pool, line_of, rows, ahead=8 * workers):
            if error is None:
                answered += 1
            else:
                failed += 1
                bar.write(f"error: {name}, row {row}: {error}", file=sys.stderr)
            out.write(line + "\n")
            out.flush()
            bar.update(1)
        if lines:
            bar.n = lines  # the count included the header and blank lines
            bar.refresh()
    if answered == 0 and failed == 0:
        raise BatchFileError(f"{name} holds no questions: give a CSV header a,b,c and one question per line, "
                             "or JSON Lines objects with keys a, b, c")
    return EXIT_SOME_ROWS_FAILED if failed else EXIT_ALL_ANSWERED
