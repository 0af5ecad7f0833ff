"""Shared machinery: a loopback HTTP server with a request log, a fault queue and seeded data.

Subclasses implement `handle` (request -> `Response`, or raise `ApiError`) and `error_body` (the
API's error shape), so each emulator only describes its API, never the HTTP plumbing.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from http.client import responses
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, Self
from urllib.parse import parse_qs, unquote, urlsplit

_INTEGER = re.compile(r"-?[0-9]+")


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server saw it; query keeps the first value of each parameter."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes = b""

    def json(self) -> Any:
        """The JSON body, or ApiError 400 if it is not JSON."""
        try:
            return json.loads(self.body or b"null")
        except ValueError:
            raise ApiError(400, "Body is not valid JSON") from None

    def header(self, name: str) -> str | None:
        """Header lookup ignoring case, as HTTP does."""
        wanted = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == wanted), None)

    def bearer(self) -> str | None:
        """The token of an `Authorization: Bearer <token>` header, if any."""
        scheme, _, token = (self.header("Authorization") or "").partition(" ")
        return (token.strip() or None) if scheme.lower() == "bearer" else None


@dataclass(frozen=True)
class Response:
    """A JSON response; `body=None` sends no body at all (for 204)."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


class ApiError(Exception):
    """Raised by a route to answer `status` with the emulator's own error body."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class _Fault:
    status: int
    remaining: int
    path: str
    retry_after: int | None
    body: dict | None
    delay: float
    headers: dict[str, str]


def phrase(status: int) -> str:
    """The standard reason phrase, e.g. 'Not Found' (a fallback for unusual statuses)."""
    return responses.get(status, "Error")


def integer(text: str) -> int | None:
    """`text` as an int if it is a plain decimal integer (int() would also take ' 1_0')."""
    return int(text) if _INTEGER.fullmatch(text) else None


def noise(*parts: object) -> float:
    """A uniform value in [0, 1) fixed by `parts`, so data never depends on request order."""
    digest = hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def solar_time(unix_seconds: float, longitude: float) -> tuple[int, float]:
    """(day number, hour 0..24) of local mean solar time, so daily shapes follow the sun."""
    local = unix_seconds + longitude / 15 * 3600
    return int(local // 86400), local % 86400 / 3600


def daylight(solar_hour: float) -> float:
    """A 0..1 bell between 06:00 and 18:00 solar time, zero at night."""
    return max(0.0, math.sin(math.pi * (solar_hour - 6) / 12))


class Emulator:
    """A small HTTP API on 127.0.0.1 (random port), served from a daemon thread."""

    fault_messages: ClassVar[dict[int, str]] = {}
    methods: ClassVar[frozenset[str]] = frozenset({"GET"})

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._faults: list[_Fault] = []
        self._server: _Server | None = None

    def start(self) -> str:
        """Start serving and return the base URL, e.g. http://127.0.0.1:54321."""
        if self._server is not None:
            raise RuntimeError("emulator already started")
        self._server = _Server(self)
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("emulator not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far, faulted ones included (a snapshot)."""
        with self._lock:
            return list(self._requests)

    def inject(
        self,
        status: int,
        *,
        times: int = 1,
        path: str = "",
        retry_after: int | None = None,
        body: dict | None = None,
        delay: float = 0.0,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Fail (or with status 200 and a delay, just slow down) the next `times` requests whose
        path starts with `path`; body defaults to the API's own error body for `status`."""
        if times < 1:
            raise ValueError("times must be at least 1")
        fault = _Fault(status, times, path, retry_after, body, delay, dict(headers or {}))
        with self._lock:
            self._faults.append(fault)

    def handle(self, request: RecordedRequest) -> Response:
        raise NotImplementedError

    def error_body(self, status: int, message: str) -> Any:
        raise NotImplementedError

    def serve(self, request: RecordedRequest) -> Response:
        """Record, apply a queued fault if one matches, else route to `handle`."""
        with self._lock:
            self._requests.append(request)
            fault = next((f for f in self._faults if request.path.startswith(f.path)), None)
            if fault is not None:
                fault.remaining -= 1
                if fault.remaining == 0:
                    self._faults.remove(fault)
        if fault is not None:
            time.sleep(fault.delay)
            if fault.status != 200:
                return Response(fault.status, self._fault_body(fault), self._fault_headers(fault))
        try:
            if request.method not in self.methods:
                raise ApiError(405, "Method not allowed")
            response = self.handle(request)
        except ApiError as error:
            response = Response(error.status, self.error_body(error.status, error.message))
        if fault is not None:
            response = replace(response, headers={**response.headers, **fault.headers})
        return response

    def _fault_body(self, fault: _Fault) -> Any:
        if fault.body is not None:
            return fault.body
        message = self.fault_messages.get(fault.status, phrase(fault.status))
        return self.error_body(fault.status, message)

    @staticmethod
    def _fault_headers(fault: _Fault) -> dict[str, str]:
        if fault.retry_after is None:
            return fault.headers
        return {"Retry-After": str(fault.retry_after), **fault.headers}


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, emulator: Emulator) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.emulator = emulator

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up (e.g. timed out on a delayed reply) is not a server error."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def _dispatch(self) -> None:
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        headers = dict(self.headers.items())
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        request = RecordedRequest(self.command, unquote(url.path), query, headers, body)
        self._send(self.server.emulator.serve(request))

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch

    def _send(self, response: Response) -> None:
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        if response.body is None:
            self.end_headers()
            return
        data = json.dumps(response.body, ensure_ascii=False).encode()
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: test output should show failures, not access logs."""
