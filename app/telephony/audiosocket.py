"""Asterisk AudioSocket (TCP): an incremental packet parser, a session that turns packets into events, and an
asyncio stream handler for a TCP listener.

Reference: the AudioSocket protocol definition (docs.asterisk.org/Configuration/Channel-Drivers/AudioSocket/,
the same text as CyCoreSystems/audiosocket's README).  Each packet is a 3-byte header -- 1 byte type, 2 bytes
payload length (unsigned, big-endian) -- then the payload:

* ``0x00`` hangup (terminate; closing the socket is also sufficient), no payload
* ``0x01`` the stream's UUID, 16 bytes binary (the ``uuid`` argument of ``AudioSocket(uuid,host:port)``)
* ``0x03`` one DTMF digit, 1 byte ASCII (Asterisk 20.x+)
* ``0x10`` signed linear 16-bit little-endian mono PCM, 8 kHz; ``0x11``-``0x18`` the same at 12, 16, 24, 32,
  44.1, 48, 96, 192 kHz (newer Asterisk)
* ``0xff`` error; optional payload = application error code (Asterisk's: 0x01 hangup of calling party,
  0x02 frame forwarding error, 0x04 memory allocation error, bit-packed)

Asterisk sends the UUID packet first, then 20 ms audio packets (320 bytes at 8 kHz).  The stream has no sequence
numbers or timestamps (TCP is ordered): audio is contiguous.  The audio is the Asterisk channel's, by default the
caller = customer (the role is bound when the session is allocated).
"""
from __future__ import annotations

import asyncio
import struct
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import numpy as np

from app.telephony.events import CallEnded, CallStarted, Dtmf, Event, LegFrame, Output, PlatformError, ProtocolError

HANGUP, UUID, DTMF, ERROR = 0x00, 0x01, 0x03, 0xFF
AUDIO_RATES = {0x10: 8000, 0x11: 12000, 0x12: 16000, 0x13: 24000, 0x14: 32000, 0x15: 44100, 0x16: 48000,
               0x17: 96000, 0x18: 192000}
ASTERISK_ERRORS = {0x01: "hangup of calling party", 0x02: "frame forwarding error", 0x04: "memory allocation error"}
HEADER = struct.Struct(">BH")


@dataclass(frozen=True)
class Packet:
    kind: int
    payload: bytes


def build_packet(kind: int, payload: bytes = b"") -> bytes:
    if len(payload) > 0xFFFF:
        raise ValueError(f"AudioSocket payload of {len(payload)} bytes exceeds 65535")
    return HEADER.pack(kind, len(payload)) + payload


class AudioSocketParser:
    """Bytes as they arrive from the socket -> whole packets (a packet may be split across reads)."""

    def __init__(self, max_payload: int = 0xFFFF) -> None:
        self._buf = bytearray()
        self.max_payload = max_payload

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[Packet]:
        self._buf += data
        out: list[Packet] = []
        pos = 0
        while len(self._buf) - pos >= HEADER.size:
            kind, length = HEADER.unpack_from(self._buf, pos)
            if length > self.max_payload:
                raise ProtocolError(f"AudioSocket packet type 0x{kind:02x} declares {length} bytes "
                                    f"(limit {self.max_payload})", field="body")
            end = pos + HEADER.size + length
            if end > len(self._buf):
                break
            out.append(Packet(kind, bytes(self._buf[pos + HEADER.size:end])))
            pos = end
        del self._buf[:pos]
        return out


class AudioSocketSession:
    """Packets of one AudioSocket connection -> events."""

    def __init__(self, role: str = "customer") -> None:
        self.role = role
        self.call_id: str | None = None
        self.rate: int | None = None
        self.ended = False
        self.frames = 0
        self.parser = AudioSocketParser()

    def feed(self, data: bytes) -> Output:
        out = Output()
        for pkt in self.parser.feed(data):
            if self.ended:
                break
            sub = self.on_packet(pkt)
            out.events.extend(sub.events)
            out.close = out.close or sub.close
        return out

    def on_packet(self, pkt: Packet) -> Output:
        if pkt.kind == UUID:
            if len(pkt.payload) != 16:
                raise ProtocolError(f"UUID packet has {len(pkt.payload)} bytes, not 16", field="body")
            if self.call_id is not None:
                return Output()
            self.call_id = str(uuid.UUID(bytes=pkt.payload))
            return Output([CallStarted(self.call_id, "audiosocket", 8000, (self.role,))])
        if pkt.kind in AUDIO_RATES:
            if self.call_id is None:
                raise ProtocolError("audio before the UUID packet", field="body")
            if len(pkt.payload) % 2:
                raise ProtocolError(f"audio packet of {len(pkt.payload)} bytes is not whole 16-bit samples",
                                    field="body")
            rate = AUDIO_RATES[pkt.kind]
            if self.rate is None:
                self.rate = rate
            elif rate != self.rate:
                raise ProtocolError(f"audio switched from {self.rate} to {rate} Hz mid-stream", field="body")
            self.frames += 1
            x = np.frombuffer(pkt.payload, "<i2").astype(np.int16)
            return Output([LegFrame(self.role, x, rate)])
        if pkt.kind == DTMF:
            return Output([Dtmf(pkt.payload[:1].decode("ascii", "replace"), self.role)])
        if pkt.kind == HANGUP:
            self.ended = True
            return Output([CallEnded("hangup")], close=True)
        if pkt.kind == ERROR:
            self.ended = True
            code = pkt.payload[0] if pkt.payload else None
            what = ", ".join(v for k, v in ASTERISK_ERRORS.items() if code is not None and code & k) or "error"
            return Output([PlatformError(f"AudioSocket error: {what}", code), CallEnded("error")], close=True)
        raise ProtocolError(f"unknown AudioSocket packet type 0x{pkt.kind:02x}", field="body")


async def handle_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                            on_event: Callable[[Event], Awaitable[None]], *, role: str = "customer",
                            read_size: int = 4096, idle_timeout_s: float | None = 10.0) -> str:
    """Serve one connection: read, parse, await ``on_event`` for each event in order, until hangup, error, EOF or
    ``idle_timeout_s`` without data.  Returns the end reason (also delivered as a final ``CallEnded``)."""
    session = AudioSocketSession(role)
    reason = "eof"
    try:
        while True:
            try:
                data = await asyncio.wait_for(reader.read(read_size), idle_timeout_s)
            except TimeoutError:
                reason = "idle"
                break
            if not data:
                break
            try:
                out = session.feed(data)
            except ProtocolError as e:
                await on_event(PlatformError(e.message, "protocol"))
                writer.write(build_packet(ERROR))
                reason = "error"
                break
            for ev in out.events:
                await on_event(ev)
            if out.close:
                return "hangup" if session.ended and not any(isinstance(e, PlatformError) for e in out.events) \
                    else "error"
    finally:
        try:
            writer.close()
            await writer.wait_closed()
        except (ConnectionError, OSError):
            pass
    if session.call_id is not None:
        await on_event(CallEnded(reason))
    return reason
