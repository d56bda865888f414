"""webui/http_guards.py against a real Gradio server on 127.0.0.1 (a tiny gr.Blocks with an upload and
a file output, and a text event; no models): Range headers that are not one byte range get 416, uploads
with a nameless file part get 400, requests naming an event, component or session the app does not
have, or streams of a session without events, get 404, the rest is served exactly as Gradio serves it; an unguarded server still answers 500
to each (the Gradio faults the guards are for), and install() mends a running one.
"""
from __future__ import annotations

import logging
from contextlib import contextmanager

import httpx
import pytest

from tests.conftest import free_port
from webui import http_guards

PAYLOAD = bytes(range(256)) * 4  # 1,024 bytes; every byte says where it is

BOUNDARY = "guards-test-boundary"


@contextmanager
def tiny_server(folder, guarded: bool):
    """A launched gr.Blocks: an upload echoed back as a file output; ``folder`` is served.
    Yields (url, demo)."""
    import gradio as gr

    with gr.Blocks(analytics_enabled=False) as demo:
        upload = gr.File(label="upload")
        echoed = gr.File(label="echoed")
        gr.Button("echo").click(lambda path: path, upload, echoed, api_name="echo")
        text, shout = gr.Textbox(label="text"), gr.Textbox(label="shout")
        text.submit(lambda value: value.upper(), text, shout, api_name="upper")
    demo.queue()
    port = free_port()
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True,
                allowed_paths=[str(folder)], app_kwargs=http_guards.app_kwargs() if guarded else None)
    try:
        yield f"http://127.0.0.1:{port}/", demo
    finally:
        demo.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    folder = tmp_path_factory.mktemp("served")
    (folder / "data.bin").write_bytes(PAYLOAD)
    return folder


SERVED: dict[str, object] = {}  # url -> its gr.Blocks


@pytest.fixture(scope="module")
def server(served):
    with tiny_server(served, guarded=True) as (url, demo):
        SERVED[url] = demo
        yield url


def server_demo(url: str):
    return SERVED[url]


def file_url(url: str, folder) -> str:
    return url + "gradio_api/file=" + str(folder / "data.bin")


def multipart(*parts: bytes) -> bytes:
    """A multipart body of raw part header blocks (each followed by a short content)."""
    body = b"".join(b"--" + BOUNDARY.encode() + b"\r\n" + head + b"\r\n\r\ncontent\r\n" for head in parts)
    return body + b"--" + BOUNDARY.encode() + b"--\r\n"


def post_upload(url: str, body: bytes) -> httpx.Response:
    return httpx.post(url + "gradio_api/upload", content=body, timeout=60,
                      headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})


GOOD_RANGES = [  # (Range, status, the bytes served as slice(start, stop) of PAYLOAD)
    ("bytes=0-1", 206, slice(0, 2)), ("bytes=5-", 206, slice(5, 1024)), ("bytes=-3", 206, slice(1021, 1024)),
    ("bytes= 00-01", 206, slice(0, 2)), ("BYTES=10-12", 206, slice(10, 13)), ("bytes=1-2,", 206, slice(1, 3)),
    ("bytes=1000-99999", 206, slice(1000, 1024)), ("bytes=5000-6000", 416, None), ("bytes=-0", 416, None),
]
BAD_RANGES = [
    "bytes=0-1,5-6", "bytes=0-1, 5-6", "bytes=0-0,-1", "bytes=0-1-2", "bytes=0-" + "9" * 5000, "bytes=" + "9" * 19 + "-",
    "bytes=5-1", "bytes=x-y", "bytes=", "bytes=-", "bytes=--", "bytes=,", "items=0-1", "0-1", "bytes 0-1", "bytes=0-1;x",
    "bytes=½-1", "bytes=١-٢", "bytes=0x10-0x20", "bytes=+1-2", "bytes=1.5-2",
]


