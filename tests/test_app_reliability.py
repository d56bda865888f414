"""The running app under hostile requests, bad files and load: a real Gradio server on 127.0.0.1
(the session's default-gallery Explorer: real models, real FAISS), driven by gradio_client, plain
HTTP and raw sockets (so that no client library tidies a hostile path up before it is sent).

File access: the app serves web copies of gallery images (thumbnails and 512 px previews under the
cache folder), copies of evaluation figures and Gradio's own uploads, and nothing else: not the gallery
folder (captions, credits, the original files), not the cache beside the copies, not the evaluation
reports, not through traversal, encodings or symlinks, not through API inputs naming server paths or
gallery ids. Bad inputs: every file of tests/bad_inputs.make_corpus as A, B or C through the server.
Load: many concurrent analogy requests from several clients, uploads mixed in, each checked against
the Explorer's own answer, with the model calls watched for overlap.
"""
from __future__ import annotations

import copy
import io
import json
import os
import shutil
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote

import gradio as gr
import httpx
import pytest
from PIL import Image

import app
from pipeline.default_gallery import EXAMPLES
from pipeline.web_copies import PNG_SIGNATURE, PREVIEW_SIZE, THUMB_SIZE
from webui import CONCURRENCY_ID, GENERIC_ERROR, MODEL_CONCURRENCY, QUEUE_MAX_SIZE, Handlers, user_facing
from tests.bad_inputs import make_corpus
from tests.conftest import running_app

REFUSED = (400, 403, 404)  # 403: a file Gradio will not serve; 404: no such route; 400: not a request it takes


@pytest.fixture(scope="module")
def eval_dir(tmp_path_factory):
    """An evaluation report with a figure, its JSON and a stray text file."""
    root = tmp_path_factory.mktemp("eval-reports")
    report = root / "run-1"
    report.mkdir()
    (report / "results.md").write_text("# Results\n\n![accuracy](accuracy.png)\n")
    (report / "results.json").write_text(json.dumps({"secret": "results-json-body"}))
    (report / "notes.txt").write_text("private notes")
    Image.new("RGB", (40, 30), "white").save(report / "accuracy.png")
    return root


@pytest.fixture(scope="module")
def server(default_explorer, eval_dir):
    with running_app(default_explorer, eval_dir) as running:
        yield running


def new_client(server, download_files: bool = True):
    from gradio_client import Client

    return Client(server["url"], verbose=False, analytics_enabled=False, download_files=download_files)


@pytest.fixture(scope="module")
def client(server):
    return new_client(server)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("bad-inputs") / "corpus")


def raw_get(server, target: str) -> tuple[int, bytes]:
    """GET ``target`` exactly as written (no client-side normalisation of ``..`` or escapes)."""
    with socket.create_connection(("127.0.0.1", server["port"]), timeout=30) as s:
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode("latin-1"))
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def file_route(path: str) -> str:
    return "/gradio_api/file=" + path


def assert_refused(server, target: str, secrets: tuple[bytes, ...] = ()) -> None:
    status, body = raw_get(server, target)
    assert status in REFUSED, (target, status, body[:200])
    for secret in (b"root:x:", *secrets):
        assert secret not in body, (target, secret)


# --- file access ---------------------------------------------------------------------------------


def test_only_web_copies_are_served(server, eval_dir):
    """Previews and thumbnails of every gallery item load; every file of the gallery folder (images
    included), the cache beside the copies and the evaluation reports are refused."""
    h, gallery = server["handlers"], server["explorer"].gallery
    served = 0
    for item in gallery.items:
        for copies, size in ((h.previews, PREVIEW_SIZE), (h.thumbnails, THUMB_SIZE)):
            path = copies.path(item.id)
            status, body = raw_get(server, file_route(quote(str(path))))
            assert status == 200, (item.path, status)
            with Image.open(io.BytesIO(body)) as im:
                assert im.format == "JPEG" and max(im.size) <= size
            served += 1
    assert served == 2 * len(gallery)

    root = gallery.root.resolve()
    everything_in_gallery = [p for p in root.rglob("*") if p.is_file()]
    assert {"captions.csv", "CREDITS.txt"} <= {p.name for p in everything_in_gallery}
    store = Path(gallery.store).resolve()
    cache_files = [p for p in store.iterdir() if p.is_file()]
    assert {"manifest.json", "pooled.npy", "logits.npy"} <= {p.name for p in cache_files}
    report_files = [p for p in eval_dir.rglob("*") if p.is_file()]
    caption_line = (root / "captions.csv").read_bytes().splitlines()[1]
    for path in everything_in_gallery + cache_files + report_files:
        assert_refused(server, file_route(quote(str(path))), (caption_line, b"results-json-body", b"private notes"))
    print(f"served {served} web copies; refused {len(everything_in_gallery)} gallery files, "
          f"{len(cache_files)} cache files, {len(report_files)} report files")

    # the Evaluation tab's figure comes from a copy, which is served
    text, figures = h.eval_view()
    assert len(figures) == 1 and Path(figures[0][0]).parent == h.figures_folder
    status, body = raw_get(server, file_route(quote(figures[0][0])))
    assert status == 200 and body.startswith(PNG_SIGNATURE)


