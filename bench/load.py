"""Load test: N concurrent live stereo calls replayed in real time against a running nuqi service.

Each simulated call sends the 1-second stereo chunks of ``sample_audio/call_escalating_8k.wav`` on a
fixed real-time schedule (chunk k leaves at call start + k + 1 s, whatever happened to chunk k-1:
an open-loop load, so a slow server cannot slow the offered load down), plus the final transcript
snippets of ``call_escalating_8k.json`` when each turn ends, then ends the call and checks it: all chunks
stored, in order, no gap.  A supervisor SSE stream (``/v1/alerts/stream``) measures alert delivery.
The service's process tree (CPU, RSS), the load generator's CPU and the machine's load average are
sampled over time.  Calls start at random times within ``--ramp`` seconds (seeded, ``--seed``), so their
chunk boundaries fall at independent phases of the second, as independent calls' do; with ``--soak`` a
call that reaches the end of the recording is ended and replaced by a new one at once (``--wrapup MIN MAX``
adds a random pause, which lowers the mean concurrency), so the load stays at N calls; each line's first call
joins the recording at a random second, so the hang-ups stay spread out.  ``--phases aligned`` keeps
the old fixed stagger (call i at i * ramp / N: with 100 calls over 15 s only 20 distinct phases, so
chunks arrived in bursts of 5 and the soak's calls ended in waves).  "Steady"
figures leave out the ramp (+5 s) and the last WIND_DOWN_S seconds, in which every call is hung up at once.

    # the service (2 workers, Redis, auth on) in one terminal
    NUQI_STORE=redis://127.0.0.1:6379/3 NUQI_AUTH_ENABLED=true NUQI_BOOTSTRAP_ADMIN_KEY=bench-root-key-0123456789 \\
      make serve WORKERS=2 PORT=8000
    # 100 calls for 120 s
    .venv/bin/python bench/load.py --url http://127.0.0.1:8000 --api-key bench-root-key-0123456789 --calls 100 \\
      --duration 120 --out /tmp/load100.json
    # knee search: 25, 50, ... calls, 60 s each
    .venv/bin/python bench/load.py --api-key ... --steps 25,50,100,150,200 --duration 60
    # soak
    .venv/bin/python bench/load.py --api-key ... --calls 100 --duration 600 --soak --out /tmp/soak.json

Figures and the exact commands used are in bench/RESULTS_load.md.
"""
from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import random
import socket
import sys
import time
import uuid
import wave
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil

REPO = Path(__file__).resolve().parent.parent
AUDIO = REPO / "sample_audio" / "call_escalating_8k.wav"
SCRIPT = REPO / "sample_audio" / "call_escalating_8k.json"
NEURAL_AUDIO = REPO / "sample_audio" / "call_escalating_neural_8k.flac"  # the same call, neural customer voice


# --------------------------------------------------------------------------- inputs
def load_chunks(path: Path = AUDIO) -> list[bytes]:
    """1-second stereo WAV chunks of the sample call."""
    with wave.open(str(path), "rb") as w:
        rate, channels, width = w.getframerate(), w.getnchannels(), w.getsampwidth()
        frames = w.readframes(w.getnframes())
    return wav_chunks(frames, rate, channels, width)


def wav_chunks(frames: bytes, rate: int, channels: int, width: int) -> list[bytes]:
    step = rate * channels * width
    out = []
    for i in range(0, len(frames), step):
        buf = io.BytesIO()
        with wave.open(buf, "wb") as o:
            o.setnchannels(channels)
            o.setsampwidth(width)
            o.setframerate(rate)
            o.writeframes(frames[i:i + step])
        out.append(buf.getvalue())
    return out


def load_turns(path: Path = SCRIPT) -> list[dict[str, Any]]:
    return [t for t in json.loads(path.read_text(encoding="utf-8"))["turns"] if t.get("text")]


