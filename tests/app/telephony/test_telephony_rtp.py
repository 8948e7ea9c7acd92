"""RTP: header parsing per RFC 3550, unwrapping, and a real sender (Debian's ffmpeg) into the asyncio receiver."""
from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import wave

import numpy as np
import pytest

from app.telephony.events import ProtocolError, decode_payload
from app.telephony.rtp import (
    RtpStream,
    build_rtp,
    open_receiver,
    open_receiver_in_range,
    parse_port_range,
    parse_rtp,
    unwrap,
    wait_idle,
)
from pipelines.errors import ConflictError, InputError
from pipelines.ingest import CallFramer, PushResult
from tests.app.telephony.conftest import feed

FFMPEG = shutil.which("ffmpeg")
needs_ffmpeg = pytest.mark.skipif(FFMPEG is None, reason="ffmpeg not installed (apt-get install ffmpeg)")
SECONDS = 6
FFMPEG_CODEC = {"pcmu": ("pcm_mulaw", "mulaw"), "pcma": ("pcm_alaw", "alaw"), "l16": ("pcm_s16be", "s16be")}


def test_parse_header_fields_csrc_extension_padding():
    payload = bytes(range(160))
    data = build_rtp(payload, seq=65535, timestamp=0xFFFFFF00, ssrc=0xDEADBEEF, payload_type=8, marker=True,
                     csrc=(1, 2), extension=(0xBEDE, b"\x10\xff\x00\x00"), padding=4)
    p = parse_rtp(data)
    assert (p.version, p.padding, p.extension, p.csrc_count, p.marker, p.payload_type) == (2, True, True, 2, True, 8)
    assert (p.seq, p.timestamp, p.ssrc, p.csrc) == (65535, 0xFFFFFF00, 0xDEADBEEF, (1, 2))
    assert p.extension_profile == 0xBEDE and p.extension_data == b"\x10\xff\x00\x00" and p.payload == payload
    plain = parse_rtp(build_rtp(b"\x01\x02", seq=7, timestamp=8, ssrc=9))
    assert (plain.padding, plain.extension, plain.marker, plain.payload_type, plain.payload) == (
        False, False, False, 0, b"\x01\x02")
    for bad, why in ((b"\x80" * 5, "shorter"), (b"\x40" + bytes(11), "version 1"),
                     (bytes([0x8F]) + bytes(11), "CSRC"), (bytes([0x90]) + bytes(11), "extension"),
                     (bytes([0xA0]) + bytes(11) + b"\x00", "padding")):
        with pytest.raises(ProtocolError, match=why):
            parse_rtp(bad)


def test_unwrap_sequence_and_timestamp_wraparound():
    assert unwrap(65535, None, 16) == 65535
    assert unwrap(0, 65535, 16) == 65536 and unwrap(3, 65534, 16) == 65539
    assert unwrap(65530, 65540, 16) == 65530  # a reordered packet from before the wrap
    assert unwrap(65535, 65536, 16) == 65535
    assert unwrap(100, 2**32 - 100, 32) == 2**32 + 100


@pytest.fixture(scope="module")
def leg_wav(tmp_path_factory, call) -> tuple[str, np.ndarray]:
    """The customer leg of the real sample call, 6 s from 41 s (the irritated turn), as a mono 8 kHz WAV."""
    x = call["customer"][41 * 8000:(41 + SECONDS) * 8000]
    path = tmp_path_factory.mktemp("rtp") / "leg.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(x.astype("<i2").tobytes())
    return str(path), x


def ffmpeg_cmd(wav: str, codec: str, port: int) -> list[str]:
    """ffmpeg as the RTP sender, 8x real time, <= 20 ms packets (pkt_size), first seq 65500 (so it wraps)."""
    return [FFMPEG, "-hide_banner", "-loglevel", "error", "-readrate", "8", "-i", wav, "-ar", "8000", "-ac", "1",
            "-c:a", FFMPEG_CODEC[codec][0], "-seq", "65500", "-f", "rtp", f"rtp://127.0.0.1:{port}?pkt_size=172"]


