"""HTTP guards in front of the Gradio app: kinds of request that Gradio answers with a 500 or a
traceback in the log are answered 416, 400, 403 or 404 instead, in one plain line, with one log line each.

* **Range** on GET/HEAD: Gradio's file route splits the value on ``-`` into exactly two parts
  (``gradio/route_utils.py``, ``file_fetch``), so ``bytes=0-1,5-6``, ``bytes=0-1-2`` or a 5,000-digit
  number raise. A Range header is passed on only when it is one byte range (``bytes=FIRST-LAST``,
  ``bytes=FIRST-``, ``bytes=-SUFFIX``, ASCII digits, at most 18 of them, FIRST <= LAST), rewritten in
  that canonical form; any other Range header (several ranges, another unit, garbage, two Range
  headers) is answered ``416 Range Not Satisfiable``. RFC 9110 lets a server reject an invalid
  ranges-specifier; this app serves images and never needs multipart/byteranges.
* **Uploads** (multipart POST to a path ending in ``/upload``): Gradio reads every part named
  ``files`` and takes one without a ``filename`` parameter (what a client sends for an empty name) for
  a form field, then raises ``TypeError``. A part named ``files`` whose file name is missing or blank
  gets ``400 Bad Request``. The body still flows to Gradio untouched (no buffering); the part headers
  are read as they pass with ``python-multipart`` (the parser Gradio itself uses), and the refusal
  replaces whatever Gradio answers. Anything the check cannot parse is left to Gradio, which answers
  malformed uploads with a 4xx itself.
* **Unknown events** (JSON POST to ``queue/join``, ``run/NAME``, ``api/NAME``, ``call/NAME``,
  ``call/v2/NAME``, ``component_server``): Gradio looks the event up with ``fns[fn_index]`` or by API
  name, and a component with ``blocks[component_id]``, and raises ``KeyError`` /
  ``FnIndexInferError`` for one it does not have. A body whose ``fn_index`` or ``component_id`` (a
  whole number, or digits as text, as Gradio reads it) is not one of the app's, or a call by a name no
  event has, gets ``404 Not Found``. The body (at most :data:`MAX_JSON_BYTES`; a larger one is left
  to Gradio) is read, checked and handed on unchanged; what is not JSON is left to Gradio (it answers 422).
* **Files in event data** (the same bodies): event data naming a file outside Gradio's upload folder
  and static paths is refused by Gradio's own check (``processing_utils.check_all_files_in_cache``),
  with a traceback in the log; the guard runs that check first and answers ``403 Forbidden`` with its
  message. (The page's clicks on a gallery name the thumbnails, which are static paths.)
* **Streams of nothing** (GET ``queue/data?session_hash=...``, ``call/NAME/EVENT_ID``): Gradio starts
  the event stream, then raises a 404 inside it for a session with no events (a broken response and
  a traceback). A stream whose session the queue does not know (for ``call/``, the session of the
  event, found as Gradio finds it) gets ``404 Not Found`` before it starts.

Gradio 6.31.0, the newest release on PyPI when this was written, has all these faults.
``tests/test_http_guards.py`` checks each against a real Gradio server, and that an unguarded one still
fails (so the guards can go once Gradio mends them); the files guard is checked on the app itself
(``tests/test_app_reliability.py``: its pick events take event data). The event and stream guards read the app's events
and its queue's sessions from the Gradio app serving the request (``scope["app"].get_blocks()``); where there is none,
those requests pass untouched. (An app that adds events per session with ``gr.render`` would need its
sessions' events too; this app has none.)

Use: ``demo.launch(..., app_kwargs=app_kwargs())`` (in place from the first request), or
:func:`install` on an app that is not started yet or on a launched ``gr.Blocks``.
"""
from __future__ import annotations

import json
import logging
import re
from typing import Any, Awaitable, Callable
from urllib.parse import parse_qs

from gradio.exceptions import Error as GradioError
from gradio.processing_utils import check_all_files_in_cache
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.middleware import Middleware

log = logging.getLogger("iae.http")

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

