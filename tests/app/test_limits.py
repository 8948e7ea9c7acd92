"""Issue 17, items 2-5: the 5xx counter, per-route body limits (batch uploads), 413 for chunked bodies, slow
clients cut by deadlines, dropped clients logged as warnings, error responses in the OpenAPI, `Allow` on 405."""
from __future__ import annotations

import logging
import re
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from fastapi.testclient import TestClient

from app.settings import ServiceSettings
from tests.conftest import SAMPLE_AUDIO

KEY = "limits-root-key-0123456789abcdef"
H = {"X-API-Key": KEY}


def _settings(tmp_path: Path, **kw) -> ServiceSettings:
    return ServiceSettings(state_dir=tmp_path / "state", store="sqlite", auth_enabled=True, bootstrap_admin_key=KEY,
                    log_json=False, **kw)


def _responses_5xx(text: str) -> float:
    m = re.search(r'^nuqi_http_responses_total\{code="5xx"\} ([0-9.e+]+)$', text, re.M)
    assert m, "no 5xx series in /metrics"
    return float(m.group(1))


# --------------------------------------------------------------------------- item 2: 5xx counted
def test_unhandled_errors_are_counted_as_5xx(tmp_path, models):
    from app.main import create_app

    app = create_app(_settings(tmp_path), models=models)

    @app.get("/test-only/unhandled")  # a route with a real bug: an unhandled exception → Starlette's 500
    async def unhandled() -> dict:
        raise RuntimeError("a bug")

    with TestClient(app, raise_server_exceptions=False) as c:
        before = _responses_5xx(c.get("/metrics").text)
        for _ in range(3):
            assert c.get("/test-only/unhandled").status_code == 500
        assert _responses_5xx(c.get("/metrics").text) == before + 3


# --------------------------------------------------------------------------- item 3: body limits
def test_batch_uploads_have_their_own_limit_beyond_the_body_cap(tmp_path, models):
    from app.main import create_app

    wav = (SAMPLE_AUDIO / "customer_angry_16k.wav").read_bytes()  # 269 KB: over this body cap, under the upload cap
    s = _settings(tmp_path, max_body_bytes=64 * 1024, batch_max_upload_bytes=len(wav) + 64 * 1024)
    with TestClient(create_app(s, models=models)) as c:
        r = c.post("/v1/batch", headers=H, files=[("files", ("angry.wav", wav, "audio/wav"))], data={"asr": "off"})
        assert r.status_code == 202, r.text
        job = r.json()
        assert job["progress"]["total"] == 1
        stored = s.state_dir / "batch" / job["id"] / "inputs" / "angry.wav"
        assert stored.read_bytes() == wav
        # over the upload cap: 413, declared or chunked
        r = c.post("/v1/batch", headers=H, files=[("files", ("a.wav", wav, "audio/wav")),
                                                  ("files", ("b.wav", wav, "audio/wav"))])
        assert r.status_code == 413 and r.json()["error"]["code"] == "chunk_too_large", r.text
        # other routes keep the body cap
        r = c.post("/v1/calls/big/audio", params={"seq": 0}, headers=H, content=wav)
        assert r.status_code == 413


def _chunked(data: bytes, n: int = 4096):
    for i in range(0, len(data), n):
        yield data[i:i + n]


def test_a_chunked_body_over_the_cap_is_413_not_400(tmp_path, models):
    from app.main import create_app

    s = _settings(tmp_path, max_body_bytes=8 * 1024)
    body = ('{"texts": ["' + "好" * 20000 + '"]}').encode()
    with TestClient(create_app(s, models=models)) as c:
        for path, headers in (("/v1/text/emotion", {"content-type": "application/json"}),
                              ("/v1/text/emotion", {}),  # no content type: FastAPI still parses JSON
                              ("/v1/calls/chunked/audio?seq=0", {"content-type": "application/octet-stream"})):
            r = c.post(path, headers={**H, **headers}, content=_chunked(body))
            assert r.status_code == 413, (path, headers, r.status_code, r.text[:200])
            assert r.json()["error"]["code"] == "chunk_too_large"


# --------------------------------------------------------------------------- item 5: OpenAPI errors, Allow
def test_openapi_documents_the_error_responses(tmp_path):
    from app.main import create_app

    schema = create_app(_settings(tmp_path)).openapi()
    assert set(schema["components"]["schemas"]["ErrorBody"]["properties"]) == {"error"}
    for path, ops in schema["paths"].items():
        for method, op in ops.items():
            if not op.get("security"):
                continue  # public routes: health, metrics, pages
            codes = set(op["responses"])
            need = {"400", "401", "403", "413", "422", "429"} | ({"404"} if "{" in path else set())
            assert need <= codes, (method, path, sorted(need - codes))
            ref = op["responses"]["422"]["content"]["application/json"]["schema"]["$ref"]
            assert ref.endswith("/ErrorBody"), (method, path, ref)
    assert "409" in schema["paths"]["/v1/calls/{call_id}/audio"]["post"]["responses"]
    assert "409" in schema["paths"]["/v1/batch/{job_id}"]["delete"]["responses"]