def ffmpeg_send(wav: str, codec: str, port: int) -> None:
    subprocess.run(ffmpeg_cmd(wav, codec, port), check=True, capture_output=True, timeout=30)


def ffmpeg_encoded(wav: str, codec: str) -> np.ndarray:
    """The same file encoded offline by ffmpeg and decoded by nuqi: what the RTP leg must reproduce exactly."""
    raw = subprocess.run([FFMPEG, "-hide_banner", "-loglevel", "error", "-i", wav, "-ar", "8000", "-ac", "1",
                          "-f", FFMPEG_CODEC[codec][1], "-"], check=True, capture_output=True, timeout=30).stdout
    return decode_payload(raw, {"pcmu": "pcmu", "pcma": "pcma", "l16": "l16be"}[codec])


def snr_db(ref: np.ndarray, y: np.ndarray) -> float:
    ref, y = ref.astype(float), y.astype(float)
    return float(10 * np.log10(np.sum(ref ** 2) / max(np.sum((ref - y) ** 2), 1e-9)))


@needs_ffmpeg
@pytest.mark.parametrize("codec", ["pcmu", "pcma", "l16"])
def test_ffmpeg_rtp_sender_into_the_udp_receiver(leg_wav, codec):
    wav, source = leg_wav

    async def main():
        frames = []
        stream = RtpStream("customer", codec, payload_type=None if codec == "l16" else 0 if codec == "pcmu" else 8)
        receiver, port = await open_receiver(stream, frames.append)
        await asyncio.to_thread(ffmpeg_send, wav, codec, port)
        reason = await asyncio.wait_for(wait_idle(receiver, 0.3), 5)  # the sender stopped: the leg idles out
        receiver.close()
        return stream, frames, reason

    stream, frames, reason = asyncio.run(main())
    assert reason == "idle"
    assert stream.packets == len(frames) > SECONDS * 50 and stream.rejected == 0  # <= 160-byte payloads
    assert sum(len(fr.samples) for fr in frames) == SECONDS * 8000
    assert stream.max_seq >= 65536  # the sequence number wrapped around during the clip
    f = CallFramer()
    res: PushResult = feed(f, frames)
    res.extend(f.flush())
    got = np.concatenate([w.samples for w in res.windows])
    assert [w.index for w in res.windows] == list(range(SECONDS)) and res.gaps == []
    assert np.array_equal(got, ffmpeg_encoded(wav, codec))  # bit-exact with ffmpeg's own encoding of the file
    if codec == "l16":
        assert np.array_equal(got, source)
    else:
        assert snr_db(source, got) > 30  # G.711 round trip of speech: ~35-38 dB


def capture_ffmpeg_packets(wav: str, codec: str) -> list[bytes]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.5)
    proc = subprocess.Popen(ffmpeg_cmd(wav, codec, sock.getsockname()[1]), stdout=subprocess.DEVNULL)
    packets = []
    try:
        while True:  # read while ffmpeg sends, until 0.5 s of silence after it is done
            packets.append(sock.recv(2048))
    except TimeoutError:
        pass
    finally:
        sock.close()
        assert proc.wait(timeout=30) == 0
    return packets


