"""Hostile input at CI size: schemathesis over every OpenAPI operation (with auth) and a hypothesis
fuzz of the audio decoder through the HTTP API.  Both require no 5xx and no hung request; a success
response must match its operation's documented schema.
The larger runs are ``bench/fuzz.py`` (figures in bench/RESULTS_fuzz.md).
"""
from __future__ import annotations

import itertools
import tempfile
import time
from pathlib import Path

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import response_schema_conformance

from app.settings import ServiceSettings
from tests.app.fuzz_inputs import hostile_bodies, tame

ROOT_KEY = "fuzz-root-key-0123456789abcdef"
H = {"X-API-Key": ROOT_KEY}
SLOW_S = 10.0  # a request taking longer counts as hung
IDS = itertools.count()


def fuzz_settings(state_dir) -> ServiceSettings:
    return ServiceSettings(state_dir=state_dir, store="sqlite", auth_enabled=True, bootstrap_admin_key=ROOT_KEY,
                    rate_limit_per_s=1e6, rate_limit_burst=10**6, max_body_bytes=2 * 1024 * 1024,
                    log_json=False)


# --------------------------------------------------------------------------- schemathesis
def _schema():
    """Built at collection without starting the app (``app.openapi()`` needs no lifespan); schemathesis starts
    the lifespan (models, store) on the first call.  (``schemathesis.pytest.from_fixture`` does not work with
    pytest 9: it sets ``Function._nodeid``.)"""
    from app.main import create_app

    app = create_app(fuzz_settings(Path(tempfile.mkdtemp(prefix="nuqi-fuzz-"))))
    loaded = schemathesis.openapi.from_dict(app.openapi())
    loaded.app = app
    return loaded


schema = _schema()


@schema.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_openapi_operations_never_5xx_or_hang(case):
    tame(case)
    t0 = time.monotonic()
    response = case.call(headers=H)
    took = time.monotonic() - t0
    if case.path == "/readyz" and response.status_code == 503:  # documented: not ready (e.g. a model missing)
        assert response.json()["ready"] is False and response.json()["reasons"]
        return
    assert response.status_code < 500, (case.method, case.formatted_path, case.query, response.status_code,
                                        response.text[:500])
    assert took < SLOW_S, (case.method, case.formatted_path, took)
    if response.status_code < 300:  # a success body matches the operation's documented response model
        case.validate_response(response, checks=[response_schema_conformance])


# --------------------------------------------------------------------------- audio decoder fuzz
@pytest.fixture(scope="module")
def fuzz_client(tmp_path_factory, models):
    from app.main import create_app

    with TestClient(create_app(fuzz_settings(tmp_path_factory.mktemp("audio-fuzz")), models=models)) as c:
        yield c


@given(hostile_bodies())
@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_audio_decoder_fuzz_never_5xx_or_hangs(fuzz_client, body_params):
    body, params = body_params
    call_id = f"fz{next(IDS)}"
    t0 = time.monotonic()
    r = fuzz_client.post(f"/v1/calls/{call_id}/audio", params={"seq": 0, **params}, content=body, headers=H)
    took = time.monotonic() - t0
    assert r.status_code < 500, (r.status_code, r.text[:300], params, body[:64])
    assert took < SLOW_S, (took, params, len(body))
    if r.status_code == 200:  # accepted chunks give finite numbers only
        assert "NaN" not in r.text and "Infinity" not in r.text
    else:
        assert r.json()["error"]["code"]  # a named error, never a stack trace


# --------------------------------------------------------------------------- regressions found by bench/fuzz.py
@pytest.mark.parametrize("method,path,kw", [
    ("GET", "/v1/alerts", {"params": {"after": 10**30}}),  # overflowed SQLite's INTEGER → 500
    ("GET", "/v1/alerts/stream", {"params": {"after": 10**22, "max_seconds": 0.3}}),
    ("GET", "/v1/alerts/stream", {"params": {"max_seconds": 0.3}, "headers": {"Last-Event-ID": str(10**30)}}),
    ("POST", f"/v1/alerts/{10**30}/ack", {"json": {}}),
    ("POST", "/v1/calls/ovf/audio", {"headers": {"X-Seq": str(10**30)}, "content": b"\x01\x02" * 800,
                                     "params": {"encoding": "pcm_s16le", "sample_rate": 8000}}),
])
def test_huge_integers_are_4xx_not_5xx(fuzz_client, method, path, kw):
    headers = {**H, **kw.pop("headers", {})}
    r = fuzz_client.request(method, path, headers=headers, **kw)
    assert r.status_code < 500, r.text
