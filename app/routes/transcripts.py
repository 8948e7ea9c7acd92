"""Text understanding: stateless emotion/keyword scoring and live-call transcript snippets."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from app.deps import CallId, Principal, RuntimeDep, require_roles
from app.errors import COMMON, WITH_BODY, responses
from app.schemas import MAX_CHARS, MAX_TEXTS, TextBatch, TextResults, TranscriptIn, TranscriptResult
from app.security.roles import ADMIN, INGEST, QA, SUPERVISOR
from app.services.transcripts import ingest_transcript
from pipelines.errors import TextInputError
from pipelines.session import analyze_texts

router = APIRouter(tags=["text"], responses=responses(*COMMON, *WITH_BODY, 404, 409))

TextScorer = Annotated[Principal, Depends(require_roles(INGEST, SUPERVISOR, QA, ADMIN))]
Ingest = Annotated[Principal, Depends(require_roles(INGEST, ADMIN))]


@router.post("/v1/text/emotion", response_model=TextResults,
             summary="Emotion probabilities and sensitive keywords of Chinese texts (stateless)")
async def text_emotion(batch: TextBatch, rt: RuntimeDep, _: TextScorer) -> dict:
    if len(batch.texts) > MAX_TEXTS:
        raise TextInputError(f"{len(batch.texts)} texts sent; at most {MAX_TEXTS} per request", field="texts")
    for i, t in enumerate(batch.texts):
        if len(t) > MAX_CHARS:
            raise TextInputError(f"texts[{i}] has {len(t)} characters; at most {MAX_CHARS}", field=f"texts[{i}]")
    results = await rt.run(analyze_texts, list(batch.texts), rt.models)
    return {"results": [r.to_dict() for r in results]}


@router.post("/v1/calls/{call_id}/transcript", response_model=TranscriptResult, response_model_exclude_unset=True,
             summary="Add a transcript snippet to a live call")
async def post_transcript(call_id: CallId, snippet: TranscriptIn, rt: RuntimeDep, who: Ingest) -> dict:
    return await ingest_transcript(rt, call_id, snippet, tenant=who.tenant)
