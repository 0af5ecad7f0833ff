"""The one HTTP layer every API connector uses: timeouts, retries, rate limits, redaction.

- Connect and read timeouts on every call.
- Retries with exponential backoff and full jitter on timeouts, connection errors, 5xx and 429,
  honouring `Retry-After` and the Wattwatchers `X-RateLimit-*` reset headers.
- Other 4xx fail at once (401, 403, 404, ...): retrying a bad key only burns quota.
- A per-source limiter bounds concurrent calls and calls per second across all meters.
- Secrets never leave: URLs, log lines and exception messages are redacted, and the original
  `requests` exception is not chained (its text can carry the URL).
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import requests

from meterflow.common.errors import MeterflowError

log = logging.getLogger("meterflow.common.http")
_SECRET_PARAMS = re.compile(r"(api_?key|key|token|secret|password|signature)", re.IGNORECASE)
REDACTED = "***"


@dataclass(frozen=True)
class Caller:
    """Who is calling: named in every error and log line."""

    participant: str
    meter: str
    source: str
    block: str | None = None

    def __str__(self) -> str:
        block = f" (block {self.block})" if self.block else ""
        return f"{self.participant}/{self.meter} {self.source}{block}"


class SourceError(MeterflowError):
    """A source call failed; the message names participant, meter, source and block."""

    def __init__(self, caller: Caller, reason: str, status: int | None = None):
        self.caller, self.reason, self.status = caller, reason, status
        super().__init__(f"{caller}: {reason}")

    def __reduce__(self):  # rebuilt from its fields when it crosses to another process
        return type(self), (self.caller, self.reason, self.status)


class SourceRejected(SourceError):
    """The source refused the request (4xx other than 429): not retried."""


class SourceUnavailable(SourceError):
    """Retries ran out on timeouts, 5xx or 429."""


class SourceDeferred(SourceError):
    """The source's quota is used up for now; the hours stay due, nothing failed."""


class Limiter:
    """At most `concurrency` calls in flight and `per_second` calls started per second."""

    def __init__(self, concurrency: int = 4, per_second: float = 5.0):
        self._slots = threading.BoundedSemaphore(concurrency)
        self._interval = 1.0 / per_second
        self._lock = threading.Lock()
        self._next = 0.0
        self._paused_until = 0.0

    def pause(self, seconds: float) -> None:
        """Hold every caller of this source (the API said its per-second budget is spent)."""
        with self._lock:
            self._paused_until = max(self._paused_until, time.monotonic() + seconds)

    def __enter__(self) -> Limiter:
        self._slots.acquire()
        with self._lock:
            start = max(time.monotonic(), self._next, self._paused_until)
            self._next = start + self._interval
        time.sleep(max(0.0, start - time.monotonic()))
        return self

    def __exit__(self, *exc) -> None:
        self._slots.release()


_LIMITERS: dict[str, Limiter] = {}
_LIMITERS_LOCK = threading.Lock()


def limiter_for(source: str, concurrency: int = 4, per_second: float = 5.0) -> Limiter:
    """The process-wide limiter of a source, shared by every meter that calls it."""
    with _LIMITERS_LOCK:
        return _LIMITERS.setdefault(source, Limiter(concurrency, per_second))


