"""Telephony load: concurrent calls streaming 20 ms frames in real time over WebSockets, and RTP legs from ffmpeg.

Starts its own service (``uvicorn app.main:create_app``, ``--workers`` processes for the WebSocket steps and one for
RTP, whose ports belong to one process; SQLite store in a temporary directory; auth off), then for each step:

* ``stereo N``: N calls, each one WebSocket (``/v1/calls/{id}/stream``, raw s16le stereo, ``channels=2``) sending the
  sample call (``sample_audio/call_escalating_8k.wav``) as 20 ms frames on a fixed real-time schedule (frame k
  leaves at the call's start + k * 20 ms, whatever the server answers: open loop), calls starting at random phases
  within the first second;
* ``legs N``: the same with two mono WebSockets per call (``role=customer`` and ``role=agent``, ``start=0``);
* ``rtp N``: N RTP legs (PCMU, ``ffmpeg -re``) allocated with ``POST /v1/calls/{id}/rtp``.

Measured: latency from sending a window's last frame to receiving that window's analysis message (p50/p95/p99;
both legs' windows in ``legs`` mode), windows expected vs received, frames the server reported lost, error messages,
the service's CPU time per call (and its share of one core), and the host load (``uptime``) at the start and end.

    PYTHONPATH=. .venv/bin/python bench/bench_telephony.py --steps stereo:25,stereo:50,stereo:100,legs:100,rtp:20 \\
        --seconds 30 --out /tmp/bench_telephony.json
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil
import websockets

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.bench_service import free_port, tree_cpu_s  # noqa: E402

AUDIO = REPO / "sample_audio" / "call_escalating_8k.wav"
RATE, FRAME = 8000, 160


def load_call(seconds: float) -> np.ndarray:
    with wave.open(str(AUDIO)) as w:
        x = np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, 2)
    return x[:int(seconds * RATE)].copy()


def start_service(port: int, state: Path, workers: int = 1, ws: str = "auto") -> subprocess.Popen:
    env = {**os.environ, "NUQI_STATE_DIR": str(state), "NUQI_STORE": "sqlite", "NUQI_RTP_PORTS": "24000-24199",
           "NUQI_RTP_HOST": "127.0.0.1", "NUQI_RTP_IDLE_TIMEOUT_S": "2", "NUQI_ACCESS_LOG": "false",
           "NUQI_LOG_LEVEL": "warning", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "app.main:create_app", "--factory", "--host",
                             "127.0.0.1", "--port", str(port), "--workers", str(workers), "--log-level", "warning",
                             "--no-access-log", "--ws", ws],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    t0 = time.time()
    while time.time() - t0 < 120:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(proc.stderr.read().decode()[-2000:] if proc.stderr else "service died")
        time.sleep(0.5)
    raise RuntimeError("service did not become ready")


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


class Stats:
    def __init__(self) -> None:
        self.lat: list[float] = []
        self.expected = 0
        self.received = 0
        self.lost_frames = 0
        self.errors: list[str] = []


async def ws_leg(url: str, frames: list[bytes], t0: float, stats: Stats, windows: int) -> None:
    """One WebSocket: frames on a real-time schedule from t0; analysis messages matched to their window's last
    frame."""
    sent_at: dict[float, float] = {}
    per_window = RATE // FRAME
    got = 0
    async with websockets.connect(url, max_size=2 ** 22, ping_interval=None) as ws:
        async def reader() -> None:
            nonlocal got
            async for raw in ws:
                m = json.loads(raw)
                now = time.perf_counter()
                if m.get("type") == "analysis":
                    got += 1
                    t_end = round(m["t_end"], 3)
                    if t_end in sent_at and not m["windows"][0].get("final"):
                        stats.lat.append(now - sent_at[t_end])
                    stats.lost_frames += sum(round(g["duration_s"] / 0.02) for g in m.get("lost", []))
                elif "error" in m:
                    stats.errors.append(m["error"]["message"][:200])
                elif m.get("status") in ("ended", "active"):
                    return

        task = asyncio.create_task(reader())
        for k, f in enumerate(frames):
            delay = t0 + (k + 1) * FRAME / RATE - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            await ws.send(f)
            if (k + 1) % per_window == 0:
                sent_at[round((k + 1) * FRAME / RATE, 3)] = time.perf_counter()
        await ws.send(json.dumps({"type": "end"}))
        try:
            await asyncio.wait_for(task, 60)
        except asyncio.TimeoutError:
            stats.errors.append("no end reply within 60 s")
    stats.expected += windows
    stats.received += got


async def ws_step(base: str, mode: str, n: int, call: np.ndarray, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    stats = Stats()
    n_windows = -(-len(call) // RATE)
    stereo = [call[i:i + FRAME].tobytes() for i in range(0, len(call), FRAME)]
    mono = {r: [call[i:i + FRAME, c].tobytes() for i in range(0, len(call), FRAME)]
            for r, c in (("agent", 0), ("customer", 1))}
    start = time.perf_counter() + 1.0
    tasks = []
    for c in range(n):
        t0 = start + rng.random()
        cid = f"bench-{mode}-{n}-{c}-{seed}"
        if mode == "stereo":
            url = f"{base}/v1/calls/{cid}/stream?encoding=pcm_s16le&sample_rate=8000&channels=2"
            tasks.append(ws_leg(url, stereo, t0, stats, n_windows))
        else:
            for role in ("customer", "agent"):
                url = f"{base}/v1/calls/{cid}/stream?encoding=pcm_s16le&sample_rate=8000&role={role}&start=0&seq=0"
                tasks.append(ws_leg(url, mono[role], t0, stats, n_windows))
    results = await asyncio.gather(*tasks, return_exceptions=True)
    stats.errors += [repr(r)[:200] for r in results if isinstance(r, BaseException)]
    return summarize(stats)


def summarize(stats: Stats) -> dict[str, Any]:
    lat = np.array(stats.lat) * 1000 if stats.lat else np.array([np.nan])
    return {"windows_expected": stats.expected, "windows_received": stats.received, "latency_ms": {
        "p50": round(float(np.percentile(lat, 50)), 1), "p95": round(float(np.percentile(lat, 95)), 1),
        "p99": round(float(np.percentile(lat, 99)), 1), "max": round(float(np.max(lat)), 1), "n": len(stats.lat)},
        "frames_lost": stats.lost_frames, "errors": len(stats.errors), "error_samples": stats.errors[:5]}


def rtp_step(http: str, n: int, call: np.ndarray, tmp: Path, seed: int) -> dict[str, Any]:
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        return {"skipped": "ffmpeg not installed"}
    wav = tmp / "leg.wav"
    with wave.open(str(wav), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(call[:, 1].astype("<i2").tobytes())
    ids, procs = [], []
    for i in range(n):
        cid = f"bench-rtp-{n}-{i}-{seed}"
        r = httpx.post(f"{http}/v1/calls/{cid}/rtp", json={"role": "customer", "codec": "pcmu"}, timeout=10)
        r.raise_for_status()
        ids.append(cid)
        procs.append(subprocess.Popen([ffmpeg, "-hide_banner", "-loglevel", "error", "-re", "-i", str(wav),
                                       "-c:a", "pcm_mulaw", "-f", "rtp", f"rtp://127.0.0.1:{r.json()['port']}"], stdout=subprocess.DEVNULL))
    rc = [p.wait() for p in procs]
    t0 = time.time()
    views = {}
    while time.time() - t0 < 60 and len(views) < n:
        for cid in ids:
            if cid not in views:
                v = httpx.get(f"{http}/v1/calls/{cid}", timeout=10).json()
                if v.get("status") == "ended":
                    views[cid] = v
        time.sleep(0.5)
    expected = -(-len(call) // RATE)
    lost = sum(w["lost_s"] for v in views.values() for e in v["timeline"] for w in e["windows"])
    return {"legs": n, "ffmpeg_rc": sorted(set(rc)), "calls_ended": len(views),
            "windows": sum(len(v["timeline"]) for v in views.values()), "windows_expected": n * expected,
            "lost_s": round(lost, 3)}


def service_cpu(proc: subprocess.Popen) -> float:
    return tree_cpu_s(psutil.Process(proc.pid))


def run_step(proc: subprocess.Popen, port: int, mode: str, n: int, call: np.ndarray, tmp: Path,
             args: argparse.Namespace) -> dict[str, Any]:
    me = psutil.Process()
    cpu0, w0, me0, load0 = service_cpu(proc), time.time(), me.cpu_times(), os.getloadavg()[0]
    if mode == "rtp":
        res = rtp_step(f"http://127.0.0.1:{port}", n, call, tmp, args.seed)
    else:
        res = asyncio.run(ws_step(f"ws://127.0.0.1:{port}", mode, n, call, args.seed))
    cpu, wall, me1 = service_cpu(proc) - cpu0, time.time() - w0, me.cpu_times()
    client = (me1.user + me1.system) - (me0.user + me0.system)
    res.update(step=f"{mode}:{n}", wall_s=round(wall, 1), service_cpu_s=round(cpu, 1),
               service_cores=round(cpu / wall, 2), cpu_ms_per_call_s=round(1000 * cpu / (n * args.seconds), 2),
               client_cores=round(client / wall, 2), loadavg_1m_before=round(load0, 2),
               loadavg_1m_after=round(os.getloadavg()[0], 2), uptime_after=uptime())
    print(json.dumps(res), flush=True)
    time.sleep(5)  # let the service settle between steps
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", default="stereo:25,stereo:50,stereo:100,legs:100,rtp:20")
    ap.add_argument("--seconds", type=float, default=30.0, help="seconds of the sample call each call streams")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workers", type=int, default=2, help="service worker processes for the WebSocket steps")
    ap.add_argument("--ws", default="auto", help="uvicorn's WebSocket implementation (auto, websockets, "
                    "websockets-sansio, wsproto)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    call = load_call(args.seconds)
    out: dict[str, Any] = {"host_start": uptime(), "cpu_count": psutil.cpu_count(), "seconds": args.seconds,
                           "workers": args.workers, "steps": []}
    steps = [st.split(":") for st in args.steps.split(",")]
    with tempfile.TemporaryDirectory() as tmpd:
        tmp = Path(tmpd)
        # WebSocket calls on --workers processes; RTP on one (its UDP ports belong to the allocating process)
        for kind, workers in (("ws", args.workers), ("rtp", 1)):
            todo = [(m, int(n)) for m, n in steps if (m == "rtp") == (kind == "rtp")]
            if not todo:
                continue
            port = free_port()
            proc = start_service(port, tmp / f"state-{kind}", workers, args.ws)
            try:
                for mode, n in todo:
                    out["steps"].append(run_step(proc, port, mode, n, call, tmp, args))
            finally:
                proc.terminate()
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
    out["host_end"] = uptime()
    print(json.dumps({"host_start": out["host_start"], "host_end": out["host_end"]}))
    if args.out:
        args.out.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
