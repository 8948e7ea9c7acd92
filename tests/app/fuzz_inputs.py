"""Hostile inputs shared by tests/app/test_fuzz.py (CI size) and bench/fuzz.py (the larger run)."""
from __future__ import annotations

import io
import math
import struct
import wave

import numpy as np
from hypothesis import strategies as st


def tame(case) -> None:  # noqa: ANN001
    """Keep long-polls and streams short, and never let the fuzzer revoke the key it runs with."""
    q = case.query if isinstance(case.query, dict) else None
    if q is not None:
        for name, cap in (("wait", 0.2), ("max_seconds", 0.5)):
            try:
                value = float(q[name])
            except (KeyError, TypeError, ValueError):
                continue  # absent or not a number: the API answers 422 at once
            if value == value and value > cap:
                q[name] = cap
        if "/alerts/stream" in case.path and "max_seconds" not in q:
            q["max_seconds"] = 0.5
    if case.method.upper() == "DELETE" and isinstance(case.path_parameters, dict) \
            and case.path_parameters.get("key_id") == "bootstrap":
        case.path_parameters["key_id"] = "not-the-root"


def _wav(samples: np.ndarray, rate: int, channels: int = 1, width: int = 2) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())
    return buf.getvalue()


def _riff(fmt_tag: int, channels: int, rate: int, bits: int, data: bytes, data_len: int | None = None,
          block_align: int | None = None) -> bytes:
    block = block_align if block_align is not None else max(channels * bits // 8, 0) & 0xFFFF
    fmt = struct.pack("<HHIIHH", fmt_tag & 0xFFFF, channels & 0xFFFF, rate & 0xFFFFFFFF,
                      (rate * block) & 0xFFFFFFFF, block & 0xFFFF, bits & 0xFFFF)
    dlen = len(data) if data_len is None else data_len & 0xFFFFFFFF
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", dlen) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


@st.composite
def valid_wavs(draw) -> bytes:  # noqa: ANN001
    rate = draw(st.sampled_from([8000, 11025, 16000, 22050, 44100, 48000]))
    channels = draw(st.sampled_from([1, 2]))
    seconds = draw(st.floats(0.01, 1.5))
    n = max(1, int(rate * seconds))
    kind = draw(st.sampled_from(["noise", "sine", "silence", "clipped"]))
    t = np.arange(n * channels, dtype=np.float64)
    x = {"noise": np.random.default_rng(draw(st.integers(0, 2**31))).normal(0, 0.2, n * channels),
         "sine": 0.3 * np.sin(t / draw(st.floats(1.0, 50.0))),
         "silence": np.zeros(n * channels),
         "clipped": np.sign(np.sin(t / 7.0))}[kind]
    return _wav((np.clip(x, -1, 1) * 32767).astype("<i2"), rate, channels)


@st.composite
def hostile_bodies(draw) -> tuple[bytes, dict]:  # noqa: ANN001
    """(body, query) pairs: random, truncated, mutated and lying WAV/PCM/G.711 chunks."""
    mode = draw(st.sampled_from(["random", "truncated", "mutated", "header", "pcm", "float"]))
    params: dict = {}
    if mode == "random":
        body = draw(st.binary(min_size=0, max_size=4096))
        params["encoding"] = draw(st.sampled_from([None, "wav", "pcm_s16le", "mulaw", "alaw", "auto", "x" * 40]))
        params["sample_rate"] = draw(st.sampled_from([None, 1, 7999, 8000, 16000, 44100, 192000, 10**6]))
    elif mode == "truncated":
        wav = draw(valid_wavs())
        body = wav[:draw(st.integers(0, len(wav)))]
    elif mode == "mutated":
        wav = bytearray(draw(valid_wavs()))
        for _ in range(draw(st.integers(1, 12))):
            i = draw(st.integers(0, min(len(wav) - 1, draw(st.sampled_from([43, 200, len(wav) - 1])))))
            wav[i] = draw(st.integers(0, 255))
        body = bytes(wav)
    elif mode == "header":  # syntactically plausible WAV whose header fields lie
        body = _riff(draw(st.sampled_from([1, 3, 6, 7, 0xFFFE, 0, 2, 0x55])),
                     draw(st.sampled_from([0, 1, 2, 3, 8, 255, 65535])),
                     draw(st.sampled_from([0, 1, 8000, 16000, 96000, 4_000_000_000])),
                     draw(st.sampled_from([0, 4, 8, 12, 16, 24, 32, 64, 65535])),
                     draw(st.binary(min_size=0, max_size=2048)),
                     data_len=draw(st.sampled_from([None, 0, 1, 2**31, 2**32 - 1])),
                     block_align=draw(st.sampled_from([None, 0, 1, 3, 65535])))
    elif mode == "pcm":
        n = draw(st.integers(0, 20000))
        body = np.random.default_rng(draw(st.integers(0, 2**31))).integers(-32768, 32767, n, dtype="<i2").tobytes()
        body = body[:len(body) - draw(st.integers(0, 1))]  # odd lengths too
        params = {"encoding": draw(st.sampled_from(["pcm_s16le", "mulaw", "alaw"])),
                  "sample_rate": draw(st.sampled_from([8000, 16000, 12345, 192000])),
                  "channels": draw(st.sampled_from([None, 1, 2, 3, 8])),
                  "role": draw(st.sampled_from([None, "customer", "agent", "boss"])),
                  "channel_map": draw(st.sampled_from([None, "agent,customer", "customer", "a,b,c", ",,"]))}
    else:  # IEEE float WAV with NaN/Inf/huge samples
        vals = draw(st.lists(st.sampled_from([0.0, 0.5, -1.0, 1e30, -1e30, math.nan, math.inf, -math.inf]),
                             min_size=1, max_size=64))
        data = np.array(vals * draw(st.integers(1, 200)), dtype="<f4").tobytes()
        body = _riff(3, 1, draw(st.sampled_from([8000, 16000])), 32, data)
    return body, {k: v for k, v in params.items() if v is not None}


# --------------------------------------------------------------------------- JSON the edge must refuse (issue 17.1)
JSON = {"content-type": "application/json"}
DEEP = b"[" * 100_000
# (method, path, request kwargs, expected status, expected error code): each was a 500 (or a dead WebSocket)
# before the JSON guard (app/security/jsonguard.py) and the path checks of POST /v1/batch
EDGE_JSON_CASES = [
    ("POST", "/v1/calls/edge-int", {"content": b'{"meta": {"n": 18446744073709551616}}', "headers": JSON},
     422, "integer_out_of_range"),
    ("POST", "/v1/calls/edge-int", {"content": b'{"meta": {"n": -99999999999999999999}}', "headers": JSON},
     422, "integer_out_of_range"),
    ("POST", "/v1/calls/edge-surr", {"content": b'{"meta": {"k": "\\ud800"}}', "headers": JSON}, 400, "invalid_json"),
    ("POST", "/v1/calls/edge-surr", {"content": b'{"meta": {"\\ud800": 1}}', "headers": JSON}, 400, "invalid_json"),
    ("POST", "/v1/calls/edge-deep", {"content": b'{"meta": {"x": ' + b"[" * 300 + b"]" * 300 + b"}}",
                                     "headers": JSON}, 400, "invalid_json"),
    ("POST", "/v1/calls/edge-deep", {"content": DEEP, "headers": JSON}, 400, "invalid_json"),
    ("POST", "/v1/calls/edge-utf8", {"content": b'{"meta": {"k": "\xff\xfe"}}', "headers": JSON}, 400, "invalid_json"),
    ("POST", "/v1/text/emotion", {"content": b'{"texts": ["\\ud83d"]}', "headers": JSON}, 400, "invalid_json"),
    ("POST", "/v1/text/emotion", {"content": b'{"texts": ["\\ud83d"]}'}, 400, "invalid_json"),  # no content type
    ("POST", "/v1/text/emotion", {"content": DEEP, "headers": JSON}, 400, "invalid_json"),
    ("POST", "/v1/calls/edge-tx/transcript", {"content": b'{"role": "customer", "text": "\\udc00"}', "headers": JSON},
     400, "invalid_json"),
    ("POST", "/v1/batch", {"content": b'{"paths": ["/tmp/a\\u0000b.wav"]}', "headers": JSON}, 422, "bad_input"),
    ("POST", "/v1/batch", {"content": b'{"paths": ["/tmp/\\ud800.wav"]}', "headers": JSON}, 400, "invalid_json"),
    ("POST", "/v1/batch", {"content": DEEP, "headers": JSON}, 400, "invalid_json"),
    ("POST", "/v1/batch", {"content": DEEP, "headers": {"content-type": "text/plain"}}, 400, "invalid_json"),
]
# WebSocket text frames of POST-less ingest: each must get an error frame, and the connection must stay usable
EDGE_WS_FRAMES = ["[" * 100_000, '{"type": "transcript", "role": "customer", "text": "\\ud83d"}',
                  '{"type": "transcript", "role": "customer", "text": "x", "id": ' + "[" * 500 + "]" * 500 + "}"]
