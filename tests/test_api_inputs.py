"""webui/api_inputs.py: each validator on its own, then install() on a real Gradio server on 127.0.0.1
(a tiny gr.Blocks with the app's four API signatures and the same kinds of components, no models), fed
every bad call of tests/hostile_api.py: each refused in one line naming the input, nothing echoed in
full, no traceback in the log, one log line each, and the handlers never called with a bad value.
It also shows the /ask wiring the app needs (issue 14, item 3): the conversation in a gr.State, so a
history sent by the client is never read; the old wiring (the Chatbot as an input) is kept as a
control, and there the injected file component still gets a server file copied into the uploads.
"""
from __future__ import annotations

import functools
import io
import json
import logging
import math
import os
import time
from pathlib import Path

import httpx
import pytest

from pipeline.config import LAYERS
from pipeline.errors import ApiInputError, UserError
from pipeline.vectors import ALL_METHODS
from tests.conftest import free_port
from tests.test_app_reliability import _join  # an event called as the page calls it, by index
from tests.hostile_api import BAD_CALLS, LONG, fill, history_injections
from webui import api_inputs

MAX_TOP_K = 50
REPORTS = ["run-2", "run-1"]


def refusal(fn, *args, **kwargs) -> str:
    with pytest.raises(ApiInputError) as caught:
        fn(*args, **kwargs)
    message = str(caught.value)
    assert isinstance(caught.value, UserError) and "\n" not in message and len(message) < 300, message
    return message


# --- the validators ------------------------------------------------------------------------------


def test_shown_cuts_long_values_with_bounded_work():
    assert api_inputs.shown("3cosadd") == "'3cosadd'"
    assert api_inputs.shown(LONG) == "'" + "x" * 39 + "..."
    nested = [[list(range(10 ** 5))] * 10 ** 3]  # repr would be hundreds of MB
    started = time.perf_counter()
    assert len(api_inputs.shown(nested)) <= api_inputs.SHOWN_CHARS + 3
    assert time.perf_counter() - started < 1.0


def test_method_and_layer():
    for m in ALL_METHODS:
        assert api_inputs.method(m) == m
    for value in (LONG, None, "3COSADD", "3cosadd ", 5, ["3cosadd"], "3CosMul (Levy & Goldberg)"):
        message = refusal(api_inputs.method, value)
        assert message.startswith("method: ") and "give one of: 3cosadd, 3cosmul, pairdirection" in message
    assert LONG[:100] not in refusal(api_inputs.method, LONG)
    for name in LAYERS:
        assert api_inputs.layer(name) == name
    assert refusal(api_inputs.layer, "POOLED") == "layer: 'POOLED' is not a layer; give one of: pooled, logits, probs."


def test_exclude_takes_only_a_real_boolean():
    assert api_inputs.exclude(True) is True and api_inputs.exclude(False) is False
    for value in ("false", "no", "0", "true", 0, 1, None, [], ""):
        assert refusal(api_inputs.exclude, value).startswith(f"exclude: {api_inputs.shown(value)} is not a boolean")


def test_top_k_is_a_whole_number_within_the_one_limit():
    top_k = functools.partial(api_inputs.top_k, max_top_k=MAX_TOP_K)
    assert [top_k(1), top_k(50), top_k(5.0)] == [1, 50, 5] and type(top_k(5.0)) is int
    for value in ("5", None, 0, -1, 51, 10 ** 30, 2.5, True, False, math.nan, math.inf, "five", [5]):
        message = refusal(top_k, value)
        assert message.startswith("top_k: ") and "whole number from 1 to 50" in message, message


def test_question():
    assert api_inputs.question("why?") == "why?"
    assert api_inputs.question("x" * 2000) == "x" * 2000
    assert refusal(api_inputs.question, "x" * 2001).startswith("question: 2,001 characters, over the limit of 2,000")
    for value in (None, 5, ["why"], {"text": "why"}):
        assert refusal(api_inputs.question, value).startswith("question: ") and "is not text" in refusal(api_inputs.question, value)
    for value in ("", "  \n\t"):
        assert refusal(api_inputs.question, value).startswith("question: empty")