def asr_call_chunks(kind: str) -> list[bytes]:
    """The audio-only calls that get live ASR (``--asr-calls``): ``aishell`` = REAL read Mandarin (the AISHELL
    sample's 25 test-half utterances in the 8 kHz telephone band with 2.5-6 s of line noise between them, 212 s,
    bench/bench_asr_live.py) on the customer channel, line noise on the agent's; ``sample`` = the espeak sample call;
    ``neural`` = the same call with the neural customer voice that Whisper recognises (sample_audio/README.md)."""
    if kind == "sample":
        return load_chunks()
    if kind == "neural":
        import soundfile as sf  # noqa: PLC0415 - only this mode reads FLAC

        pcm, rate = sf.read(NEURAL_AUDIO, dtype="int16")
        return wav_chunks(pcm.astype("<i2").tobytes(), rate, pcm.shape[1], 2)
    sys.path.insert(0, str(REPO))
    sys.path.insert(0, str(REPO / "bench"))
    from bench_asr_live import build_leg  # noqa: PLC0415 - only this mode needs the AISHELL data

    from pipelines.settings import Settings  # noqa: PLC0415

    leg, _ = build_leg(Settings().data_dir / "speech" / "aishell-sample-dev")
    agent = (np.random.default_rng(1).standard_normal(leg.size) * 32768 * 10 ** (-60 / 20)).astype("<i2")
    return wav_chunks(np.stack([agent, leg.astype("<i2")], axis=1).tobytes(), 8000, 2, 2)


# --------------------------------------------------------------------------- a lean HTTP/1.1 client
class HttpPool:
    """Keep-alive HTTP/1.1 connections to one host (TCP_NODELAY), a few per simulated call.

    httpx spends ~1 ms of CPU per request and far more with thousands in flight; on a 2-core machine
    shared with the service that would be measured as service latency, so the hot path uses this
    minimal client (JSON responses with Content-Length, as nuqi sends them)."""

    def __init__(self, base: str) -> None:
        url = httpx.URL(base)
        self.host, self.port = url.host, url.port or 80
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection(self.host, self.port, limit=1 << 22)
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return reader, writer

    async def request(self, method: str, path: str, headers: dict[str, str], body: bytes = b"",
                      read_timeout_s: float = 30.0) -> tuple[int, bytes]:
        head = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}", f"Content-Length: {len(body)}"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        data = ("\r\n".join(head) + "\r\n\r\n").encode() + body
        while True:
            reused = bool(self.idle)
            conn = self.idle.pop() if reused else await self._open()
            reader, writer = conn
            try:
                writer.write(data)
                status, payload, keep = await asyncio.wait_for(self._read(reader), read_timeout_s)
                break
            except (ConnectionError, asyncio.IncompleteReadError):
                writer.close()
                if not reused:  # a kept-alive connection the server had already closed: resend on a new one
                    raise
            except BaseException:
                writer.close()
                raise
        if keep:
            self.idle.append(conn)
        else:
            writer.close()
        return status, payload

    @staticmethod
    async def _read(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
        line = await reader.readline()
        if not line:
            raise ConnectionError("server closed the connection")
        status = int(line.split()[1])
        length, keep, chunked = 0, True, False
        while True:
            h = await reader.readline()
            if h in (b"\r\n", b""):
                break
            name, _, value = h.decode("latin-1").partition(":")
            name, value = name.strip().lower(), value.strip()
            if name == "content-length":
                length = int(value)
            elif name == "connection" and value.lower() == "close":
                keep = False
            elif name == "transfer-encoding" and "chunked" in value.lower():
                chunked = True
        if not chunked:
            return status, await reader.readexactly(length), keep
        parts = []
        while True:
            size = int((await reader.readline()).split(b";")[0], 16)
            if size == 0:
                await reader.readline()
                return status, b"".join(parts), keep
            parts.append(await reader.readexactly(size))
            await reader.readline()

    def close(self) -> None:
        for _, w in self.idle:
            w.close()
        self.idle.clear()


# --------------------------------------------------------------------------- records
@dataclass
class Request:
    kind: str  # audio | transcript | end | check
    call: str
    seq: int
    t_send: float  # seconds since run start
    latency: float | None = None
    status: int | None = None
    error: str | None = None


@dataclass
class Totals:
    calls_started: int = 0
    calls_checked: int = 0
    chunks_sent: int = 0
    chunks_missing: int = 0  # not in the stored timeline at the end of the call
    chunks_out_of_order: int = 0  # stored timeline not in seq order / recorded gaps
    duplicates: int = 0
    alerts_in_response: int = 0
    alerts_on_stream: int = 0


@dataclass
class Run:
    base: str
    headers_ingest: dict[str, str]
    headers_admin: dict[str, str]
    chunks: list[bytes]
    turns: list[dict[str, Any]]
    t0: float
    transcripts: bool = True
    timeout: float = 30.0
    requests: list[Request] = field(default_factory=list)
    totals: Totals = field(default_factory=Totals)
    alert_sent: dict[int, float] = field(default_factory=dict)  # alert id -> t_send of its chunk
    alert_seen: dict[int, float] = field(default_factory=dict)  # alert id -> when the SSE stream delivered it
    in_flight: int = 0
    asr_calls: int | None = None  # the first N call lines send audio only with asr=on, the others asr=off
    asr_chunks: list[bytes] = field(default_factory=list)
    asr_results: list[dict[str, Any]] = field(default_factory=list)  # per ASR call: status, transcripts, latency
    t0_wall: float = field(default_factory=time.time)  # wall clock at t0 (transcripts carry wall_s)

    def now(self) -> float:
        return time.monotonic() - self.t0


async def _post(run: Run, pool: HttpPool, req: Request, path: str, headers: dict[str, str], body: bytes = b"",
                method: str = "POST") -> dict | None:
    run.requests.append(req)
    run.in_flight += 1
    t = time.monotonic()
    try:
        status, payload = await pool.request(method, path, headers, body, read_timeout_s=run.timeout)
        req.latency = time.monotonic() - t
        req.status = status
        if status != 200:
            req.error = payload[:200].decode("utf-8", "replace")
            return None
        return json.loads(payload)
    except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError) as exc:
        req.latency = time.monotonic() - t
        req.error = f"{type(exc).__name__}: {exc}"[:200]
        return None
    finally:
        run.in_flight -= 1


