"""The framer cuts the escalating sample call into the same 1 s windows whatever the framing, order, loss,
leg split or state round trip (bit-exact int16 samples)."""
from __future__ import annotations

import json
import wave

import numpy as np
import pytest

from pipelines.errors import InputError
from pipelines.ingest import CallFramer, PushResult
from pipelines.settings import REPO_ROOT

SR = 8000
W = 8000  # 1 s windows


@pytest.fixture(scope="module")
def call() -> dict[str, np.ndarray]:
    """The real stereo sample call: ch0 = agent, ch1 = customer, int16."""
    with wave.open(str(REPO_ROOT / "sample_audio" / "call_escalating_8k.wav")) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (SR, 2, 2)
        x = np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, 2)
    return {"agent": x[:, 0].copy(), "customer": x[:, 1].copy()}


def reference(x: np.ndarray) -> list[np.ndarray]:
    """Today's 1 s chunks: consecutive slices, the last one short."""
    return [x[i:i + W] for i in range(0, len(x), W)]


def run(pushes, framer: CallFramer | None = None, roundtrip: bool = False) -> tuple[dict, PushResult]:
    """Apply push callables; collect windows per role.  roundtrip: JSON state save/restore after every push."""
    f = framer or CallFramer()
    total = PushResult()
    for push in pushes:
        total.extend(push(f))
        if roundtrip:
            f = CallFramer.from_state(json.loads(json.dumps(f.state_dict())))
    total.extend(f.flush())
    by_role: dict[str, list] = {}
    for win in total.windows:
        by_role.setdefault(win.role, []).append(win)
    return by_role, total


def assert_windows(wins, ref: list[np.ndarray]) -> None:
    assert [w.index for w in wins] == list(range(len(ref)))
    assert len(wins) == len(ref)
    for w, r in zip(wins, ref):
        assert w.samples.dtype == np.int16
        assert np.array_equal(w.samples, r), f"window {w.index} differs"
        assert w.start == w.index * W
    assert wins[-1].final == (len(ref[-1]) < W) and not any(w.final for w in wins[:-1])


def frames(n_total: int, sizes) -> list[tuple[int, int]]:
    """(start, stop) sample spans covering [0, n_total) with the given sizes (cycled)."""
    out, i, k = [], 0, 0
    while i < n_total:
        n = sizes[k % len(sizes)]
        out.append((i, min(i + n, n_total)))
        i += n
        k += 1
    return out


@pytest.mark.parametrize("frame_ms", [10, 20, 30, 100, 1000])
def test_stereo_any_frame_size_gives_the_same_windows(call, frame_ms):
    stereo = np.stack([call["agent"], call["customer"]], axis=1)
    n = frame_ms * SR // 1000
    pushes = [lambda f, a=a, b=b, s=s: f.push_stereo(stereo[a:b], "agent,customer", seq=s)
              for s, (a, b) in enumerate(frames(len(stereo), [n]))]
    wins, total = run(pushes)
    for role in ("agent", "customer"):
        assert_windows(wins[role], reference(call[role]))
    assert total.gaps == [] and total.duplicates == 0
    assert len(wins["customer"]) == 75 and len(wins["customer"][-1].samples) == len(stereo) - 74 * W


def test_random_frame_sizes_with_state_roundtrip_after_every_frame(call):
    rng = np.random.default_rng(7)
    sizes = [int(v) for v in rng.integers(80, 2400, size=400)]  # 10 ms .. 300 ms, never aligned to windows
    x = call["customer"][: 20 * SR + 123]
    pushes = [lambda f, a=a, b=b, s=s: f.push("customer", x[a:b], seq=s)
              for s, (a, b) in enumerate(frames(len(x), sizes))]
    wins, _ = run(pushes, roundtrip=True)
    assert_windows(wins["customer"], reference(x))