def test_uploaded_image_only_from_the_upload_folder(tmp_path):
    uploads = tmp_path / "uploads"
    (uploads / "abc").mkdir(parents=True)
    photo = uploads / "abc" / "photo.jpg"
    photo.write_bytes(b"jpeg")
    secret = tmp_path / "secret.jpg"
    secret.write_bytes(b"secret")
    (uploads / "abc" / "link.jpg").symlink_to(secret)

    def check(value):
        return api_inputs.uploaded_image(value, "a", folder=uploads)

    def payload(path):
        return {"path": str(path), "meta": {"_type": "gradio.FileData"}, "orig_name": "photo.jpg"}

    assert check(payload(photo)) == str(photo)
    assert check(None) is None
    for value in (str(photo), 5, [payload(photo)], {"path": str(photo)}, {"path": str(photo), "meta": {}}):
        assert refusal(check, value).startswith(f"a: {api_inputs.shown(value)} is not an uploaded file; upload the image")
    outside_existing = refusal(check, payload(secret))
    inside_missing = refusal(check, payload(uploads / "abc" / "gone.jpg"))
    assert outside_existing.startswith(f"a: {api_inputs.shown(str(secret))} is not a file uploaded to this server")
    # one message whether or not the file exists: nothing to probe
    assert outside_existing.replace(api_inputs.shown(str(secret)), "P") == \
        inside_missing.replace(api_inputs.shown(str(uploads / "abc" / "gone.jpg")), "P")
    for path in (uploads / "abc" / "link.jpg", uploads / "abc", uploads / "abc" / ".." / ".." / "secret.jpg",
                 "abc/photo.jpg", f"{photo}\x00.jpg", "/" + "a" * 5000, str(uploads) + "-other/photo.jpg"):
        assert "is not a file uploaded to this server" in refusal(check, payload(path)), path


def test_report_name():
    check = functools.partial(api_inputs.report_name, names=REPORTS)
    assert check(None) is None and check("") is None and check("run-1") == "run-1"
    assert refusal(check, "../../etc") == ("name: '../../etc' is not an evaluation report; give one of: run-2, "
                                           "run-1, or nothing for the newest.")
    many = [f"r{i}" for i in range(8)]
    assert "r4, ..." in refusal(api_inputs.report_name, "x", names=many)
    assert "(none yet)" in refusal(api_inputs.report_name, "x", names=[])


