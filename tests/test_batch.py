"""``analogy --batch FILE``: CSV and JSON Lines questions, good and bad rows, hostile files; each
answer equal to the one ``analogy --json`` gives."""
from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tracemalloc

import pytest

from pipeline.batch import (EXIT_SOME_ROWS_FAILED, IN_PROCESS_LINES, MAX_LINE_BYTES, BadRow, Question, open_batch,
                            read_questions, run_batch)
from pipeline.cli import main
from pipeline.errors import BatchFileError
from pipeline.explorer import Explorer
from tests.conftest import REPO, imagen_file

LABELS = ("sheep", "camel", "seal", "hippopotamus")


def rows(data: bytes, json_lines: bool | None = None) -> list:
    return list(read_questions(io.BytesIO(data), "q", json_lines))


def test_csv_rows_good_and_bad():
    data = (b"\xef\xbb\xbfA, B ,c,Method,expected,layer\n"
            b"0,1,2,,,\n"
            b"\n"
            b'"sheep/a.jpg","x, y.jpg",2,3CosMul,4;5,probs\n'
            b"0,1\n"
            b"0,1,2,bogus,,\n"
            b"0,1,2,,,deep\n"
            b"0,,2,,,\n"
            b"0,1,\xff\xfe.jpg,,,\n"
            b'0,1,"2,,,\n')
    got = rows(data)
    assert got[0] == Question(2, ("0", "1", "2"))
    assert got[1] == Question(4, ("sheep/a.jpg", "x, y.jpg", "2"), "3cosmul", "probs", ["4", "5"])
    bad = {r.row: r.error for r in got[2:]}
    assert all(isinstance(r, BadRow) for r in got[2:]) and sorted(bad) == [5, 6, 7, 8, 9, 10]
    assert bad[5].startswith("2 fields, but the header has 6")
    assert bad[6].startswith("unknown method 'bogus'") and bad[7].startswith("unknown layer 'deep'")
    assert bad[8].startswith("B is missing")
    assert bad[9].startswith("not UTF-8 text (byte 0xff at column 5)")
    assert bad[10].startswith("not a CSV row")


def test_json_lines_rows_good_and_bad():
    data = (b'{"a": 0, "b": "1", "C": "x.jpg", "expected": [3, "y.jpg"], "method": "PairDirection"}\n'
            b"[1, 2, 3]\n"
            b'{"a": 0, "b": 1, "c": 2, "d": 3}\n'
            b"{not json\n"
            b'{"a": 0, "b": 1, "c": true}\n'
            b'{"a": 0, "b": 1, "c": 2, "expected": {"x": 1}}\n'
            b'{"a": 0, "b": 1, "c": 2, "layer": 7}\n')
    got = rows(data)
    assert got[0] == Question(1, ("0", "1", "x.jpg"), "pairdirection", None, ["3", "y.jpg"])
    errors = [r.error for r in got[1:]]
    assert all(isinstance(r, BadRow) for r in got[1:]) and [r.row for r in got[1:]] == [2, 3, 4, 5, 6, 7]
    assert errors[0].startswith("a JSON list, not an object") and errors[1].startswith("unknown key 'd'")
    assert errors[2].startswith("not valid JSON") and errors[3].startswith("C is a JSON bool")
    assert errors[4].startswith("expected must be") and errors[5].startswith("unknown layer")


def test_an_over_long_row_is_skipped_without_being_held():
    long_row = b"0,1," + b"x" * (5 * MAX_LINE_BYTES) + b"\n"
    got = rows(b"a,b,c\n" + long_row + b"3,4,5\n")
    assert isinstance(got[0], BadRow) and got[0].row == 2 and "KiB long" in got[0].error
    assert got[1] == Question(3, ("3", "4", "5"))


