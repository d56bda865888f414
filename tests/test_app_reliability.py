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


def new_client(server):
    from gradio_client import Client

    return Client(server["url"], verbose=False, analytics_enabled=False)


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


def _join(server, api_name: str, data: list, event_data) -> dict:
    """Call a private event (as the page does, by its index in the queue) with chosen event data;
    -> the process_completed message."""
    demo = server["demo"]
    fn_index = next(i for i, fn in demo.fns.items() if fn.api_name == api_name)
    session = f"s{time.monotonic_ns()}"
    response = httpx.post(server["url"] + "gradio_api/queue/join", timeout=30,
                          json={"data": data, "fn_index": fn_index, "session_hash": session,
                                "event_data": event_data, "trigger_id": None})
    assert response.status_code == 200, response.text
    with httpx.stream("GET", server["url"] + f"gradio_api/queue/data?session_hash={session}", timeout=120) as stream:
        for line in stream.iter_lines():
            if line.startswith("data:"):
                message = json.loads(line[5:])
                if message.get("msg") == "process_completed":
                    return message
    raise AssertionError("no process_completed message")


def test_server_paths_and_gallery_ids_through_the_api_are_refused(server):
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
                  {"index": True, "value": None}, {"index": 1.5, "value": None}, {}, None]
    for event in bad_events:
        for api_name, data in (("pick", ["A", ["../../etc/passwd"]]), ("pick_for_classifier", [["../../etc/passwd"]])):
            message = _join(server, api_name, data, event)
            assert not message.get("success"), (api_name, event, message)
            text = json.dumps(message)
            assert "root:x:" not in text and caption_line not in text
            assert "Click a gallery thumbnail" in text or "no longer in the gallery panel" in text or \
                message["output"].get("error") is None, (api_name, event, text[:300])
    # a good index picks the item from the server-side panel (not the ids the caller sent), as a copy
    message = _join(server, "pick", ["A", ["../../etc/passwd"]], {"index": 6, "value": None})
    assert message.get("success"), message
    picked = message["output"]["data"][0]["value"]["path"]
    assert Path(picked).read_bytes() == h.previews.path(6).read_bytes()
    assert h.find_item(picked) == 6
    print(f"refused {2 * len(hostile)} hostile API inputs and {2 * len(bad_events)} hostile pick events")


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
