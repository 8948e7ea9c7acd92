"""Stored-record JSON (app/store/codec.py): round trip, numpy values, non-finite floats, non-str keys."""
from __future__ import annotations

import math

import numpy as np

from app.store import codec


def test_round_trip_of_a_call_state_like_record():
    rec = {"last_seq": 3, "gaps": [[1, 2]], "roles": {"客户": {"speech_s": 1.25, "buf": "AAAA"}}, "ok": True,
           "none": None}
    raw = codec.dumps(rec)
    assert isinstance(raw, str) and "客户" in raw  # UTF-8, not \u escapes
    assert codec.loads(raw) == rec
    assert codec.loads(raw.encode()) == rec  # Redis may hand back bytes


def test_numpy_values_non_finite_floats_and_int_keys():
    raw = codec.dumps({"a": np.float32(0.5), "b": np.int64(7), "c": np.arange(3), "nan": math.nan,
                       "inf": float("inf"), 5: "five"})
    back = codec.loads(raw)
    assert back == {"a": 0.5, "b": 7, "c": [0, 1, 2], "nan": None, "inf": None, "5": "five"}