class HttpClient:
    """GETs against one source on behalf of one caller."""

    def __init__(
        self,
        caller: Caller,
        *,
        secrets: Iterable[str] = (),
        headers: dict[str, str] | None = None,
        timeout: tuple[float, float] = (5.0, 30.0),
        attempts: int = 5,
        backoff: float = 0.5,
        max_wait: float = 60.0,
        limiter: Limiter | None = None,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.caller = caller
        self._secrets = [s for s in secrets if s]
        self._headers = headers or {}
        self._timeout, self._attempts = timeout, attempts
        self._backoff, self._max_wait = backoff, max_wait
        self._limiter = limiter or limiter_for(caller.source)
        self._session = session or requests.Session()
        self._sleep = sleep
        self.calls = 0

    def add_secret(self, secret: str) -> None:
        """A secret learnt during the session (e.g. a token): redacted from now on."""
        self._secrets.append(secret)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text

    def redact_url(self, url: str) -> str:
        """The URL with secret-looking query parameters and any known secret blanked."""
        parts = urlsplit(url)
        query = [
            (k, REDACTED if _SECRET_PARAMS.search(k) else v)
            for k, v in parse_qsl(parts.query, keep_blank_values=True)
        ]
        return self.redact(urlunsplit(parts._replace(query=urlencode(query, safe=":,*"))))

    def get(
        self,
        url: str,
        params: dict | None = None,
        ok: Iterable[int] = (200,),
        defer_if: Callable[[requests.Response], bool] | None = None,
    ) -> requests.Response:
        """GET with retries; return the response when its status is in `ok`.

        `defer_if` recognises a quota answer (e.g. a daily limit) that retrying cannot fix.
        """
        return self.request("GET", url, params=params, ok=ok, defer_if=defer_if)

    def request(
        self,
        method: str,
        url: str,
        *,
        params: dict | None = None,
        json: Any = None,
        headers: dict[str, str] | None = None,
        ok: Iterable[int] = (200,),
        defer_if: Callable[[requests.Response], bool] | None = None,
        attempts: int | None = None,
    ) -> requests.Response:
        """Any method with retries on 429, 5xx and timeouts (`attempts=1`: the caller decides,
        e.g. when a retry could repeat a submission the server already accepted)."""
        ok, attempts = set(ok), attempts or self._attempts
        shown = self.redact_url(requests.Request(method, url, params=params).prepare().url)
        for attempt in range(1, attempts + 1):
            wait, status = None, None
            try:
                with self._limiter:
                    self.calls += 1
                    response = self._session.request(
                        method,
                        url,
                        params=params,
                        json=json,
                        headers={**self._headers, **(headers or {})},
                        timeout=self._timeout,
                    )
            except (requests.Timeout, requests.ConnectionError) as exc:
                problem = f"{type(exc).__name__} calling {method} {shown}"
            else:
                self._respect_rate_headers(response)
                if response.status_code in ok:
                    return response
                status = response.status_code
                problem = f"HTTP {status} from {shown}: {self._message(response)}"
                if defer_if is not None and defer_if(response):
                    raise SourceDeferred(self.caller, problem, response.status_code) from None
                if response.status_code != 429 and response.status_code < 500:
                    raise SourceRejected(self.caller, problem, response.status_code) from None
                wait = _retry_after(response)
            if attempt == attempts:
                raise SourceUnavailable(
                    self.caller, f"{problem} (gave up after {attempt} tries)", status
                )
            if wait is None:
                wait = random.uniform(0, min(self._max_wait, self._backoff * 2**attempt))
            wait = min(wait, self._max_wait)
            log.warning("%s: %s; retry %d in %.1f s", self.caller, problem, attempt, wait)
            self._sleep(wait)
        raise AssertionError("unreachable")

    def _respect_rate_headers(self, response: requests.Response) -> None:
        remaining = response.headers.get("X-RateLimit-TpsRemaining")
        reset = response.headers.get("X-RateLimit-TpsReset")
        if remaining is not None and reset is not None and float(remaining) <= 0:
            self._limiter.pause(float(reset))

    def _message(self, response: requests.Response) -> str:
        """The API's own error message, if the body has one (redacted, shortened)."""
        try:
            body = response.json()
        except ValueError:
            return self.redact(response.text[:200]) or response.reason
        if isinstance(body, dict):
            status = body.get("response_status")
            error = body.get("error")  # Electricity Maps: {"error": "..."}
            text = (
                body.get("message")
                or body.get("reason")
                or (status or {}).get("message")
                or (error if isinstance(error, str) else None)
            )
            return self.redact(str(text or body)[:300])
        return self.redact(str(body)[:300])


def _retry_after(response: requests.Response) -> float | None:
    """Seconds the server asked us to wait, from Retry-After or rate-limit reset headers."""
    for header in ("Retry-After", "X-RateLimit-TpsReset", "X-RateLimit-Reset"):
        value = response.headers.get(header)
        if value:
            try:
                return max(0.0, float(value))
            except ValueError:
                continue
    return None