def test_one_byte_range_is_served_and_anything_else_is_416(server, served, capfd, caplog):
    caplog.set_level(logging.WARNING, logger="iae.http")
    url = file_url(server, served)
    whole = httpx.get(url, timeout=30)
    assert whole.status_code == 200 and whole.content == PAYLOAD
    for value, status, part in GOOD_RANGES:
        response = httpx.get(url, headers={"Range": value}, timeout=30)
        assert response.status_code == status, (value, response.status_code, response.text[:100])
        if part is not None:
            assert response.content == PAYLOAD[part], value
            assert response.headers["content-range"] == f"bytes {part.start}-{part.stop - 1}/{len(PAYLOAD)}"
        else:
            assert response.headers["content-range"] == f"bytes */{len(PAYLOAD)}"  # Gradio's own 416
    for value in BAD_RANGES:
        response = httpx.get(url, headers={"Range": value.encode()}, timeout=30)
        assert response.status_code == 416, (value[:40], response.status_code, response.text[:100])
        assert response.text == http_guards.RANGE_REFUSED + "\n"
    two = httpx.get(url, headers=[("Range", "bytes=0-1"), ("Range", "bytes=2-3")], timeout=30)
    head = httpx.head(url, headers={"Range": "bytes=0-1,5-6"}, timeout=30)
    assert (two.status_code, head.status_code, head.content) == (416, 416, b"")
    refused = [r for r in caplog.records if r.name == "iae.http"]
    assert len(refused) == len(BAD_RANGES) + 2 and all("\n" not in r.getMessage() for r in refused)
    assert max(len(r.getMessage()) for r in refused) < 300  # the 5,000-digit value is cut
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Exception in ASGI application" not in err


def test_nameless_upload_parts_are_400_and_named_ones_are_stored(server, capfd, caplog):
    caplog.set_level(logging.WARNING, logger="iae.http")
    named = httpx.post(server + "gradio_api/upload", files={"files": ("photo.jpg", PAYLOAD, "image/jpeg")}, timeout=60)
    assert named.status_code == 200, named.text
    stored = named.json()[0]
    assert httpx.get(server + "gradio_api/file=" + stored, timeout=30).content == PAYLOAD

    refused = {
        "httpx, empty name": httpx.post(server + "gradio_api/upload", files={"files": ("", PAYLOAD, "image/jpeg")},
                                        timeout=60),
        "no filename": post_upload(server, multipart(b'Content-Disposition: form-data; name="files"')),
        "filename=\"\"": post_upload(server, multipart(b'Content-Disposition: form-data; name="files"; filename=""')),
        "filename=\" \"": post_upload(server, multipart(b'Content-Disposition: form-data; name="files"; filename=" "')),
        "only filename*": post_upload(server, multipart(
            b"Content-Disposition: form-data; name=\"files\"; filename*=UTF-8''%C3%A9.jpg")),
        "second part nameless": post_upload(server, multipart(
            b'Content-Disposition: form-data; name="files"; filename="a.jpg"',
            b'Content-Disposition: form-data; name="files"')),
        "4 MiB, nameless": httpx.post(server + "gradio_api/upload", timeout=60,
                                      files={"files": ("", PAYLOAD * 4096, "application/octet-stream")}),
    }
    for case, response in refused.items():
        assert response.status_code == 400, (case, response.status_code, response.text[:100])
        assert "has no file name" in response.text, case
    # what Gradio answers well itself is left to it
    left = {
        "another field": (post_upload(server, multipart(b'Content-Disposition: form-data; name="note"')), 200),
        "garbage": (post_upload(server, b"not multipart at all"), 400),
        "no boundary": (httpx.post(server + "gradio_api/upload", content=b"x", timeout=30,
                                   headers={"Content-Type": "multipart/form-data"}), 400),
        "no name": (post_upload(server, multipart(b'Content-Disposition: form-data; filename="a.jpg"')), 400),
        "huge header": (post_upload(server, multipart(
            b'Content-Disposition: form-data; name="files"; filename="' + b"a" * 20000 + b'"')), 413),
    }
    for case, (response, status) in left.items():
        assert response.status_code == status, (case, response.status_code, response.text[:100])
    assert len([r for r in caplog.records if r.name == "iae.http"]) == len(refused)
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Exception in ASGI application" not in err