def test_path_traversal_and_odd_encodings_are_refused(server):
    gallery = server["explorer"].gallery
    h = server["handlers"]
    previews = str(h.previews.folder.resolve())
    thumbs = str(h.thumbnails.folder.resolve())
    root = str(gallery.root.resolve())
    store = str(Path(gallery.store).resolve())
    inside = quote(str(h.previews.path(0)))
    caption_line = (gallery.root / "captions.csv").read_bytes().splitlines()[1]
    up = "/".join([".."] * 12)
    targets = [
        "/etc/passwd", "//etc/passwd", "/etc/./passwd", "%2fetc%2fpasswd", "%2Fetc%2Fpasswd", "/%65tc/passwd",
        "../../../../../../../../etc/passwd", f"{previews}/{up}/etc/passwd",
        f"{previews}/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        f"{previews}/%2E%2E%2F%2E%2E%2F%2E%2E%2F%2E%2E%2F%2E%2E%2F%2E%2E%2F%2E%2E%2F%2E%2E%2Fetc%2Fpasswd",
        f"{previews}/..%2f..%2f..%2f..%2f..%2f..%2f..%2f..%2fetc%2fpasswd",
        f"{previews}/%252e%252e/%252e%252e/etc/passwd",  # double encoding
        f"{previews}/..\\..\\..\\..\\etc\\passwd", f"{previews}/..%5c..%5c..%5cetc%5cpasswd",
        f"{previews}/../manifest.json", f"{previews}/%2e%2e/manifest.json", f"{previews}/..%2fpooled.npy",
        f"{thumbs}/../index-image-pooled.faiss", f"{thumbs}/../manifest.json",
        f"{previews}/../../../default-gallery/captions.csv", f"{previews}%2f..%2f..%2f..%2fdefault-gallery%2fcaptions.csv",
        f"{root}/captions.csv", f"{root}/./captions.csv", f"{root}/coffee/../captions.csv", f"{root}/CREDITS.txt",
        f"{root}/coffee/original.jpg", f"{root}%2fcoffee%2foriginal.jpg", f"{store}/manifest.json",
        f"{inside}%00.jpg", f"{inside}/../../../default-gallery/captions.csv", "~/.bashrc", "~root/.bashrc",
        "file:///etc/passwd", "file=/etc/passwd", "http://127.0.0.1:1/x", "\\etc\\passwd", "C:\\Windows\\win.ini",
        "/proc/self/environ", "/proc/self/cmdline", f"/proc/{os.getpid()}/environ", "/dev/zero",
        str(Path(app.__file__).resolve()), "app.py", "./app.py", "pipeline/config.py", "webui/page.py", ".venv/pyvenv.cfg",
        "requirements.txt",
    ]
    for target in targets:
        assert_refused(server, file_route(target), (caption_line, b"PYTHON", b"import "))
    # the other file routes of Gradio 6 refuse the same
    for prefix in ("/file=", "/gradio_api/file/", "/static/", "/assets/", "/gradio_api/proxy="):
        for target in ("/etc/passwd", f"{previews}/../manifest.json", f"{root}/captions.csv",
                       f"{previews}/%2e%2e/%2e%2e/%2e%2e/default-gallery/captions.csv"):
            status, body = raw_get(server, prefix + target)
            assert status != 200 or (b"root:x:" not in body and caption_line not in body), (prefix, target)
    status, _ = raw_get(server, file_route(inside))
    assert status == 200  # the control: the preview itself
    print(f"refused {len(targets)} traversal targets on the file route, {5 * 4} on other routes")


def test_symlinks_in_served_folders_are_refused(server, tmp_path):
    h = server["handlers"]
    gallery = server["explorer"].gallery
    h.eval_view()  # makes the figures folder
    secret = tmp_path / "secret.jpg"
    secret.write_bytes(b"\xff\xd8 not for the web")
    targets = [secret, gallery.root / "captions.csv", gallery.path(0), Path(gallery.store) / "manifest.json",
               Path("/etc/passwd")]
    made = []
    try:
        for folder in h.served_folders():
            folder.mkdir(parents=True, exist_ok=True)
            for n, target in enumerate(targets):
                link = folder / f"link-{n}.jpg"
                link.symlink_to(target)
                made.append(link)
                assert_refused(server, file_route(quote(str(link))), (b"not for the web",))
        # a linked folder inside a served folder does not open the way either
        folder_link = h.previews.folder / "linked-gallery"
        folder_link.symlink_to(gallery.root, target_is_directory=True)
        made.append(folder_link)
        assert_refused(server, file_route(quote(str(folder_link / "captions.csv"))))
        assert_refused(server, file_route(quote(str(folder_link / "coffee/original.jpg"))))
    finally:
        for link in made:
            link.unlink(missing_ok=True)
    print(f"refused {len(made) + 1} symlinks")


def _call(server, api: str, data: list) -> str:
    """Call an API endpoint over plain HTTP; -> the event stream's text."""
    response = httpx.post(server["url"] + f"gradio_api/call/{api}", json={"data": data}, timeout=30)
    if response.status_code != 200:
        return f"event: error\nstatus {response.status_code}"
    event_id = response.json()["event_id"]
    return httpx.get(server["url"] + f"gradio_api/call/{api}/{event_id}", timeout=120).text


def join_event(url: str, fn_index: int, data: list, session: str, event_data=None, http=httpx) -> dict:
    """Run one event as the page does (no client library): join the queue with the event's index in
    ``session``, then read the session's event stream until the event completes; -> the
    process_completed message. ``http``: httpx, or an ``httpx.Client`` to keep its connections."""
    response = http.post(url + "gradio_api/queue/join", timeout=30,
                         json={"data": data, "fn_index": fn_index, "session_hash": session,
                               "event_data": event_data, "trigger_id": None})
    assert response.status_code == 200, response.text
    with http.stream("GET", url + f"gradio_api/queue/data?session_hash={session}", timeout=120) as stream:
        for line in stream.iter_lines():
            if line.startswith("data:"):
                message = json.loads(line[5:])
                if message.get("msg") == "process_completed":
                    return message
    raise AssertionError("no process_completed message")


def fn_index(server, api_name: str) -> int:
    return next(i for i, fn in server["demo"].fns.items() if fn.api_name == api_name)


def _join(server, api_name: str, data: list, event_data, session: str | None = None) -> dict:
    """Call an event (also a private one: as the page does, by its index in the queue) with chosen
    event data, in a new session unless ``session`` is given; -> the process_completed message."""
    return join_event(server["url"], fn_index(server, api_name), data, session or f"s{time.monotonic_ns()}",
                      event_data)


