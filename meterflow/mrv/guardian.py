"""A client for a Guardian instance: login, short-lived access tokens, external documents and the
read-back that confirms them (Guardian answers `true` even when no policy took the document)."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable

from meterflow.http import Caller, HttpClient, Limiter, SourceRejected
from meterflow.mrv.document import Policy

# Refresh the access token this long before it expires (Guardian's default lifetime is 60 s).
TOKEN_MARGIN_S = 10.0
DEFAULT_TOKEN_S = 60.0


class GuardianClient:
    def __init__(
        self,
        policy: Policy,
        caller: Caller,
        *,
        timeout: tuple[float, float] = (5.0, 20.0),
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ):
        self.policy = policy
        self.api = policy.base_url.rstrip("/") + "/api/v1"
        self.http = HttpClient(
            caller,
            secrets=[policy.password, policy.device_key],
            timeout=timeout,
            attempts=4,
            backoff=0.5,
            max_wait=10.0,
            limiter=Limiter(concurrency=4, per_second=20.0),
            sleep=sleep,
        )
        self._clock = clock
        self._refresh_token: str | None = None
        self._access_token: str | None = None
        self._expires = 0.0

    def send(self, document: dict) -> None:
        """POST the document once (no automatic retry: the caller reconciles before retrying)."""
        body = {
            "owner": self.policy.owner_did,
            "policyTag": self.policy.policy_tag,
            "document": document,
        }
        self._authed("POST", f"{self.api}/external", json=body, ok=(200, 201), attempts=1)

    def delivered(self, document_id: str) -> bool | None:
        """Whether the policy holds the document; None when the policy offers no read-back."""
        if not self.policy.readback_block:
            return None
        url = f"{self.api}/policies/{self.policy.policy_id}/tag/{self.policy.readback_block}/blocks"
        body = self._authed("GET", url).json()
        documents = body.get("data", []) if isinstance(body, dict) else body
        return any((d.get("document") or {}).get("id") == document_id for d in documents)

    def _authed(self, method: str, url: str, **kwargs):
        for attempt in (1, 2):
            try:
                return self.http.request(method, url, headers=self._bearer(), **kwargs)
            except SourceRejected as exc:
                if exc.status != 401 or attempt == 2:
                    raise
                self._access_token = None  # expired early or revoked: get a new one, once

    def _bearer(self) -> dict[str, str]:
        if self._access_token is None or self._clock() > self._expires - TOKEN_MARGIN_S:
            self._new_access_token()
        return {"Authorization": f"Bearer {self._access_token}"}

    def _new_access_token(self) -> None:
        for attempt in (1, 2):
            if self._refresh_token is None:
                self._login()
            try:
                response = self.http.request(
                    "POST",
                    f"{self.api}/accounts/access-token",
                    json={"refreshToken": self._refresh_token},
                    ok=(200, 201),
                )
                break
            except SourceRejected as exc:
                if exc.status != 401 or attempt == 2:
                    raise
                self._refresh_token = None  # the refresh token itself expired: log in again
        token = response.json()["accessToken"]
        self.http.add_secret(token)
        self._access_token = token
        self._expires = self._clock() + _lifetime(token, self._clock())

    def _login(self) -> None:
        response = self.http.request(
            "POST",
            f"{self.api}/accounts/login",
            json={"username": self.policy.username, "password": self.policy.password},
        )
        self._refresh_token = response.json()["refreshToken"]
        self.http.add_secret(self._refresh_token)


def _lifetime(token: str, now: float) -> float:
    """Seconds until the JWT's `exp`, or Guardian's default when it is not a readable JWT."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return float(claims["exp"]) - now
    except (IndexError, ValueError, KeyError, TypeError):
        return DEFAULT_TOKEN_S
