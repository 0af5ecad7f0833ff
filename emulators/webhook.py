"""A webhook receiver on 127.0.0.1: takes every POST, answers 200 and keeps it, so a test can
read the notifications that reached it (Prefect's CustomWebhookNotificationBlock posts here)."""

from __future__ import annotations

from typing import Any, ClassVar

from emulators.base import Emulator, RecordedRequest, Response


class WebhookReceiver(Emulator):
    methods: ClassVar[frozenset[str]] = frozenset({"POST"})

    def handle(self, request: RecordedRequest) -> Response:
        request.json()  # a body that is not JSON is refused (400), as a real receiver would
        return Response(200, {"ok": True})

    def error_body(self, status: int, message: str) -> dict[str, Any]:
        return {"ok": False, "error": message}

    def received(self) -> list[Any]:
        """The JSON body of every POST received, oldest first."""
        return [r.json() for r in self.requests if r.method == "POST"]