def test_server_paths_and_gallery_ids_through_the_api_are_refused(server, capfd):
    """Inputs must be uploads: no string, path, gallery id or URL sent in place of an image reaches a
    file, and the private pick events take only an index into the server-side panel."""
    gallery = server["explorer"].gallery
    h = server["handlers"]
    root = gallery.root.resolve()
    caption_line = (root / "captions.csv").read_text().splitlines()[1]

    def file_data(path, **extra):
        return {"path": str(path), "meta": {"_type": "gradio.FileData"}, **extra}

    hostile = ["../../etc/passwd", "/etc/passwd", "5", "#5", "coffee/original.jpg", str(root / "captions.csv"),
               file_data("../../etc/passwd"), file_data("/etc/passwd"), file_data("5"), file_data("coffee/original.jpg"),
               file_data(root / "captions.csv"), file_data(root / "coffee/original.jpg"),
               file_data(h.previews.path(0)),  # served for viewing, yet not an upload
               file_data(Path(gallery.store) / "manifest.json"),
               file_data("/tmp/gradio/../../etc/passwd"),
               file_data("x.jpg", url=server["url"] + "gradio_api/file=/etc/passwd"),
               file_data("x.jpg", url="file:///etc/passwd"), 5, None, {"path": None}, [1, 2]]
    for value in hostile:
        stream = _call(server, "classify", [value])
        assert "event: error" in stream and "root:x:" not in stream and caption_line not in stream, (value, stream)
        stream = _call(server, "analogy", [value, value, value, "3cosadd", "pooled", True, 3])
        assert "event: error" in stream and "root:x:" not in stream and caption_line not in stream, (value, stream)

    # the private pick events: only an index into the session's panel (the ids are server state)
    bad_events = [{"index": "../../etc/passwd", "value": None}, {"index": -1, "value": None},
                  {"index": 10 ** 9, "value": None}, {"index": None, "value": None}, {"index": [None], "value": None},
                  {"index": True, "value": None}, {"index": 1.5, "value": None}, {}, None, "junk", [1], 7,
                  {"value": 3}, {"index": "1" * 5000}]
    for event in bad_events:
        for api_name, data in (("pick", ["A", ["../../etc/passwd"]]), ("pick_for_classifier", [["../../etc/passwd"]])):
            message = _join(server, api_name, data, event)
            assert not message.get("success"), (api_name, event, message)
            text = json.dumps(message)
            assert "root:x:" not in text and caption_line not in text
            # refused in our words (Gradio's own failure would be an error without a message, and a traceback)
            assert message["output"]["error"] in ("Click a gallery thumbnail to pick it.",
                                                  "That thumbnail is no longer in the gallery panel; filter again "
                                                  "and pick another."), (api_name, event, text[:300])
    # event data naming a file the app did not serve: Gradio's own check refuses it, first, in one line
    for value in (file_data("/etc/passwd"), [file_data(root / "captions.csv")], {"image": file_data("/etc/passwd")}):
        for event in ({"index": 0, "value": value}, {"index": value, "value": None}):
            response = httpx.post(server["url"] + "gradio_api/queue/join", timeout=30, json={
                "data": ["A", []], "fn_index": fn_index(server, "pick"), "session_hash": "files", "event_data": event})
            assert response.status_code == 403 and "is not in the cache folder and cannot be accessed" in response.text
            assert "root:x:" not in response.text and caption_line not in response.text
    assert "Traceback" not in capfd.readouterr().err
    # a good index picks the item from the server-side panel (not the ids the caller sent), as a copy; the
    # value (what the page shows) is not needed
    message = _join(server, "pick", ["A", ["../../etc/passwd"]], {"index": 6})
    assert message.get("success"), message
    picked = message["output"]["data"][0]["value"]["path"]
    assert Path(picked).read_bytes() == h.previews.path(6).read_bytes()
    assert h.find_item(picked) == 6
    print(f"refused {2 * len(hostile)} hostile API inputs and {2 * len(bad_events)} hostile pick events")


def test_example_clicks_take_only_an_example_index(server):
    """The examples' click events (Gradio's own handlers) failed with a traceback on anything but an
    example's index; now refused in one line, and a real index still fills the slots."""
    load = next(i for i, fn in server["demo"].fns.items() if any(isinstance(c, gr.Dataset) for c in fn.inputs))
    count = len(next(c for c in server["demo"].fns[load].inputs if isinstance(c, gr.Dataset)).raw_samples)
    for value in (None, -1, count, 10 ** 30, "0", 1.5, True, [0], {"index": 0}):
        message = join_event(server["url"], load, [value], f"s{time.monotonic_ns()}")
        assert not message["success"] and message["output"]["error"].endswith(
            f"is not an example; give the index of one of the {count} examples (0 to {count - 1})."), (value, message)
    message = join_event(server["url"], load, [0], f"s{time.monotonic_ns()}")
    assert message["success"] and len(message["output"]["data"]) >= 3, message


def test_events_cannot_skip_the_queue(server):
    """Direct POSTs to /gradio_api/api/NAME would run an event past the queue, its size limit and the
    model-bound concurrency limit: refused, for every named event."""
    names = [fn.api_name for fn in server["demo"].fns.values() if fn.api_name and fn.queue]
    assert "analogy" in names and "ask" in names
    for name in names:
        response = httpx.post(server["url"] + f"gradio_api/api/{name}", json={"data": []}, timeout=30)
        assert response.status_code == 404 and "does not accept direct HTTP POST" in response.text, name