JSON_HEADERS = {"Content-Type": "application/json"}


async def send_chunk(run: Run, pool: HttpPool, call_id: str, seq: int, skip: int = 0,
                     chunks: list[bytes] | None = None, first: str = "") -> None:
    req = Request("audio", call_id, seq, run.now())
    chunks = chunks or run.chunks
    extra = first if seq == 0 else ""
    body = await _post(run, pool, req, f"/v1/calls/{call_id}/audio?seq={seq}&agent_id=agent-{call_id}{extra}",
                       run.headers_ingest, chunks[(seq + skip) % len(chunks)])
    if body is None:
        return
    if body.get("duplicate"):
        run.totals.duplicates += 1
    for a in body.get("alerts") or []:
        run.totals.alerts_in_response += 1
        run.alert_sent.setdefault(int(a["id"]), req.t_send)


async def send_turn(run: Run, pool: HttpPool, call_id: str, i: int, turn: dict, skip: int = 0) -> None:
    req = Request("transcript", call_id, i, run.now())
    payload = json.dumps({"role": turn["role"], "text": turn["text"], "start": max(0.0, turn["start"] - skip),
                          "end": turn["end"] - skip,
                          "final": True, "id": f"u{i}"}, ensure_ascii=False).encode()
    body = await _post(run, pool, req, f"/v1/calls/{call_id}/transcript", {**run.headers_ingest, **JSON_HEADERS},
                       payload)
    for a in (body or {}).get("alerts") or []:
        run.totals.alerts_in_response += 1
        run.alert_sent.setdefault(int(a["id"]), req.t_send)


async def sleep_until(run: Run, t: float) -> None:
    delay = t - run.now()
    if delay > 0:
        await asyncio.sleep(delay)