MAX_RANGE_DIGITS = 18
MAX_PART_HEADER_BYTES = 8 * 1024  # Gradio's own limit; a longer header block is left to Gradio (413)
_SINGLE_RANGE = re.compile(rf"([0-9]{{1,{MAX_RANGE_DIGITS}}})-([0-9]{{0,{MAX_RANGE_DIGITS}}})|-([0-9]{{1,{MAX_RANGE_DIGITS}}})")
RANGE_REFUSED = "Range not satisfiable: send one byte range, such as bytes=0-1023 (several ranges are not served)."
UPLOAD_REFUSED = "Upload refused: part {part} named 'files' has no file name; send every file with its name."
MAX_JSON_BYTES = 1 << 20  # an event's JSON body read for the event check; a larger one is left to Gradio
_EVENT_ROUTE = re.compile(r"/gradio_api/(?:queue/join|component_server|(?:run|api|call|call/v2)/([^/]+))/?")
EVENT_REFUSED = "No such event or component: {what}. The app's API is listed at /gradio_api/info."
_CALL_STREAM = re.compile(r"/gradio_api/call/(?:v2/)?[^/]+/([^/]+)/?")
STREAM_REFUSED = ("Nothing to stream: {what} has no events waiting; start one first (POST /gradio_api/queue/join, "
                  "or /gradio_api/call/NAME).")


def canonical_range(values: list[bytes]) -> bytes | None:
    """The Range header values of one request -> the one byte range they ask for, written
    ``bytes=FIRST-LAST`` / ``bytes=FIRST-`` / ``bytes=-SUFFIX``; ``None`` when they are anything else."""
    if len(values) != 1:
        return None
    unit, equals, spec = values[0].decode("latin-1").partition("=")
    if not equals or unit.strip().lower() != "bytes":
        return None
    ranges = [r.strip() for r in spec.split(",") if r.strip()]
    match = _SINGLE_RANGE.fullmatch(ranges[0]) if len(ranges) == 1 else None
    if match is None:
        return None
    first, last, suffix = match.groups()
    if suffix is not None:
        return f"bytes=-{int(suffix)}".encode()
    if last and int(first) > int(last):
        return None
    return f"bytes={int(first)}-{int(last) if last else ''}".encode()


