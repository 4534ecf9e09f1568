"""Where a request came from, for the audit trail (never used to authorise anything)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from panel.accounts.clientip import client_ip


@dataclass(frozen=True)
class Origin:
    via: str  # a ``Via`` value: ui, api, cli, admin
    client_ip: str | None = None
    request_id: str = ""

    @classmethod
    def from_request(cls, request: Any, via: str) -> Origin:
        request_id = request.META.get("HTTP_X_REQUEST_ID", "")[:100]
        return cls(via=via, client_ip=client_ip(request), request_id=request_id)
