"""The five API roles (what an API key may do is decided by the route: ``app.deps.require_roles``)."""
from __future__ import annotations

from typing import Literal, get_args

INGEST, AGENT, SUPERVISOR, QA, ADMIN = "ingest", "agent", "supervisor", "qa", "admin"

Role = Literal["ingest", "agent", "supervisor", "qa", "admin"]
ROLES: tuple[str, ...] = get_args(Role)
