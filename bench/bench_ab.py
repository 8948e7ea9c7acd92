"""Paired A/B of the service's CPU per request: two source trees served side by side, requests interleaved.

This machine's speed drifts by up to 1.7x within minutes (a shared host; the hypervisor's steal counter does
not show it), so two runs of ``bench_service.py`` one after the other cannot resolve a change of a few
percent.  Here both services run at once (1 worker each, SQLite in a temp dir, ``OMP_NUM_THREADS=1``) and
get the same sample-call chunks in alternating blocks (A then B, then B then A, ...); each block's server CPU
(process tree, user + system) is read before and after it, so both variants see the same moments of the
host and the per-block ratio B/A cancels the drift.  Prints CPU ms per request for each variant and the
median and interquartile range of the block ratios.

    git worktree add /tmp/nuqi-base HEAD          # the baseline (or any commit)
    .venv/bin/python bench/bench_ab.py --a /tmp/nuqi-base --b . --blocks 40
    # auth on in both (one ingest request = key check + rate limit + ...):
    .venv/bin/python bench/bench_ab.py --a /tmp/nuqi-base --b . --auth
    # one tree, two settings:
    .venv/bin/python bench/bench_ab.py --a . --b . --env-a NUQI_LOG_LEVEL=info --env-b NUQI_LOG_LEVEL=info NUQI_ACCESS_LOG=false

Both trees run with this checkout's virtual environment (``python -m app.cli`` from each tree's root, so each
imports its own ``app``/``pipelines`` and serves its own ``models/``).
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_service import free_port, tree_cpu_s, wait_ready, wav_bytes  # noqa: E402
from pipelines.audio.files import read_audio_file  # noqa: E402

ADMIN_KEY = "bench-ab-root-key-0123456789"


class Server:
    def __init__(self, tree: Path, auth: bool, extra_env: list[str]) -> None:
        self.tree, self.port, self.tmp = tree, free_port(), tempfile.mkdtemp(prefix="nuqi-ab-")
        env = {**os.environ, "NUQI_STATE_DIR": self.tmp, "OMP_NUM_THREADS": "1", "NUQI_LOG_LEVEL": "warning",
               "NUQI_AUTH_ENABLED": "true" if auth else "false", "PYTHONPATH": str(tree)}
        if auth:
            env["NUQI_BOOTSTRAP_ADMIN_KEY"] = ADMIN_KEY
        env.update(kv.split("=", 1) for kv in extra_env)
        self.proc = subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1", "--port",
                                      str(self.port)], cwd=tree, env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = f"http://127.0.0.1:{self.port}"
        self.headers: dict[str, str] = {}
        self.auth = auth

    def wait_ready(self, client: httpx.Client) -> None:
        wait_ready(self.url, self.proc)
        if self.auth:  # an ingest key, as the call platform would use
            r = client.post(f"{self.url}/v1/admin/keys", headers={"X-API-Key": ADMIN_KEY},
                            json={"role": "ingest", "name": "bench/bench_ab.py", "rate_per_s": 100000, "burst": 100000})
            r.raise_for_status()
            self.headers = {"X-API-Key": r.json()["key"]}

    def cpu_s(self) -> float:
        return tree_cpu_s(psutil.Process(self.proc.pid))

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(15)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--a", type=Path, required=True, help="source tree of variant A (the baseline)")
    ap.add_argument("--b", type=Path, required=True, help="source tree of variant B")
    ap.add_argument("--blocks", type=int, default=40, help="pairs of blocks")
    ap.add_argument("--block-size", type=int, default=25, help="chunks per block (1-s stereo, 8 kHz)")
    ap.add_argument("--auth", action="store_true", help="auth on in both, requests with an ingest key")
    ap.add_argument("--env-a", nargs="*", default=[], metavar="KEY=VALUE", help="extra environment of A")
    ap.add_argument("--env-b", nargs="*", default=[], metavar="KEY=VALUE", help="extra environment of B")
    args = ap.parse_args()

    audio, rate = read_audio_file(ROOT / "sample_audio" / "call_escalating_8k.wav")
    bodies = [wav_bytes(audio[i:i + rate], rate) for i in range(0, len(audio) - rate + 1, rate)]
    servers = {"A": Server(args.a.resolve(), args.auth, args.env_a), "B": Server(args.b.resolve(), args.auth, args.env_b)}
    cpu = {"A": [], "B": []}
    progress = {"A": [0, 0], "B": [0, 0]}  # call number, next seq

    def block(client: httpx.Client, name: str) -> float:
        s = servers[name]
        c0 = s.cpu_s()
        for _ in range(args.block_size):
            call, seq = progress[name]
            if seq == len(bodies):
                call, seq = call + 1, 0
            r = client.post(f"{s.url}/v1/calls/ab-{call}/audio", params={"seq": seq, "agent_id": "bench"},
                            content=bodies[seq], headers=s.headers)
            if r.status_code != 200:
                raise SystemExit(f"{name}: HTTP {r.status_code}: {r.text[:300]}")
            progress[name] = [call, seq + 1]
        return (s.cpu_s() - c0) * 1000 / args.block_size

    try:
        with httpx.Client(timeout=30) as client:
            for s in servers.values():
                s.wait_ready(client)
            for name in ("A", "B"):  # warm-up: first calls, caches, lazy imports
                block(client, name)
            for i in range(args.blocks):
                order = ("A", "B") if i % 2 == 0 else ("B", "A")
                for name in order:
                    cpu[name].append(block(client, name))
    finally:
        for s in servers.values():
            s.stop()
    ratios = sorted(b / a for a, b in zip(cpu["A"], cpu["B"]) if a > 0)
    q = statistics.quantiles(ratios, n=4)
    print(f"A = {args.a} {' '.join(args.env_a)}\nB = {args.b} {' '.join(args.env_b)}\nauth {'on' if args.auth else 'off'}, {args.blocks} block pairs of "
          f"{args.block_size} chunks (8 kHz stereo, 1 s)")
    print("| variant | server CPU ms per chunk, median of blocks | mean |")
    print("|---|---|---|")
    for name in ("A", "B"):
        print(f"| {name} | {statistics.median(cpu[name]):.2f} | {statistics.fmean(cpu[name]):.2f} |")
    print(f"B/A per block pair: median {statistics.median(ratios):.3f} (IQR {q[0]:.3f}-{q[2]:.3f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
