"""Text understanding: stateless emotion/keyword scoring and live-call transcript snippets."""
from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field, field_validator

from app.deps import PrincipalDep, RuntimeDep
from app.routes.calls import _check_call_id
from app.services.transcripts import ingest_transcript
from pipelines.errors import TextInputError
from pipelines.session import analyze_texts

router = APIRouter(tags=["text"])

MAX_TEXTS = 256
MAX_CHARS = 512


class TextBatch(BaseModel):
    texts: Annotated[list[str], Field(min_length=1, description=f"1..{MAX_TEXTS} texts, each ≤ {MAX_CHARS} characters")]


class TranscriptIn(BaseModel):
    role: Literal["customer", "agent"]
    text: Annotated[str, Field(max_length=MAX_CHARS)]
    start: Annotated[float | None, Field(ge=0, le=86400)] = None
    end: Annotated[float | None, Field(ge=0, le=86400)] = None
    final: bool = True
    id: Annotated[str | None, Field(max_length=128, description="utterance id; interim snippets with the same id "
                                                             "are superseded by the final one")] = None

    @field_validator("end")
    @classmethod
    def _end_after_start(cls, v: float | None, info):  # type: ignore[no-untyped-def]
        start = info.data.get("start")
        if v is not None and start is not None and v < start:
            raise ValueError("end must not be before start")
        return v


@router.post("/v1/text/emotion", summary="Emotion probabilities and sensitive keywords of Chinese texts (stateless)")
async def text_emotion(batch: TextBatch, rt: RuntimeDep) -> dict:
    if len(batch.texts) > MAX_TEXTS:
        raise TextInputError(f"{len(batch.texts)} texts sent; at most {MAX_TEXTS} per request", field="texts")
    for i, t in enumerate(batch.texts):
        if len(t) > MAX_CHARS:
            raise TextInputError(f"texts[{i}] has {len(t)} characters; at most {MAX_CHARS}", field=f"texts[{i}]")
    results = await rt.run(analyze_texts, list(batch.texts), rt.models)
    return {"results": [r.to_dict() for r in results]}


@router.post("/v1/calls/{call_id}/transcript", summary="Add a transcript snippet to a live call")
async def post_transcript(call_id: str, snippet: TranscriptIn, rt: RuntimeDep, who: PrincipalDep) -> dict:
    _check_call_id(call_id)
    return await ingest_transcript(rt, call_id, snippet, tenant=who.tenant)