def test_405_names_every_allowed_method(tmp_path, models):
    from app.main import create_app

    with TestClient(create_app(_settings(tmp_path), models=models)) as c:
        r = c.put("/v1/calls/c1", headers=H)
        assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"
        assert set(r.headers["allow"].replace(" ", "").split(",")) >= {"GET", "POST"}
        r = c.delete("/v1/admin/keys", headers=H)
        assert r.status_code == 405 and set(r.headers["allow"].replace(" ", "").split(",")) >= {"GET", "POST"}


# --------------------------------------------------------------------------- item 4: slow and dropped clients
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def _serve(settings: ServiceSettings, models):
    """The real app under uvicorn with the options of `nuqi serve` (app.cli.server_options)."""
    import uvicorn

    from app.cli import server_options
    from app.main import create_app

    port = _free_port()
    srv = uvicorn.Server(uvicorn.Config(create_app(settings, models=models), host="127.0.0.1", port=port,
                                        log_config=None, access_log=False, lifespan="on",
                                        timeout_graceful_shutdown=2, **server_options(settings)))
    th = threading.Thread(target=srv.run, daemon=True)
    th.start()
    deadline = time.monotonic() + 60
    while not srv.started:
        assert th.is_alive() and time.monotonic() < deadline
        time.sleep(0.05)
    try:
        yield port
    finally:
        srv.should_exit = True
        th.join(15)


def _closed_within(sock: socket.socket, seconds: float) -> tuple[bool, bytes]:
    """Whether the server closed the connection within ``seconds``, and what it sent before."""
    sock.settimeout(0.2)
    got = b""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            part = sock.recv(65536)
        except socket.timeout:
            continue
        except ConnectionResetError:
            return True, got
        if not part:
            return True, got
        got += part
    return False, got


def test_slow_clients_are_cut_and_dropped_uploads_logged_as_warnings(tmp_path, models, caplog):
    s = _settings(tmp_path, header_timeout_s=1.0, body_idle_timeout_s=1.0, body_grace_s=2.0, body_min_rate=1024)
    caplog.set_level(logging.WARNING)
    with _serve(s, models) as port:
        # partial headers, then nothing: closed after the header deadline
        with socket.create_connection(("127.0.0.1", port)) as c:
            c.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            t0 = time.monotonic()
            closed, _ = _closed_within(c, 5)
            assert closed and time.monotonic() - t0 < 3
        # headers trickled byte by byte: the deadline counts from the connection, not from the last byte
        with socket.create_connection(("127.0.0.1", port)) as c:
            t0 = time.monotonic()
            closed = False
            for b in b"GET /healthz HTTP/1.1\r\nX-Slow: " + b"a" * 100:
                try:
                    c.sendall(bytes([b]))
                except OSError:
                    closed = True
                    break
                time.sleep(0.1)
                if time.monotonic() - t0 > 5:
                    break
            closed = closed or _closed_within(c, 2)[0]
            assert closed and time.monotonic() - t0 < 5
        # a body that stalls: 408 after the idle timeout
        with socket.create_connection(("127.0.0.1", port)) as c:
            c.sendall(b"POST /v1/calls/slow/audio?seq=0 HTTP/1.1\r\nHost: x\r\nX-API-Key: " + KEY.encode()
                      + b"\r\nContent-Type: application/octet-stream\r\nContent-Length: 100000\r\n\r\n" + b"\0" * 1000)
            t0 = time.monotonic()
            closed, got = _closed_within(c, 6)
            assert got.startswith(b"HTTP/1.1 408") and b"request_timeout" in got, got[:300]
            assert time.monotonic() - t0 < 4
        # a body trickled under the minimum rate (a byte every 0.5 s never stalls a whole second): 408 too
        with socket.create_connection(("127.0.0.1", port)) as c:
            c.sendall(b"POST /v1/text/emotion HTTP/1.1\r\nHost: x\r\nX-API-Key: " + KEY.encode()
                      + b"\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n")
            t0 = time.monotonic()
            got = b""
            while time.monotonic() - t0 < 8 and not got:
                try:
                    c.sendall(b" ")
                except OSError:
                    break
                closed, got = _closed_within(c, 0.5)
            assert got.startswith(b"HTTP/1.1 408"), got[:300]
            assert time.monotonic() - t0 < 6
        # an upload the client drops halfway: a warning, no ERROR traceback
        caplog.clear()
        with socket.create_connection(("127.0.0.1", port)) as c:
            c.sendall(b"POST /v1/calls/dropped/audio?seq=0 HTTP/1.1\r\nHost: x\r\nX-API-Key: " + KEY.encode()
                      + b"\r\nContent-Type: application/octet-stream\r\nContent-Length: 100000\r\n\r\n" + b"\0" * 5000)
            time.sleep(0.3)
        time.sleep(1.0)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [(r.name, r.getMessage()[:200]) for r in errors]
    assert any("disconnected" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING), \
        [(r.name, r.getMessage()[:200]) for r in caplog.records]
