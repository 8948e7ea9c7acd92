"""RTP (RFC 3550 / RFC 3551) for Asterisk External Media and SBC media forks: header parsing, 16-bit sequence and
32-bit timestamp unwrapping, payload decoding (PCMU, PCMA, L16) and an asyncio UDP receiver with idle detection.

Why a small parser of our own: ``dpkt.rtp.RTP`` (pure Python, last release 2022) leaves the header extension and
the padding inside ``data``, so its payload is wrong whenever X or P is set; ``aiortc``'s ``RtpPacket.parse`` is
right but comes with PyAV, cryptography, pylibsrtp and aioice (a WebRTC stack) for 40 lines of struct parsing.

Header (RFC 3550 section 5.1), network byte order::

    V(2) P(1) X(1) CC(4) | M(1) PT(7) | sequence number(16) | timestamp(32) | SSRC(32) | CSRC(32) x CC
    [X: profile(16) length-in-words(16) extension(32 x length)]  payload  [P: padding, last byte = its length]

Payload types (RFC 3551 table 4): 0 = PCMU 8 kHz, 8 = PCMA 8 kHz; L16 is network-order (big-endian) 16-bit PCM,
static 10/11 (44.1 kHz stereo/mono) or a dynamic type 96-127 named in the SDP (ffmpeg: ``a=rtpmap:97 L16/8000/1``).

Reordering and loss are the framer's job (:mod:`pipelines.ingest.framer`): each packet becomes a
:class:`LegFrame` whose ``seq`` is the extended (unwrapped) sequence number and whose ``ts`` is the extended
timestamp minus the stream's first one, so the framer reorders by sequence number within its jitter window and
turns a lost packet into silence exactly as long as the timestamp gap.  A new SSRC (the sender restarted)
re-bases both counters so the clock continues where the old source stopped; late packets of the replaced source
are dropped (``stale``).  The first packet that arrives from a new source sets its origin, so if the source's
first two packets arrive swapped, the earlier one is dropped as late (20 ms, once per restart).
"""
from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from app.telephony.events import LegFrame, ProtocolError, decode_payload
from pipelines.errors import ConflictError, InputError

_FIXED = struct.Struct(">BBHII")
STATIC_PT = {0: ("pcmu", 8000, 1), 8: ("pcma", 8000, 1), 10: ("l16be", 44100, 2), 11: ("l16be", 44100, 1)}
CODECS = {"pcmu": 0, "pcma": 8, "l16": None}


@dataclass(frozen=True)
class RtpPacket:
    version: int
    padding: bool
    extension: bool
    csrc_count: int
    marker: bool
    payload_type: int
    seq: int
    timestamp: int
    ssrc: int
    csrc: tuple[int, ...]
    extension_profile: int | None
    extension_data: bytes
    payload: bytes


def parse_rtp(data: bytes) -> RtpPacket:
    """One datagram -> :class:`RtpPacket`; :class:`ProtocolError` if it is not a valid RTP version 2 packet."""
    if len(data) < _FIXED.size:
        raise ProtocolError(f"RTP packet of {len(data)} bytes is shorter than the 12-byte header", field="body")
    b0, b1, seq, ts, ssrc = _FIXED.unpack_from(data)
    version, padding, extension, cc = b0 >> 6, bool(b0 & 0x20), bool(b0 & 0x10), b0 & 0x0F
    if version != 2:
        raise ProtocolError(f"RTP version {version}, expected 2", field="body")
    pos = _FIXED.size + 4 * cc
    if pos > len(data):
        raise ProtocolError(f"RTP packet too short for {cc} CSRC entries", field="body")
    csrc = struct.unpack_from(f">{cc}I", data, _FIXED.size) if cc else ()
    profile, ext = None, b""
    if extension:
        if pos + 4 > len(data):
            raise ProtocolError("RTP header extension is truncated", field="body")
        profile, words = struct.unpack_from(">HH", data, pos)
        end = pos + 4 + 4 * words
        if end > len(data):
            raise ProtocolError("RTP header extension is longer than the packet", field="body")
        ext, pos = bytes(data[pos + 4:end]), end
    end = len(data)
    if padding:
        pad = data[-1]
        if pad == 0 or end - pad < pos:
            raise ProtocolError(f"RTP padding length {pad} is invalid", field="body")
        end -= pad
    return RtpPacket(version, padding, extension, cc, bool(b1 & 0x80), b1 & 0x7F, seq, ts, ssrc, tuple(csrc),
                     profile, ext, bytes(data[pos:end]))