async def one_call(run: Run, pool: HttpPool, call_id: str, start: float, stop: float, skip: int = 0,
                   asr: bool | None = None) -> float:
    """Replay the recording once (or until ``stop``), from its ``skip``-th second on; returns when the call ended.
    ``asr``: True = an audio-only call of ``run.asr_chunks`` with ``asr=on``; False = ``asr=off``; None = neither."""
    tasks: list[asyncio.Task] = []
    sent = 0
    chunks = run.asr_chunks if asr else run.chunks
    first = "" if asr is None else f"&asr={'on' if asr else 'off'}"
    transcripts = run.transcripts and not asr
    for seq in range(len(chunks) - skip):
        due = start + seq + 1.0  # the chunk [seq, seq+1) exists once that second has passed
        if due > stop:
            break
        await sleep_until(run, due)
        if not sent:
            run.totals.calls_started += 1  # a call exists once its first chunk is sent
        tasks.append(asyncio.create_task(send_chunk(run, pool, call_id, seq, skip, chunks, first)))
        sent += 1
        if transcripts:
            for i, turn in enumerate(run.turns):
                if seq + skip < turn["end"] <= seq + skip + 1:
                    tasks.append(asyncio.create_task(send_turn(run, pool, call_id, i, turn, skip)))
    run.totals.chunks_sent += sent
    if not sent:  # the run ended before this call's first chunk: nothing to end or check
        return stop
    if tasks:
        await asyncio.gather(*tasks)
    req = Request("end", call_id, -1, run.now())
    await _post(run, pool, req, f"/v1/calls/{call_id}/end", run.headers_ingest)
    view = await check_call(run, pool, call_id, sent)
    if asr and view is not None:
        run.asr_results.append(asr_outcome(run, call_id, start, view))
    return run.now()


def asr_outcome(run: Run, call_id: str, start: float, view: dict[str, Any]) -> dict[str, Any]:
    """An ASR call's result: its status, recognised transcripts with keyword cues, stage, and per transcript the
    end-of-speech → transcript latency: chunk k carries audio second [k, k+1), which "plays" at wall time
    t0_wall + start + k, so speech that ends at call time e ended at t0_wall + start + e; the transcript is there
    at its ``wall_s`` (when the service applied it).  Both clocks are this host's."""
    asr = [t for t in view.get("transcripts", []) if t.get("source") == "asr"]
    lat = [t["wall_s"] - (run.t0_wall + start + t["end"]) for t in asr if t.get("wall_s") and t.get("end")]
    summary = view.get("summary") or {}
    return {
        "call": call_id, "asr": view.get("state", {}).get("asr"), "start": round(start, 2),
        "peak_stage": summary.get("peak_stage"), "complaint": (summary.get("complaint") or {}).get("type"),
        "transcripts": [{"start": t["start"], "end": t["end"], "text": t["text"], "confidence": t.get("confidence"),
                         "keywords": [(k["term"], k.get("category"), bool(k.get("phonetic"))) for k in t["keywords"]],
                         "latency_s": round(x, 2)} for t, x in zip(asr, lat)],
        "latency_s": lat,
    }


CHECK_ATTEMPTS = 5


async def check_call(run: Run, pool: HttpPool, call_id: str, sent: int) -> dict[str, Any] | None:
    """The stored timeline must hold every chunk sent. A failed GET (timeout, 429, 503) is an error of its own
    and leaves the call unchecked; it is not counted as missing chunks."""
    for attempt in range(CHECK_ATTEMPTS):
        req = Request("check", call_id, -1, run.now())
        view = await _post(run, pool, req, f"/v1/calls/{call_id}", run.headers_admin, method="GET")
        if req.status != 429 or attempt == CHECK_ATTEMPTS - 1:
            break
        # all calls of a level end together, so their checks can overrun the admin key's rate limit: the 429
        # is the server doing its job, and the check is not part of the measured load, so wait and ask again
        run.requests.remove(req)
        await asyncio.sleep(1.0 + attempt)
    if view is None:
        return None
    seqs = [e["seq"] for e in view.get("timeline", [])]
    run.totals.calls_checked += 1
    run.totals.chunks_missing += len(set(range(sent)) - set(seqs))
    gaps = view.get("state", {}).get("gaps") or []
    run.totals.chunks_out_of_order += sum(b - a + 1 for a, b in gaps) + sum(1 for a, b in zip(seqs, seqs[1:]) if b <= a)
    return view


