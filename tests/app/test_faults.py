"""Faults against real processes: several uvicorn workers, a worker killed mid-call, Redis killed and
restarted, a service restart on SQLite.  Each test starts its own service (and Redis) on spare ports.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import httpx
import numpy as np
import pytest

from tests.conftest import SAMPLE_AUDIO, read_wav, wav_bytes

REPO = Path(__file__).resolve().parents[2]
ROOT_KEY = "fault-test-root-key-0123456789"
H = {"X-API-Key": ROOT_KEY}
needs_redis_server = pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server not installed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisProc:
    """A private redis-server with an append-only file, so a restart keeps the data (as in production)."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.dir = workdir
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes",
             "--appendfsync", "always", "--dir", str(self.dir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import redis

        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        for _ in range(100):
            try:
                if client.ping():
                    return
            except redis.exceptions.RedisError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture()
def redis_proc(tmp_path) -> Iterator[RedisProc]:
    r = RedisProc(tmp_path / "redis")
    r.start()
    yield r
    r.kill()


class Service:
    """``uvicorn app.main:create_app --factory --workers N`` as a real process group."""

    def __init__(self, tmp: Path, store: str, workers: int, **env: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.prom = tmp / f"prom-{self.port}"
        self.prom.mkdir(parents=True)
        self.log = tmp / f"service-{self.port}.log"
        self.workers = workers
        self.env = {**os.environ, "OMP_NUM_THREADS": "1", "NUQI_STORE": store, "NUQI_STATE_DIR": str(tmp / "state"),
                    "PROMETHEUS_MULTIPROC_DIR": str(self.prom), "NUQI_AUTH_ENABLED": "true",
                    "NUQI_BOOTSTRAP_ADMIN_KEY": ROOT_KEY, "NUQI_RATE_LIMIT_PER_S": "10000",
                    "NUQI_RATE_LIMIT_BURST": "10000", "NUQI_LOG_LEVEL": "warning", **env}
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 180.0) -> "Service":
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "app.main:create_app", "--factory", "--host", "127.0.0.1",
                 "--port", str(self.port), "--workers", str(self.workers), "--log-level", "warning"],
                cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:  # every worker has answered at least one request
            assert self.proc.poll() is None, self.tail()
            try:
                httpx.get(self.base + "/healthz", timeout=2)
            except httpx.HTTPError:
                time.sleep(0.3)
                continue
            pids = self.worker_pids()
            if len(pids) >= self.workers and all(self.responses(p) > 0 for p in pids):
                return self
            time.sleep(0.1)
        raise AssertionError("service did not become ready:\n" + self.tail())

    def tail(self, n: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""

    def worker_pids(self) -> list[int]:
        import psutil

        if self.proc is None:
            return []
        try:
            kids = psutil.Process(self.proc.pid).children()
        except psutil.NoSuchProcess:
            return []
        return [k.pid for k in kids if k.is_running() and k.status() != psutil.STATUS_ZOMBIE
                and "spawn_main" in " ".join(k.cmdline())] if self.workers > 1 else [self.proc.pid]

    def _samples(self, kind: str, pid: int, name: str) -> float:
        from prometheus_client.mmap_dict import MmapedDict

        path = self.prom / f"{kind}_{pid}.db"
        if not path.exists():
            return 0.0
        total = 0.0
        for key, value, *_ in MmapedDict.read_all_values_from_file(str(path)):
            if json.loads(key)[1] == name:  # [metric, sample name, labels, help]
                total += value
        return total

    def responses(self, pid: int) -> float:
        return self._samples("counter", pid, "nuqi_http_responses_total")

    def chunks_served(self, pid: int) -> float:
        return self._samples("histogram", pid, "nuqi_chunk_latency_seconds_bucket")  # per-bucket counts

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


@contextmanager
def service(tmp: Path, store: str, workers: int = 2, **env: str) -> Iterator[Service]:
    svc = Service(tmp, store, workers, **env)
    try:
        yield svc.start()
    finally:
        svc.stop()


@pytest.fixture(scope="module")
def blocks() -> list[bytes]:
    x, sr = read_wav(SAMPLE_AUDIO / "call_escalating_8k.wav")
    return [wav_bytes(x[i:i + sr], sr, 2) for i in range(0, len(x), sr)]


def fresh_client() -> httpx.Client:
    # no keep-alive: every request is a new connection, so the kernel spreads them over the workers
    return httpx.Client(headers=H, timeout=30, limits=httpx.Limits(max_keepalive_connections=0))


def send(client: httpx.Client, base: str, call_id: str, seq: int, body: bytes, retries: int = 60) -> dict:
    """At-least-once delivery: retry the same seq on connection errors and 5xx (the service dedups)."""
    last = None
    for _ in range(retries):
        try:
            r = client.post(f"{base}/v1/calls/{call_id}/audio", params={"seq": seq, "agent_id": "a1"}, content=body)
            if r.status_code == 200:
                return r.json()
            last = r.text
            assert r.status_code >= 500, r.text
        except httpx.TransportError as exc:
            last = repr(exc)
        time.sleep(0.1)
    raise AssertionError(f"seq {seq} never accepted: {last}")


@pytest.fixture(scope="module")
def turns() -> list[dict]:
    return [t for t in json.loads((SAMPLE_AUDIO / "call_escalating_8k.json").read_text("utf-8"))["turns"] if t["text"]]


def send_turns(client: httpx.Client, base: str, call_id: str, turns: list[dict], second: int) -> list[dict]:
    """The transcript turns that end during chunk ``second`` (sent after it, as an ASR would)."""
    alerts = []
    for i, t in enumerate(turns):
        if second < t["end"] <= second + 1:
            r = client.post(f"{base}/v1/calls/{call_id}/transcript",
                            json={"role": t["role"], "text": t["text"], "start": t["start"], "end": t["end"],
                                  "id": f"u{i}"})
            assert r.status_code == 200, r.text
            alerts += r.json()["alerts"]
    return alerts


def comparable(entry: dict) -> tuple:
    return entry["seq"], entry["t_start"], entry["t_end"], entry["roles"]


def alert_key(a: dict) -> tuple:
    return a["level"], a["kind"], a.get("at"), a.get("stage", {}).get("level")


# --------------------------------------------------------------------------- ordering across workers
@pytest.mark.parametrize("backend", ["sqlite", pytest.param("redis", marks=needs_redis_server)])
def test_seq_order_kept_when_chunks_land_on_different_workers(backend, tmp_path, blocks, request):
    redis = None
    if backend == "redis":
        redis = RedisProc(tmp_path / "redis")
        redis.start()
        request.addfinalizer(redis.kill)
    store = redis.url if redis else "sqlite"
    n = 24
    with service(tmp_path, store, workers=2) as svc, fresh_client() as c:
        responses: dict[int, dict] = {}
        with ThreadPoolExecutor(2) as pool:
            for k in range(0, n, 2):  # each pair arrives successor first, on separate connections
                late = pool.submit(send, c, svc.base, "ord", k + 1, blocks[k + 1])
                time.sleep(0.05)
                early = pool.submit(send, c, svc.base, "ord", k, blocks[k])
                responses[k], responses[k + 1] = early.result(), late.result()
        view = c.get(f"{svc.base}/v1/calls/ord").json()
        served = {pid: svc.chunks_served(pid) for pid in svc.worker_pids()}
    assert all(not r["gaps"] and not r["duplicate"] for r in responses.values())
    assert [responses[k]["t_start"] for k in range(n)] == [float(k) for k in range(n)]
    assert view["state"]["chunks"] == n and view["state"]["gaps"] == []
    assert [e["seq"] for e in view["timeline"]] == list(range(n))
    assert sum(served.values()) >= n and sum(1 for v in served.values() if v > 0) == 2, served


# --------------------------------------------------------------------------- worker killed mid-call
@needs_redis_server
def test_worker_killed_mid_call_loses_nothing(redis_proc, tmp_path, blocks, turns):
    with service(tmp_path, redis_proc.url, workers=2) as svc:
        with httpx.Client(headers=H, timeout=30) as c:  # undisturbed reference run of the same call
            for seq, body in enumerate(blocks):
                send(c, svc.base, "ref", seq, body)
                send_turns(c, svc.base, "ref", turns, seq)
            ref_view = c.get(f"{svc.base}/v1/calls/ref").json()
            ref_alerts = c.get(f"{svc.base}/v1/alerts", params={"call_id": "ref"}).json()["alerts"]
        assert ref_alerts, "the escalating sample call raised no alert"

        kills: list[int] = []
        acked: dict[int, float] = {}
        rng = random.Random(5)
        kill_at = {25: None, 50: None}  # after the baseline filled; and after the first worker was replaced
        with fresh_client() as c:
            for seq, body in enumerate(blocks):
                if seq in kill_at:
                    victim = rng.choice(svc.worker_pids())
                    fut = threading.Thread(target=send, args=(c, svc.base, "vic", seq, body))
                    fut.start()  # in flight while its worker may die
                    time.sleep(rng.uniform(0.0, 0.03))
                    os.kill(victim, signal.SIGKILL)
                    kills.append(victim)
                    fut.join()
                    out = send(c, svc.base, "vic", seq, body)  # the retry path must agree
                else:
                    out = send(c, svc.base, "vic", seq, body)
                # transcripts go out between chunks, never while a worker is being killed
                for a in out.get("alerts", []) + send_turns(c, svc.base, "vic", turns, seq):
                    # the agent acks every alert twice (idempotent)
                    first = c.post(f"{svc.base}/v1/alerts/{a['id']}/ack", json={"by": "a1"}).json()
                    again = c.post(f"{svc.base}/v1/alerts/{a['id']}/ack", json={"by": "a1"}).json()
                    assert first["acked_at"] == again["acked_at"]
                    acked[a["id"]] = first["acked_at"]
            view = c.get(f"{svc.base}/v1/calls/vic").json()
            alerts = c.get(f"{svc.base}/v1/alerts", params={"call_id": "vic"}).json()["alerts"]
        assert len(kills) == 2 and all(not _alive(p) for p in kills)
        deadline = time.monotonic() + 60  # uvicorn replaces the killed workers (slowly on a loaded host)
        while len(svc.worker_pids()) != 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(svc.worker_pids()) == 2

    # the call went on as if nothing happened: same timeline, stage, baseline and alerts as the reference
    assert [comparable(e) for e in view["timeline"]] == [comparable(e) for e in ref_view["timeline"]]
    assert view["state"] == ref_view["state"]
    assert view["state"]["gaps"] == [] and view["state"]["roles"]["customer"]["baseline"]["ready"]
    assert sorted(map(alert_key, alerts)) == sorted(map(alert_key, ref_alerts))
    assert len({alert_key(a) for a in alerts}) == len(alerts)  # no duplicate
    assert {a["id"] for a in alerts} == set(acked)  # every alert reached the agent through a response


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


# --------------------------------------------------------------------------- Redis down and back
@needs_redis_server
def test_redis_down_fails_fast_with_503_and_recovers(redis_proc, tmp_path, blocks):
    with service(tmp_path, redis_proc.url, workers=2, NUQI_KEY_CACHE_S="0.5") as svc, fresh_client() as c:
        for seq in range(5):
            send(c, svc.base, "rd", seq, blocks[seq])
        redis_proc.kill()
        time.sleep(0.6)  # past the key cache
        for path, kw in (("/v1/calls/rd/audio", {"params": {"seq": 5}, "content": blocks[5]}),
                         ("/v1/calls/rd", {"json": {"meta": {"q": 1}}})):
            t0 = time.monotonic()
            r = c.post(svc.base + path, **kw)
            took = time.monotonic() - t0
            assert r.status_code == 503, r.text
            err = r.json()["error"]
            assert err["code"] == "store_unavailable" and "Redis" in err["message"] and took < 3.0, (err, took)
            assert r.headers.get("retry-after")
        ready = c.get(svc.base + "/readyz")
        assert ready.status_code == 503 and ready.json()["store"]["ok"] is False
        assert any("store redis unavailable" in reason for reason in ready.json()["reasons"])
        # where Redis lives is not told to clients (issue 17.10): neither /readyz (public) nor the 503s name it
        port = str(redis_proc.url.rsplit(":", 1)[-1].split("/")[0])
        assert port not in ready.text and "127.0.0.1" not in ready.text, ready.text
        assert port not in err["message"] and "127.0.0.1" not in err["message"], err
        assert c.get(svc.base + "/healthz").status_code == 200  # alive, just not ready
        metrics = c.get(svc.base + "/metrics").text
        assert "nuqi_store_errors_total" in metrics

        redis_proc.start()  # same port, same append-only file
        deadline = time.monotonic() + 10
        while c.get(svc.base + "/readyz").json()["store"]["ok"] is not True:
            assert time.monotonic() < deadline, "service did not recover after Redis came back"
            time.sleep(0.2)
        for seq in range(5, 10):
            out = send(c, svc.base, "rd", seq, blocks[seq], retries=5)
            assert out["gaps"] == []
        view = c.get(svc.base + "/v1/calls/rd").json()
        assert view["state"]["chunks"] == 10 and [e["seq"] for e in view["timeline"]] == list(range(10))


# --------------------------------------------------------------------------- SQLite restart
def test_sqlite_restart_keeps_alerts_and_summaries(tmp_path, blocks, turns):
    with service(tmp_path, "sqlite", workers=1) as svc, httpx.Client(headers=H, timeout=30) as c:
        for seq, body in enumerate(blocks):
            send(c, svc.base, "keep", seq, body)
            send_turns(c, svc.base, "keep", turns, seq)
        summary = c.post(f"{svc.base}/v1/calls/keep/end").json()["summary"]
        alerts = c.get(f"{svc.base}/v1/alerts", params={"call_id": "keep"}).json()["alerts"]
        assert alerts
        acked = c.post(f"{svc.base}/v1/alerts/{alerts[0]['id']}/ack", json={"by": "a1"}).json()
    with service(tmp_path, "sqlite", workers=1) as svc, httpx.Client(headers=H, timeout=30) as c:
        view = c.get(f"{svc.base}/v1/calls/keep").json()
        assert view["status"] == "ended" and view["summary"] == summary
        again = c.get(f"{svc.base}/v1/alerts", params={"call_id": "keep"}).json()["alerts"]
        assert [a["id"] for a in again] == [a["id"] for a in alerts]
        assert again[0]["acked_at"] == acked["acked_at"]
        assert c.post(f"{svc.base}/v1/calls/keep/end").json()["summary"] == summary
        r = c.post(f"{svc.base}/v1/calls/keep/audio", params={"seq": 999}, content=blocks[0])
        assert r.status_code == 409
    assert np.isfinite(summary["duration_s"])


# --------------------------------------------------------------------------- what every worker stores
def test_fast_state_dict_matches_asdict(models, blocks):
    """The ingest path serialises call state without dataclasses.asdict; the stored JSON must not change."""
    from app.services.calls import state_dict
    from pipelines.audio.decode import ChunkFormat, decode_chunk
    from pipelines.session import CallState, process_audio

    fmt = ChunkFormat(encoding=None, sample_rate=None, channels=None, role="customer", channel_map=None)
    state = CallState()
    for seq, body in enumerate(blocks[:40]):
        process_audio(state, decode_chunk(body, fmt, max_seconds=30), seq, models)
        assert json.dumps(state_dict(state), sort_keys=True) == json.dumps(state.state_dict(), sort_keys=True)
