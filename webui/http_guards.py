"""HTTP guards in front of the Gradio app: two kinds of request that Gradio answers with a 500 (and a
traceback in the log) are answered 416 and 400 instead, in one plain line, with one log line each.

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

Gradio 6.31.0, the newest release on PyPI when this was written, has both faults.
``tests/test_http_guards.py`` checks both against a real Gradio server, and that an unguarded one still
fails (so the guards can go once Gradio mends them).

Use: ``demo.launch(..., app_kwargs=app_kwargs())`` (in place from the first request), or
:func:`install` on an app that is not started yet or on a launched ``gr.Blocks``.
"""
from __future__ import annotations

import logging
import re
from typing import Any, Awaitable, Callable

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


class HttpGuards:
    """ASGI middleware: the Range and upload guards of this module's docstring; every other request
    passes through untouched."""

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
        elif method == "POST" and scope.get("path", "").rstrip("/").endswith("/upload"):
            boundary = multipart_boundary(headers)
            if boundary:
                return await self._upload(scope, receive, send, UploadCheck(boundary))
        await self.app(scope, receive, send)

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


def multipart_boundary(headers: list[tuple[bytes, bytes]]) -> bytes | None:
    """The boundary of a ``multipart/form-data`` request, else ``None``."""
    content_type = next((v for k, v in headers if k.lower() == b"content-type"), b"")
    kind, options = parse_options_header(content_type)
    if kind != b"multipart/form-data":
        return None
    return options.get(b"boundary") or None


async def refuse(scope: Scope, send: Send, status: int, text: str, detail: bytes | None = None) -> None:
    """Answer ``status`` with ``text`` (one line, plain text) and log one line."""
    path = scope.get("path", "")
    shown = f" ({detail.decode('latin-1')!r})" if detail is not None else ""
    log.warning("refused %s %s with %d: %s%s", scope.get("method"), path[:80] + ("..." if len(path) > 80 else ""),
                status, text, shown)
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