def test_state_is_small_json_and_restores_mid_stream_with_waiting_frames(call):
    x = call["agent"][: 5 * SR]
    spans = frames(len(x), [160])
    f = CallFramer()
    for s, (a, b) in enumerate(spans[:30]):
        f.push("agent", x[a:b], seq=s)
    f.push("agent", x[spans[31][0]:spans[31][1]], seq=31)  # seq 30 still missing: 31 waits
    state = json.loads(json.dumps(f.state_dict()))
    assert len(json.dumps(state)) < 16_000  # 0.6 s of partial window + one waiting frame
    g = CallFramer.from_state(state)
    assert g.legs["agent"].buffered_samples == f.legs["agent"].buffered_samples == 31 * 160
    rest = [(s, spans[s]) for s in [30] + list(range(32, len(spans)))]
    outs = []
    for fr in (f, g):
        res = PushResult()
        for s, (a, b) in rest:
            res.extend(fr.push("agent", x[a:b], seq=s))
        res.extend(fr.flush())
        outs.append(res)
    assert len(outs[0].windows) == len(outs[1].windows) == 5
    for a, b in zip(outs[0].windows, outs[1].windows):
        assert a.to_dict() == b.to_dict() and np.array_equal(a.samples, b.samples)
    assert_windows(outs[1].windows, reference(x))
    assert f.state_dict() == g.state_dict()
    with pytest.raises(ValueError):
        CallFramer.from_state({**state, "version": 99})


def test_two_legs_own_sequences_reordered_duplicated_and_lost(call):
    """Customer in 20 ms frames (seq from 5000), agent in 100 ms frames (seq from 0), on two connections:
    arrival interleaved by time, neighbours swapped, some frames resent, some lost (no timestamps)."""
    rng = np.random.default_rng(3)
    events = []  # (arrival wall time, role, seq, a, b)
    lost = {"customer": set(), "agent": set()}
    for role, n, seq0 in (("customer", 160, 5000), ("agent", 800, 0)):
        spans = frames(len(call[role]), [n])
        for k, (a, b) in enumerate(spans[:-1]):  # last short frame: exact-length loss is only known with timestamps
            if k > 2 and rng.random() < 0.02:
                lost[role].add(seq0 + k)
                continue
            t = 1000.0 + b / SR + (0.03 if k > 0 and rng.random() < 0.1 else 0.0)  # 10 % arrive 30 ms late
            events.append((t, role, seq0 + k, a, b))
            if rng.random() < 0.03:
                events.append((t + 0.005, role, seq0 + k, a, b))  # resent
        a, b = spans[-1]
        events.append((1000.0 + b / SR, role, seq0 + len(spans) - 1, a, b))
    events.sort(key=lambda e: e[0])
    assert all(len(v) > 3 for v in lost.values())
    pushes = [lambda f, t=t, r=r, s=s, a=a, b=b: f.push(r, call[r][a:b], seq=s, wall=t) for t, r, s, a, b in events]
    wins, total = run(pushes)
    for role, n, seq0 in (("customer", 160, 5000), ("agent", 800, 0)):
        expect = call[role].copy()
        for s in lost[role]:
            k = s - seq0
            expect[k * n:(k + 1) * n] = 0
        assert_windows(wins[role], reference(expect))
        gaps = [g for g in total.gaps if g.role == role]
        assert all(g.reason == "loss" for g in gaps)
        missing = sorted(s for g in gaps for s in range(g.first_seq, g.last_seq + 1))
        assert missing == sorted(lost[role])
        assert sum(g.samples for g in gaps) == n * len(lost[role])
        assert sum(w.lost for w in wins[role]) == n * len(lost[role])
    assert total.duplicates > 0