# --- on a real Gradio server ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The app's four API signatures on a tiny gr.Blocks with install()ed checks; Gradio's upload
    folder is a fresh one (GRADIO_TEMP_DIR), so that the test can look at everything in it.
    Yields {"url", "demo", "calls", "uploads", "secret"}."""
    import gradio as gr

    root = tmp_path_factory.mktemp("api-inputs")
    uploads = root / "uploads"
    secret = root / "planted-secret.txt"
    secret.write_text("planted-secret-content-2718")
    calls: list[tuple] = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GRADIO_TEMP_DIR", str(uploads))
        with gr.Blocks(analytics_enabled=False) as demo:
            report_state = gr.State(None)
            history_state = gr.State([])
            slots = [gr.Image(type="filepath", label=role) for role in "ABC"]
            method = gr.Dropdown(list(ALL_METHODS), value="3cosadd")
            layer = gr.Radio(list(LAYERS), value="pooled")
            exclude = gr.Checkbox(value=True)
            top_k = gr.Slider(1, MAX_TOP_K, value=5, step=1)
            solved = gr.Textbox()
            chat = gr.Chatbot()
            question = gr.Textbox()
            cls_image = gr.Image(type="filepath")
            labels = gr.Textbox()
            eval_choice = gr.Dropdown(choices=[], allow_custom_value=True)
            eval_md = gr.Markdown()

            def solve(a, b, c, method, layer, exclude, top_k):
                calls.append(("analogy", a, b, c, method, layer, exclude, top_k))
                return "solved"

            def ask(question, report, history):
                calls.append(("ask", question, history))
                history = list(history) + [{"role": "user", "content": question},
                                           {"role": "assistant", "content": "an answer"}]
                return history, history

            def ask_old_wiring(question, history):
                calls.append(("ask_old_wiring", question))
                return list(history or []) + [{"role": "user", "content": question}]

            def classify(image):
                calls.append(("classify", image))
                return "labels"

            def eval_view(name):
                calls.append(("evaluation", name))
                return f"report {name or REPORTS[0]}"

            gr.Button().click(solve, [*slots, method, layer, exclude, top_k], solved, api_name="analogy")
            gr.Button().click(ask, [question, report_state, history_state], [chat, history_state], api_name="ask")
            question.submit(ask, [question, report_state, history_state], [chat, history_state], api_visibility="private")
            gr.Button().click(ask_old_wiring, [question, chat], chat, api_name="ask_old_wiring")
            gr.Button().click(classify, cls_image, labels, api_name="classify")
            eval_choice.change(eval_view, eval_choice, eval_md, api_name="evaluation")

        image = api_inputs.uploaded_image
        api_inputs.install(demo, {
            slots[0]: image, slots[1]: image, slots[2]: image, cls_image: image,
            method: api_inputs.method, layer: api_inputs.layer, exclude: api_inputs.exclude,
            top_k: functools.partial(api_inputs.top_k, max_top_k=MAX_TOP_K),
            question: api_inputs.question,
            eval_choice: lambda value, name: api_inputs.report_name(value, name, names=REPORTS),
        })
        demo.queue()
        port = free_port()
        demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True,
                    allowed_paths=[str(root)])
        try:
            yield {"url": f"http://127.0.0.1:{port}/", "demo": demo, "calls": calls, "uploads": uploads,
                   "secret": secret}
        finally:
            demo.close()


def jpeg() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(buffer, "JPEG")
    return buffer.getvalue()


def upload(server, content: bytes | None = None) -> dict:
    content = jpeg() if content is None else content
    response = httpx.post(server["url"] + "gradio_api/upload", files={"files": ("photo.jpg", content, "image/jpeg")},
                          timeout=60)
    assert response.status_code == 200, response.text
    return {"path": response.json()[0], "meta": {"_type": "gradio.FileData"}, "orig_name": "photo.jpg"}


def call(server, api: str, data: list) -> tuple[str, object]:
    """An API call over plain HTTP -> ("complete" | "error", its data)."""
    response = httpx.post(server["url"] + f"gradio_api/call/{api}", json={"data": data}, timeout=60)
    assert response.status_code == 200, (api, response.status_code, response.text[:200])
    stream = httpx.get(server["url"] + f"gradio_api/call/{api}/{response.json()['event_id']}", timeout=60).text
    event = stream.split("\n", 1)[0].removeprefix("event: ").strip()
    payload = stream.split("data: ", 1)[1].split("\n", 1)[0]
    return event, json.loads(payload)


def test_good_calls_reach_the_handlers_with_the_values_sent(server, tmp_path):
    from gradio_client import Client, handle_file

    photo = tmp_path / "photo.jpg"
    photo.write_bytes(jpeg())
    client = Client(server["url"], verbose=False, analytics_enabled=False)
    calls = server["calls"]
    calls.clear()
    assert client.predict(*[handle_file(str(photo))] * 3, "pairdirection", "logits", False, 7,
                          api_name="/analogy") == "solved"
    kind, a, b, c, method, layer, exclude, top_k = calls[-1]
    assert (kind, method, layer, exclude, top_k) == ("analogy", "pairdirection", "logits", False, 7)
    assert Path(a).read_bytes() == photo.read_bytes() and Path(a).is_relative_to(server["uploads"])
    assert client.predict(handle_file(str(photo)), api_name="/classify") == "labels"
    # /ask takes the question alone; the conversation stays on the server, per session
    first = client.predict("why?", api_name="/ask")
    second = client.predict("help", api_name="/ask")
    assert texts(first) == ["why?", "an answer"]
    assert texts(second) == ["why?", "an answer", "help", "an answer"]
    assert len(client.view_api(print_info=False, return_format="dict")["named_endpoints"]["/ask"]["parameters"]) == 1
    # /evaluation takes any report's name (its dropdown's choices are filled by the page), or nothing
    assert call(server, "evaluation", ["run-1"]) == ("complete", ["report run-1"])
    assert call(server, "evaluation", [None]) == ("complete", ["report run-2"])


@pytest.mark.slow
def test_every_bad_call_is_refused_in_one_line_naming_the_input(server, capfd, caplog):
    caplog.set_level(logging.WARNING, logger="iae.api")
    calls = server["calls"]
    calls.clear()
    photo = upload(server)
    for api, data, expected in BAD_CALLS:
        event, error = call(server, api, fill(data, photo))
        assert event == "error", (api, str(data)[:80], error)
        message = error["error"]
        start = f"/{api}: {expected}" if expected.startswith("takes") else f"{expected}: "
        assert message.startswith(start), (api, str(data)[:80], message)
        assert "\n" not in message and len(message) < 300 and LONG[:100] not in message
    assert calls == []  # no handler ever ran
    refused = [r.getMessage() for r in caplog.records if r.name == "iae.api"]
    assert len(refused) == len(BAD_CALLS) and all("\n" not in m and len(m) < 400 for m in refused)
    err = capfd.readouterr().err
    assert "Traceback" not in err and LONG[:100] not in err
    print(f"refused {len(BAD_CALLS)} bad API calls")


def test_private_events_are_checked_too(server):
    """The question box's submit event is not in the API, yet callable by its index: checked the same."""
    private = next(fn.api_name for fn in server["demo"].fns.values() if fn.name == "ask" and fn.api_name != "ask")
    message = _join(server, private, ["x" * 2001, None, None], None)
    assert not message["success"] and message["output"]["error"].startswith("question: 2,001 characters")