def test_uploads_and_web_copies_still_work(client, server, tmp_path):
    from gradio_client import handle_file

    gallery = server["explorer"].gallery
    h = server["handlers"]
    # a plain upload is stored and served back as sent
    image = tmp_path / "mine.png"
    Image.open(gallery.path(3)).rotate(11).save(image)
    with image.open("rb") as f:
        response = httpx.post(server["url"] + "gradio_api/upload", files={"files": ("mine.png", f, "image/png")},
                              timeout=60)
    assert response.status_code == 200, response.text
    uploaded = response.json()[0]
    status, body = raw_get(server, file_route(quote(uploaded)))
    assert status == 200 and body == image.read_bytes()
    # a preview picked from the page and sent back with Solve is its gallery item again
    a, b, c = (h.preview(gallery.find(p)) for p in EXAMPLES[0])
    out = client.predict(handle_file(a), handle_file(b), handle_file(c), "3cosadd", "pooled", True, 3,
                         api_name="/analogy")
    report = json.loads(out[-1])
    assert [i["id"] for i in report["inputs"]] == [gallery.find(p) for p in EXAMPLES[0]]
    assert report["caption_space"]["results"][0]["path"] == "cat/greyscale.jpg"
    # and the results come back as preview copies (downloaded by the client from the server)
    for item in out[2]:
        with Image.open(item["image"]) as im:
            assert max(im.size) <= PREVIEW_SIZE
    # an upload the gallery has never seen
    labels, text = client.predict(handle_file(str(image)), api_name="/classify")
    assert len(labels["confidences"]) == 5 and "**Caption:**" in text and "Gallery item" not in text


# --- bad inputs through the server ---------------------------------------------------------------


def _ids(report_text: str) -> tuple[list[int], list[int]]:
    data = json.loads(report_text)
    return ([h["id"] for h in data["image_space"]["results"]],
            [h["id"] for h in (data["caption_space"] or {}).get("results", [])])


def _expected_ids(explorer, refs, top_k=3) -> tuple[list[int], list[int]]:
    report = explorer.analogy(refs, top_k=top_k, explain=False)
    return ([h.id for h in report.image_space.results],
            [h.id for h in report.caption_space.results] if report.caption_space else [])


def test_every_corpus_file_as_a_b_or_c_through_the_server(client, server, corpus, tmp_path):
    """Each corpus file goes in as A, B or C in turn: invalid ones get a gr.Error naming the file and
    the problem (through gradio_client: an AppError with that message); valid-but-odd ones the same
    answer as the Explorer gives for the file; after each, a normal request is answered correctly."""
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    explorer = server["explorer"]
    gallery = explorer.gallery
    normal = [str(gallery.path(gallery.find(p))) for p in EXAMPLES[0]]
    normal_expected = _expected_ids(explorer, [gallery.find(p) for p in EXAMPLES[0]])
    outcomes = {"refused": [], "answered": [], "not sendable": []}
    for n, case in enumerate(corpus):
        role = n % 3
        if case.path.is_dir():  # a folder cannot be uploaded; tests/test_app.py covers it through the handler
            outcomes["not sendable"].append(case.name)
            continue
        path = case.path
        if case.name == "non_utf8_name":  # HTTP multipart needs a text name: send the bytes as Latin-1 text
            path = tmp_path / os.fsencode(case.path.name).decode("latin-1")
            shutil.copyfile(case.path, path)
        refs = list(normal)
        refs[role] = str(path)
        args = [handle_file(p) for p in refs]
        if case.valid:
            out = client.predict(*args, "3cosadd", "pooled", True, 3, api_name="/analogy")
            expected_refs = [gallery.find(p) for p in EXAMPLES[0]]
            expected_refs[role] = str(case.path)
            assert _ids(out[-1]) == _expected_ids(explorer, expected_refs), case.name
            assert json.loads(out[-1])["inputs"][role]["id"] is None  # an upload, not a gallery item
            outcomes["answered"].append(case.name)
        else:
            with pytest.raises(AppError) as caught:
                client.predict(*args, "3cosadd", "pooled", True, 3, api_name="/analogy")
            message = str(caught.value)
            assert path.name in message or path.stem in message, (case.name, message)
            assert "Traceback" not in message and GENERIC_ERROR not in message, (case.name, message)
            outcomes["refused"].append(case.name)
        out = client.predict(*(handle_file(p) for p in normal), "3cosadd", "pooled", True, 3, api_name="/analogy")
        assert _ids(out[-1]) == normal_expected, f"the request after {case.name} was not answered right"
    assert len(outcomes["refused"]) >= 10 and len(outcomes["answered"]) >= 12, outcomes
    assert {"grey16_png", "cmyk_jpeg", "exif_rotated_jpeg", "palette_transparent_png", "animated_gif",
            "tiny_1x1_png", "wide_20000x1_png"} <= set(outcomes["answered"])
    print("corpus through the server:", {k: len(v) for k, v in outcomes.items()}, outcomes)


def test_every_corpus_file_through_the_classifier_tab(client, server, corpus):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    explorer = server["explorer"]
    for case in corpus:
        if case.path.is_dir() or case.name == "non_utf8_name":
            continue
        if case.valid:
            labels, _ = client.predict(handle_file(str(case.path)), api_name="/classify")
            expected = explorer.labels([str(case.path)], k=5)[0]
            assert [c["label"] for c in labels["confidences"]] == [l.name for l in expected], case.name
        else:
            with pytest.raises(AppError, match=case.path.stem):
                client.predict(handle_file(str(case.path)), api_name="/classify")
    labels, _ = client.predict(handle_file(str(explorer.gallery.path(6))), api_name="/classify")
    assert any("cat" in c["label"] for c in labels["confidences"])


# --- load ----------------------------------------------------------------------------------------

THREADS = 8
PER_THREAD = 5
LOAD_SECONDS = 300


class Overlap:
    """Wraps a callable and records the most calls ever running at once (the real call still runs)."""

    def __init__(self, fn):
        self.fn = fn
        self.active = 0
        self.most = 0
        self.calls = 0
        self.lock = threading.Lock()

    def __call__(self, *args, **kwargs):
        with self.lock:
            self.active += 1
            self.calls += 1
            self.most = max(self.most, self.active)
        try:
            return self.fn(*args, **kwargs)
        finally:
            with self.lock:
                self.active -= 1


