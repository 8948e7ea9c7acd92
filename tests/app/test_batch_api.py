"""POST /v1/batch → job id → GET until done, on the real sample audio with the real models."""
from __future__ import annotations

import json
import shutil
import time

import pytest

from pipelines.errors import NotFoundError
from tests.conftest import SAMPLE_AUDIO


@pytest.fixture()
def api(client):
    """The app client with the batch router (added here until app/main.py includes it)."""
    from app.routes import batch

    if not any(getattr(r, "path", "") == "/v1/batch" for r in client.app.routes):
        client.app.include_router(batch.router)
    return client


def wait_done(api, job_id: str, timeout: float = 120.0) -> dict:
    seen = []
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        r = api.get(f"/v1/batch/{job_id}")
        assert r.status_code == 200, r.text
        body = r.json()
        seen.append(body["status"])
        if body["status"] in ("done", "failed"):
            return body
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} not done after {timeout} s: {seen[-5:]}")


def test_server_paths_job(api):
    paths = [str(SAMPLE_AUDIO / "customer_angry_16k.wav"), str(SAMPLE_AUDIO / "customer_calm_16k.wav")]
    r = api.post("/v1/batch", json={"paths": paths, "asr": "off"})
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["id"].startswith("b_") and job["status"] in ("queued", "running", "done")
    assert job["progress"]["total"] == 2
    body = wait_done(api, job["id"])
    assert body["status"] == "done", body
    assert body["fraction_done"] == 1.0 and body["progress"]["failed"] == 0
    rows = {r["call"]: r for r in body["results"]}
    assert set(rows) == {"customer_angry_16k", "customer_calm_16k"}
    assert all(r["status"] == "ok" and r["peak_stage"] is not None for r in rows.values())
    # the reports are served from the job's folder
    index = api.get(body["reports"]["index_html"])
    assert index.status_code == 200 and "text/html" in index.headers["content-type"]
    assert "calls/customer_angry_16k.html" in index.text
    page = api.get(f"/v1/batch/{job['id']}/files/calls/customer_angry_16k.html")
    assert page.status_code == 200 and "data:image/png;base64," in page.text
    csv = api.get(body["reports"]["summary_csv"])
    assert csv.status_code == 200 and csv.text.lstrip("\ufeff").startswith("file,duration_s,peak_stage")
    assert api.get(f"/v1/batch/{job['id']}/files/../job.json").status_code == 404
    # job state lives in a JSON file under state_dir/batch/<id>/
    state = api.app.state.runtime.settings.state_dir / "batch" / job["id"] / "job.json"
    assert json.loads(state.read_text(encoding="utf-8"))["status"] == "done"
    # a finished job can be deleted, with its folder
    assert api.delete(f"/v1/batch/{job['id']}").json() == {"id": job["id"], "deleted": True}
    assert not state.parent.exists() and api.get(f"/v1/batch/{job['id']}").status_code == 404


def test_uploaded_files_job_reports_bad_files(api):
    files = [("files", ("call.wav", (SAMPLE_AUDIO / "customer_calm_16k.wav").read_bytes(), "audio/wav")),
             ("files", ("../../etc/broken.wav", b"RIFF\x00\x00\x00\x00WAVE", "audio/wav")),
             ("files", ("empty.mp3", b"", "audio/mpeg"))]
    r = api.post("/v1/batch", files=files, data={"asr": "off"})
    assert r.status_code == 202, r.text
    body = wait_done(api, r.json()["id"])
    assert body["status"] == "done" and body["source"] == "upload"
    status = {r["call"]: r["status"] for r in body["results"]}
    assert status == {"call": "ok", "broken": "error", "empty": "error"}
    assert all(r["error"] for r in body["results"] if r["status"] == "error")


def test_bad_requests(api, tmp_path):
    assert api.post("/v1/batch", json={"paths": []}).status_code == 422
    assert api.post("/v1/batch", json={"paths": [str(SAMPLE_AUDIO)], "asr": "maybe"}).status_code == 422
    bad_json = api.post("/v1/batch", content=b"not json", headers={"content-type": "application/json"})
    assert bad_json.status_code == 400 and bad_json.json()["error"]["code"] == "invalid_json"  # app.security.jsonguard
    outside = api.post("/v1/batch", json={"paths": ["/etc"]})
    assert outside.status_code == 403 and "batch_input_roots" in outside.json()["error"]["message"]
    missing = api.post("/v1/batch", json={"paths": [str(SAMPLE_AUDIO / "nope.wav")]})
    assert missing.status_code == 422
    assert api.get("/v1/batch/b_0123456789abcdef").status_code == 404
    assert api.get("/v1/batch/../../etc").status_code == 404


def test_interrupted_job_resumes_after_restart(settings, models):
    """A job left 'running' by a dead process is claimed and finished by the next BatchJobs."""
    from app.services.batch import BatchJobs, _atomic_json

    root = settings.state_dir / "batch"
    job_dir = root / "b_00000000000000aa"
    (job_dir / "inputs").mkdir(parents=True)
    for name in ("customer_angry_16k.wav", "customer_calm_16k.wav"):
        shutil.copy(SAMPLE_AUDIO / name, job_dir / "inputs" / name)
    # the dead run had finished one call: its JSON is there, so only the other is scored
    from pipelines.batch.score import run_batch

    run_batch([job_dir / "inputs" / "customer_calm_16k.wav"], job_dir / "out", settings=settings, models=models,
              asr="off")
    _atomic_json(job_dir / "job.json", {
        "id": job_dir.name, "status": "running", "tenant": "default", "source": "upload", "created_at": "x",
        "started_at": "x", "finished_at": None, "inputs": [str(job_dir / "inputs")],
        "options": {"channel_map": None, "asr": "off"}, "progress": {"total": 2, "done": 1}, "error": None,
        "notes": [], "results": []})
    jobs = BatchJobs(settings, models)  # "restart": a new service process's job manager
    t0 = time.monotonic()
    while jobs.read(job_dir.name)["status"] != "done":
        assert time.monotonic() - t0 < 60, jobs.read(job_dir.name)
        time.sleep(0.1)
    view = jobs.view(job_dir.name, "default")
    assert view["progress"]["skipped"] == 1 and view["progress"]["scored"] == 1
    assert {r["call"] for r in view["results"]} == {"customer_angry_16k", "customer_calm_16k"}
    assert any("resumed" in n for n in view["notes"])
    with pytest.raises(NotFoundError):  # another tenant's job does not exist for it
        jobs.view(job_dir.name, "other-tenant")


def test_uploaded_job_shows_no_server_path(api):
    """Issue 17 item 19: an uploaded batch's summary.csv (and results, reports) showed the server's folder."""
    files = [("files", ("客户来电.wav", (SAMPLE_AUDIO / "customer_calm_16k.wav").read_bytes(), "audio/wav"))]
    r = api.post("/v1/batch", files=files, data={"asr": "off"})
    assert r.status_code == 202, r.text
    body = wait_done(api, r.json()["id"])
    assert body["status"] == "done", body
    state_dir = str(api.app.state.runtime.settings.state_dir)
    csv = api.get(body["reports"]["summary_csv"]).text
    index = api.get(body["reports"]["index_html"]).text
    row = body["results"][0]
    page = api.get(f"/v1/batch/{body['id']}/files/calls/{row['call']}.html").text
    for text in (csv, index, page, json.dumps(body, ensure_ascii=False)):
        assert state_dir not in text and "/inputs/" not in text
    assert row["file"] == "客户来电.wav" and "\n客户来电.wav," in csv.replace("\r\n", "\n")