def texts(messages: list[dict]) -> list[str]:
    """The text of each chat message (Gradio 6 sends content as a list of typed parts)."""
    return ["".join(part.get("text", "?") for part in m["content"]) if isinstance(m["content"], list) else m["content"]
            for m in messages]


def secret_copies(server) -> list[Path]:
    needle = server["secret"].read_bytes()
    return [p for p in server["uploads"].rglob("*") if p.is_file() and needle in p.read_bytes()]


def test_a_history_sent_by_the_client_is_never_read(server):
    """With the conversation in a gr.State, an injected history is refused (/call: one input too many)
    or ignored (the queue, which hands State inputs the server's own value): no file is copied."""
    secret = server["secret"]
    histories = history_injections([str(secret), str(Path("app.py").resolve()), "/etc/passwd"])
    for history in histories:
        event, error = call(server, "ask", ["why?", history])
        assert event == "error" and error["error"].startswith("/ask: takes 1 input (question); got 2"), error
        message = _join(server, "ask", ["why?", None, history], None)
        assert message["success"], message
        assert texts(message["output"]["data"][0]) == ["why?", "an answer"]
    assert secret_copies(server) == []
    # as the page calls it, without the placeholders of what the server keeps: the refusal says what to send
    message = _join(server, "ask", ["why?"], None)
    assert message["output"]["error"] == (
        "/ask: takes 1 input (question), and 2 nulls in place of what the server keeps when called as the page "
        "calls it; got 1 values. Call it by name (POST /gradio_api/call/NAME) to send the inputs alone."), message


def test_control_the_old_wiring_copies_an_injected_file(server):
    """The Chatbot as an input (the app before issue 14): the injected file component makes Gradio
    copy the planted secret into its served upload folder. Should Gradio stop that, this fails."""
    assert secret_copies(server) == []
    history = history_injections([str(server["secret"])])[0]
    event, output = call(server, "ask_old_wiring", ["why?", history])
    assert event == "complete", output
    copies = secret_copies(server)
    assert copies, output
    served = httpx.get(server["url"] + "gradio_api/file=" + str(copies[0]), timeout=30)
    assert served.status_code == 200 and b"planted-secret-content" in served.content
    for copy in copies:
        os.remove(copy)
