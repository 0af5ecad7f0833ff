"""A Hedera Guardian API on loopback (from ../shared/reference/apis.md section 3).

- `POST /api/v1/accounts/login` {username, password} -> {username, did, role, refreshToken}
- `POST /api/v1/accounts/access-token` {refreshToken} -> 201 {accessToken}: a JWT-shaped token
  valid for `token_seconds` (60 by default, as Guardian)
- `GET /api/v1/accounts/session` with Bearer -> the user, 401 without
- `POST /api/v1/external` {owner, policyTag, document} -> 200 `true`, also when no policy has that
  tag (as Guardian does, issue #6864); documents for a known policy are stored
- `GET /api/v1/policies/{policyId}/tag/{blockTag}/blocks` with Bearer -> {"data": [{"document"}]}:
  the read-back of the documents the policy received (only for `readback_block`)

Faults: `inject` (from the base) for 500s; `stall_after_accept(seconds)` stores the next
document and then waits before answering (a client timeout after Guardian accepted it);
`expire_tokens()` ends every access token now. `received` records every document, in order.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any, ClassVar

from emulators.base import ApiError, Emulator, RecordedRequest, Response


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
        readback_block: str | None = "mrv_source",
        token_seconds: float = 60.0,
    ) -> None:
        """`users` maps username to password; `policies` maps policy tag to policy id."""
        super().__init__()
        self.users = dict(users)
        self.policies = dict(policies)
        self.readback_block = readback_block
        self.token_seconds = token_seconds
        self._refresh: dict[str, str] = {}
        self._access: dict[str, float] = {}
        self._received: list[Received] = []
        self._stall = 0.0
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
                self._user(request)
                return self._readback(policy_id, block)
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

    def _readback(self, policy_id: str, block: str) -> Response:
        tags = [tag for tag, pid in self.policies.items() if pid == policy_id]
        if not tags or block != self.readback_block:
            raise ApiError(404, f"Block {block} not found in policy {policy_id}")
        data = [{"document": d} for tag in tags for d in self.documents(tag)]
        return Response(200, {"data": data})


def _jwt(claims: dict) -> str:
    header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return f"{header}.{_b64(json.dumps(claims).encode())}.{secrets.token_urlsafe(16)}"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
