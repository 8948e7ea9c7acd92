"""Browser pages served by the service itself (no build step, no CDN, work offline).

* ``GET /widget?agent_id=…`` — the agent desktop widget (current stage, anger gauge, latest alert
  with its explanation and guidance, ack button, sound cue).
* ``GET /board`` — the supervisors' live board (calls by stage, anger sparklines, stage history).
* ``GET /static/{name}`` — the pages' shared CSS/JS from ``app/static`` (flat folder, no sub-paths).
* ``GET /v1/stages`` — the stage names and the fused-anger scale of the stage rules (JSON, any role): the
  pages take stage names and gauge thresholds/colours from here, so they always agree with ``rules.yaml``.

The pages are static files; all data comes from the JSON API (``/v1/alerts``, ``/v1/calls``,
``/v1/board``) with the caller's ``X-API-Key``, so serving them needs no credentials.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import FileResponse

from app.deps import Principal, RuntimeDep, require_roles
from app.errors import COMMON, WITH_BODY, responses
from app.schemas import StageScale
from app.security.roles import ROLES
from pipelines.errors import NotFoundError
from pipelines.fusion.rules import Rules, default_rules

router = APIRouter(tags=["pages"])

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
# pages and their helpers change with the service version: let the browser revalidate each time
NO_CACHE = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}


def _file(name: str) -> FileResponse:
    path = (STATIC_DIR / name).resolve()
    suffix = path.suffix.lower()
    if (not SAFE_NAME.match(name) or path.parent != STATIC_DIR or suffix not in MEDIA_TYPES
            or not path.is_file()):
        raise NotFoundError(f"static file {name!r} not found", name=name)
    return FileResponse(path, media_type=MEDIA_TYPES[suffix], headers=NO_CACHE)


@router.get("/widget", summary="Agent desktop widget (HTML; query: agent_id, optional call_id, api_key)",
            response_class=FileResponse, include_in_schema=True)
async def widget() -> FileResponse:
    return _file("widget.html")


@router.get("/board", summary="Supervisor board (HTML; optional query: api_key)",
            response_class=FileResponse, include_in_schema=True)
async def board_page() -> FileResponse:
    return _file("board.html")


@router.get("/static/{name}", summary="The pages' CSS/JS helpers", response_class=FileResponse,
            include_in_schema=False)
async def static_file(name: str) -> FileResponse:
    return _file(name)


AnyRole = Annotated[Principal, Depends(require_roles(*ROLES))]


def stage_scale(rules: Rules) -> dict:
    bands = rules.anger_bands()
    return {
        "stages": [{"level": lvl, "name": rules.name(lvl), "severity": rules.severity.get(lvl)}
                   for lvl in sorted(rules.stage_names)],
        "rise": dict(rules.rise),
        "gauge_max": bands[-1][1],
        "bands": [{"from": a, "to": b, "level": lvl} for a, b, lvl in bands],
    }


@router.get("/v1/stages", response_model=StageScale, tags=["pages"], responses=responses(*COMMON, *WITH_BODY),
            summary="Stage names and the fused-anger scale of the stage rules (what the pages draw)")
async def stages(rt: RuntimeDep, _: AnyRole) -> dict:
    fusion = rt.models.fusion
    return stage_scale(fusion.rules if fusion is not None else default_rules())
