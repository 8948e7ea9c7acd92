"""One real ``nuqi score`` run (subprocess, 2 worker processes) shared by the batch tests."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers_batch import CliRun, make_bad_files, make_format_files, read_summary

from pipelines.settings import REPO_ROOT
from tests.conftest import SAMPLE_AUDIO

# runs the CLI and fails if the driver imported Ray without being asked to
WRAPPER = ("import sys; from pipelines.batch.cli import main; rc = main(sys.argv[1:]); "
           "assert 'ray' not in sys.modules, 'ray was imported without --ray'; sys.exit(rc)")


@pytest.fixture(scope="session")
def batch_inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("batch_in")
    make_bad_files(d / "bad")
    make_format_files(d / "formats")
    return d


@pytest.fixture(scope="session")
def cli_batch(batch_inputs: Path, tmp_path_factory: pytest.TempPathFactory) -> CliRun:
    out = tmp_path_factory.mktemp("batch_out") / "report"
    cmd = [sys.executable, "-c", WRAPPER, "score", str(SAMPLE_AUDIO), str(batch_inputs / "bad"),
           str(batch_inputs / "formats"), "--out", str(out), "--workers", "2", "--asr", "off"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=REPO_ROOT, env=env)
    assert (out / "summary.csv").is_file(), f"no summary.csv\nstdout:{proc.stdout}\nstderr:{proc.stderr[-3000:]}"
    header, rows = read_summary(out / "summary.csv")
    return CliRun(proc=proc, out=out, inputs=batch_inputs, rows=rows, header=header)
