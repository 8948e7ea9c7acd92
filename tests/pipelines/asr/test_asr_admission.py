"""Live ASR admission: the auto/on/off rule and capacity from the measured real-time factor."""
from __future__ import annotations

import pytest

from pipelines.asr.admission import (
    MAX_PLATFORM_SPANS,
    SKIPPED_CAPACITY,
    SKIPPED_PLATFORM,
    UNAVAILABLE,
    AsrAdmission,
    accepts,
    decide,
    note_platform,
    note_request,
    wants_asr,
)


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


# --------------------------------------------------------------------------- a call's live-ASR state
def _admit(status: str = "on"):
    calls = []

    def admit() -> str:
        calls.append(1)
        return status
    return admit, calls


@pytest.mark.parametrize(("setting", "override", "available", "admitted", "expected"), [
    ("auto", None, True, "on", "on"), ("auto", None, True, SKIPPED_CAPACITY, SKIPPED_CAPACITY),
    ("off", None, True, "on", "off"), ("off", "on", True, "on", "on"), ("on", "off", True, "on", "off"),
    ("auto", None, False, "on", UNAVAILABLE), ("on", None, False, "on", UNAVAILABLE),
])
def test_decide_the_first_audio(setting, override, available, admitted, expected) -> None:
    admit, calls = _admit(admitted)
    state = decide({}, setting, override, available, admit)
    assert state["status"] == expected
    assert bool(calls) == (available and expected in ("on", SKIPPED_CAPACITY))  # capacity asked only when wanted
    assert decide(state, "on", "on", True, admit) is state  # decided once: later overrides change nothing


def test_override_before_the_first_audio_is_kept() -> None:
    admit, _ = _admit()
    state = note_request({}, "off")
    assert decide(state, "on", None, True, admit)["status"] == "off"
    assert note_request({"status": "on"}, "off") == {"status": "on"}  # after the decision: ignored
    with pytest.raises(ValueError):
        note_request({}, "maybe")


def test_a_platform_transcript_stops_auto_asr_and_wins_its_span() -> None:
    admit, _ = _admit()
    auto = decide({}, "auto", None, True, admit)
    assert accepts(auto, "customer", 1.0, 3.0) is None
    stopped_state, stopped = note_platform(auto, "customer", 10.0, 12.0)
    assert stopped and stopped_state["status"] == SKIPPED_PLATFORM
    assert accepts(stopped_state, "customer", 20.0, 22.0) is not None  # nothing after that is applied
    # before the decision: the call never gets ASR in auto mode
    before, stopped = note_platform({}, "customer", None, None)
    assert not stopped and decide(before, "auto", None, True, admit)["status"] == SKIPPED_PLATFORM
    # forced on: ASR goes on, but a platform transcript of the same leg and span wins
    forced = decide({}, "auto", "on", True, admit)
    forced, stopped = note_platform(forced, "customer", 10.0, 12.0)
    assert not stopped and forced["status"] == "on"
    assert accepts(forced, "customer", 11.5, 14.0) is not None
    assert accepts(forced, "customer", 12.0, 14.0) is None and accepts(forced, "agent", 11.0, 12.0) is None


def test_platform_spans_are_bounded_per_leg() -> None:
    state: dict = {"status": "on", "mode": "on"}
    for i in range(MAX_PLATFORM_SPANS + 10):
        state, _ = note_platform(state, "customer", float(i), i + 0.5)
    state, _ = note_platform(state, "agent", 0.0, 1.0)
    spans = state["spans"]
    assert sum(s[0] == "customer" for s in spans) == MAX_PLATFORM_SPANS and ["agent", 0.0, 1.0] in spans
    assert spans[-2] == ["customer", MAX_PLATFORM_SPANS + 9.0, MAX_PLATFORM_SPANS + 9.5]