class UploadCheck:
    """Reads a multipart body as it streams past and notes the first part named ``files`` without a
    file name (:attr:`problem`, the refusal's text). Gives up quietly (:attr:`done`) on anything it
    cannot parse, which Gradio then answers itself."""

    def __init__(self, boundary: bytes):
        self.problem: str | None = None
        self.done = False
        self.parts = 0
        self._field = self._value = b""
        self._disposition = b""
        self._header_bytes = 0
        self._parser = MultipartParser(boundary, {
            "on_part_begin": self._part_begin, "on_header_field": self._header_field,
            "on_header_value": self._header_value, "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished})

    def feed(self, chunk: bytes) -> None:
        if self.done or not chunk:
            return
        try:
            self._parser.write(chunk)
        except (MultipartParseError, _GiveUp):
            self.done = True

    def _part_begin(self) -> None:
        self.parts += 1
        self._disposition = b""
        self._header_bytes = 0

    def _grow(self, n: int) -> None:
        self._header_bytes += n
        if self._header_bytes > MAX_PART_HEADER_BYTES:
            raise _GiveUp

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._grow(end - start)
        self._field += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._grow(end - start)
        self._value += data[start:end]

    def _header_end(self) -> None:
        if self._field.strip().lower() == b"content-disposition":
            self._disposition = self._value
        self._field = self._value = b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        if options.get(b"name") == b"files" and not options.get(b"filename", b"").strip():
            self.problem = UPLOAD_REFUSED.format(part=self.parts)
            self.done = True
            raise _GiveUp


class _GiveUp(Exception):
    """Stops the upload check's parser (a finding, or a header block too long to bother with)."""


def unknown_event(body: Any, api_name: str | None, blocks) -> str | None:
    """What names no event of ``blocks`` in an event request (``body``: its parsed JSON; ``api_name``:
    the name in its path, None for ``queue/join``), as the refusal says it; None when Gradio can look
    the event up, or will refuse the body itself."""
    if not isinstance(body, dict):
        return None
    component_id = _whole_number(body.get("component_id"))
    if component_id is not None:
        return None if component_id in blocks.blocks else f"component_id {component_id}"
    fn_index = _whole_number(body.get("fn_index"))
    if fn_index is not None:
        return None if fn_index in blocks.fns else f"fn_index {fn_index}"
    if body.get("fn_index") is None and api_name is not None:
        known = any(fn.api_name == api_name for fn in blocks.fns.values())
        return None if known else f"no event is named {api_name[:80]!r}"
    return None


def foreign_files(body: Any) -> str | None:
    """Gradio's refusal of the files an event's data names (``event_data``: a file outside its upload
    folder and static paths), or None when there is none to refuse."""
    data = body.get("event_data") if isinstance(body, dict) else None
    if data is None:
        return None
    try:
        check_all_files_in_cache(data)
    except GradioError as exc:
        return " ".join(str(exc.message).split())
    return None


def _whole_number(value: Any) -> int | None:
    """``value`` as the whole number Gradio would read from it (an int, or digits as text), else None."""
    if isinstance(value, str) and re.fullmatch(r"\s*-?[0-9]{1,18}\s*", value):
        return int(value)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class HttpGuards:
    """ASGI middleware: the guards of this module's docstring; every other request passes through
    untouched."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        method = scope.get("method", "GET")
        headers = scope.get("headers", [])
        if method in ("GET", "HEAD"):
            values = [v for k, v in headers if k.lower() == b"range"]
            if values:
                canonical = canonical_range(values)
                if canonical is None:
                    return await refuse(scope, send, 416, RANGE_REFUSED, values[0][:40])
                scope = dict(scope, headers=[(k, v) for k, v in headers if k.lower() != b"range"] + [(b"range", canonical)])
            nothing = stream_of_nothing(scope)
            if nothing is not None:
                return await refuse(scope, send, 404, STREAM_REFUSED.format(what=nothing))
        elif method == "POST" and scope.get("path", "").rstrip("/").endswith("/upload"):
            boundary = multipart_boundary(headers)
            if boundary:
                return await self._upload(scope, receive, send, UploadCheck(boundary))
        elif method == "POST" and (route := _event_route(scope)) is not None:
            return await self._event(scope, receive, send, route.group(1))
        await self.app(scope, receive, send)

    async def _event(self, scope: Scope, receive: Receive, send: Send, api_name: str | None) -> None:
        """Read an event request's JSON body (up to :data:`MAX_JSON_BYTES`), refuse it when it names no
        event, else hand it on as it came."""
        read: list[Message] = []
        size, more = 0, True
        while more and size <= MAX_JSON_BYTES:
            message = await receive()
            read.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            more = message.get("more_body", False)
        blocks = _blocks(scope)
        if not more and blocks is not None and read[-1]["type"] == "http.request":
            try:
                body = json.loads(b"".join(m.get("body", b"") for m in read))
            except (ValueError, RecursionError):  # not JSON, or nested too deeply for Python's parser: Gradio's
                body = None
            problem = unknown_event(body, api_name, blocks)
            if problem is not None:
                return await refuse(scope, send, 404, EVENT_REFUSED.format(what=problem))
            problem = foreign_files(body)
            if problem is not None:
                return await refuse(scope, send, 403, problem)

        async def replay() -> Message:
            return read.pop(0) if read else await receive()

        await self.app(scope, replay, send)

    async def _upload(self, scope: Scope, receive: Receive, send: Send, check: UploadCheck) -> None:
        started = False

        async def receive_checked() -> Message:
            message = await receive()
            if message["type"] == "http.request" and not started:
                check.feed(message.get("body", b""))
            return message

        async def send_checked(message: Message) -> None:
            nonlocal started
            if check.problem is not None and not started:
                return  # the refusal below is sent instead
            started = True
            await send(message)

        try:
            await self.app(scope, receive_checked, send_checked)
        except Exception:
            if check.problem is None or started:
                raise
        if check.problem is not None and not started:
            await refuse(scope, send, 400, check.problem)


def _event_route(scope: Scope):
    """The match of an event route (group 1: the API name in the path, None for ``queue/join``)
    where the request is JSON, else None."""
    content_type = next((v for k, v in scope.get("headers", []) if k.lower() == b"content-type"), b"")
    if not content_type.split(b";")[0].strip().lower() == b"application/json":
        return None
    return _EVENT_ROUTE.fullmatch(_api_path(scope))


def _api_path(scope: Scope) -> str:
    """The request's path from ``/gradio_api/`` on (whatever root path the app is mounted under), or ""."""
    path = scope.get("path", "")
    start = path.find("/gradio_api/")
    return path[start:] if start >= 0 else ""


def _blocks(scope: Scope):
    """The ``gr.Blocks`` the Gradio app serving this request runs, or None (not a Gradio app)."""
    app = scope.get("app")
    return app.get_blocks() if hasattr(app, "get_blocks") else None


def stream_of_nothing(scope: Scope) -> str | None:
    """For a request for an event stream (``queue/data``, ``call/NAME/EVENT_ID``) whose session has no
    events in the app's queue: what it asked for, as the refusal says it; else None (also where the
    queue cannot be read: Gradio decides). Any other request is let through on its path alone."""
    path = _api_path(scope)
    call = _CALL_STREAM.fullmatch(path)
    if call is None and path.rstrip("/") != "/gradio_api/queue/data":
        return None
    queue = getattr(_blocks(scope), "_queue", None)
    pending = getattr(queue, "pending_messages_per_session", None)
    if pending is None:
        return None
    if call is not None:
        session, what = _session_of_event(queue, call.group(1)), f"event {call.group(1)[:40]!r}"
    else:
        sessions = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("session_hash", [])
        if len(sessions) != 1:
            return None  # none, or several: Gradio's own check answers
        session, what = sessions[0], f"session {sessions[0][:40]!r}"
    return None if session is None or session in pending else what


def _session_of_event(queue, event_id: str) -> str | None:
    """The session whose messages Gradio's ``call/NAME/EVENT_ID`` route streams (``routes.py``,
    ``simple_predict_get``): the event's, else the one still holding its id, else the id itself;
    None where the queue cannot be read."""
    events = getattr(queue, "event_ids_to_events", None)
    held = getattr(queue, "pending_event_ids_session", None)
    if events is None or held is None:
        return None
    event = events.get(event_id)
    if event is not None:
        return event.session_hash
    return next((session for session, ids in list(held.items()) if event_id in ids), event_id)


def multipart_boundary(headers: list[tuple[bytes, bytes]]) -> bytes | None:
    """The boundary of a ``multipart/form-data`` request, else ``None``."""
    content_type = next((v for k, v in headers if k.lower() == b"content-type"), b"")
    kind, options = parse_options_header(content_type)
    if kind != b"multipart/form-data":
        return None
    return options.get(b"boundary") or None


async def refuse(scope: Scope, send: Send, status: int, text: str, detail: bytes | None = None) -> None:
    """Answer ``status`` with ``text`` (one line, plain text) and log one line (the path escaped: a
    decoded ``%0a`` would otherwise start a forged log line)."""
    path = scope.get("path", "")
    shown = f" ({detail.decode('latin-1')!r})" if detail is not None else ""
    log.warning("refused %s %s with %d: %s%s", scope.get("method"),
                repr(path[:80])[1:-1] + ("..." if len(path) > 80 else ""), status, text, shown)
    body = (text + "\n").encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode()),
                            (b"cache-control", b"no-store")]})
    await send({"type": "http.response.body", "body": b"" if scope.get("method") == "HEAD" else body})


def app_kwargs() -> dict:
    """For ``demo.launch(app_kwargs=...)``: the guards in the app Gradio builds, from its first request."""
    return {"middleware": [Middleware(HttpGuards)]}


def install(app_or_blocks) -> None:
    """Put :class:`HttpGuards` in front of a Starlette/FastAPI app (one not started yet gets them as
    its outermost user middleware; a running one around its whole middleware stack), or in front of
    a launched ``gr.Blocks``'s server app. Installing twice does nothing more."""
    app = app_or_blocks
    if hasattr(app_or_blocks, "server_app") or hasattr(app_or_blocks, "is_running"):  # a gr.Blocks
        if not getattr(app_or_blocks, "is_running", False):
            raise RuntimeError("http_guards.install: launch the Blocks first (prevent_thread_lock=True), or pass "
                               "app_kwargs=http_guards.app_kwargs() to launch()")
        app = app_or_blocks.server_app
    if getattr(app, "iae_http_guards", False):
        return
    if app.middleware_stack is None:
        app.add_middleware(HttpGuards)
    else:
        app.middleware_stack = HttpGuards(app.middleware_stack)
    app.iae_http_guards = True