def join(url: str, body: dict) -> httpx.Response:
    return httpx.post(url + "gradio_api/queue/join", json={"data": [], "session_hash": "guards", **body}, timeout=30)


UNKNOWN = {  # request -> what the refusal names
    "join, fn_index": (lambda url: join(url, {"fn_index": 999}), "fn_index 999"),
    "join, fn_index -1": (lambda url: join(url, {"fn_index": -1}), "fn_index -1"),
    "join, fn_index as text": (lambda url: join(url, {"fn_index": " 999"}), "fn_index 999"),
    "join, 30-digit fn_index": (lambda url: join(url, {"fn_index": 10 ** 30}), "fn_index 1" + "0" * 30),
    "run, fn_index": (lambda url: httpx.post(url + "gradio_api/run/predict", json={"data": [], "fn_index": 999},
                                             timeout=30), "fn_index 999"),
    "api, fn_index": (lambda url: httpx.post(url + "gradio_api/api/predict", json={"data": [], "fn_index": 999},
                                             timeout=30), "fn_index 999"),
    "call, name": (lambda url: httpx.post(url + "gradio_api/call/nope", json={"data": []}, timeout=30),
                   "no event is named 'nope'"),
    "call v2, name": (lambda url: httpx.post(url + "gradio_api/call/v2/nope", json={"data": []}, timeout=30),
                      "no event is named 'nope'"),
    "component": (lambda url: httpx.post(url + "gradio_api/component_server", timeout=30, json={
        "session_hash": "guards", "component_id": 999, "fn_name": "x", "data": None}), "component_id 999"),
}


def test_unknown_events_components_and_sessions_are_404(server, capfd, caplog):
    caplog.set_level(logging.WARNING, logger="iae.http")
    for case, (request, named) in UNKNOWN.items():
        response = request(server)
        assert response.status_code == 404, (case, response.status_code, response.text[:100])
        assert response.text == http_guards.EVENT_REFUSED.format(what=named) + "\n", case
    for stream, what in ((("gradio_api/queue/data", {"session_hash": "nobody"}), "session 'nobody'"),
                         (("gradio_api/call/upper/no-such-event", None), "event 'no-such-event'"),
                         (("gradio_api/call/nope/no-such-event", None), "event 'no-such-event'"),
                         (("gradio_api/call/upper/x%0a2026 forged", None), "event 'x\\n2026 forged'")):
        nothing = httpx.get(server + stream[0], params=stream[1], timeout=30)
        assert (nothing.status_code, nothing.text) == (404, http_guards.STREAM_REFUSED.format(what=what) + "\n")
    # what Gradio answers well itself is left to it
    left = {
        "no fn_index": (join(server, {}), 400), "fn_index 1.5": (join(server, {"fn_index": 1.5}), 422),
        "not JSON": (httpx.post(server + "gradio_api/queue/join", content=b"{{", timeout=30,
                                headers={"Content-Type": "application/json"}), 422),
        "no session": (httpx.get(server + "gradio_api/queue/data", timeout=30), 422),
        "nested 50,000 deep": (httpx.post(server + "gradio_api/queue/join", timeout=30,
                                          content=b'{"fn_index": 999, "x": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
                                          headers={"Content-Type": "application/json"}), 400),
    }
    for case, (response, status) in left.items():
        assert response.status_code == status, (case, response.status_code, response.text[:100])
    # real events through every route still run, a body over the checked size included
    upper = next(i for i, fn in server_demo(server).fns.items() if fn.api_name == "upper")
    big = "x" * (http_guards.MAX_JSON_BYTES + 10)
    for value in ("abc", big):
        called = httpx.post(server + "gradio_api/call/upper", json={"data": [value]}, timeout=60)
        assert called.status_code == 200, called.text[:100]
        stream = httpx.get(server + f"gradio_api/call/upper/{called.json()['event_id']}", timeout=60).text
        assert value.upper() in stream
    assert join(server, {"fn_index": upper, "data": ["abc"], "session_hash": "real"}).status_code == 200
    with httpx.stream("GET", server + "gradio_api/queue/data", params={"session_hash": "real"}, timeout=60) as events:
        assert events.status_code == 200 and any('"ABC"' in line for line in events.iter_lines())
    refused = [r.getMessage() for r in caplog.records if r.name == "iae.http"]
    assert len(refused) == len(UNKNOWN) + 4 and not any("\n" in line for line in refused)  # paths escaped
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Exception in ASGI application" not in err