def test_many_concurrent_requests_with_uploads_all_answer_correctly(server, tmp_path, monkeypatch):
    """THREADS clients, each with its own session, send PER_THREAD analogy requests and one classify
    request at once (uploads of never-seen images, byte copies of gallery images, gallery previews),
    with varied methods and layers. Every answer equals the Explorer's own; the model sessions and the
    tokenizer are never entered by two threads at once; handlers run at most MODEL_CONCURRENCY at once."""
    from gradio_client import handle_file

    explorer = server["explorer"]
    gallery = explorer.gallery
    models = explorer.models
    classifier_run = Overlap(models.classifier.run)
    text_encode = Overlap(models.text_embedder.encode)
    analogy = Overlap(explorer.analogy)
    monkeypatch.setattr(models.classifier, "run", classifier_run)
    monkeypatch.setattr(models.text_embedder, "encode", text_encode)
    monkeypatch.setattr(explorer, "analogy", analogy)

    h = server["handlers"]
    methods = ["3cosadd", "3cosmul", "pairdirection", "only-c", "ignore-a"]
    layers = ["pooled", "logits", "probs"]
    plans = []  # (thread, [(files, expected refs, method, layer)])
    for t in range(THREADS):
        jobs = []
        for k in range(PER_THREAD):
            n = t * PER_THREAD + k
            ids = [(n * 7 + 1) % 40, (n * 11 + 5) % 40, (n * 13 + 9) % 40]
            files = [str(gallery.path(i)) for i in ids]
            refs: list = list(ids)
            if n % 4 == 1:  # an image the gallery has never seen, different in every request
                upload = tmp_path / f"upload-{n}.png"
                Image.open(gallery.path(ids[2])).rotate(3 + n).save(upload)
                files[2], refs[2] = str(upload), str(upload)
            elif n % 4 == 2:  # a preview copy, as sent back by the page
                files[0] = str(h.previews.path(ids[0]))
            elif n % 4 == 3:  # the same new image in several threads at once
                shared = tmp_path / "shared-upload.png"
                if not shared.exists():
                    Image.open(gallery.path(17)).transpose(Image.Transpose.FLIP_TOP_BOTTOM).save(shared)
                files[1], refs[1] = str(shared), str(shared)
            jobs.append((files, refs, methods[n % len(methods)], layers[n % len(layers)]))
        plans.append(jobs)

    def worker(jobs):
        client = new_client(server)
        answers = []
        for files, _, method, layer in jobs:
            started = time.perf_counter()
            out = client.predict(*(handle_file(f) for f in files), method, layer, True, 4, api_name="/analogy")
            answers.append((out[-1], time.perf_counter() - started))
        labels, _ = client.predict(handle_file(jobs[0][0][2]), api_name="/classify")
        return answers, labels

    started = time.perf_counter()
    with ThreadPoolExecutor(THREADS) as pool:
        futures = [pool.submit(worker, jobs) for jobs in plans]
        results = [f.result(timeout=LOAD_SECONDS) for f in futures]
    elapsed = time.perf_counter() - started
    assert elapsed < LOAD_SECONDS
    monkeypatch.undo()

    assert classifier_run.most == 1 and text_encode.most == 1, (classifier_run.most, text_encode.most)
    assert 1 <= analogy.most <= MODEL_CONCURRENCY
    latencies = []
    for jobs, (answers, labels) in zip(plans, results):
        for (files, refs, method, layer), (text, seconds) in zip(jobs, answers):
            report = explorer.analogy(refs, method=method, layer=layer, top_k=4, explain=False)
            data = json.loads(text)
            assert (data["question"]["method"], data["question"]["layer"]) == (method, layer)
            for space, got in (("image_space", report.image_space), ("caption_space", report.caption_space)):
                # same ids in the same order; scores equal up to float noise (an upload's caption may be
                # embedded in another batch, which moves its vector in the 6th decimal)
                assert [r["id"] for r in data[space]["results"]] == [r.id for r in got.results], \
                    (files, method, layer, space)
                assert [r["score"] for r in data[space]["results"]] == \
                    pytest.approx([r.score for r in got.results], abs=1e-4)
            latencies.append(seconds)
        expected = explorer.labels([jobs[0][0][2]], k=5)[0]
        assert [c["label"] for c in labels["confidences"]] == [l.name for l in expected]
    latencies.sort()
    stats = {"requests": len(latencies) + THREADS, "analogies": len(latencies), "threads": THREADS,
                         "seconds": round(elapsed, 1), "p50": round(latencies[len(latencies) // 2], 2),
                         "max": round(latencies[-1], 2), "most_handlers_at_once": analogy.most,
                         "classifier_calls": classifier_run.calls, "text_calls": text_encode.calls}
    print("load:", stats)


# --- the chat and the API under hostile input (issue 14) ------------------------------------------


def _event(server, api: str, data: list) -> tuple[str, object]:
    """An API call over plain HTTP -> ("complete" | "error", the data or the error of its last event)."""
    stream = _call(server, api, data)
    if stream.startswith("event: error\nstatus"):
        return "refused", stream
    events = [block for block in stream.strip().split("\n\n") if block.startswith("event:")]
    kind = events[-1].split("\n", 1)[0].removeprefix("event: ").strip()
    payload = events[-1].split("data: ", 1)[1].split("\n", 1)[0]
    return kind, json.loads(payload)


def _upload(server, path) -> dict:
    with open(path, "rb") as f:
        response = httpx.post(server["url"] + "gradio_api/upload", files={"files": (Path(path).name, f, "image/jpeg")},
                              timeout=60)
    assert response.status_code == 200, response.text
    return {"path": response.json()[0], "meta": {"_type": "gradio.FileData"}, "orig_name": Path(path).name}


def test_every_bad_api_call_is_refused_in_one_line_naming_the_input(server, capfd, caplog, monkeypatch):
    """tests/hostile_api.BAD_CALLS against the real app: each refused before any handler runs, with one
    line naming the input and what it takes (a long value cut short), one log line, no traceback."""
    from tests.hostile_api import BAD_CALLS, LONG, fill

    explorer = server["explorer"]
    analogy, labels = Overlap(explorer.analogy), Overlap(explorer.labels)
    monkeypatch.setattr(explorer, "analogy", analogy)
    monkeypatch.setattr(explorer, "labels", labels)
    caplog.set_level("WARNING", logger="iae")
    photo = _upload(server, explorer.gallery.path(3))
    capfd.readouterr()
    for api, data, expected in BAD_CALLS:
        kind, error = _event(server, api, fill(data, photo))
        assert kind == "error", (api, str(data)[:80], kind, str(error)[:200])
        message = error["error"]
        start = f"/{api}: {expected}" if expected.startswith("takes") else f"{expected}: "
        assert message.startswith(start), (api, str(data)[:80], message)
        assert "\n" not in message and len(message) < 300 and LONG[:100] not in message
    assert analogy.calls == 0 and labels.calls == 0  # no handler reached the pipeline
    refused = [r.getMessage() for r in caplog.records if r.getMessage().startswith("refused")]
    assert len(refused) == len(BAD_CALLS) and all("\n" not in m and len(m) < 400 for m in refused)
    err = capfd.readouterr().err
    assert "Traceback" not in err and LONG[:100] not in err
    monkeypatch.undo()
    # the same session of the server still answers a good call
    kind, out = _event(server, "analogy", fill(["<upload>", "<upload>", "<upload>", "3cosadd", "pooled", True, 3], photo))
    assert kind == "complete", out
    print(f"refused {len(BAD_CALLS)} bad API calls in one line each")


def test_http_guards_are_in_front_of_the_app(server, capfd):
    """Gradio alone answers 500 to a Range that is not one byte range and to an upload part without a
    file name (tests/test_http_guards.py): the app answers 416 and 400, and serves single ranges."""
    from tests.test_http_guards import BAD_RANGES, multipart, post_upload
    from webui.http_guards import RANGE_REFUSED

    preview = server["handlers"].previews.path(0)
    url = server["url"] + "gradio_api/file=" + quote(str(preview))
    for value in BAD_RANGES:
        response = httpx.get(url, headers={"Range": value.encode()}, timeout=30)
        assert (response.status_code, response.text) == (416, RANGE_REFUSED + "\n"), value[:40]
    ranged = httpx.get(url, headers={"Range": "bytes=0-9"}, timeout=30)
    assert ranged.status_code == 206 and ranged.content == preview.read_bytes()[:10]
    nameless = [httpx.post(server["url"] + "gradio_api/upload", files={"files": ("", b"x" * 100, "image/jpeg")},
                           timeout=30),
                post_upload(server["url"], multipart(b'Content-Disposition: form-data; name="files"'))]
    assert [r.status_code for r in nameless] == [400, 400]
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Exception in ASGI application" not in err
    print(f"{len(BAD_RANGES)} bad ranges: 416; {len(nameless)} nameless uploads: 400")


def _files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file()} if folder.is_dir() else set()


def test_a_chat_history_sent_by_a_client_is_never_read(server, tmp_path):
    """The issue's attack: a history naming server files (a planted secret, the app's source, .git,
    the gallery manifest, /etc/passwd) sent to /ask. /ask takes the question alone (refused), and the
    page's own event takes the conversation from the session (the history sent is ignored): nothing is
    copied into the upload folder or served, and an existing path answers exactly as a missing one."""
    from tests.hostile_api import history_injections
    from webui.api_inputs import upload_folder

    token = f"planted-secret-{os.getpid()}-{time.monotonic_ns()}"
    secret = tmp_path / "secret.txt"
    secret.write_text(token)
    gallery = server["explorer"].gallery
    targets = [str(secret), str(Path(app.__file__).resolve()), str(Path(app.__file__).resolve().parent / ".git"),
               str(Path(gallery.store) / "manifest.json"), "/etc/passwd"]
    uploads = Path(upload_folder())
    before = _files_under(uploads)
    histories = history_injections(targets)
    for history in histories:
        kind, error = _event(server, "ask", ["why?", history])
        assert kind == "error" and error["error"].startswith("/ask: takes 1 input (question); got 2"), error
        message = _join(server, "ask", ["why?", None, history], None)
        # the handler ran on the session's state (no report yet), not on what was sent
        assert not message["success"] and "Solve an analogy first" in message["output"]["error"], message
    # probing: a history naming a file that exists answers exactly as one naming a file that does not
    for existing, missing in zip(history_injections([str(secret)]), history_injections([str(tmp_path / "no-such")])):
        answers = [_join(server, "ask", ["why?", None, h], None)["output"] for h in (existing, missing)]
        assert answers[0] == answers[1]
        assert _event(server, "ask", ["why?", existing]) == _event(server, "ask", ["why?", missing])
    new = _files_under(uploads) - before
    leaked = [p for p in new if p.stat().st_size < 10 << 20 and token.encode() in p.read_bytes()]
    assert leaked == [], leaked
    assert_refused(server, file_route(quote(str(secret))), (token.encode(),))
    print(f"{len(histories)} injected histories x 2 routes: nothing read, copied or served")


def _session_with_a_report(server):
    """A client session (result images not downloaded) that has solved the first example."""
    client = new_client(server, download_files=False)
    gallery = server["explorer"].gallery
    from gradio_client import handle_file

    client.predict(*(handle_file(str(gallery.path(gallery.find(p)))) for p in EXAMPLES[0]), "3cosadd", "pooled",
                   True, 5, api_name="/analogy")
    return client


def test_odd_questions_are_answered_as_text_or_refused_in_one_line(server):
    """tests/hostile_api.ODD_QUESTIONS in a session with a report: each answered (its text shown as
    typed) or refused in one line; "top 30" then Solve with that k works (one top-k limit)."""
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    from pipeline.chat import literal_markdown
    from tests.hostile_api import ODD_QUESTIONS

    client = _session_with_a_report(server)
    limit = server["explorer"].settings.max_top_k
    answered, refused = 0, []
    for question, _ in ODD_QUESTIONS:
        try:
            out = client.predict(question, api_name="/ask")
        except AppError as exc:
            message = str(exc)
            assert message.startswith("question: ") and "\n" not in message and len(message) < 300, message
            refused.append(question)
            continue
        chat, top_k = out[0], out[-1]
        user = [m for m in chat if m["role"] == "user"][-1]
        text = "".join(part.get("text", "") for part in user["content"]) if isinstance(user["content"], list) \
            else user["content"]
        assert text == literal_markdown(question.strip()), (question[:40], text[:80])
        assert "](" not in chat[-1]["content"][0]["text"] if isinstance(chat[-1]["content"], list) else True
        if question.startswith("top "):
            assert top_k == min(int(question.split()[1]), limit), (question, top_k)
        answered += 1
    assert refused == ["why" + " " * 1998, "", "   \n\t"] and answered == len(ODD_QUESTIONS) - 3, (answered, refused)
    # "top 30" set the slider to 30: the next Solve with it is answered (the slider's maximum is the one limit)
    gallery = server["explorer"].gallery
    out = client.predict(*(handle_file(str(gallery.path(gallery.find(p)))) for p in EXAMPLES[0]), "3cosadd", "pooled",
                         True, 30, api_name="/analogy")
    assert len(out[2]) == 30
    print(f"odd questions: {answered} answered as text, {len(refused)} refused in one line")


CHAT_LOOPS = 4
ORDINARY_QUESTIONS = 30
CHAT_LOAD_SECONDS = 240
LOADED_P95_RATIO = 8  # the ordinary question's p95 with the loops over its p95 without them


def chat_loops(url: str, analogy_index: int, ask_index: int, analogy: list, loops: int, stop_file: str) -> None:
    """Run in a child process (its own interpreter lock, as outside clients have): ``loops`` sessions
    talking to the queue as the page does, each solving ``analogy`` (the data of /analogy) once, then
    asking tests/hostile_api.CHAT_LOOP_QUESTIONS in turn, as fast as they are answered, until
    ``stop_file`` exists. Prints "running" once every loop has been answered, then the number of
    questions each loop asked (JSON)."""
    from tests.hostile_api import CHAT_LOOP_QUESTIONS

    asked = [0] * loops
    announced = threading.Lock()

    def loop(n: int) -> int:
        session = f"loop{n}-{time.monotonic_ns()}"
        with httpx.Client() as http:
            assert join_event(url, analogy_index, analogy, session, http=http)["success"]
            while not os.path.exists(stop_file):
                question = CHAT_LOOP_QUESTIONS[(n + asked[n]) % len(CHAT_LOOP_QUESTIONS)]
                assert join_event(url, ask_index, [question, None, None], session, http=http)["success"]
                asked[n] += 1
                if all(asked) and announced.acquire(blocking=False):
                    print("running", flush=True)
        return asked[n]

    with ThreadPoolExecutor(loops) as pool:
        counts = list(pool.map(loop, range(loops)))
    print(json.dumps(counts), flush=True)


@pytest.mark.slow
def test_adversarial_chat_loops_do_not_stall_an_ordinary_question(server, tmp_path):
    """Issue 14's acceptance: CHAT_LOOPS sessions (in another process, as outside clients are) ask the
    questions that stalled the old intent patterns (tests/hostile_api.CHAT_LOOP_QUESTIONS, 2,000
    characters each) in a loop, as fast as they are answered, while another session asks an ordinary
    "why?" ORDINARY_QUESTIONS times. The issue's target is a p95 round trip under 0.5 s (it was
    8.6-12.3 s; the figures are printed). Machines are noisy, so what is asserted is a ratio measured in
    the same run: the p95 under that load is at most LOADED_P95_RATIO times the p95 of the same
    questions asked before the loops start (the stall made it 30x and more; sharing 2 cores with four
    busy sessions costs about 2-4x). All sessions talk to the queue as the page does (gradio_client
    alone adds up to 0.15 s of polling to each call)."""
    import subprocess
    import sys

    gallery = server["explorer"].gallery
    analogy = [_upload(server, gallery.path(gallery.find(p))) for p in EXAMPLES[0]] + ["3cosadd", "pooled", True, 5]
    stop_file = tmp_path / "stop"
    session = f"ordinary-{time.monotonic_ns()}"
    assert _join(server, "analogy", analogy, None, session)["success"]
    assert _join(server, "ask", ["why?", None, None], None, session)["success"]  # a first question, untimed

    def ordinary_round_trips() -> list[float]:
        seconds, started = [], time.perf_counter()
        for _ in range(ORDINARY_QUESTIONS):
            assert time.perf_counter() - started < CHAT_LOAD_SECONDS
            t = time.perf_counter()
            message = _join(server, "ask", ["why?", None, None], None, session)
            seconds.append(time.perf_counter() - t)
            assert message["success"] and "Why these verdicts" in json.dumps(message["output"]["data"][0][-1])
        return sorted(seconds)

    quiet = ordinary_round_trips()
    code = "import json, sys; from tests.test_app_reliability import chat_loops; chat_loops(*json.loads(sys.argv[1]))"
    arguments = [server["url"], fn_index(server, "analogy"), fn_index(server, "ask"), analogy, CHAT_LOOPS, str(stop_file)]
    child = subprocess.Popen([sys.executable, "-c", code, json.dumps(arguments)],
                             cwd=Path(app.__file__).resolve().parent, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "running"  # every loop has been answered at least once
        loaded = ordinary_round_trips()
    finally:
        stop_file.touch()
        output, _ = child.communicate(timeout=120)
    asked = json.loads(output.strip().splitlines()[-1])
    assert child.returncode == 0 and len(asked) == CHAT_LOOPS and all(asked), (child.returncode, output)

    def p95(seconds: list[float]) -> float:
        return seconds[min(len(seconds) - 1, round(0.95 * (len(seconds) - 1)))]

    print(f"chat load: {sum(asked)} adversarial questions from {CHAT_LOOPS} loops; ordinary 'why?' x{len(loaded)}: "
          f"p50 {loaded[len(loaded) // 2]:.3f} s, p95 {p95(loaded):.3f} s (target 0.5 s), max {loaded[-1]:.3f} s; "
          f"without the loops p95 {p95(quiet):.3f} s: {p95(loaded) / p95(quiet):.1f}x")
    assert p95(loaded) <= LOADED_P95_RATIO * p95(quiet), ([round(x, 3) for x in quiet], [round(x, 3) for x in loaded])


def _resident_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


LARGE_PHOTOS = 4


@pytest.mark.slow
def test_memory_comes_back_after_a_burst_of_40_mp_photos(server, tmp_path):
    """Issue 14, item 4: LARGE_PHOTOS uploads of 40 MP (as C of an analogy and to the classifier, two
    clients at once), then 20 s idle: the server's resident memory is within 500 MB of where it was
    after a first small upload (without returning glibc's arenas it stayed about 1.2 GB higher).
    scripts/app_memory.py measures the same on app.py in its own process."""
    from gradio_client import handle_file

    gallery = server["explorer"].gallery
    a, b = (str(gallery.path(gallery.find(p))) for p in EXAMPLES[0][:2])
    width, height = 7745, 5164  # 40.0 MP (39,995,180 pixels, under the limit)
    photos = []
    for n in range(LARGE_PHOTOS + 1):
        with Image.open(gallery.path(20 + n)) as im:
            size = (width, height) if n else (640, 430)
            path = tmp_path / f"photo-{n}.jpg"
            im.convert("RGB").rotate(n + 2).resize(size, Image.Resampling.BILINEAR).save(path, quality=85)
            photos.append(str(path))

    def send(photo: str) -> None:
        client = new_client(server, download_files=False)
        client.predict(handle_file(a), handle_file(b), handle_file(photo), "3cosadd", "pooled", True, 3,
                       api_name="/analogy")
        client.predict(handle_file(photo), api_name="/classify")

    send(photos[0])  # a small upload first: every model an upload needs is loaded
    baseline = _resident_mb()
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(send, photos[1:]))
    after = _resident_mb()
    time.sleep(20)
    idle = _resident_mb()
    print(f"resident memory: {baseline:.0f} MB, after {LARGE_PHOTOS} 40 MP photos {after:.0f} MB, "
          f"after 20 s idle {idle:.0f} MB ({idle - baseline:+.0f} MB)")
    assert idle - baseline < 500


# --- limits --------------------------------------------------------------------------------------


def test_limits_come_from_the_environment_and_are_enforced(default_explorer, tmp_path, monkeypatch, capsys):
    """IAE_MAX_PIXELS, IAE_MAX_FILE_BYTES and IAE_MAX_GALLERY_ITEMS: set, then met with a clear message
    (the app's handlers: a gr.Error naming the file; the app's start-up: one line and exit status 2)."""
    import gradio as gr

    from pipeline.config import Settings
    from pipeline.explorer import Explorer

    monkeypatch.setenv("IAE_MAX_PIXELS", "10000")
    monkeypatch.setenv("IAE_MAX_FILE_BYTES", "200000")
    monkeypatch.setenv("IAE_MAX_GALLERY_ITEMS", "3")
    limited = Settings.from_env().replace(cache_dir=tmp_path / "cache")
    assert (limited.max_pixels, limited.max_file_bytes, limited.max_gallery_items) == (10_000, 200_000, 3)
    defaults = Settings()
    assert (defaults.max_pixels, defaults.max_file_bytes) == (40_000_000, 25 * 1024 * 1024)

    explorer = Explorer(limited, models=default_explorer.models)
    explorer.gallery = copy.copy(default_explorer.gallery)  # the same gallery, opened under the lower limits
    explorer.gallery.settings = limited
    handlers = Handlers(explorer, eval_dir=tmp_path)
    a, b = (str(default_explorer.gallery.path(default_explorer.gallery.find(p))) for p in EXAMPLES[0][:2])
    big = tmp_path / "big.png"
    Image.new("RGB", (101, 100), "red").save(big)  # 10,100 pixels
    noisy = tmp_path / "noisy.bmp"
    Image.frombytes("RGB", (250, 270), os.urandom(250 * 270 * 3)).save(noisy)  # about 200 kB
    small = tmp_path / "small.png"
    Image.new("RGB", (100, 100), "red").save(small)
    with pytest.raises(gr.Error, match="big.png: image is 101x100 = 10,100 pixels, over the limit of 10,000"):
        user_facing(handlers.solve)(a, b, str(big))
    with pytest.raises(gr.Error, match=r"noisy.bmp: file is .* over the .* limit"):
        user_facing(handlers.solve)(a, b, str(noisy))
    assert user_facing(handlers.solve)(a, b, str(small)).report.image_space.top is not None

    gallery = tmp_path / "four"
    gallery.mkdir()
    for n in range(4):
        Image.new("RGB", (8, 8), (n * 60, 0, 0)).save(gallery / f"{n}.png")
    code = app.main(["--gallery", str(gallery), "--cache-dir", str(tmp_path / "cache")])
    err = capsys.readouterr().err
    assert code == 2 and "has 4 images, over the limit of 3 (IAE_MAX_GALLERY_ITEMS)" in err and "Traceback" not in err


def test_request_limits_are_wired_as_documented(server):
    """Model-bound events share one concurrency group of MODEL_CONCURRENCY; the queue holds at most
    QUEUE_MAX_SIZE; uploads above max_file_size are refused by Gradio before a handler runs."""
    demo = server["demo"]
    assert (MODEL_CONCURRENCY, QUEUE_MAX_SIZE) == (2, 64)
    assert demo._queue.max_size == QUEUE_MAX_SIZE
    model_bound = [fn for fn in demo.fns.values() if fn.concurrency_id == CONCURRENCY_ID]
    assert {fn.api_name for fn in model_bound} >= {"analogy", "ask", "classify", "pick_for_classifier"}
    assert all(fn.concurrency_limit == MODEL_CONCURRENCY for fn in model_bound)
    config = httpx.get(server["url"] + "config", timeout=30).json()
    assert config["max_file_size"] == server["explorer"].settings.max_file_bytes