def test_timestamps_size_losses_exactly_with_random_frames_and_hold_without_frames(call):
    """RTP-like leg: random frame sizes, media timestamps with a random origin, 2 % lost, and a 3 s hold during
    which the platform sends nothing (sequence numbers continue, the timestamp jumps)."""
    rng = np.random.default_rng(11)
    x = call["customer"][: 30 * SR]
    sizes = [int(v) for v in rng.choice([80, 160, 240, 480, 800], size=2000)]
    spans = frames(len(x), sizes)
    hold = (10 * SR + 37, 13 * SR + 37)
    ts0 = 123_456_789
    expect = x.copy()
    pushes, seq = [], 0
    for k, (a, b) in enumerate(spans):
        if hold[0] <= a and b <= hold[1]:
            expect[a:b] = 0  # not sent at all: no sequence number used
            continue
        if 0 < k < len(spans) - 1 and rng.random() < 0.02:
            expect[a:b] = 0
            seq += 1
            continue
        pushes.append(lambda f, a=a, b=b, s=seq: f.push("customer", x[a:b], seq=s, ts=ts0 + a))
        seq += 1
    wins, total = run(pushes, roundtrip=True)
    assert_windows(wins["customer"], reference(expect))
    reasons = {g.reason for g in total.gaps}
    assert reasons == {"loss", "timestamp"}
    held = [g for g in total.gaps if g.reason == "timestamp"]
    assert len(held) == 1 and held[0].t_start == pytest.approx(10.0, abs=0.31) and held[0].duration_s >= 2.9


def test_hold_digital_silence_is_audio_that_advances_the_clock(call):
    """An all-zero stretch (hold / mute, sent as frames) gets no error and keeps the clock: 3 s of zeros on both
    channels give the windows of the zeroed source, none missing."""
    stereo = np.stack([call["agent"], call["customer"]], axis=1).copy()
    stereo[20 * SR: 23 * SR] = 0
    pushes = [lambda f, a=a, b=b, s=s: f.push_stereo(stereo[a:b], ("agent", "customer"), seq=s)
              for s, (a, b) in enumerate(frames(len(stereo), [160]))]
    wins, total = run(pushes)
    for i, role in enumerate(("agent", "customer")):
        assert_windows(wins[role], reference(stereo[:, i]))
        assert not wins[role][21].samples.any() and wins[role][21].lost == 0
    assert total.gaps == []


def test_late_leg_aligned_by_arrival_time_or_call_timestamps(call):
    """The agent's connection starts 0.36 s after the customer's: its first window is padded, not shifted."""
    late = int(0.36 * SR)  # a frame boundary (20 ms frames)
    for mode in ("wall", "twilio"):
        f = CallFramer()
        res = PushResult()
        for k, (a, b) in enumerate(frames(3 * SR, [160])):
            ts = a if mode == "twilio" else None
            res.extend(f.push("customer", call["customer"][a:b], seq=k + 1, wall=50.0 + b / SR, ts=ts,
                              ts_clock="call"))
            if a >= late:
                res.extend(f.push("agent", call["agent"][a:b], seq=k, wall=50.0 + b / SR + 0.004, ts=ts,
                                  ts_clock="call"))
        res.extend(f.flush())
        agent = [w for w in res.windows if w.role == "agent"]
        assert [w.index for w in agent] == [0, 1, 2]
        assert agent[0].pad == late and not agent[0].samples[:late].any()
        assert np.array_equal(agent[0].samples[late:], call["agent"][late:SR])
        assert np.array_equal(agent[2].samples, call["agent"][2 * SR:3 * SR])
        assert f.wall_at(1.0) == pytest.approx(51.0)  # media t=0 is the customer's first sample, at wall 50.0


def test_late_frames_after_loss_are_dropped_and_counted(call):
    x = call["customer"][: 2 * SR]
    f = CallFramer(jitter_s=0.06)
    res = PushResult()
    for s, (a, b) in enumerate(frames(len(x), [160])):
        if s == 10:
            continue
        res.extend(f.push("customer", x[a:b], seq=s))
    res.extend(f.push("customer", x[1600:1760], seq=10))  # too late: its silence is already placed
    res.extend(f.flush())
    assert res.late == 1 and res.duplicates == 0
    assert [(g.first_seq, g.last_seq, g.samples) for g in res.gaps] == [(10, 10, 160)]


