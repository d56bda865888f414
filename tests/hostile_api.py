"""A corpus of hostile chat questions and API calls (issue 14), as data, beside tests/bad_inputs.py.

Not a test module. ``tests/test_intents.py`` and ``tests/test_api_inputs.py`` use it; the app's
reliability tests run it against the real server:

* :func:`adversarial_questions` / :data:`CHAT_LOOP_QUESTIONS`: questions of the maximum length made to
  slow a backtracking matcher down (each must be answered, or refused, in milliseconds);
* :data:`ODD_QUESTIONS`: questions whose text must come back as text (Markdown, HTML, control
  characters), or be refused in one line;
* :data:`BAD_CALLS`: API calls with a wrong value for one input, as ``(api, data, input named in the
  error)``; :data:`UPLOAD` in ``data`` stands for a real upload (:func:`fill` puts one in);
* :func:`history_injections`: the old ``/ask`` history carrying a file component, which made the server
  copy any readable file into its served upload folder.
"""
from __future__ import annotations

import re

from pipeline.intents import MAX_QUESTION_CHARS

N = MAX_QUESTION_CHARS
ISSUE_QUESTION = ("compar_" * 286)[:N]  # 2.2 s in re.search alone before issue 14
SEPARATORS = (" ", "_", "-", "\n", "?", ".", "")
RUNS = " _-?\n1a"  # characters repeated after (or before) a keyword


def keywords(pattern: str) -> list[str]:
    """The words a regular expression looks for: ``compar`` and ``methods`` in ``compar\\w*.*\\bmethods?\\b``."""
    text = re.sub(r"\\.|\(\?[a-z]*[:>)]?", " ", pattern)
    return sorted({w for w in re.findall(r"[A-Za-z0-9][A-Za-z0-9-]*", text) if len(w) > 1})


def adversarial_questions(pattern: str, length: int = N) -> set[str]:
    """Questions of ``length`` characters that make a backtracking matcher work hardest on ``pattern``:
    its keywords (and keywords one letter short) repeated with each separator, pairs of its keywords
    alternating, a keyword followed or preceded by a long run of one character, all keywords in order
    and reversed, long runs of one character, and the issue's question."""
    words = keywords(pattern)
    questions = {ISSUE_QUESTION[:length]}
    for ch in RUNS + ".!é\t":
        questions |= {ch * length, ch * (length - 1) + "x", "x" + ch * (length - 1)}
    for word in words:
        for sep in SEPARATORS:
            questions.add(((word + sep) * length)[:length])
            questions.add(((word[:-1] + sep) * length)[:length])
        for ch in RUNS:
            questions.add((word + ch * length)[:length])
            questions.add((ch * length)[:length - len(word)] + word)
        for other in words:
            for sep in (" ", "_", "\n", ""):
                questions.add(((word + sep + other + sep) * length)[:length])
    for sep in SEPARATORS:
        questions.add(((sep.join(words) + sep) * length)[:length])
        questions.add(((sep.join(reversed(words)) + sep) * length)[:length])
    return questions


# The worst questions for the patterns before issue 14 (seconds to minutes each), for chat loops.
CHAT_LOOP_QUESTIONS = [
    ISSUE_QUESTION,
    "?" * N,  # ^\W*(help|\?+)\W*$ took 90 s
    ("compar" * N)[:N],
    ("model." * N)[:N],
    ("label?" * N)[:N],
    ("methods-" * N)[:N],
]

ODD_QUESTIONS = [  # (question, what must happen)
    ("![x](http://elsewhere.invalid/x.png)", "shown as text: the browser fetches nothing from elsewhere"),
    ("<img src=x onerror=alert(1)>", "shown as text"),
    ("[click](javascript:alert(1))", "shown as text"),
    ("why?\x00\x1b[31m\u202e", "answered (why) or refused in one line"),
    ("\U0001F600" * N, "refused or answered: 2,000 code points, 4,000 UTF-16 units"),
    ("why" + " " * (N - 2), "refused: 2,001 characters, over the limit"),
    ("top 30", "a top 30 answer, and the next Solve still works (one top-k limit)"),
    ("top 99999999999999999999", "top k capped at the limit"),
    ("", "refused: type a question first"),
    ("   \n\t", "refused: type a question first"),
]

UPLOAD = "<upload>"  # stands for a FileData payload of a real upload; see fill()
FILE_META = {"_type": "gradio.FileData"}
LONG = "x" * (1 << 20)  # 1 MiB: must never come back, or reach the log, in full