def build_rtp(payload: bytes, *, seq: int, timestamp: int, ssrc: int, payload_type: int = 0, marker: bool = False,
              csrc: tuple[int, ...] = (), extension: tuple[int, bytes] | None = None, padding: int = 0) -> bytes:
    """An RTP packet (for tests and tools): ``extension`` = (profile, data whose length is a multiple of 4)."""
    b0 = 0x80 | (0x20 if padding else 0) | (0x10 if extension else 0) | len(csrc)
    out = _FIXED.pack(b0, (0x80 if marker else 0) | payload_type, seq & 0xFFFF, timestamp & 0xFFFFFFFF, ssrc)
    out += b"".join(struct.pack(">I", c) for c in csrc)
    if extension:
        profile, data = extension
        if len(data) % 4:
            raise ValueError("RTP extension data must be a multiple of 4 bytes")
        out += struct.pack(">HH", profile, len(data) // 4) + data
    out += payload
    if padding:
        out += bytes(padding - 1) + bytes([padding])
    return out


def unwrap(value: int, reference: int | None, bits: int) -> int:
    """Extend a ``bits``-wide wrapping counter to the integer nearest ``reference`` (the highest seen so far)."""
    if reference is None:
        return value
    mod = 1 << bits
    cand = (reference & ~(mod - 1)) | value
    if cand - reference > mod // 2:
        cand -= mod
    elif reference - cand > mod // 2:
        cand += mod
    return cand


class RtpStream:
    """One leg's RTP packets -> :class:`LegFrame` (extended seq, timestamp from the stream's first packet)."""

    def __init__(self, role: str, codec: str = "pcmu", *, sample_rate: int = 8000, payload_type: int | None = None,
                 channels: int = 1) -> None:
        codec = codec.lower()
        if codec not in CODECS:
            raise ProtocolError(f"codec {codec!r}: use pcmu, pcma or l16", field="codec")
        if codec in ("pcmu", "pcma") and sample_rate != 8000:
            raise ProtocolError(f"{codec} is 8000 Hz", field="sample_rate")
        if channels != 1:
            raise ProtocolError("an RTP leg is mono (one leg per stream)", field="channels")
        self.role, self.codec, self.rate = role, codec, int(sample_rate)
        self.payload_type = CODECS[codec] if payload_type is None else int(payload_type)  # None: any dynamic type
        self.encoding = "l16be" if codec == "l16" else codec
        self.ssrc: int | None = None
        self.max_seq: int | None = None  # highest extended seq of the current source
        self.max_ts: int | None = None
        self.seq_base = 0  # extended seq = source seq + seq_base (re-based when the SSRC changes)
        self.ts_base: int | None = None  # media ts = extended source ts - ts_base
        self.end_ts = 0  # media ts just after the newest packet (where a new source continues)
        self.end_seq = -1
        self.packets = 0
        self.rejected = 0
        self.ssrc_changes = 0
        self.old_ssrcs: list[int] = []
        self.stale = 0

    def feed(self, data: bytes) -> LegFrame | None:
        """One datagram -> a frame, or None for a packet of another payload type (comfort noise, DTMF events)."""
        pkt = parse_rtp(data)
        if self.payload_type is not None and pkt.payload_type != self.payload_type:
            self.rejected += 1
            return None
        if self.payload_type is None and pkt.payload_type < 96 and pkt.payload_type not in (10, 11):
            self.rejected += 1
            return None
        if pkt.ssrc != self.ssrc:
            if pkt.ssrc in self.old_ssrcs:  # a straggler of a source that has been replaced: its slot is gone
                self.stale += 1
                return None
            if self.ssrc is not None:
                self.ssrc_changes += 1
                self.old_ssrcs = (self.old_ssrcs + [self.ssrc])[-8:]
            self.ssrc, self.max_seq, self.max_ts = pkt.ssrc, None, None
            self.seq_base = self.end_seq + 1 - pkt.seq
            self.ts_base = pkt.timestamp - self.end_ts
        seq = unwrap(pkt.seq, self.max_seq, 16)
        ts = unwrap(pkt.timestamp, self.max_ts, 32)
        self.max_seq = seq if self.max_seq is None else max(self.max_seq, seq)
        self.max_ts = ts if self.max_ts is None else max(self.max_ts, ts)
        samples = decode_payload(pkt.payload, self.encoding)
        media_ts = ts - self.ts_base
        self.end_ts = max(self.end_ts, media_ts + len(samples))
        self.end_seq = max(self.end_seq, seq + self.seq_base)
        self.packets += 1
        return LegFrame(self.role, samples, self.rate, seq=seq + self.seq_base, ts=media_ts, ts_clock="leg")

    def state_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("role", "codec", "rate", "payload_type", "encoding", "ssrc", "max_seq",
                                               "max_ts", "seq_base", "ts_base", "end_ts", "end_seq", "packets",
                                               "rejected", "ssrc_changes", "old_ssrcs", "stale")}

    @classmethod
    def from_state(cls, d: dict[str, Any]) -> "RtpStream":
        s = cls(d["role"], d["codec"], sample_rate=d["rate"], payload_type=d["payload_type"])
        for k, v in d.items():
            setattr(s, k, v)
        return s


