"""The README covers first use (issue 17 item 20), and what it names exists: settings, roles, CLI options,
endpoints and error codes (a README that drifts from the code fails here)."""
from __future__ import annotations

import re

import pytest

from pipelines.settings import REPO_ROOT

README = (REPO_ROOT / "README.md").read_text(encoding="utf-8")


def _section(title: str) -> str:
    m = re.search(rf"^(#+) {re.escape(title)}.*?$(.*?)(?=^#{{1,3}} |\Z)", README, re.M | re.S)
    assert m, f"README has no section {title!r}"
    return m.group(2)


@pytest.mark.parametrize("title, words", [
    ("Audio channels and two-leg feeds", ["channels=2", "channel_map", "role=customer|agent", "start", "seq"]),
    ("What happens on silence", ["digital silence", "valid audio", "stage stands", "baseline", "ASR"]),
    ("Turning on authentication and creating keys per role", ["NUQI_AUTH_ENABLED", "NUQI_BOOTSTRAP_ADMIN_KEY",
                                                             "/v1/admin/keys", "X-API-Key", "api_key"]),
    ("QA batch scoring: `nuqi score` and `POST /v1/batch`", ["nuqi score", "summary.csv", "POST /v1/batch",
                                                            "multipart/form-data", "NUQI_BATCH_INPUT_ROOTS"]),
    ("Fonts", ["fonts-noto-cjk", "matplotlib", "widget"]),
])
def test_first_use_sections(title, words):
    body = _section(title)
    for w in words:
        assert w in body, (title, w)


def test_named_settings_exist():
    from app.settings import ServiceSettings

    names = set()
    for group in ServiceSettings.GROUPS.values():
        for name, f in group.model_fields.items():
            names.add(name.upper())
            if isinstance(f.validation_alias, str):
                names.add(f.validation_alias.upper().removeprefix("NUQI_"))
    names |= {n.upper() for n in ServiceSettings.model_fields}
    for env in set(re.findall(r"NUQI_([A-Z0-9_]+)", README)):
        assert env in names, f"README names NUQI_{env}, which no setting reads"


def test_roles_table_and_cli_options():
    from app.cli import build_parser
    from app.security.roles import ROLES

    auth = _section("Turning on authentication and creating keys per role")
    assert set(re.findall(r"^\| `(\w+)` \|", auth, re.M)) == set(ROLES)
    score = build_parser()._subparsers._group_actions[0].choices["score"]  # noqa: SLF001 - argparse has no API
    options = {o for a in score._actions for o in a.option_strings}  # noqa: SLF001
    used = set(re.findall(r"(--[a-z-]+)", " ".join(re.findall(r"nuqi score [^\n]*", README))))
    assert {"--out", "--workers", "--asr", "--channel-map"} <= used
    assert used <= options, used - options


def test_error_code_and_endpoints_exist(settings):
    from app.main import create_app
    # hold and mute are audio (issue 14): the silence section promises no error code for them
    assert "422" not in _section("What happens on silence")
    doc = create_app(settings).openapi()["paths"]
    ops = {(m.upper(), re.sub(r"\{[^}]+\}", "{}", p)) for p, item in doc.items() for m in item}
    found = re.findall(r"\b(GET|POST|DELETE) (/v1/[^\s`?|,]+)", README)
    assert len(found) > 15
    for method, path in found:
        assert (method, re.sub(r"\{[^}]+\}", "{}", path)) in ops, (method, path)