async def call_slot(run: Run, idx: int, start: float, stop: float, soak: bool, tag: str,
                    wrapup: tuple[float, float], rng: random.Random) -> None:
    """One simulated call line (its own keep-alive connections, like one gateway session)."""
    pool = HttpPool(run.base)
    gen = 0
    # soak: the first call joins its recording at a random second, as if it had begun before the test, so the
    # lines' calls end at independent times instead of in one wave per recording length
    skip = rng.randrange(max(1, len(run.chunks) - 10)) if soak else 0
    asr = None if run.asr_calls is None else idx < run.asr_calls
    try:
        while start < stop:
            end = await one_call(run, pool, f"{tag}-{idx}-{gen}", start, stop, skip, asr)
            skip = 0
            if not soak:
                return
            gen += 1
            start = end + rng.uniform(*wrapup)  # the agent's after-call work before the next call
    finally:
        pool.close()


async def alert_stream(run: Run, client: httpx.AsyncClient, stop: float) -> None:
    """A supervisor's SSE stream: when does each alert reach a listener?"""
    after = None
    while run.now() < stop:
        try:
            params = {"max_seconds": max(1.0, stop - run.now() + 5)}
            if after is not None:
                params["after"] = after
            async with client.stream("GET", f"{run.base}/v1/alerts/stream", params=params,
                                     headers=run.headers_admin, timeout=None) as r:
                async for line in r.aiter_lines():
                    if line.startswith("id: "):
                        aid = int(line[4:])
                        after = aid
                        run.alert_seen.setdefault(aid, run.now())
                        run.totals.alerts_on_stream += 1
                    if run.now() >= stop + 5:
                        return
        except httpx.HTTPError:
            await asyncio.sleep(0.5)


# --------------------------------------------------------------------------- resources
def find_server(port: int) -> psutil.Process | None:
    """The top process of the service listening on ``port`` (uvicorn master, or the only worker)."""
    pids = {c.pid for c in psutil.net_connections(kind="tcp")
            if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid}
    if not pids:
        return None
    p = psutil.Process(min(pids))
    while True:  # climb to the uvicorn / nuqi master that spawned the workers
        parent = p.parent()
        if parent is None or not any(w in " ".join(parent.cmdline()) for w in ("uvicorn", "nuqi")):
            return p
        p = parent