def test_advance_fills_paused_time_and_huge_jumps_resync(call):
    f = CallFramer()
    x = call["customer"]
    res = f.push("customer", x[:4000], seq=0)
    res.extend(f.advance("customer", 2.5, reason="paused"))
    assert [w.index for w in res.windows] == [0, 1]
    assert res.gaps[0].reason == "paused" and res.gaps[0].samples == 2.5 * SR - 4000
    res.extend(f.push("customer", x[:800], seq=1, ts=None))
    assert f.legs["customer"].pos == int(2.6 * SR)
    g = CallFramer(max_gap_s=60)
    g.push("agent", x[:800], seq=0, ts=0)
    r = g.push("agent", x[:800], seq=1, ts=3600 * SR + 400)  # an hour later: resync, no hour of silence windows
    assert [gap.reason for gap in r.gaps] == ["jump"] and [w.index for w in r.windows] == [0]
    assert g.legs["agent"].pos == 3600 * SR + 1200 and g.legs["agent"].win_index == 3600


def test_bad_frames_are_refused_with_clear_errors():
    f = CallFramer()
    with pytest.raises(InputError, match="role"):
        f.push("caller", np.zeros(160, np.int16))
    with pytest.raises(InputError, match="whole number"):
        f.push("agent", b"\x00\x01\x02")
    with pytest.raises(InputError, match="channel"):
        f.push_stereo(np.zeros((160, 3), np.int16), "agent,customer")
    f.push("agent", np.zeros(160, np.int16), sample_rate=8000)
    with pytest.raises(InputError, match="8000 Hz"):
        f.push("agent", np.zeros(320, np.int16), sample_rate=16000)
    f.flush()
    with pytest.raises(InputError, match="ended"):
        f.push("agent", np.zeros(160, np.int16))


def test_same_call_in_20ms_100ms_1s_frames_with_reorder_loss_hold_two_legs_gives_identical_windows(call):
    """Each leg on its own connection and sequence space; neighbour frames swapped; the same stretch of audio
    lost (11-12 s of the customer, 30.0-30.2 s of the agent sent by nobody); 3 s of hold zeros: every framing
    gives the same windows, bit for bit, equal to 1 s chunks of the audio with the lost stretches silent."""
    hold = slice(20 * SR, 23 * SR)
    lost = {"customer": (11 * SR, 12 * SR), "agent": (30 * SR, 30 * SR + 1600)}
    src = {r: call[r].copy() for r in ("agent", "customer")}
    for r in src:
        src[r][hold] = 0
    results = {}
    for frame_ms in (20, 100, 1000):
        n = frame_ms * SR // 1000
        events = []
        for role, seq0 in (("customer", 1), ("agent", 9000)):
            spans = frames(len(src[role]), [n])
            keep = [k for k, (a, b) in enumerate(spans)
                    if not (lost[role][0] < b and a < lost[role][1]) or k == len(spans) - 1]
            for i in range(3, len(keep) - 2, 7):
                keep[i], keep[i + 1] = keep[i + 1], keep[i]
            events += [(spans[k][1] / SR + 0.001 * (role == "agent"), role, seq0 + k, spans[k]) for k in keep]
        events.sort(key=lambda e: e[0])
        pushes = [lambda f, r=r, s=s, a=a, b=b: f.push(r, src[r][a:b], seq=s) for _, r, s, (a, b) in events]
        wins, total = run(pushes, roundtrip=frame_ms == 100)
        results[frame_ms] = wins
        for role in ("customer", "agent"):
            expect = src[role].copy()
            a, b = lost[role]
            a, b = a // n * n, -(-b // n) * n  # whole frames are lost
            expect[a:b] = 0
            assert_windows(wins[role], reference(expect))
            gaps = [g for g in total.gaps if g.role == role]
            assert sum(g.samples for g in gaps) == b - a
    for role in ("customer", "agent"):
        for frame_ms in (100, 1000):
            other = results[frame_ms][role]
            if frame_ms == 1000 and role == "agent":
                continue  # 1 s frames lose the agent's whole 30-31 s second, not just 30.0-30.2 s
            assert [w.to_dict() for w in other] == [w.to_dict() for w in results[20][role]]
            assert all(np.array_equal(x.samples, y.samples) for x, y in zip(other, results[20][role]))


