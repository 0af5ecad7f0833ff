"""A Hedera Guardian API on loopback (from ../shared/reference/apis.md section 3).

- `POST /api/v1/accounts/login` {username, password} -> {username, did, role, refreshToken}
- `POST /api/v1/accounts/access-token` {refreshToken} -> 201 {accessToken}: a JWT-shaped token
  valid for `token_seconds` (60 by default, as Guardian)
- `GET /api/v1/accounts/session` with Bearer -> the user, 401 without
- `POST /api/v1/external` {owner, policyTag, document} -> 200 `true`, also when no policy has that
  tag (as Guardian does, issue #6864); documents for a known policy are stored
- `GET /api/v1/policies/{policyId}/tag/{blockTag}/blocks` with Bearer -> the block's data, in the
  shape of Guardian's policy engine (policy-service/src/policy-engine/blocks/documents-source.ts,
  pagination-addon.ts, helpers/decorators/container-block.ts; see docs/mrv.md). The policy has:
  - `mrv_source`: an interfaceDocumentsSourceBlock over the VC documents the policy received, with
    a paginationAddon: {"data": [<VcDocument row: id, owner, policyId, option, document: <VC>>],
    "blocks": [], "commonAddons": [{"id", "uiMetaData", "blockType": "paginationAddon"}],
    "fields": [...], "viewHistory": false}. `page` and `itemsPerPage` (both, or neither) set the
    pagination state, which Guardian keeps per user: a request without them gets the page last set
    (10 items from page 0 at first);
  - `mrv_reports`: a documents block whose source holds nothing (its `data` is always []);
  - `mrv_page`: the interfaceContainerBlock around them: {uiMetaData, id, blockType, blocks};
  - any other tag: 503 "Block Unavailable", as Guardian answers for a tag it does not know.

Faults: `inject` (from the base) for 500s; `stall_after_accept(seconds)` stores the next
document and then waits before answering (a client timeout after Guardian accepted it);
`expire_tokens()` ends every access token now; `stop_listing()` makes `mrv_source` list nothing
from now on (as if someone changed its filters). `received` records every document, in order.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any, ClassVar

from emulators.base import ApiError, Emulator, RecordedRequest, Response, integer

PAGINATION_ADDON = {"id": "7c1d4e0a-pagination", "uiMetaData": {}, "blockType": "paginationAddon"}
FIRST_PAGE = (0, 10)  # Guardian's paginationAddon state before a user sets one: page, itemsPerPage
DOCUMENTS_BLOCK = "interfaceDocumentsSourceBlock"
MRV_PAGE = {  # what a container block's getData returns: its uiMetaData, id, type, active children
    "uiMetaData": {"type": "tabs"},
    "id": "3f0c9d2e-mrv-page",
    "blockType": "interfaceContainerBlock",
    "blocks": [
        {
            "uiMetaData": {"title": t},
            "content": DOCUMENTS_BLOCK,
            "blockType": DOCUMENTS_BLOCK,
            "id": t,
        }
        for t in ("mrv_source", "mrv_reports")
    ],
}


@dataclass(frozen=True)
class Received:
    policy_tag: str
    owner: str
    document: dict
    matched: bool


class GuardianEmulator(Emulator):
    methods = frozenset({"GET", "POST"})
    fault_messages: ClassVar[dict[int, str]] = {500: "Internal Server Error"}

    def __init__(
        self,
        users: dict[str, str],
        policies: dict[str, str],
        token_seconds: float = 60.0,
    ) -> None:
        """`users` maps username to password; `policies` maps policy tag to policy id."""
        super().__init__()
        self.users = dict(users)
        self.policies = dict(policies)
        self.token_seconds = token_seconds
        self._refresh: dict[str, str] = {}
        self._access: dict[str, float] = {}
        self._received: list[Received] = []
        self._stall = 0.0
        self._listing = True
        self._pages: dict[str, tuple[int, int]] = {}
        self._state = threading.Lock()

    @property
    def received(self) -> list[Received]:
        with self._state:
            return list(self._received)

    def documents(self, policy_tag: str | None = None) -> list[dict]:
        """Documents a policy stored (all policies when no tag is given)."""
        return [
            r.document
            for r in self.received
            if r.matched and (policy_tag is None or r.policy_tag == policy_tag)
        ]

    def stall_after_accept(self, seconds: float) -> None:
        with self._state:
            self._stall = seconds

    def expire_tokens(self) -> None:
        with self._state:
            self._access = {token: 0.0 for token in self._access}

    def stop_listing(self) -> None:
        with self._state:
            self._listing = False

    def error_body(self, status: int, message: str) -> dict[str, Any]:
        return {"code": status, "message": message}

    def handle(self, request: RecordedRequest) -> Response:
        match (request.method, request.path.strip("/").split("/")):
            case ("POST", ["api", "v1", "accounts", "login"]):
                return self._login(request.json() or {})
            case ("POST", ["api", "v1", "accounts", "access-token"]):
                return self._access_token(request.json() or {})
            case ("GET", ["api", "v1", "accounts", "session"]):
                return Response(200, {"username": self._user(request)})
            case ("POST", ["api", "v1", "external"]):
                return self._external(request.json() or {})
            case ("GET", ["api", "v1", "policies", policy_id, "tag", block, "blocks"]):
                return self._block_data(self._user(request), policy_id, block, request.query)
        raise ApiError(404, f"Cannot {request.method} {request.path}")

    def _login(self, body: dict) -> Response:
        username = body.get("username")
        if username not in self.users or self.users[username] != body.get("password"):
            raise ApiError(401, "Unauthorized")
        token = secrets.token_urlsafe(24)
        with self._state:
            self._refresh[token] = username
        did = f"did:hedera:testnet:{username}_0.0.1001"
        return Response(
            200, {"username": username, "did": did, "role": "USER", "refreshToken": token}
        )

    def _access_token(self, body: dict) -> Response:
        with self._state:
            username = self._refresh.get(body.get("refreshToken"))
        if username is None:
            raise ApiError(401, "Unauthorized")
        expires = time.time() + self.token_seconds
        token = _jwt({"sub": username, "exp": int(expires)})
        with self._state:
            self._access[token] = expires
        return Response(201, {"accessToken": token})

    def _user(self, request: RecordedRequest) -> str:
        token = request.bearer()
        with self._state:
            expires = self._access.get(token)
        if expires is None or expires <= time.time():
            raise ApiError(401, "Unauthorized")
        return json.loads(_unb64(token.split(".")[1]))["sub"]

    def _external(self, body: dict) -> Response:
        missing = [f for f in ("owner", "policyTag", "document") if not body.get(f)]
        if missing:
            raise ApiError(422, f"{', '.join(missing)} should not be empty")
        if not isinstance(body["document"], dict) or "credentialSubject" not in body["document"]:
            raise ApiError(422, "document must be a verifiable credential")
        matched = body["policyTag"] in self.policies
        with self._state:
            self._received.append(
                Received(body["policyTag"], body["owner"], body["document"], matched)
            )
            stall, self._stall = self._stall, 0.0
        time.sleep(stall)
        return Response(200, True)

    def _block_data(self, user: str, policy_id: str, tag: str, query: dict[str, str]) -> Response:
        tags = [t for t, pid in self.policies.items() if pid == policy_id]
        if not tags:
            raise ApiError(404, "Policy does not exist.")
        if tag == "mrv_page":
            return Response(200, MRV_PAGE)
        if tag not in ("mrv_source", "mrv_reports"):
            raise ApiError(503, "Block Unavailable")
        page, per_page = self._page(user, query)
        with self._state:
            listing = self._listing and tag == "mrv_source"
            rows = [
                {
                    "id": f"{n:024x}",
                    "owner": r.owner,
                    "policyId": policy_id,
                    "option": {"status": "NEW"},
                    "document": r.document,
                    "__sourceTag__": "mrv_documents",
                }
                for n, r in enumerate(self._received)
                if listing and r.matched and r.policy_tag in tags
            ]
        return Response(
            200,
            {
                "data": rows[page * per_page : (page + 1) * per_page],
                "blocks": [],
                "commonAddons": [PAGINATION_ADDON],
                "fields": [{"name": "document.id", "title": "Document", "type": "text"}],
                "viewHistory": False,
            },
        )

    def _page(self, user: str, query: dict[str, str]) -> tuple[int, int]:
        """Both `page` and `itemsPerPage` set the user's pagination state; else it is kept."""
        page, per_page = integer(query.get("page", "")), integer(query.get("itemsPerPage", ""))
        with self._state:
            if page is not None and per_page is not None:
                self._pages[user] = (page, per_page)
            return self._pages.get(user, FIRST_PAGE)


def _jwt(claims: dict) -> str:
    header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return f"{header}.{_b64(json.dumps(claims).encode())}.{secrets.token_urlsafe(16)}"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