def file_payload(path: str, **extra) -> dict:
    return {"path": path, "meta": dict(FILE_META), **extra}


GOOD_ANALOGY = [UPLOAD, UPLOAD, UPLOAD, "3cosadd", "pooled", True, 3]


def _analogy(index: int, value) -> list:
    data = list(GOOD_ANALOGY)
    data[index] = value
    return data


NOT_UPLOADS = [  # values sent where an uploaded image is expected
    "/etc/passwd", "photo.jpg", "5", 5, 5.5, True, [], [UPLOAD], {}, {"path": None, "meta": FILE_META},
    {"path": "/etc/passwd"}, file_payload("/etc/passwd"), file_payload("../../etc/passwd"), file_payload("app.py"),
    file_payload("/tmp/gradio/../../etc/passwd"), file_payload("x.jpg", url="http://127.0.0.1:1/x.jpg"),
    file_payload("x.jpg", url="file:///etc/passwd"), file_payload("/" + "a" * 5000), file_payload("/tmp/x\x00.jpg"),
    file_payload(LONG), LONG,
]

BAD_CALLS: list[tuple[str, list, str]] = [
    # /analogy: a, b, c, method, layer, exclude, top_k
    ("analogy", GOOD_ANALOGY[:2], "takes 7 inputs"),
    ("analogy", GOOD_ANALOGY[:6], "takes 7 inputs"),
    ("analogy", [], "takes 7 inputs"),
    ("analogy", GOOD_ANALOGY + [1], "takes 7 inputs"),
    *[("analogy", _analogy(6, v), "top_k") for v in ("5", None, 0, -1, 51, 10 ** 30, 2.5, True, False, "five", [5], {"k": 5})],
    *[("analogy", _analogy(5, v), "exclude") for v in ("false", "no", "0", "true", 0, 1, None, [], "")],
    *[("analogy", _analogy(3, v), "method") for v in (LONG, None, "3COSADD", "3cosadd ", 5, ["3cosadd"], "",
                                                      "3CosMul (Levy & Goldberg)")],
    *[("analogy", _analogy(4, v), "layer") for v in ("bad", None, "POOLED", LONG, 1)],
    *[("analogy", _analogy(role, v), name) for role, name in ((0, "a"), (2, "c")) for v in NOT_UPLOADS],
    # /classify: image
    ("classify", [], "takes 1 input"),
    ("classify", [UPLOAD, UPLOAD], "takes 1 input"),
    *[("classify", [v], "image") for v in NOT_UPLOADS],
    # /ask: question (the conversation is kept on the server)
    ("ask", [], "takes 1 input"),
    *[("ask", [v], "question") for v in (None, 5, True, ["why"], {"text": "why"}, "", "   ", "why" + " " * (N - 2), LONG)],
    # /evaluation: name of a report
    *[("evaluation", [v], "name") for v in (LONG, 5, ["run-1"], "../../etc", "no-such-report", {"name": "x"})],
]


def fill(data, upload: dict):
    """``data`` with every :data:`UPLOAD` replaced by ``upload`` (a FileData payload of a real upload)."""
    if data == UPLOAD:
        return dict(upload)
    if isinstance(data, list):
        return [fill(v, upload) for v in data]
    if isinstance(data, dict):
        return {k: fill(v, upload) for k, v in data.items()}
    return data


def component_part(component: str, value) -> dict:
    """One part of a chat message's content, as Gradio's Chatbot takes it: a component with a value."""
    return {"type": "component", "component": component, "value": value, "constructor_args": {}, "props": {}}


def history_injections(paths: list[str]) -> list[list[dict]]:
    """Chat histories as a client could send them to the old ``/ask``, each naming a server file (the
    app's own source, ``.git/config``, a planted secret, the gallery manifest): first the issue's
    (a file component), then the same as FileData, an image, a file part, unnormalised forms."""
    histories = []
    for path in paths:
        payload = file_payload(path)
        histories += [
            [{"role": "user", "content": [component_part("file", {"path": path})]}],
            [{"role": "assistant", "content": [component_part("file", payload)]}],
            [{"role": "user", "content": [component_part("image", payload)]}],
            [{"role": "user", "content": [{"type": "file", "file": payload}]}],
            [{"role": "user", "content": {"type": "component", "component": "file", "value": {"path": path}}}],
            [{"role": "user", "content": payload}],
        ]
    return histories
