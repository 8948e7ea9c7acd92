"""Service round trip for sequential 1 s stereo chunks over HTTP on loopback.

Starts `nuqi serve` (SQLite store in a temp dir, auth off) on a free port, posts the
sample call `sample_audio/call_escalating_8k.wav` (and the 16 kHz mono clips) one 1 s
chunk at a time, waits for each response, and prints p50/p95/p99 of the round trip and the server's CPU time
per chunk (its process tree; only for the server it starts itself).

    .venv/bin/python bench/bench_service.py --calls 4
"""
from __future__ import annotations

import argparse
import io
import os
import socket
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

import httpx
import numpy as np
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipelines.audio.files import read_audio_file  # noqa: E402


def wav_bytes(x: np.ndarray, sr: int) -> bytes:
    ch = 1 if x.ndim == 1 else x.shape[1]
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(ch)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes((np.clip(x, -1, 1) * 32767).astype("<i2").tobytes())
    return buf.getvalue()


def tree_cpu_s(root: psutil.Process) -> float:
    """User + system CPU seconds of a process and its children."""
    total = 0.0
    for p in [root, *root.children(recursive=True)]:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:  # gone (or a zombie) between listing and reading
            pass
    return total


def wait_ready(url: str, proc: subprocess.Popen, timeout_s: float = 120.0) -> None:
    """Poll ``/readyz`` until it answers 200; exit if the service process dies first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise SystemExit(f"the service exited with {proc.returncode} before it was ready")
        time.sleep(0.2)
    raise SystemExit(f"the service at {url} was not ready after {timeout_s:.0f} s")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=4, help="how many times to replay the sample call")
    ap.add_argument("--url", help="use a running service instead of starting one")
    args = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="nuqi-bench-")
    proc = None
    url = args.url
    if url is None:
        port = free_port()
        env = {**os.environ, "NUQI_STATE_DIR": tmp, "OMP_NUM_THREADS": "1", "NUQI_LOG_LEVEL": "warning"}
        proc = subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--port", str(port)], cwd=ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, proc)
    server = psutil.Process(proc.pid) if proc is not None else None

    def server_cpu_s() -> float:  # the service's process tree (its own started server only)
        return float("nan") if server is None else tree_cpu_s(server)

    try:
        results = {}
        x, sr = read_audio_file(ROOT / "sample_audio" / "call_escalating_8k.wav")
        y, sr16 = read_audio_file(ROOT / "sample_audio" / "customer_angry_16k.wav")
        cases = {"8 kHz stereo (agent+customer)": (x, sr), "16 kHz mono (customer)": (y[:, 0], sr16)}
        with httpx.Client(timeout=30) as client:
            for k, (name, (audio, rate)) in enumerate(cases.items()):
                lat = []
                reps = args.calls if audio.ndim == 2 else args.calls * 8
                cpu0 = server_cpu_s()
                for c in range(reps):
                    for seq, i in enumerate(range(0, len(audio), rate)):
                        body = wav_bytes(audio[i:i + rate], rate)
                        t0 = time.perf_counter()
                        r = client.post(f"{url}/v1/calls/bench-{k}-{c}-{os.getpid()}/audio",
                                        params={"seq": seq, "agent_id": "bench"}, content=body)
                        lat.append((time.perf_counter() - t0) * 1000)
                        assert r.status_code == 200, r.text
                a = np.array(lat)
                cpu_ms = (server_cpu_s() - cpu0) * 1000 / len(a)
                results[name] = (len(a), *np.percentile(a, [50, 95, 99]), a.max(), cpu_ms)
        print(f"loadavg {os.getloadavg()}")
        print("| chunks | n | p50 ms | p95 ms | p99 ms | max ms | server CPU ms per chunk |")
        print("|---|---|---|---|---|---|---|")
        for name, (n, p50, p95, p99, mx, cpu_ms) in results.items():
            print(f"| {name} | {n} | {p50:.1f} | {p95:.1f} | {p99:.1f} | {mx:.1f} | {cpu_ms:.1f} |")
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
