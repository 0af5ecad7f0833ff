"""An OpenID Connect issuer on loopback, as Google's (or any) is seen by a relying party.

- `GET /.well-known/openid-configuration`: the discovery document.
- `GET /jwks`: the issuer's RSA public keys (`kid`, `n`, `e`).
- `GET /authorize?response_type=code&client_id&redirect_uri&state&nonce&code_challenge
  &code_challenge_method=S256`: signs in whoever `sign_in_as` named (the person at the
  browser) and redirects to `redirect_uri?code=..&state=..`; an unknown client or redirect URI
  is refused, as real issuers do.
- `POST /token` (form: grant_type=authorization_code, code, redirect_uri, client_id,
  client_secret, code_verifier): a code once, for the client and redirect URI it was issued to,
  with the PKCE verifier whose S256 is the challenge -> {id_token, access_token}.

ID tokens are RS256 JWTs with iss, aud, sub, email, groups, nonce, iat and exp. `mint` makes
one with any claims changed or signed by another key, for tests of what must be refused.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
import time
from typing import Any
from urllib.parse import parse_qs, urlencode

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from emulators.base import ApiError, Emulator, RecordedRequest, Response


class OidcIssuer(Emulator):
    methods = frozenset({"GET", "POST"})

    def __init__(self) -> None:
        super().__init__()
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = secrets.token_hex(8)
        self._clients: dict[str, tuple[str, str]] = {}  # client id -> (secret, redirect uri)
        self._person: dict[str, Any] | None = None
        self._codes: dict[str, dict[str, Any]] = {}
        self._state = threading.Lock()

    def register_client(self, client_id: str, secret: str, redirect_uri: str) -> None:
        with self._state:
            self._clients[client_id] = (secret, redirect_uri)

    def sign_in_as(self, email: str, groups: list[str]) -> None:
        """The person who will be at the browser when the next sign-in reaches /authorize."""
        with self._state:
            self._person = {"sub": hashlib.sha256(email.encode()).hexdigest()[:21], "email": email}
            self._person["groups"] = list(groups)

    def mint(
        self, audience: str, key: rsa.RSAPrivateKey | None = None, kid: str | None = None, **claims
    ) -> str:
        """An ID token for the signed-in person; `claims` override or add (e.g. exp, iss)."""
        now = int(time.time())
        body = {
            "iss": self.url,
            "aud": audience,
            "iat": now,
            "exp": now + 3600,
            "email_verified": True,
            **(self._person or {}),
            **claims,
        }
        body = {k: v for k, v in body.items() if v is not None}
        return jwt.encode(body, key or self.key, "RS256", headers={"kid": kid or self.kid})

    def handle(self, request: RecordedRequest) -> Response:
        if request.path == "/.well-known/openid-configuration":
            return Response(200, self._discovery())
        if request.path == "/jwks":
            public = jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
            return Response(
                200, {"keys": [{**public, "kid": self.kid, "use": "sig", "alg": "RS256"}]}
            )
        if request.path == "/authorize" and request.method == "GET":
            return self._authorize(request.query)
        if request.path == "/token" and request.method == "POST":
            form = {k: v[0] for k, v in parse_qs(request.body.decode()).items()}
            return Response(200, self._token(form))
        raise ApiError(404, f"Cannot {request.method} {request.path}")

    def error_body(self, status: int, message: str) -> dict[str, Any]:
        return {"error": "invalid_request", "error_description": message}

    def _discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.url,
            "authorization_endpoint": f"{self.url}/authorize",
            "token_endpoint": f"{self.url}/token",
            "jwks_uri": f"{self.url}/jwks",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "code_challenge_methods_supported": ["S256"],
        }

    def _authorize(self, query: dict[str, str]) -> Response:
        with self._state:
            client = self._clients.get(query.get("client_id", ""))
            person = self._person
        if client is None or query.get("redirect_uri") != client[1]:
            raise ApiError(400, "unknown client or redirect_uri")
        if query.get("response_type") != "code" or query.get("code_challenge_method") != "S256":
            raise ApiError(400, "only response_type=code with S256 PKCE")
        if person is None:
            raise ApiError(401, "nobody is signed in at this browser")
        code = secrets.token_urlsafe(24)
        with self._state:
            self._codes[code] = {**query, "person": person}
        target = (
            f"{query['redirect_uri']}?{urlencode({'code': code, 'state': query.get('state', '')})}"
        )
        return Response(302, None, {"Location": target})

    def _token(self, form: dict[str, str]) -> dict[str, Any]:
        with self._state:
            issued = self._codes.pop(form.get("code", ""), None)
            client = self._clients.get(form.get("client_id", ""))
        if issued is None or client is None or issued["client_id"] != form.get("client_id"):
            raise ApiError(400, "invalid or used code")
        if form.get("client_secret") != client[0] or form.get("redirect_uri") != client[1]:
            raise ApiError(401, "client authentication failed")
        verifier = form.get("code_verifier", "").encode()
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier).digest()).rstrip(b"=")
        if challenge.decode() != issued.get("code_challenge"):
            raise ApiError(400, "PKCE verifier does not match the challenge")
        person = issued["person"]
        id_token = self.mint(form["client_id"], nonce=issued.get("nonce"), **person)
        return {
            "id_token": id_token,
            "access_token": secrets.token_urlsafe(24),
            "token_type": "Bearer",
            "expires_in": 3600,
        }
