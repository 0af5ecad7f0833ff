"""Who is calling, and which participants they may see.

People sign in with OpenID Connect (authorization code flow with PKCE); their ID token is
verified in full (RS256 signature against the issuer's JWKS, issuer, audience, expiry, nonce)
and their groups name their participants: a group `meterflow-acme@example.org` (the pattern is
configurable) gives participant `acme`. Machines send a participant's API token.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

import jwt
import requests

from meterflow.common.errors import MeterflowError

LEEWAY_SECONDS = 30  # clock skew allowed on exp/iat/nbf
JWKS_REFRESH_SECONDS = 60  # an unknown key id refetches the JWKS at most this often


class SignInRefused(MeterflowError):
    """A token or sign-in that is not accepted; the message says why, never the token."""


@dataclass(frozen=True)
class Caller:
    """A signed-in person or a machine: the participants it may read, nothing else."""

    subject: str  # an email, or `token:<id>`
    participants: tuple[str, ...]


class GroupPattern:
    """Participant groups by name: `meterflow-{participant}@example.org` maps a group to the
    participant its `{participant}` part names (case-insensitive, as group emails are)."""

    def __init__(self, pattern: str):
        if pattern.count("{participant}") != 1:
            raise MeterflowError(f"group pattern {pattern!r} must hold {{participant}} once")
        self.prefix, self.suffix = (p.lower() for p in pattern.split("{participant}"))

    def participants(self, groups: list[str], known: set[str]) -> tuple[str, ...]:
        by_lower = {p.lower(): p for p in known}
        found = set()
        for group in groups:
            name = group.lower()
            if name.startswith(self.prefix) and name.endswith(self.suffix):
                middle = name[len(self.prefix) : len(name) - len(self.suffix)]
                if middle in by_lower:
                    found.add(by_lower[middle])
        return tuple(sorted(found))


class OidcProvider:
    """An OpenID Connect issuer: its discovery document, its keys, and ID tokens it signed for
    this app (`audience`: the app's client id)."""

    def __init__(self, issuer: str, client_id: str, client_secret: str | None = None):
        self.issuer, self.client_id, self.client_secret = (
            issuer.rstrip("/"),
            client_id,
            client_secret,
        )
        self._config: dict[str, Any] | None = None
        self._keys: dict[str, Any] = {}
        self._fetched_at = 0.0
        self._lock = threading.Lock()

    @property
    def config(self) -> dict[str, Any]:
        if self._config is None:
            url = f"{self.issuer}/.well-known/openid-configuration"
            found = requests.get(url, timeout=10)
            found.raise_for_status()
            config = found.json()
            if config.get("issuer", "").rstrip("/") != self.issuer:
                raise SignInRefused(f"{url} names issuer {config.get('issuer')!r}")
            self._config = config
        return self._config

    def authorize_url(self, redirect_uri: str, state: str, nonce: str, verifier: str) -> str:
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
        query = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": redirect_uri,
            "scope": "openid email profile groups",
            "state": state,
            "nonce": nonce,
            "code_challenge": challenge.rstrip(b"=").decode(),
            "code_challenge_method": "S256",
        }
        return (
            requests.Request("GET", self.config["authorization_endpoint"], params=query)
            .prepare()
            .url
        )

    def exchange(self, code: str, redirect_uri: str, verifier: str, nonce: str) -> dict[str, Any]:
        """Trade the authorization code for tokens; the verified ID token's claims."""
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "client_id": self.client_id,
            "code_verifier": verifier,
        }
        if self.client_secret:
            form["client_secret"] = self.client_secret
        answer = requests.post(self.config["token_endpoint"], data=form, timeout=10)
        if answer.status_code != 200:
            raise SignInRefused(f"the identity provider refused the code ({answer.status_code})")
        id_token = answer.json().get("id_token")
        if not id_token:
            raise SignInRefused("the identity provider returned no ID token")
        return self.verify(id_token, nonce)

    def verify(self, id_token: str, nonce: str | None = None) -> dict[str, Any]:
        """The claims of an ID token this issuer signed for this app and that has not expired."""
        try:
            header = jwt.get_unverified_header(id_token)
        except jwt.PyJWTError:
            raise SignInRefused("not a JWT") from None
        if header.get("alg") != "RS256":
            raise SignInRefused(f"token algorithm {header.get('alg')!r} is not RS256")
        key = self._key(str(header.get("kid")))
        try:
            claims = jwt.decode(
                id_token,
                key,
                algorithms=["RS256"],
                audience=self.client_id,
                issuer=self.issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise SignInRefused("token expired") from None
        except jwt.InvalidAudienceError:
            raise SignInRefused("token was issued for another application") from None
        except jwt.InvalidIssuerError:
            raise SignInRefused("token was issued by another issuer") from None
        except jwt.InvalidSignatureError:
            raise SignInRefused("token signature does not verify") from None
        except jwt.PyJWTError as exc:
            raise SignInRefused(f"token refused: {exc}") from None
        if nonce is not None and claims.get("nonce") != nonce:
            raise SignInRefused("token was not issued for this sign-in (nonce)")
        return claims

    def _key(self, kid: str) -> Any:
        with self._lock:
            stale = time.monotonic() - self._fetched_at >= JWKS_REFRESH_SECONDS
            if kid not in self._keys and (stale or not self._keys):
                found = requests.get(self.config["jwks_uri"], timeout=10)
                found.raise_for_status()
                self._keys = {
                    str(k.get("kid")): jwt.PyJWK(k).key
                    for k in found.json().get("keys", [])
                    if k.get("kty") == "RSA"
                }
                self._fetched_at = time.monotonic()
            if kid not in self._keys:
                raise SignInRefused(f"token key {kid!r} is not among the issuer's keys")
            return self._keys[kid]


class CloudIdentityGroups:
    """A Google Workspace person's groups, from the Cloud Identity Groups API: Google's ID tokens
    carry none. One searchTransitiveGroups call per sign-in (Workspace Enterprise or Cloud
    Identity Premium); the portal's service account needs the Groups Reader admin role and
    signs in with its own credentials (google.auth.default)."""

    LABEL = "cloudidentity.googleapis.com/groups.discussion_forum"
    SCOPE = "https://www.googleapis.com/auth/cloud-identity.groups.readonly"

    def __init__(self, endpoint: str = "https://cloudidentity.googleapis.com"):
        self.endpoint = endpoint.rstrip("/")
        self._session: Any = None

    def groups_of(self, email: str) -> list[str]:
        if not email or "'" in email or "\\" in email:
            raise SignInRefused(f"no usable email to look up groups for: {email!r}")
        if self._session is None:
            import google.auth
            from google.auth.transport.requests import AuthorizedSession

            credentials, _ = google.auth.default(scopes=[self.SCOPE])
            self._session = AuthorizedSession(credentials)
        url = f"{self.endpoint}/v1/groups/-/memberships:searchTransitiveGroups"
        query = f"member_key_id == '{email}' && '{self.LABEL}' in labels"
        groups, page = [], ""
        while True:
            params = {"query": query, "pageSize": 1000, **({"pageToken": page} if page else {})}
            answer = self._session.get(url, params=params, timeout=10)
            if answer.status_code != 200:
                raise SignInRefused(f"could not read your groups ({answer.status_code})")
            body = answer.json()
            groups += [m["groupKey"]["id"] for m in body.get("memberships", [])]
            page = body.get("nextPageToken", "")
            if not page:
                return groups


def new_sign_in() -> tuple[str, str, str]:
    """A sign-in's state, nonce and PKCE verifier."""
    return secrets.token_urlsafe(24), secrets.token_urlsafe(24), secrets.token_urlsafe(48)
