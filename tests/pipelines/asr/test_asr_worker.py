"""Live ASR worker processes: real utterances of the committed call through real spawned recognisers."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from pipelines.asr.filters import character_error_rate
from pipelines.asr.segmenter import UtteranceSegmenter
from pipelines.asr.worker import AsrWorkerPool, UtteranceTranscript

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def pool(assembled_model_dir: Path):
    with AsrWorkerPool(assembled_model_dir, workers=2) as p:
        yield p


def test_worker_processes_transcribe_the_customer_leg(pool: AsrWorkerPool, customer_windows,
                                                     customer_turns) -> None:
    seg = UtteranceSegmenter("call-w", "customer")
    futures = []
    for w in customer_windows:
        futures += [pool.submit(u) for u in seg.push_window(w)]
    results = [f.result(timeout=300) for f in futures]
    turns = customer_turns
    assert len(results) == len(turns)
    pids = {r.worker_pid for r in results}
    assert os.getpid() not in pids and 1 <= len(pids) <= 2  # decoded in the workers, never here
    for r, turn in zip(results, turns, strict=True):
        assert isinstance(r, UtteranceTranscript) and r.source == "asr" and r.call_id == "call-w"
        assert r.t_start <= turn["start"] + 0.1 and r.t_end >= turn["end"] - 0.1
        if r.text:
            assert 0.0 < r.confidence <= 1.0
            assert all(r.t_start - 0.05 <= s["start"] < s["end"] <= r.t_end + 0.05 for s in r.segments)
    # espeak speech is hard for Whisper base; the whole customer side still comes out mostly right
    ref = "".join(t["text"] for t in turns)
    hyp = "".join(r.text for r in results)
    assert character_error_rate(ref, hyp) < 0.6, hyp
    deadline = time.monotonic() + 10  # done-callbacks run just after result() returns
    while pool.pending and time.monotonic() < deadline:
        time.sleep(0.01)
    assert pool.pending == 0 and pool.backlog_s == 0.0
    assert pool.done >= len(results) and 0.0 < pool.observed_rtf < 5.0


def test_submit_before_start_is_refused(assembled_model_dir: Path, customer_windows) -> None:
    seg = UtteranceSegmenter("c", "customer")
    utt = next(u for w in customer_windows for u in seg.push_window(w))
    with pytest.raises(RuntimeError, match="start"):
        AsrWorkerPool(assembled_model_dir).submit(utt)


def test_recognisers_exit_when_the_service_process_dies(assembled_model_dir: Path, tmp_path: Path) -> None:
    """A SIGKILLed service worker leaves no orphan recogniser behind; the recogniser is niced (and, where the
    kernel shares CPU by session, in an autogroup of its own)."""
    import signal
    import subprocess
    import sys

    import psutil

    script = tmp_path / "parent.py"
    script.write_text(
        "import sys, time\n"
        "from pathlib import Path\n"
        "from pipelines.asr.worker import AsrWorkerPool\n"
        "if __name__ == '__main__':\n"
        f"    pool = AsrWorkerPool(Path({str(assembled_model_dir)!r}), workers=1, nice=5).start()\n"
        "    print(*[p.pid for p in pool._pool._processes.values()], flush=True)\n"
        "    time.sleep(600)\n", encoding="utf-8")
    proc = subprocess.Popen([sys.executable, str(script)], cwd=REPO, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        worker = psutil.Process(int(proc.stdout.readline().split()[0]))
        assert worker.nice() == min(19, psutil.Process(proc.pid).nice() + 5) and worker.ppid() == proc.pid
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        worker.wait(timeout=30)  # raises TimeoutExpired if it lives on as an orphan
    finally:
        proc.kill()