def test_window_chunks_equal_decode_chunk_of_the_same_second(call):
    """20 ms frames on two legs -> windows -> DecodedChunk: the same float32 arrays decode_chunk gives today for
    the same 1 s of stereo s16le (so features, stage and alerts cannot depend on the framing)."""
    from pipelines.audio.decode import ChunkFormat, decode_chunk
    from pipelines.ingest.chunks import clipped_fraction, window_chunk

    f = CallFramer()
    res = PushResult()
    for s, (a, b) in enumerate(frames(5 * SR, [160])):
        res.extend(f.push("agent", call["agent"][a:b], seq=s))
        res.extend(f.push("customer", call["customer"][a:b], seq=100 + s))
    by_index: dict[int, list] = {}
    for w in res.windows:
        by_index.setdefault(w.index, []).append(w)
    for k, wins in by_index.items():
        chunk = window_chunk(wins)
        stereo = np.stack([call["agent"], call["customer"]], 1)[k * SR:(k + 1) * SR].astype("<i2").tobytes()
        ref = decode_chunk(stereo, ChunkFormat(encoding="pcm_s16le", sample_rate=SR, channels=2,
                                               channel_map=("agent", "customer")))
        assert (chunk.sample_rate, chunk.input_rate, chunk.duration_s) == (ref.sample_rate, ref.input_rate, 1.0)
        for role in ("agent", "customer"):
            assert chunk.audio[role].dtype == np.float32 and np.array_equal(chunk.audio[role], ref.audio[role])
        assert clipped_fraction(wins[0]) == 0.0
    with pytest.raises(InputError):
        window_chunk([by_index[0][0], by_index[1][1]])


def test_new_segment_restarts_sequence_and_timestamps_without_moving_the_clock(call):
    """A Twilio stream restarted on a call (chunks from 1, timestamps from 0 again), 0.5 s after the first one
    stopped: the leg continues after 0.5 s of silence instead of dropping the new frames as duplicates."""
    x = call["customer"]
    f = CallFramer()
    res = PushResult()
    for k in range(150):  # 3 s, chunk 1.., ts 0..
        res.extend(f.push("customer", x[k * 160:(k + 1) * 160], seq=k + 1, ts=k * 160, ts_clock="call",
                          wall=100.0 + (k + 1) * 0.02))
    res.extend(f.new_segment("customer"))
    for k in range(100):  # the new stream: the next 2 s of audio, 0.5 s later
        a = (150 + k) * 160
        res.extend(f.push("customer", x[a:a + 160], seq=k + 1, ts=k * 160, ts_clock="call",
                          wall=103.5 + (k + 1) * 0.02))
    res.extend(f.flush())
    got = np.concatenate([w.samples for w in res.windows])
    expect = np.concatenate([x[:3 * SR], np.zeros(SR // 2, np.int16), x[3 * SR:5 * SR]])
    assert np.array_equal(got, expect) and res.duplicates == 0
    assert [(g.reason, g.t_start, g.duration_s) for g in res.gaps] == [("segment", 3.0, 0.5)]
    state = json.loads(json.dumps(f.state_dict()))
    assert CallFramer.from_state(state).state_dict() == f.state_dict()


def test_ahead_of_real_time_is_measured(call):
    f = CallFramer()
    for k in range(100):  # 2 s of audio sent within 0.2 s of wall time
        f.push("agent", call["agent"][k * 160:(k + 1) * 160], seq=k, wall=10.0 + 0.02 + k * 0.002)
    assert f.ahead_s("agent", 10.2) == pytest.approx(2.0 - 0.2, abs=0.01)
    assert f.ahead_s("customer", 10.2) is None
