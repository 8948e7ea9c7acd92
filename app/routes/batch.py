"""QA batch scoring over HTTP: submit recorded calls, poll progress, fetch the reports."""
from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from app.deps import Principal, RuntimeDep, require_roles
from app.schemas import BatchDeleted, BatchIn, BatchJob, BatchOpts
from app.security.roles import ADMIN, QA
from app.services.batch import BatchJobs, BatchOptions, batch_jobs, safe_upload_name
from pipelines.errors import ChunkTooLargeError, InputError

_QA = require_roles(QA, ADMIN)
router = APIRouter(prefix="/v1/batch", tags=["batch"], dependencies=[Depends(_QA)])  # also any route added later
QaUser = Annotated[Principal, Depends(_QA)]

MAX_UPLOAD_FILES = 1000
COPY_BLOCK = 1 << 20


_UPLOAD_SCHEMA = {"type": "object", "required": ["files"], "properties": {
    "files": {"type": "array", "items": {"type": "string", "format": "binary"}},
    "channel_map": {"type": "string"}, "asr": {"type": "string", "enum": ["auto", "on", "off"]}}}


def _jobs(request: Request, rt: RuntimeDep) -> BatchJobs:
    return batch_jobs(request.app.state, rt.settings, rt.models)


def _copy_upload(src: Any, dest: Path, budget: int) -> int:
    """Copy an uploaded (spooled) file to ``dest``; returns bytes written, raises past ``budget``."""
    written = 0
    src.seek(0)
    with dest.open("wb") as f:
        while block := src.read(COPY_BLOCK):
            written += len(block)
            if written > budget:
                raise ChunkTooLargeError(f"uploaded files exceed the {budget}-byte batch limit "
                                         "(setting batch_max_upload_bytes)", field="files")
            f.write(block)
    return written


@router.post(
    "",
    status_code=202,
    summary="Start a QA batch job over recorded calls",
    description=(
        "Either JSON `{\"paths\": [...], \"channel_map\": null, \"asr\": \"auto\"}` naming server-side files/folders "
        "(inside the setting `batch_input_roots`), or `multipart/form-data` with one or more `files` (audio, plus "
        "optional transcript sidecars with the same stem: .json/.jsonl/.srt) and optional form fields `channel_map`, "
        "`asr`. Returns the job id at once (202); poll `GET /v1/batch/{id}`."),
    openapi_extra={"requestBody": {"required": True, "content": {
        "application/json": {"schema": BatchIn.model_json_schema()},
        "multipart/form-data": {"schema": _UPLOAD_SCHEMA}}}},
    response_model=BatchJob,
    response_model_exclude_unset=True,
)
async def create_batch(request: Request, rt: RuntimeDep, who: QaUser) -> dict:
    jobs = _jobs(request, rt)
    ctype = request.headers.get("content-type", "")
    if ctype.startswith("multipart/form-data"):
        form = await request.form(max_files=MAX_UPLOAD_FILES, max_fields=20)
        try:
            uploads = [v for _, v in form.multi_items() if isinstance(v, UploadFile)]
            if not uploads:
                raise InputError("multipart batch: attach at least one file (field `files`)", field="files")
            opts: BatchOpts = BatchOpts(channel_map=form.get("channel_map") or None, asr=form.get("asr") or "auto")
        except ValidationError as exc:
            raise InputError(f"invalid batch options: {exc.errors()[0].get('msg')}", field="form") from None
        job_id, job_dir = await asyncio.to_thread(jobs.new_job_dir)
        inputs = job_dir / "inputs"
        budget, taken = rt.settings.batch.batch_max_upload_bytes, set()
        try:
            for up in uploads:
                dest = inputs / safe_upload_name(up.filename or "", taken)
                budget -= await asyncio.to_thread(_copy_upload, up.file, dest, budget)
        except BaseException:
            await asyncio.to_thread(shutil.rmtree, job_dir, True)
            raise
        finally:
            await form.close()
        paths, source = [str(inputs)], "upload"
    else:
        try:
            body = BatchIn.model_validate(json.loads(await request.body() or b"null"))
        except (ValueError, ValidationError) as exc:
            msg = exc.errors()[0].get("msg") if isinstance(exc, ValidationError) else "body is not JSON"
            loc = ".".join(map(str, exc.errors()[0].get("loc", ()))) if isinstance(exc, ValidationError) else "body"
            raise InputError(f"{loc}: {msg}; send JSON {{\"paths\": [...]}} or multipart files", field=loc) from None
        opts = body
        resolved = await asyncio.to_thread(jobs.check_server_paths, body.paths)
        job_id, job_dir = await asyncio.to_thread(jobs.new_job_dir)
        paths, source = [str(p) for p in resolved], "server"
    try:
        await asyncio.to_thread(jobs.submit, job_id, job_dir, tenant=who.tenant, inputs=paths,
                                options=BatchOptions(channel_map=opts.channel_map, asr=opts.asr), source=source)
    except BaseException:
        await asyncio.to_thread(shutil.rmtree, job_dir, True)
        raise
    return await asyncio.to_thread(jobs.view, job_id, who.tenant, offset=0, limit=0)


@router.get("/{job_id}", response_model=BatchJob, response_model_exclude_unset=True,
            summary="Progress and results of a QA batch job")
async def get_batch(job_id: str, request: Request, rt: RuntimeDep, who: QaUser,
                    offset: Annotated[int, Query(ge=0)] = 0,
                    limit: Annotated[int, Query(ge=0, le=10000)] = 1000) -> dict:
    return await asyncio.to_thread(_jobs(request, rt).view, job_id, who.tenant, offset=offset, limit=limit)


@router.get("/{job_id}/files/{path:path}", summary="A report file of a batch job (index.html, summary.csv, calls/...)",
            response_class=FileResponse, responses={200: {"description": "the file", "content": {
                "text/html": {"schema": {"type": "string"}}, "text/csv": {"schema": {"type": "string"}},
                "application/json": {"schema": {"type": "object"}},
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}})
async def get_batch_file(job_id: str, path: str, request: Request, rt: RuntimeDep, who: QaUser) -> FileResponse:
    file = await asyncio.to_thread(_jobs(request, rt).report_file, job_id, who.tenant, path)
    media = {".html": "text/html; charset=utf-8", ".csv": "text/csv; charset=utf-8",
             ".json": "application/json"}.get(file.suffix, "application/octet-stream")
    return FileResponse(file, media_type=media)


@router.delete("/{job_id}", response_model=BatchDeleted,
               summary="Delete a finished QA batch job (its uploads and reports)")
async def delete_batch(job_id: str, request: Request, rt: RuntimeDep, who: QaUser) -> dict:
    await asyncio.to_thread(_jobs(request, rt).delete, job_id, who.tenant)
    return {"id": job_id, "deleted": True}
