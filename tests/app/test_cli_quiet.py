"""The CLI prints results, not library chatter (issue 17 item 19: jieba's DEBUG lines on stderr)."""
from __future__ import annotations

import os
import subprocess
import sys

from pipelines.settings import REPO_ROOT


def test_cli_prints_no_jieba_debug_lines(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "JIEBA_CACHE": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-m", "app.cli", "replay", "sample_audio/call_escalating.jsonl"],
                          capture_output=True, text=True, timeout=300, cwd=REPO_ROOT, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip()  # the replay's lines
    for noise in ("Building prefix dict", "Loading model", "Prefix dict has been built", "DEBUG"):
        assert noise not in proc.stderr, proc.stderr[-2000:]