@pytest.mark.parametrize("data,message", [
    (b"a,b,x\n0,1,2\n", "'x' is not a column"),
    (b"a,b\n0,1\n", "lacks the column 'c'"),
    (b"a,b,c,a\n0,1,2,3\n", "names a column twice"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\xff\xd8", "is not UTF-8 text"),
    (b"a" * (2 * MAX_LINE_BYTES), "not a batch file header"),
])
def test_a_file_that_is_not_questions_is_one_clear_error(data, message):
    with pytest.raises(BatchFileError, match=message):
        rows(data)


class _Rows(io.RawIOBase):
    """A million CSV rows made on the fly (never all in memory), one over-long line among them."""

    def __init__(self, n: int):
        self.n, self.i, self.pending = n, 0, b"a,b,c,method\n"

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while len(self.pending) < len(buffer) and self.i < self.n:
            self.i += 1
            self.pending += (b"1,2," + b"y" * (3 * MAX_LINE_BYTES) + b"\n") if self.i == self.n // 2 else \
                b"%d,%d,%d,3cosadd\n" % (self.i % 997, (self.i + 1) % 997, (self.i + 2) % 997)
        size = min(len(buffer), len(self.pending))
        buffer[:size], self.pending = self.pending[:size], self.pending[size:]
        return size


@pytest.mark.slow
def test_a_million_rows_stream_in_constant_memory():
    n = 1_000_000
    tracemalloc.start()
    good = bad = 0
    for row in read_questions(io.BufferedReader(_Rows(n), buffer_size=1 << 16), "million"):
        good += isinstance(row, Question)
        bad += isinstance(row, BadRow)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert (good, bad) == (n - 1, 1)
    assert peak < 4 * 1024 * 1024, peak  # a few lines at a time, never the file


def test_open_batch_refuses_what_is_not_a_file(tmp_path):
    with pytest.raises(BatchFileError, match="cannot read the batch file"):
        open_batch(str(tmp_path / "missing.csv"))
    with pytest.raises(BatchFileError, match="not a regular file"):
        open_batch(str(tmp_path))
    (tmp_path / "q.jsonl").write_bytes(b'{"a":0,"b":1,"c":2}\n')
    stream, name, json_lines, lines = open_batch(str(tmp_path / "q.jsonl"))
    stream.close()
    assert (json_lines, lines) == (True, 1)


# --- end to end -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gallery(tmp_path_factory, settings, imagen_dir) -> dict:
    """12 imagen photos (3 of each of 4 classes), built once with label captions."""
    root = tmp_path_factory.mktemp("batch") / "photos"
    root.mkdir()
    for label in LABELS:
        for i in range(3):
            shutil.copy(imagen_file(imagen_dir, label, i), root / f"{label}-{i}.jpg")
    explorer = Explorer(settings.replace(captioner="labels"))
    explorer.open_gallery(root)
    return {"root": root, "explorer": explorer, "cache": settings.cache_dir}


def run_batch_cli(gallery: dict, path: str, *extra: str, stdin: bytes | None = None,
                  bars: bool = True) -> subprocess.CompletedProcess:
    """The batch command in a subprocess; ``bars``: progress bars on stderr (IAE_PROGRESS)."""
    command = [sys.executable, "-m", "pipeline", "analogy", "--batch", path, "--gallery", str(gallery["root"]),
               "--cache-dir", str(gallery["cache"]), "--captioner", "labels", *extra]
    env = {key: value for key, value in os.environ.items() if key != "IAE_PROGRESS"}
    env["PYTHONPATH"] = str(REPO)
    if bars:
        env["IAE_PROGRESS"] = "1"
    return subprocess.run(command, input=stdin, capture_output=True, cwd=REPO, timeout=600, env=env)


def answer_of(gallery: dict, refs: list, **options) -> dict:
    """What ``analogy --json`` prints for the question, as parsed JSON."""
    return json.loads(json.dumps(gallery["explorer"].analogy(refs, **options).as_dict()))


def test_csv_batch_answers_good_rows_as_analogy_json_and_names_bad_rows(gallery, tmp_path, capsys):
    questions = tmp_path / "questions.csv"
    questions.write_bytes(b"a,b,c,method,layer\n"
                          b"0,3,6,,\n"
                          b"sheep-0.jpg,camel-0.jpg,seal-0.jpg,3cosmul,logits\n"
                          b"0,3,99,,\n"
                          b"0,3\n"
                          b"1,4,\xff.jpg,,\n"
                          b"2,5,8,pairdirection,\n")
    result = run_batch_cli(gallery, str(questions))
    assert result.returncode == 1, result.stderr.decode()[-2000:]
    lines = [json.loads(line) for line in result.stdout.decode().splitlines()]
    assert [line["row"] for line in lines] == [2, 3, 4, 5, 6, 7]
    errors = {line["row"]: line["error"] for line in lines if "error" in line}
    assert sorted(errors) == [4, 5, 6]
    assert "99 is neither a gallery item" in errors[4] and errors[5].startswith("2 fields")
    assert errors[6].startswith("not UTF-8 text")
    stderr = result.stderr.decode()
    for row in (4, 5, 6):  # one line each on stderr, naming the file and the row
        assert f"error: {questions}, row {row}: {errors[row]}" in stderr
    assert "questions" in stderr and "Traceback" not in stderr  # the progress bar, no traceback

    answers = {line.pop("row"): line for line in lines if "error" not in line}
    assert answers[2] == answer_of(gallery, ["0", "3", "6"])
    assert answers[3] == answer_of(gallery, ["sheep-0.jpg", "camel-0.jpg", "seal-0.jpg"], method="3cosmul", layer="logits")
    assert answers[7] == answer_of(gallery, ["2", "5", "8"], method="pairdirection")
    # ... which is what analogy --json prints
    assert main(["analogy", "0", "3", "6", "--gallery", str(gallery["root"]), "--cache-dir", str(gallery["cache"]),
                 "--captioner", "labels", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == answers[2]


def test_json_lines_batch_with_expected_answers_and_an_image_file(gallery, tmp_path, imagen_dir):
    outside = imagen_file(imagen_dir, "seal", 3)  # not in the gallery: classified and captioned
    questions = tmp_path / "questions.jsonl"
    questions.write_text("\n".join(json.dumps(q) for q in [
        {"a": "sheep-0.jpg", "b": "camel-0.jpg", "c": str(outside), "expected": ["hippopotamus-0.jpg", 10]},
        {"a": 1, "b": 4, "c": 7, "top_k": 3},
        {"a": 1, "b": 4, "c": 7, "expected": "nothing-like-it.jpg"},
    ]) + "\n")
    result = run_batch_cli(gallery, str(questions), "--top-k", "3")
    assert result.returncode == 1
    first, second, third = [json.loads(line) for line in result.stdout.decode().splitlines()]
    assert first["inputs"][2]["id"] is None and len(first["image_space"]["results"]) == 3
    expected = first.pop("expected")
    assert expected["ids"] == [3, 10]  # hippopotamus-0.jpg (ids follow sorted paths: camel, hippopotamus, ...)
    for space in ("image_space", "caption_space"):
        judged = expected[space]
        top = first[space]["results"][0]["id"]
        assert judged["correct"] == (top in (3, 10)) and judged["rank"] >= 1 and judged["layout"] == "given"
    first.pop("row")
    assert first == answer_of(gallery, ["sheep-0.jpg", "camel-0.jpg", str(outside)], top_k=3)
    assert second == {"row": 2, "error": "unknown key 'top_k' (keys: a, b, c, method, layer, expected)"}
    assert third["row"] == 3 and "is not a gallery item" in third["error"]


def test_worker_processes_write_what_one_process_writes(gallery, tmp_path, imagen_dir):
    """A long batch is answered by spawned worker processes, each with its own Explorer on the same
    cache: the lines (answers, bad rows, an image file outside the gallery) are byte for byte the ones
    answered in this process, in the file's order."""
    outside = imagen_file(imagen_dir, "seal", 3)
    body = "".join(f"{i % 12},{(i + 4) % 12},{(i + 7) % 12},{('', '3cosmul', 'pairdirection')[i % 3]}\n"
                   for i in range(IN_PROCESS_LINES + 6))
    questions = tmp_path / "long.csv"
    questions.write_text(f"a,b,c,method\n{body}0,3,99,\n0,3\nsheep-0.jpg,camel-0.jpg,{outside},\n")
    written = {}
    for workers in (1, 2):
        out = io.StringIO()
        status = run_batch(gallery["explorer"], open_batch(str(questions)), method="3cosadd", layer=None,
                           exclude=True, top_k=5, out=out, show_bar=False, workers=workers)
        assert status == EXIT_SOME_ROWS_FAILED
        written[workers] = out.getvalue()
    assert written[2] == written[1]
    lines = [json.loads(line) for line in written[1].splitlines()]
    assert [line["row"] for line in lines] == list(range(2, IN_PROCESS_LINES + 11))
    assert [line["row"] for line in lines if "error" in line] == [IN_PROCESS_LINES + 8, IN_PROCESS_LINES + 9]
    assert lines[-1]["inputs"][2]["id"] is None  # the outside image, classified by a worker's own models


def test_all_rows_answered_exits_zero_and_stdin_works(gallery):
    result = run_batch_cli(gallery, "-", stdin=b'{"a": 0, "b": 3, "c": 6}\n{"a": 1, "b": 4, "c": 7}\n')
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    assert [json.loads(line)["row"] for line in result.stdout.decode().splitlines()] == [1, 2]


@pytest.mark.parametrize("content,message", [
    (None, "cannot read the batch file"),
    (b"a,b,d\n0,1,2\n", "'d' is not a column"),
    (b"a,b,c\n", "holds no questions"),
    (b"\xff\xd8\xff\xe0JFIF\n", "is not UTF-8 text"),
])
def test_a_bad_file_is_one_line_and_exit_status_two(gallery, tmp_path, content, message):
    path = tmp_path / "questions.csv"
    if content is not None:
        path.write_bytes(content)
    result = run_batch_cli(gallery, str(path), bars=False)
    stderr = result.stderr.decode().strip().splitlines()
    assert result.returncode == 2 and result.stdout == b""
    assert len(stderr) == 1 and stderr[0].startswith("error: ") and message in stderr[0], stderr


def test_batch_and_a_b_c_together_are_refused(gallery, tmp_path):
    (tmp_path / "q.csv").write_text("a,b,c\n0,1,2\n")
    result = run_batch_cli(gallery, str(tmp_path / "q.csv"), "0")
    assert result.returncode == 2 and b"either A B C or --batch" in result.stderr
