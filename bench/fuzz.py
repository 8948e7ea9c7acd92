"""The larger hostile-input run against a live service (its figures go to bench/RESULTS_fuzz.md).

1. schemathesis: every operation of the live OpenAPI schema, ``--api-examples`` generated requests each
   (positive and negative data, with an admin key), checking: no 5xx, no request slower than ``--hung-s``.
2. audio decoder fuzz: ``--audio-examples`` random / truncated / mutated / lying WAV, PCM and G.711 bodies
   (``tests/app/fuzz_inputs.py``) posted as chunks, same checks.

    NUQI_AUTH_ENABLED=true NUQI_BOOTSTRAP_ADMIN_KEY=fuzz-root-key-0123456789 make serve PORT=8010
    .venv/bin/python bench/fuzz.py --url http://127.0.0.1:8010 --api-key fuzz-root-key-0123456789 \\
        --api-examples 200 --audio-examples 3000
"""
from __future__ import annotations

import argparse
import collections
import itertools
import json
import sys
import time
from pathlib import Path

import httpx
from hypothesis import HealthCheck, given, settings

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.app.fuzz_inputs import hostile_bodies, tame  # noqa: E402


def _probe_operation(op, label: str, url: str, headers: dict, examples: int, hung_s: float,  # noqa: ANN001
                     failures: list[str], slowest: dict[str, float]) -> collections.Counter:
    """Fuzz one operation; returns its status-code counts (failures and slowest times are appended/updated)."""
    codes: collections.Counter = collections.Counter()

    @given(op.as_strategy())
    @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def probe(case) -> None:  # noqa: ANN001
        tame(case)
        t0 = time.monotonic()
        try:
            r = case.call(base_url=url, headers=headers, timeout=hung_s + 5)
            status = r.status_code
        except Exception as exc:  # noqa: BLE001 - a transport failure is a finding, recorded
            status = f"exception {type(exc).__name__}"
        took = time.monotonic() - t0
        codes[status] += 1
        slowest[label] = max(slowest.get(label, 0.0), took)
        readyz_down = op.path == "/readyz" and status == 503
        if (isinstance(status, str) or status >= 500) and not readyz_down:
            failures.append(f"{label}: {status} {case.query} {str(case.body)[:100]}")
        if took > hung_s:
            failures.append(f"{label}: hung {took:.1f} s")

    probe()
    return codes


def run_schemathesis(url: str, headers: dict, examples: int, hung_s: float) -> dict:
    import schemathesis

    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    per_op: dict[str, collections.Counter] = {}
    slowest: dict[str, float] = {}
    failures: list[str] = []
    for result in schema.get_all_operations():
        op = result.ok()
        label = f"{op.method.upper()} {op.path}"
        t0 = time.monotonic()
        per_op[label] = _probe_operation(op, label, url, headers, examples, hung_s, failures, slowest)
        print(f"  {label}: {sum(per_op[label].values())} requests {dict(per_op[label])} in {time.monotonic() - t0:.1f} s",
              file=sys.stderr, flush=True)
    total = sum(sum(c.values()) for c in per_op.values())
    return {"operations": len(per_op), "requests": total, "failures": failures,
            "status": {k: dict(v) for k, v in per_op.items()}, "slowest_s": {k: round(v, 3) for k, v in slowest.items()}}


def run_audio(url: str, headers: dict, examples: int, hung_s: float) -> dict:
    codes: collections.Counter = collections.Counter()
    errors: collections.Counter = collections.Counter()
    lat: list[float] = []
    failures: list[str] = []
    ids = itertools.count()
    client = httpx.Client(base_url=url, headers=headers, timeout=hung_s + 5)

    @given(hostile_bodies())
    @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def probe(body_params) -> None:  # noqa: ANN001
        body, params = body_params
        t0 = time.monotonic()
        try:
            r = client.post(f"/v1/calls/afz-{time.time_ns()}-{next(ids)}/audio", params={"seq": 0, **params},
                            content=body)
        except httpx.HTTPError as exc:
            failures.append(f"transport {type(exc).__name__}: {params} {body[:32]!r}")
            return
        took = time.monotonic() - t0
        lat.append(took)
        codes[r.status_code] += 1
        if r.status_code != 200:
            errors[r.json().get("error", {}).get("code", "?")] += 1
        if r.status_code >= 500:
            failures.append(f"{r.status_code}: {r.text[:200]} {params} {body[:32]!r}")
        if took > hung_s:
            failures.append(f"hung {took:.1f} s: {params} len={len(body)}")

    t0 = time.monotonic()
    probe()
    lat.sort()
    return {"requests": len(lat), "seconds": round(time.monotonic() - t0, 1), "status": dict(codes),
            "error_codes": dict(errors), "failures": failures,
            "latency_ms": {"p50": round(lat[len(lat) // 2] * 1e3, 1) if lat else None,
                           "p99": round(lat[int(len(lat) * 0.99) - 1] * 1e3, 1) if lat else None,
                           "max": round(lat[-1] * 1e3, 1) if lat else None}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default="http://127.0.0.1:8000")
    p.add_argument("--api-key", required=True, help="an admin key of the running service")
    p.add_argument("--api-examples", type=int, default=200)
    p.add_argument("--audio-examples", type=int, default=3000)
    p.add_argument("--hung-s", type=float, default=10.0)
    p.add_argument("--out", help="write the figures as JSON here")
    args = p.parse_args(argv)
    headers = {"X-API-Key": args.api_key}
    t0 = time.monotonic()
    api = run_schemathesis(args.url, headers, args.api_examples, args.hung_s)
    audio = run_audio(args.url, headers, args.audio_examples, args.hung_s)
    out = {"api": api, "audio": audio, "seconds": round(time.monotonic() - t0, 1), "argv": sys.argv}
    print(json.dumps(out, ensure_ascii=False, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(out, ensure_ascii=False, indent=1))
    return 1 if api["failures"] or audio["failures"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