class RtpReceiver(asyncio.DatagramProtocol):
    """asyncio UDP endpoint for one leg: each datagram is parsed by ``stream`` and the frame handed to
    ``on_frame`` (synchronously, in arrival order).  ``idle_s()`` says how long nothing came; a watchdog in the
    service ends the leg after the idle timeout.  Optionally only datagrams from ``allowed_host`` are taken."""

    def __init__(self, stream: RtpStream, on_frame: Callable[[LegFrame], None], *,
                 allowed_host: str | None = None, on_error: Callable[[Exception], None] | None = None) -> None:
        self.stream = stream
        self.on_frame = on_frame
        self.on_error = on_error
        self.allowed_host = allowed_host
        self.transport: asyncio.DatagramTransport | None = None
        self.last_packet = time.monotonic()
        self.started = self.last_packet
        self.errors = 0
        self.foreign = 0
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.allowed_host is not None and addr[0] != self.allowed_host:
            self.foreign += 1
            return
        self.last_packet = time.monotonic()
        try:
            frame = self.stream.feed(data)
        except ProtocolError as e:
            self.errors += 1
            if self.on_error:
                self.on_error(e)
            return
        if frame is not None:
            self.on_frame(frame)

    def error_received(self, exc: Exception) -> None:
        self.errors += 1
        if self.on_error:
            self.on_error(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(exc)

    def idle_s(self, now: float | None = None) -> float:
        return (time.monotonic() if now is None else now) - self.last_packet

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def open_receiver(stream: RtpStream, on_frame: Callable[[LegFrame], None], *, host: str = "127.0.0.1",
                        port: int = 0, allowed_host: str | None = None,
                        on_error: Callable[[Exception], None] | None = None) -> tuple[RtpReceiver, int]:
    """Bind a UDP port (0: any free one) and return the receiver and the bound port."""
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(
        lambda: RtpReceiver(stream, on_frame, allowed_host=allowed_host, on_error=on_error), local_addr=(host, port))
    return proto, transport.get_extra_info("sockname")[1]


def parse_port_range(spec: str) -> range:
    """``"20000-20999"`` (inclusive) or ``"20000"`` -> a range of UDP ports (NUQI_RTP_PORTS)."""
    lo, sep, hi = str(spec).strip().partition("-")
    try:
        first, last = int(lo), int(hi) if sep else int(lo)
    except ValueError:
        raise InputError(f"RTP port range {spec!r}: use FIRST-LAST, e.g. 20000-20999", field="rtp_ports") from None
    if not 1024 <= first <= last <= 65535:
        raise InputError(f"RTP port range {spec!r} must lie within 1024-65535", field="rtp_ports")
    return range(first, last + 1)


async def open_receiver_in_range(stream: RtpStream, on_frame: Callable[[LegFrame], None], ports: range, *,
                                 host: str = "0.0.0.0", skip: set[int] | frozenset[int] = frozenset(),
                                 allowed_host: str | None = None,
                                 on_error: Callable[[Exception], None] | None = None) -> tuple[RtpReceiver, int]:
    """Bind the first free port of ``ports`` (not in ``skip``: ports this worker already handed out)."""
    for port in ports:
        if port in skip:
            continue
        try:
            return await open_receiver(stream, on_frame, host=host, port=port, allowed_host=allowed_host,
                                       on_error=on_error)
        except OSError:
            continue
    raise ConflictError(f"no free UDP port in {ports.start}-{ports.stop - 1} for another RTP leg", field="rtp_ports")


async def wait_idle(receiver: RtpReceiver, idle_timeout_s: float, poll_s: float = 0.05) -> str:
    """Return ``"idle"`` once no packet came for ``idle_timeout_s`` (the leg ends), or ``"closed"``."""
    while not receiver.closed.done():
        left = idle_timeout_s - receiver.idle_s()
        if left <= 0:
            return "idle"
        try:
            await asyncio.wait_for(asyncio.shield(receiver.closed), max(poll_s, left))
        except TimeoutError:
            continue
    return "closed"
