"""Finding and reading evaluation reports (pipeline.reports), without Gradio: real folders, real files.

The web copies (pipeline.web_copies) are tested the same way in tests/test_faults.py; through the app's
Evaluation tab in tests/test_app.py and tests/test_app_reliability.py.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time

from PIL import Image

from pipeline.reports import MAX_MARKDOWN_BYTES, eval_reports, report_figures, report_text
from tests.conftest import REPO


def test_the_pipeline_side_of_the_app_imports_no_gradio():
    code = ("import sys\n"
            "import pipeline.reports, pipeline.web_copies\n"
            "assert 'gradio' not in sys.modules\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr


def test_reports_are_found_newest_first(tmp_path):
    assert eval_reports(tmp_path / "missing") == []
    assert eval_reports(tmp_path) == []
    for n, name in enumerate(("b-old", "a-new", "c-middle")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.md").write_text(f"# {name}\n")
        stamp = time.time() - 100 + {"b-old": 0, "c-middle": 10, "a-new": 20}[name]
        os.utime(tmp_path / name / "results.md", (stamp, stamp))
    (tmp_path / "no-results").mkdir()
    (tmp_path / "stray.md").write_text("not a report")
    assert [p.name for p in eval_reports(tmp_path)] == ["a-new", "c-middle", "b-old"]
    # the folder itself counts when it holds a results.md
    (tmp_path / "results.md").write_text("# top\n")
    assert eval_reports(tmp_path)[0] == tmp_path


def test_links_that_leave_the_reports_folder_are_ignored(tmp_path):
    reports, outside = tmp_path / "reports", tmp_path / "outside"
    (reports / "run").mkdir(parents=True)
    (reports / "run" / "results.md").write_text("# run\n")
    outside.mkdir()
    (outside / "results.md").write_text("# secret\n")
    Image.new("RGB", (10, 10)).save(outside / "secret.png")
    (reports / "linked").symlink_to(outside, target_is_directory=True)
    Image.new("RGB", (10, 10)).save(reports / "run" / "plot.png")
    (reports / "run" / "leak.png").symlink_to(outside / "secret.png")
    (reports / "run" / "folder.png").mkdir()
    assert [p.name for p in eval_reports(reports)] == ["run"]
    assert [p.name for p in report_figures(reports / "run", reports)] == ["plot.png"]


def test_report_text_is_read_up_to_the_limit(tmp_path):
    (tmp_path / "results.md").write_bytes(b"# caf\xc3\xa9 \xff\n" + b"x" * (2 * MAX_MARKDOWN_BYTES))
    text = report_text(tmp_path)
    assert text.startswith("# caf\u00e9 \ufffd\n")
    assert len(text.encode("utf-8")) <= MAX_MARKDOWN_BYTES + 2  # U+FFFD is 3 bytes for 1
