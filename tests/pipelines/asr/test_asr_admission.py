"""Live ASR admission: the auto/on/off rule and capacity from the measured real-time factor."""
from __future__ import annotations

import pytest

from pipelines.asr.admission import SKIPPED_CAPACITY, AsrAdmission, wants_asr


@pytest.mark.parametrize(("setting", "override", "platform", "expected"), [
    ("auto", None, False, True), ("auto", None, True, False), ("on", None, True, True), ("off", None, False, False),
    ("off", "on", False, True), ("on", "off", False, False), ("auto", "on", True, True),
])
def test_wants_asr(setting, override, platform, expected) -> None:
    assert wants_asr(setting, override, platform) is expected


def test_bad_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="auto, on, off"):
        wants_asr("sometimes")


def test_capacity_follows_workers_rtf_and_legs() -> None:
    # 2 workers at RTF 0.25, customer speaks half the time: 0.125 core per call -> 16 calls at 100 %, 12 at 75 %
    assert AsrAdmission(workers=2, rtf=0.25, headroom=1.0).capacity == 16
    assert AsrAdmission(workers=2, rtf=0.25, headroom=0.75).capacity == 12
    assert AsrAdmission(workers=2, rtf=0.25, headroom=0.75, legs_per_call=2).capacity == 6
    assert AsrAdmission(workers=1, rtf=3.0).capacity == 0


def test_calls_beyond_capacity_are_skipped_until_a_slot_frees() -> None:
    adm = AsrAdmission(workers=1, rtf=0.5, headroom=1.0)  # capacity 4
    assert [adm.admit(f"c{i}") for i in range(5)] == ["on"] * 4 + [SKIPPED_CAPACITY]
    assert adm.admit("c4") == SKIPPED_CAPACITY  # the decision sticks for the call
    adm.release("c0")
    assert adm.admit("c5") == "on" and adm.active == 4


def test_backlog_refuses_new_calls_and_observed_rtf_moves_capacity() -> None:
    adm = AsrAdmission(workers=2, rtf=0.25, max_backlog_s=10.0)
    assert adm.admit("a", backlog_s=11.0) == SKIPPED_CAPACITY
    before = adm.capacity
    for _ in range(50):
        adm.observe(audio_s=4.0, decode_s=4.0)  # the host got slow: RTF 1.0
    assert adm.rtf == pytest.approx(1.0, abs=0.01) and adm.capacity < before