def tree(p: psutil.Process) -> list[psutil.Process]:
    try:
        return [p, *p.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def pct(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def ms(x: float | None) -> float | None:
    return None if x is None else round(x * 1000, 1)


async def monitor(run: Run, server: psutil.Process | None, every: float, stop: float,
                  series: list[dict[str, Any]]) -> None:
    me = psutil.Process()
    me.cpu_percent()
    psutil.cpu_times_percent()  # primes the machine-wide counters (steal: CPU the hypervisor gave to other guests)
    cpu_cache: dict[int, psutil.Process] = {}
    last = 0
    while run.now() < stop + 2:
        procs = tree(server) if server else []
        for p in procs:  # keep Process objects, so cpu_percent measures since the previous sample
            cpu_cache.setdefault(p.pid, p)
        await asyncio.sleep(every)
        cpu, rss = 0.0, 0.0
        for pid, p in list(cpu_cache.items()):
            try:
                cpu += p.cpu_percent()
                rss += p.memory_info().rss
            except psutil.NoSuchProcess:
                cpu_cache.pop(pid, None)
        window = [r for r in run.requests[last:] if r.kind == "audio" and r.latency is not None]
        last = len(run.requests)
        lat = [r.latency for r in window]
        series.append({
            "t": round(run.now(), 1), "server_cpu_pct": round(cpu, 1), "server_rss_mb": round(rss / 2**20, 1),
            "client_cpu_pct": round(me.cpu_percent(), 1), "loadavg_1m": round(os.getloadavg()[0], 2),
            "steal_pct": round(getattr(psutil.cpu_times_percent(), "steal", 0.0), 1),
            "chunks": len(lat), "p50_ms": ms(pct(lat, 50)), "p99_ms": ms(pct(lat, 99)),
            "errors": sum(1 for r in window if r.error), "in_flight": run.in_flight,
        })
        s = series[-1]
        print(f"  t={s['t']:6.1f}s chunks={s['chunks']:4d} p50={s['p50_ms']} p99={s['p99_ms']} ms "
              f"err={s['errors']} cpu={s['server_cpu_pct']}% rss={s['server_rss_mb']}MB "
              f"client={s['client_cpu_pct']}% load={s['loadavg_1m']} steal={s['steal_pct']}%", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- one load level
async def make_keys(base: str, admin_key: str | None) -> tuple[dict, dict]:
    if not admin_key:
        return {}, {}
    admin = {"X-API-Key": admin_key}
    async with httpx.AsyncClient(timeout=10) as c:
        r = await c.post(f"{base}/v1/admin/keys", headers=admin,
                         json={"role": "ingest", "name": "bench/load.py", "rate_per_s": 100000, "burst": 100000})
        r.raise_for_status()
        return {"X-API-Key": r.json()["key"]}, admin


async def run_level(args: argparse.Namespace, calls: int, duration: float) -> dict[str, Any]:
    ingest, admin = await make_keys(args.url, args.api_key)
    port = httpx.URL(args.url).port or 80
    server = find_server(port)
    run = Run(args.url.rstrip("/"), ingest, admin, load_chunks(), load_turns(), time.monotonic(),
              transcripts=not args.no_transcripts, timeout=args.timeout, asr_calls=args.asr_calls,
              asr_chunks=asr_call_chunks(args.asr_audio) if args.asr_calls else [])
    run.t0, run.t0_wall = time.monotonic(), time.time()
    series: list[dict[str, Any]] = []
    tag = f"load-{uuid.uuid4().hex[:6]}"
    stop = duration
    ramp = min(args.ramp, duration / 2) if calls > 1 else 0.0
    print(f"== {calls} calls for {duration:.0f} s (ramp {ramp:.0f} s, soak={args.soak}) against {args.url}",
          file=sys.stderr, flush=True)
    async with httpx.AsyncClient(timeout=None) as stream_client:
        mon = asyncio.create_task(monitor(run, server, args.sample_s, stop, series))
        sse = asyncio.create_task(alert_stream(run, stream_client, stop))
        rng = random.Random(args.seed)
        starts = [i * ramp / max(calls, 1) for i in range(calls)] if args.phases == "aligned" else \
            sorted(rng.uniform(0.0, ramp) for _ in range(calls))
        await asyncio.gather(*(call_slot(run, i, t, stop, args.soak, tag, tuple(args.wrapup), rng)
                               for i, t in enumerate(starts)))
        await asyncio.sleep(1.0)  # let the stream deliver the last alerts
        sse.cancel()
        await mon
    return summarize(run, calls, duration, series, ramp)


WIND_DOWN_S = 3.0  # the last seconds of a run, left out of the steady figures


def summarize(run: Run, calls: int, duration: float, series: list[dict], ramp: float) -> dict[str, Any]:
    audio = [r for r in run.requests if r.kind == "audio"]
    # steady: after the ramp, and before the wind-down, when every line hangs up within the same second (a burst
    # of N end-of-call summaries and full-timeline checks that a live centre, whose calls end at random, never sees)
    steady = [r.latency for r in audio if r.latency is not None and ramp + 5 <= r.t_send < duration - WIND_DOWN_S
              and not r.error]
    lat = [r.latency for r in audio if r.latency is not None and not r.error]
    tr = [r.latency for r in run.requests if r.kind == "transcript" and r.latency is not None and not r.error]
    errors = [r for r in run.requests if r.error]
    delivery = [run.alert_seen[a] - t for a, t in run.alert_sent.items() if a in run.alert_seen]
    rss = [s["server_rss_mb"] for s in series if s["server_rss_mb"]]
    third = max(1, len(rss) // 3)
    return {
        "calls": calls, "duration_s": duration, "ramp_s": ramp, "soak": None,
        "requests": len(run.requests), "audio_chunks": len(audio),
        "chunk_latency_ms": {"p50": ms(pct(lat, 50)), "p95": ms(pct(lat, 95)), "p99": ms(pct(lat, 99)),
                             "max": ms(max(lat) if lat else None)},
        "chunk_latency_steady_ms": {"p50": ms(pct(steady, 50)), "p95": ms(pct(steady, 95)),
                                    "p99": ms(pct(steady, 99)), "n": len(steady)},
        "transcript_latency_ms": {"p50": ms(pct(tr, 50)), "p99": ms(pct(tr, 99)), "n": len(tr)},
        "alerts": {"in_responses": run.totals.alerts_in_response,
                   "on_stream": sum(1 for a in run.alert_sent if a in run.alert_seen),
                   "delivery_ms_p50": ms(pct(delivery, 50)), "delivery_ms_p99": ms(pct(delivery, 99)),
                   "never_delivered": sum(1 for a in run.alert_sent if a not in run.alert_seen)},
        "errors": len(errors), "error_examples": sorted({f"{r.status}: {r.error}" for r in errors})[:5],
        "totals": asdict(run.totals),
        "server_cpu_pct_mean": round(float(np.mean([s["server_cpu_pct"] for s in series])), 1) if series else None,
        "client_cpu_pct_mean": round(float(np.mean([s["client_cpu_pct"] for s in series])), 1) if series else None,
        "loadavg_1m_mean": round(float(np.mean([s["loadavg_1m"] for s in series])), 2) if series else None,
        "steal_pct_mean": round(float(np.mean([s["steal_pct"] for s in series])), 1) if series else None,
        "rss_mb_first_third_mean": round(float(np.mean(rss[:third])), 1) if rss else None,
        "rss_mb_last_third_mean": round(float(np.mean(rss[-third:])), 1) if rss else None,
        "asr": asr_summary(run, duration) if run.asr_calls is not None else None,
        "series": series,
    }


def asr_summary(run: Run, duration: float) -> dict[str, Any]:
    """Live ASR of the ``--asr-calls`` calls: their status, transcripts and latency, and whether recognition kept
    up (the mean latency of transcripts whose speech ended in the run's last third is not above the first
    third's by more than a second)."""
    res = run.asr_results
    lat = [x for r in res for x in r["latency_s"]]
    first = [t["latency_s"] for r in res for t in r["transcripts"] if r["start"] + t["end"] < duration / 3]
    last = [t["latency_s"] for r in res for t in r["transcripts"] if r["start"] + t["end"] >= 2 * duration / 3]
    f, la = (float(np.mean(first)) if first else None), (float(np.mean(last)) if last else None)
    status: dict[str, int] = {}
    for r in res:
        status[str(r["asr"])] = status.get(str(r["asr"]), 0) + 1
    return {
        "calls": run.asr_calls, "status": status, "transcripts": len(lat),
        "latency_s": {"p50": pct(lat, 50), "p95": pct(lat, 95), "max": max(lat) if lat else None},
        "first_third_mean_s": f, "last_third_mean_s": la,
        "keeps_up": None if f is None or la is None else la <= f + 1.0,
        "per_call": res,
    }


def table_row(s: dict[str, Any]) -> str:
    c, st = s["chunk_latency_ms"], s["chunk_latency_steady_ms"]
    return (f"| {s['calls']} | {s['duration_s']:.0f} | {c['p50']} | {c['p95']} | {c['p99']} | {st['p99']} | "
            f"{s['alerts']['delivery_ms_p50']} / {s['alerts']['delivery_ms_p99']} | {s['errors']} | "
            f"{s['totals']['chunks_missing']} / {s['totals']['chunks_out_of_order']} | {s['server_cpu_pct_mean']} | "
            f"{s['client_cpu_pct_mean']} | {s['rss_mb_first_third_mean']} → {s['rss_mb_last_third_mean']} | "
            f"{s['loadavg_1m_mean']} | {s.get('steal_pct_mean')} |")


HEADER = ("| calls | s | p50 ms | p95 ms | p99 ms | p99 steady ms | alert delivery p50/p99 ms | errors | "
          "missing / out-of-order | server CPU % | client CPU % | server RSS MB (first → last third) | load avg | steal % |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default="http://127.0.0.1:8000")
    p.add_argument("--api-key", default=os.environ.get("NUQI_BOOTSTRAP_ADMIN_KEY"),
                   help="an admin key (the script creates its ingest key); omit when auth is off")
    p.add_argument("--calls", type=int, default=100)
    p.add_argument("--steps", help="comma-separated call counts, run one after another (knee search)")
    p.add_argument("--duration", type=float, default=90.0, help="seconds per load level")
    p.add_argument("--ramp", type=float, default=10.0, help="call starts are spread over this many seconds")
    p.add_argument("--soak", action="store_true", help="replace each finished call with a new one")
    p.add_argument("--phases", choices=("random", "aligned"), default="random",
                   help="call starts: random within the ramp (default), or the old fixed stagger i * ramp / N")
    p.add_argument("--wrapup", type=float, nargs=2, default=(0.0, 0.0), metavar=("MIN", "MAX"),
                   help="soak: seconds between a call's end and the line's next call (uniform; default none, "
                        "so N calls stay live)")
    p.add_argument("--seed", type=int, default=1, help="seed of the start times and wrap-up pauses")
    p.add_argument("--no-transcripts", action="store_true")
    p.add_argument("--pause", type=float, default=10.0, help="seconds between steps")
    p.add_argument("--timeout", type=float, default=30.0)
    p.add_argument("--sample-s", type=float, default=5.0)
    p.add_argument("--asr-calls", type=int, default=None,
                   help="the first N call lines are audio-only calls with asr=on (--asr-audio), the other lines "
                        "send asr=off; default: no asr parameter (the service's NUQI_LIVE_ASR decides)")
    p.add_argument("--asr-audio", choices=("aishell", "sample", "neural"), default="aishell",
                   help="audio of the ASR calls: real AISHELL speech (212 s), the espeak sample call, or the "
                        "sample call with the neural customer voice")
    p.add_argument("--out", help="write the summaries (with time series) as JSON here")
    args = p.parse_args(argv)

    levels = [int(x) for x in args.steps.split(",")] if args.steps else [args.calls]
    results = []
    for i, n in enumerate(levels):
        if i:
            time.sleep(args.pause)
        s = asyncio.run(run_level(args, n, args.duration))
        s["soak"] = bool(args.soak)
        results.append(s)
        print(json.dumps({k: v for k, v in s.items() if k != "series"}, ensure_ascii=False), flush=True)
        if s.get("asr"):
            a = s["asr"]
            print(f"ASR: {a['calls']} calls {a['status']}, {a['transcripts']} transcripts, latency p50 "
                  f"{a['latency_s']['p50']} s p95 {a['latency_s']['p95']} s, keeps up: {a['keeps_up']}", flush=True)
    print("\n" + HEADER)
    for s in results:
        print(table_row(s))
    knee = next((s["calls"] for s in results if (s["chunk_latency_steady_ms"]["p99"] or 0) > 250), None)
    print(f"\nknee (first level with steady p99 > 250 ms): {knee if knee else 'not reached'}")
    if args.out:
        Path(args.out).write_text(json.dumps({"levels": results, "knee_calls": knee, "argv": sys.argv},
                                             ensure_ascii=False, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
