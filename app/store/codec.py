"""JSON encoding of stored records (call state, chunk entries, alerts, transcripts), shared by both stores.

orjson rather than the standard library: a call's state is 20–30 KB of JSON that is read and
written on every chunk, and the standard library's encoder/decoder was ~15 % of a chunk's
CPU under load (orjson is ~10× faster).  Output is compact UTF-8 JSON; NaN/inf become null
(valid JSON for every reader, where ``json.dumps`` would write the non-standard ``NaN``).
"""
from __future__ import annotations

from typing import Any

import orjson

_OPTS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def dumps(obj: Any) -> str:
    return orjson.dumps(obj, option=_OPTS).decode("utf-8")


def loads(raw: str | bytes) -> Any:
    return orjson.loads(raw)
