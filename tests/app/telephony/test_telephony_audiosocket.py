"""Asterisk AudioSocket through a real TCP socket: UUID packet, audio split across writes, DTMF, hangup."""
from __future__ import annotations

import asyncio
import contextlib
import uuid

import numpy as np
import pytest

from app.telephony.audiosocket import (
    AUDIO_RATES,
    DTMF,
    ERROR,
    HANGUP,
    UUID,
    AudioSocketParser,
    AudioSocketSession,
    build_packet,
    handle_connection,
)
from app.telephony.events import CallEnded, CallStarted, Dtmf, LegFrame, PlatformError, ProtocolError
from pipelines.ingest import CallFramer
from tests.app.telephony.conftest import assert_same_as_chunks, feed, windows_by_role

CALL_UUID = uuid.UUID("40325ec2-5efd-4bd3-805f-53576e581d13")


def asterisk_stream(x: np.ndarray) -> bytes:
    """What Asterisk writes: UUID, 20 ms slin packets (320 bytes), a DTMF digit, hangup."""
    out = [build_packet(UUID, CALL_UUID.bytes)]
    for i in range(0, len(x), 160):
        out.append(build_packet(0x10, x[i:i + 160].astype("<i2").tobytes()))
        if i == 8000:
            out.append(build_packet(DTMF, b"7"))
    out.append(build_packet(HANGUP))
    return b"".join(out)


def test_parser_reassembles_packets_split_anywhere(call):
    data = asterisk_stream(call["customer"][:4000])
    p = AudioSocketParser()
    pkts = []
    for i in range(0, len(data), 7):  # 7-byte reads: headers and payloads split everywhere
        pkts.extend(p.feed(data[i:i + 7]))
    assert p.buffered == 0
    assert [k.kind for k in pkts][:2] == [UUID, 0x10] and pkts[-1].kind == HANGUP and len(pkts) == 25 + 2
    assert b"".join(k.payload for k in pkts if k.kind == 0x10) == call["customer"][:4000].astype("<i2").tobytes()
    assert build_packet(HANGUP) == b"\x00\x00\x00"


@contextlib.asynccontextmanager
async def listener(idle_timeout_s: float):
    """A real AudioSocket TCP listener on loopback: yields (client writer, events seen, future of the end reason)."""
    events: list = []

    async def on_event(ev):
        events.append(ev)

    ended = asyncio.get_running_loop().create_future()

    async def serve(reader, writer):
        ended.set_result(await handle_connection(reader, writer, on_event, idle_timeout_s=idle_timeout_s))

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    _, writer = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
    try:
        yield writer, events, ended
    finally:
        writer.close()
        server.close()
        await server.wait_closed()


def test_audiosocket_over_tcp_gives_1s_chunk_windows(call):
    x = call["customer"][: 6 * 8000 + 480]
    data = asterisk_stream(x)

    async def main():
        async with listener(idle_timeout_s=5) as (writer, events, ended):
            rng = np.random.default_rng(1)
            i = 0
            while i < len(data):  # writes of 1..700 bytes: packets split across TCP segments
                n = int(rng.integers(1, 700))
                writer.write(data[i:i + n])
                await writer.drain()
                i += n
                if rng.random() < 0.05:
                    await asyncio.sleep(0.002)
            return await asyncio.wait_for(ended, 5), events

    reason, events = asyncio.run(main())
    assert reason == "hangup"
    assert events[0] == CallStarted(str(CALL_UUID), "audiosocket", 8000, ("customer",))
    assert any(isinstance(e, Dtmf) and e.digit == "7" for e in events)
    assert isinstance(events[-1], CallEnded) and events[-1].reason == "hangup"
    f = CallFramer()
    res = feed(f, [e for e in events if isinstance(e, LegFrame)])
    res.extend(f.flush())
    assert_same_as_chunks(windows_by_role(res)["customer"], x)


def test_error_packet_and_bad_streams():
    s = AudioSocketSession()
    out = s.feed(build_packet(UUID, CALL_UUID.bytes) + build_packet(ERROR, b"\x01"))
    assert isinstance(out.events[1], PlatformError) and "hangup of calling party" in out.events[1].message
    assert out.events[2] == CallEnded("error") and out.close
    with pytest.raises(ProtocolError, match="before the UUID"):
        AudioSocketSession().feed(build_packet(0x10, b"\x00\x00"))
    with pytest.raises(ProtocolError, match="16"):
        AudioSocketSession().feed(build_packet(UUID, b"\x01" * 15))
    with pytest.raises(ProtocolError, match="unknown"):
        AudioSocketSession().feed(build_packet(UUID, CALL_UUID.bytes) + build_packet(0x42, b""))
    s = AudioSocketSession(role="agent")
    ev = s.feed(build_packet(UUID, CALL_UUID.bytes) + build_packet(0x12, b"\x01\x00\x02\x00")).events
    assert ev[1].role == "agent" and ev[1].sample_rate == AUDIO_RATES[0x12] == 16000
    assert ev[1].samples.tolist() == [1, 2]


def test_idle_connection_ends():
    async def main():
        async with listener(idle_timeout_s=0.2) as (writer, events, ended):
            writer.write(build_packet(UUID, CALL_UUID.bytes))
            await writer.drain()
            return await asyncio.wait_for(ended, 3), events

    reason, events = asyncio.run(main())
    assert reason == "idle" and events[-1] == CallEnded("idle")
