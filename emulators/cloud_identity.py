"""Google's Cloud Identity Groups API on loopback: the one call the portal makes.

- `GET /v1/groups/-/memberships:searchTransitiveGroups?query=member_key_id == '<email>' &&
  'cloudidentity.googleapis.com/groups.discussion_forum' in labels&pageSize=&pageToken=`
  -> 200 {memberships: [{groupKey: {id}, group, displayName, labels, relationType}],
  nextPageToken}. A request without a bearer token gets 401; a query without the member or the
  label gets 400, as the real API answers.

`add_member(email, group)` puts a person in a group (transitively, as far as this API shows).
"""

from __future__ import annotations

import re
import threading
from typing import Any

from emulators.base import ApiError, Emulator, RecordedRequest, Response

LABEL = "cloudidentity.googleapis.com/groups.discussion_forum"
_MEMBER = re.compile(r"member_key_id\s*==\s*'([^']+)'")


class CloudIdentityEmulator(Emulator):
    def __init__(self) -> None:
        super().__init__()
        self._groups: dict[str, list[str]] = {}
        self._state = threading.Lock()

    def add_member(self, email: str, group: str) -> None:
        with self._state:
            self._groups.setdefault(email.lower(), []).append(group)

    def error_body(self, status: int, message: str) -> dict[str, Any]:
        return {"error": {"code": status, "message": message}}

    def handle(self, request: RecordedRequest) -> Response:
        if request.path != "/v1/groups/-/memberships:searchTransitiveGroups":
            raise ApiError(404, f"Cannot {request.method} {request.path}")
        if not request.bearer():
            raise ApiError(401, "Request is missing required authentication credential.")
        query = request.query.get("query", "")
        member = _MEMBER.search(query)
        if member is None or f"'{LABEL}' in labels" not in query:
            raise ApiError(400, "query must name member_key_id and the discussion_forum label")
        size = int(request.query.get("pageSize") or 200)
        start = int(request.query.get("pageToken") or 0)
        with self._state:
            groups = list(self._groups.get(member.group(1).lower(), []))
        page = groups[start : start + size]
        body: dict[str, Any] = {
            "memberships": [
                {
                    "groupKey": {"id": group},
                    "group": f"groups/{abs(hash(group)) % 10**12:012d}",
                    "displayName": group.split("@")[0],
                    "labels": {LABEL: ""},
                    "relationType": "DIRECT",
                }
                for group in page
            ]
        }
        if start + size < len(groups):
            body["nextPageToken"] = str(start + size)
        return Response(200, body)
