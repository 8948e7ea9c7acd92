"""Personal data never raw in what the service stores, returns or logs (issue 17 item 12)."""
from __future__ import annotations

import json
import logging

from fastapi.testclient import TestClient

PHONE = "13812345678"
ID_X = "11010519491231002X"


def test_call_meta_values_are_masked_except_kept_fields(settings, models):
    from app.main import create_app

    s = settings.updated(pii_keep_meta_fields="queue,skill")
    assert s.security.pii_keep_meta_fields == frozenset({"queue", "skill"})
    meta = {"caller": PHONE, "customer_id": ID_X, "name": "王小明", "queue": f"billing {PHONE}", "skill": "vip",
            "nested": {"ani": int(PHONE)}, "vip": True}
    with TestClient(create_app(s, models=models)) as c:
        r = c.post("/v1/calls/m1", json={"agent_id": "a1", "meta": meta})
        assert r.status_code == 200, r.text
        for body in (r.json(), c.get("/v1/calls/m1").json()):
            text = json.dumps(body, ensure_ascii=False)
            assert PHONE not in text and ID_X not in text and "王小明" not in text
            assert body["meta"]["queue"] == "billing [手机号]" and body["meta"]["skill"] == "vip"
            assert body["meta"]["caller"] == "***78" and body["meta"]["vip"] is True
        stored = c.app.state.runtime.store.get_call("m1", tenant="default").meta
        assert PHONE not in json.dumps(stored) and stored["nested"] == {"ani": "***78"}


def test_call_ids_in_logs_are_digests(settings, models, caplog):
    from app.main import create_app
    from app.observability import AccessLogIds, JsonFormatter, log_id

    s = settings.updated(pii_log_key="site-secret")
    with TestClient(create_app(s, models=models)) as c:
        with caplog.at_level(logging.INFO, logger="nuqi"):
            r = c.post(f"/v1/calls/{PHONE}/transcript", json={"role": "customer", "text": "你好", "id": PHONE})
            assert r.status_code == 200, r.text
            utt = r.json()["utterance"]
            assert utt["id"] == "[手机号]" and PHONE not in utt["key"]  # the store's key: a digest of the id
            listed = c.get(f"/v1/calls/{PHONE}").json()["transcripts"]
            assert [(t["key"], t["id"]) for t in listed] == [(utt["key"], "[手机号]")]
    assert log_id(PHONE) != "#" + PHONE and PHONE not in log_id(PHONE)
    # uvicorn's access line: ('client', 'method', 'path', 'http version', status)
    rec = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
                            ("10.0.0.1:5000", "POST", f"/v1/calls/{PHONE}/audio?seq=3", "1.1", 200), None)
    assert AccessLogIds().filter(rec)
    line = rec.getMessage()
    assert PHONE not in line and f"/v1/calls/{log_id(PHONE)}/audio?seq=3" in line
    rec = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
                            ("10.0.0.1:5000", "GET", f"/v1/alerts?call_id={PHONE}&after=0", "1.1", 200), None)
    AccessLogIds().filter(rec)
    assert PHONE not in rec.getMessage()
    # the access filter is installed on uvicorn's loggers by create_app
    assert any(isinstance(f, AccessLogIds) for f in logging.getLogger("uvicorn.access").filters)
    # JSON log lines: the call id from the request context is a digest too
    rec = logging.LogRecord("nuqi.calls", logging.INFO, __file__, 1, "chunk of %s", (f"/v1/calls/{PHONE}",), None)
    rec.call_id = PHONE
    out = json.loads(JsonFormatter().format(rec))
    assert out["call_id"] == log_id(PHONE) and PHONE not in json.dumps(out)
