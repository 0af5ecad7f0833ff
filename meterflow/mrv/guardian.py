"""A client for a Guardian instance: login, short-lived access tokens, external documents and the
read-back that confirms them (Guardian answers `true` even when no policy took the document).

The read-back is a documents block of the policy (`interfaceDocumentsSourceBlock`). Guardian's
policy engine answers `GET /policies/{policyId}/tag/{tag}/blocks` for it with `{"data":
[<VcDocument row>], "blocks": [...], "commonAddons": [...], ...}`, each row holding the VC as
`document` (its id at `document.id`); a `paginationAddon` among `commonAddons` means `data` is one
page, chosen by `page` and `itemsPerPage`. Anything else (another block type, an unknown tag, a
refusal) is `Unreadable`: it proves neither that a document is there nor that it is not (see
docs/mrv.md for the Guardian source files this follows).
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from itertools import count

from meterflow.common.http import Caller, HttpClient, Limiter, SourceRejected, SourceUnavailable
from meterflow.mrv.document import Policy
from meterflow.mrv.store import Readback

# Refresh the access token this long before it expires (Guardian's default lifetime is 60 s).
TOKEN_MARGIN_S = 10.0
DEFAULT_TOKEN_S = 60.0
PAGE_SIZE = 100  # read-back documents per page (Guardian's own default page is 10)


@dataclass(frozen=True)
class Listing:
    """The id of every VC document the read-back block lists, across all its pages."""

    document_ids: frozenset[str]


@dataclass(frozen=True)
class Unreadable:
    """A read-back answer that is not a documents block's list: it proves nothing either way."""

    why: str


class GuardianClient:
    def __init__(
        self,
        policy: Policy,
        caller: Caller,
        *,
        timeout: tuple[float, float] = (5.0, 20.0),
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        page_size: int = PAGE_SIZE,
    ):
        self.policy = policy
        base = policy.base_url.rstrip("/")
        self.api = base + "/api/v1"
        self.readback = (
            Readback(base, policy.policy_id, policy.readback_block)
            if policy.readback_block
            else None
        )
        self.page_size = page_size
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

    def sign_in(self) -> None:
        """Hold a valid access token now: a Guardian that cannot be reached fails here, before
        a record is marked as being sent."""
        self._bearer()

    def send(self, document: dict) -> None:
        """POST the document once (no automatic retry: the caller reconciles before retrying)."""
        body = {
            "owner": self.policy.owner_did,
            "policyTag": self.policy.policy_tag,
            "document": document,
        }
        self._authed("POST", f"{self.api}/external", json=body, ok=(200, 201), attempts=1)

    def read_back(self) -> Listing | Unreadable | None:
        """What the policy's read-back block lists (every page); None when there is none.
        Timeouts and 5xx other than Guardian's "Block Unavailable" raise: ask again later."""
        if self.readback is None:
            return None
        seen: set[str] = set()
        for page in count():
            parsed = self._read_page(page)
            if isinstance(parsed, Unreadable):
                return parsed
            ids, paged = parsed
            if paged and ids and seen.issuperset(ids):
                return Unreadable(f"page {page} repeats earlier ones: the block ignores paging")
            seen.update(ids)
            if not paged or not ids:
                return Listing(frozenset(seen))
        raise AssertionError("unreachable")

    def _read_page(self, page: int) -> tuple[list[str], bool] | Unreadable:
        block = self.readback.block
        url = f"{self.api}/policies/{self.readback.policy_id}/tag/{block}/blocks"
        try:
            params = {"page": page, "itemsPerPage": self.page_size}
            response = self._authed("GET", url, params=params)
        except SourceRejected as exc:
            return Unreadable(f"Guardian refused the read-back: {exc.reason}")
        except SourceUnavailable as exc:
            if exc.status == 503 and "Block Unavailable" in exc.reason:
                return Unreadable(
                    f"Guardian has no block {block!r} this account may read (503 Block Unavailable)"
                )
            raise
        try:
            body = response.json()
        except ValueError:
            return Unreadable("the answer is not JSON")
        return parse_documents_page(body)

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


def parse_documents_page(body: object) -> tuple[list[str], bool] | Unreadable:
    """(VC ids in `data`, whether the block pages) from a documents block's answer."""
    if not (
        isinstance(body, dict)
        and isinstance(body.get("data"), list)
        and isinstance(body.get("commonAddons"), list)
    ):
        return Unreadable(f"the answer is not a documents block's ({_shape(body)})")
    ids = []
    for n, row in enumerate(body["data"]):
        vc = row.get("document") if isinstance(row, dict) else None
        vc_id = vc.get("id") if isinstance(vc, dict) else None
        if not isinstance(vc_id, str):
            return Unreadable(f"data[{n}] has no document.id: not a list of VC documents")
        ids.append(vc_id)
    paged = any(
        isinstance(addon, dict) and addon.get("blockType") == "paginationAddon"
        for addon in body["commonAddons"]
    )
    return ids, paged


def _shape(body: object) -> str:
    """A short description of an answer, for the reason a read-back is not trusted."""
    if isinstance(body, dict):
        keys = sorted(body)
        shown = ", ".join(keys[:8]) + (", ..." if len(keys) > 8 else "")
        kind = f" ({body['blockType']})" if isinstance(body.get("blockType"), str) else ""
        return f"an object{kind} with keys {shown}" if keys else "an empty object"
    return "null" if body is None else f"a JSON {type(body).__name__}"


def _lifetime(token: str, now: float) -> float:
    """Seconds until the JWT's `exp`, or Guardian's default when it is not a readable JWT."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return float(claims["exp"]) - now
    except (IndexError, ValueError, KeyError, TypeError):
        return DEFAULT_TOKEN_S