@needs_ffmpeg
def test_real_packets_reordered_lost_duplicated_and_a_new_ssrc(leg_wav):
    """ffmpeg's packets replayed with neighbours swapped, 4 lost, 3 resent, and the second half re-sent by a
    'restarted' sender (new SSRC, new random seq/timestamp origin): the leg's clock runs on seamlessly."""
    wav, _ = leg_wav
    packets = capture_ffmpeg_packets(wav, "pcmu")
    parsed = [parse_rtp(d) for d in packets]
    assert sum(len(p.payload) for p in parsed) == SECONDS * 8000
    half = len(packets) // 2
    restarted = []
    for k, p in enumerate(parsed[half:]):
        ts = 777_000 + p.timestamp - parsed[half].timestamp
        restarted.append(build_rtp(p.payload, seq=1000 + k, timestamp=ts, ssrc=0x1234, payload_type=p.payload_type))
    stream_packets = packets[:half] + restarted
    lost = {37, 38, 101, 200}
    order = [k for k in range(len(stream_packets)) if k not in lost]
    for i in range(5, len(order) - 1, 9):
        if order[i] not in (half - 1, half):  # not across the restart (see RtpStream: the first packet of a new
            # source sets its origin, so a reordered pair there costs a packet)
            order[i], order[i + 1] = order[i + 1], order[i]  # reordered neighbours
    order[20:20] = [19, 60]  # resent
    order.insert(230, half + 8)  # resent after the SSRC change: a duplicate of the new source
    order.insert(240, half - 3)  # a straggler of the replaced source: dropped as stale
    stream = RtpStream("customer", "pcmu")
    frames = [fr for fr in (stream.feed(stream_packets[k]) for k in order) if fr is not None]
    f = CallFramer()
    res = feed(f, frames)
    res.extend(f.flush())
    got = np.concatenate([w.samples for w in res.windows])
    expect = ffmpeg_encoded(wav, "pcmu").copy()
    spans = {k: ((parsed[k].timestamp - parsed[0].timestamp) % 2**32, len(parsed[k].payload)) for k in lost}
    for a, n in spans.values():
        expect[a:a + n] = 0
    assert np.array_equal(got, expect)
    assert sorted((g.first_seq, g.last_seq, g.samples) for g in res.gaps) == [
        (37, 38, spans[37][1] + spans[38][1]), (101, 101, spans[101][1]), (200, 200, spans[200][1])]
    assert res.duplicates == 3 and stream.ssrc_changes == 1 and stream.stale == 1


def test_payload_types_other_than_the_legs_are_skipped():
    s = RtpStream("agent", "pcma")
    assert s.feed(build_rtp(b"\x00" * 4, seq=1, timestamp=0, ssrc=5, payload_type=13)) is None  # comfort noise
    fr = s.feed(build_rtp(b"\xd5" * 160, seq=2, timestamp=160, ssrc=5, payload_type=8))
    assert fr.seq == 0 and fr.ts == 0 and fr.role == "agent" and len(fr.samples) == 160
    assert s.rejected == 1
    restored = RtpStream.from_state(s.state_dict())
    nxt = restored.feed(build_rtp(b"\xd5" * 160, seq=3, timestamp=320, ssrc=5, payload_type=8))
    assert (nxt.seq, nxt.ts) == (1, 160)
    with pytest.raises(ProtocolError, match="codec"):
        RtpStream("agent", "opus")


def test_port_range_allocation_skips_busy_ports():
    assert parse_port_range("20000-20003") == range(20000, 20004) and parse_port_range("5004") == range(5004, 5005)
    for bad in ("abc", "80-90", "30000-20000"):
        with pytest.raises(InputError):
            parse_port_range(bad)

    async def main():
        busy = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        busy.bind(("127.0.0.1", 0))
        first = busy.getsockname()[1]
        ports = range(first, first + 4)
        r1, p1 = await open_receiver_in_range(RtpStream("agent"), lambda fr: None, ports, host="127.0.0.1")
        r2, p2 = await open_receiver_in_range(RtpStream("customer"), lambda fr: None, ports, host="127.0.0.1",
                                              skip={p1 + 1})
        try:
            assert p1 in ports and p1 != first  # the busy port is passed over
            assert p2 in ports and p2 not in (first, p1, p1 + 1)
            with pytest.raises(ConflictError, match="no free UDP port"):
                await open_receiver_in_range(RtpStream("agent"), lambda fr: None, ports, host="127.0.0.1",
                                             skip=set(ports) - {first, p1, p2})
        finally:
            r1.close()
            r2.close()
            busy.close()

    asyncio.run(main())
