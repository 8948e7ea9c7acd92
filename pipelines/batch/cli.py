"""``nuqi score``: QA batch scoring of recorded calls into CSV / JSON / HTML reports.

    nuqi score PATH... --out DIR [--channel-map agent,customer] [--workers N] [--force]
                       [--asr auto|on|off] [--ray ADDRESS] [--no-html]

Registered in ``app/cli.py`` with ``add_parser(sub)``; also runnable on its own as
``python -m pipelines.batch.cli score ...``.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys

from pipelines.errors import NuqiError
from pipelines.settings import get_settings

logger = logging.getLogger("nuqi.batch.cli")


def cmd_score(args: argparse.Namespace) -> int:
    # lazy on purpose: the scoring stack (onnxruntime, models, matplotlib) loads only when `nuqi score` runs,
    # not for `nuqi --help` or the other sub-commands that register this parser
    from pipelines.batch.score import run_batch

    try:
        result = run_batch(args.paths, args.out, settings=get_settings(), channel_map=args.channel_map,
                           workers=args.workers, force=args.force, asr=args.asr, ray_address=args.ray,
                           html=not args.no_html, progress=(not args.quiet and sys.stderr.isatty()) or args.progress)
    except NuqiError as exc:
        sys.stderr.write(f"nuqi score: {exc.message}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("nuqi score: interrupted; run the same command again to resume\n")
        return 130
    for note in result.notes:
        sys.stderr.write(f"nuqi score: {note}\n")
    p = result.progress.to_dict()
    sys.stdout.write(json.dumps({
        "out": str(result.out_dir), "summary_csv": str(result.summary_csv), "index_html": str(result.index_html),
        "calls": p["total"], "scored": p["scored"], "skipped": p["skipped"], "errors": p["failed"],
        "audio_s": p["audio_s"], "elapsed_s": p["elapsed_s"], "x_realtime": p["x_realtime"],
    }, ensure_ascii=False) + "\n")
    return 1 if p["failed"] else 0


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``score`` sub-command to ``nuqi``'s sub-parsers."""
    s = subparsers.add_parser(
        "score", help="QA batch: score recorded calls into summary.csv, per-call JSON/HTML and index.html",
        description="Score WAV/FLAC/MP3 (incl. G.711 WAV) calls or folders of them. Stereo files: channel map "
                    "(default agent = left, customer = right); mono: customer. Transcripts come from a sidecar "
                    "with the same stem (.json turns, .jsonl or .srt) or from the built-in ASR. Calls whose "
                    "DIR/calls/<call>.json exists are skipped unless --force. Exit status 1 when a file failed "
                    "(see the status/error columns of summary.csv), 2 when the batch could not run.")
    s.add_argument("paths", nargs="+", metavar="PATH", help="audio files or folders (searched recursively)")
    s.add_argument("--out", required=True, metavar="DIR", help="output folder (created)")
    s.add_argument("--channel-map",
                   help="roles of the channels, e.g. agent,customer (stereo default) or customer,agent")
    s.add_argument("--workers", type=int, default=1, help="worker processes (each loads the models once); default 1")
    s.add_argument("--force", action="store_true", help="score again calls that already have DIR/calls/<call>.json")
    s.add_argument("--asr", choices=("auto", "on", "off"), default="auto",
                   help="transcribe calls without a sidecar with the built-in ASR: auto = when the model is "
                        "assembled (nuqi models), on = required, off = never (default auto)")
    s.add_argument("--ray", metavar="ADDRESS", default=None,
                   help="run on a Ray cluster (ray://host:10001, auto, or local); default: setting ray_address")
    s.add_argument("--no-html", action="store_true", help="skip the per-call HTML pages (faster)")
    s.add_argument("--progress", action="store_true", help="show the progress bar even when stderr is not a terminal")
    s.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    s.set_defaults(fn=cmd_score)
    return s


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="nuqi")
    p.add_argument("-v", "--verbose", action="store_true")
    add_parser(p.add_subparsers(dest="command", required=True))
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    return int(args.fn(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
