"""Google's OAuth 2.0 token endpoint for service accounts, on loopback.

A service-account client (google-auth, as prefect-gcp's `GcpCredentials` builds it) signs a JWT
with the account's private key and trades it for an access token (RFC 7523):

- `POST /token` form `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=<JWT>`
  -> 200 {access_token, expires_in, token_type: "Bearer"}; 400 {error: invalid_grant} when the
  assertion is not an RS256 JWT signed by a registered account's key.

`service_account(email)` makes a key for a new account and returns its JSON key file contents
(as `gcloud iam service-accounts keys create` would), pointing at this endpoint; `grants` lists
who got tokens, so a test can show which account the platform used.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
from typing import Any
from urllib.parse import parse_qs

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from emulators.base import ApiError, Emulator, RecordedRequest, Response

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"


class GoogleOAuthEmulator(Emulator):
    methods = frozenset({"POST"})

    def __init__(self) -> None:
        super().__init__()
        self._keys: dict[str, rsa.RSAPublicKey] = {}
        self._grants: list[str] = []
        self._state = threading.Lock()

    def service_account(self, email: str, project: str) -> dict[str, str]:
        """A new account's key file contents, its tokens issued by this endpoint."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        with self._state:
            self._keys[email] = key.public_key()
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return {
            "type": "service_account",
            "project_id": project,
            "private_key_id": secrets.token_hex(20),
            "private_key": pem.decode(),
            "client_email": email,
            "client_id": str(secrets.randbelow(10**20)),
            "token_uri": f"{self.url}/token",
        }

    @property
    def grants(self) -> list[str]:
        """The service account of every token issued, in order."""
        with self._state:
            return list(self._grants)

    def error_body(self, status: int, message: str) -> dict[str, Any]:
        return {"error": "invalid_grant", "error_description": message}

    def handle(self, request: RecordedRequest) -> Response:
        if request.path != "/token":
            raise ApiError(404, f"Cannot {request.method} {request.path}")
        form = {k: v[0] for k, v in parse_qs(request.body.decode()).items()}
        if form.get("grant_type") != JWT_BEARER:
            raise ApiError(400, f"unsupported grant_type {form.get('grant_type')!r}")
        email = self._verify(form.get("assertion", ""))
        with self._state:
            self._grants.append(email)
        token = "ya29." + secrets.token_urlsafe(32)
        return Response(200, {"access_token": token, "expires_in": 3599, "token_type": "Bearer"})

    def _verify(self, assertion: str) -> str:
        """The issuing account, if the JWT is signed with its registered key."""
        try:
            header, claims, signature = (_unb64(part) for part in assertion.split("."))
            email = json.loads(claims)["iss"]
            key = self._keys[email]
            signed = assertion.rsplit(".", 1)[0].encode()
            if json.loads(header).get("alg") != "RS256":
                raise ValueError("not RS256")
            key.verify(signature, signed, padding.PKCS1v15(), hashes.SHA256())
        except (ValueError, KeyError, InvalidSignature):
            raise ApiError(400, "Invalid JWT Signature.") from None
        return email


def _unb64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