def test_the_app_still_answers_through_its_api(server, tmp_path):
    from gradio_client import Client, handle_file

    photo = tmp_path / "photo.bin"
    photo.write_bytes(PAYLOAD)
    client = Client(server, verbose=False, analytics_enabled=False)
    echoed = client.predict(handle_file(str(photo)), api_name="/echo")
    with open(echoed, "rb") as f:
        assert f.read() == PAYLOAD


def test_unguarded_gradio_answers_500_and_install_mends_a_running_server(served):
    """The fault the guards are for (should a Gradio release mend it, this fails: the guards may go)."""
    nameless = multipart(b'Content-Disposition: form-data; name="files"')
    with tiny_server(served, guarded=False) as (url, demo):
        assert httpx.get(file_url(url, served), headers={"Range": "bytes=0-1,5-6"}, timeout=30).status_code == 500
        assert post_upload(url, nameless).status_code == 500
        for case, (request, _) in UNKNOWN.items():
            assert request(url).status_code == 500, case
        for stream in ("gradio_api/queue/data?session_hash=nobody", "gradio_api/call/upper/no-such-event"):
            with httpx.stream("GET", url + stream, timeout=30) as r:
                with pytest.raises(httpx.RemoteProtocolError):  # the stream starts, then breaks on Gradio's 404
                    list(r.iter_lines())
        http_guards.install(demo)
        http_guards.install(demo)  # once is enough; twice changes nothing
        assert httpx.get(file_url(url, served), headers={"Range": "bytes=0-1,5-6"}, timeout=30).status_code == 416
        assert post_upload(url, nameless).status_code == 400
        assert all(request(url).status_code == 404 for request, _ in UNKNOWN.values())
        assert httpx.get(url + "gradio_api/call/upper/no-such-event", timeout=30).status_code == 404
        ranged = httpx.get(file_url(url, served), headers={"Range": "bytes=2-3"}, timeout=30)
        assert (ranged.status_code, ranged.content) == (206, PAYLOAD[2:4])
        assert post_upload(url, multipart(b'Content-Disposition: form-data; name="files"; filename="a.jpg"')).status_code == 200


def test_install_needs_a_launched_blocks():
    import gradio as gr

    with gr.Blocks(analytics_enabled=False) as demo:
        gr.Markdown("x")
    with pytest.raises(RuntimeError, match="launch the Blocks first"):
        http_guards.install(demo)


@pytest.mark.parametrize("values, canonical", [
    ([b"bytes=0-1"], b"bytes=0-1"), ([b"bytes=007-"], b"bytes=7-"), ([b"bytes=-05"], b"bytes=-5"),
    ([b" Bytes = 3-3 "], b"bytes=3-3"), ([b"bytes=,,2-4,,"], b"bytes=2-4"),
    ([b"bytes=0-1,2-3"], None), ([b"bytes=3-2"], None), ([b"bytes=0-1"] * 2, None), ([b"bytes=1e3-"], None),
])
def test_canonical_range(values, canonical):
    assert http_guards.canonical_range(values) == canonical
