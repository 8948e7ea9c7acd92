"""Native telephony transports on top of :mod:`app.services.stream`: a platform connection's events -> the call.

* :class:`PlatformCall` -- what every platform session (``app.telephony``: Twilio, AudioHook, fork, AudioSocket,
  RTP) yields, acted on: ``CallStarted`` opens the call's stream (after the caller's key was checked), ``LegFrame``
  events are fed to the framer (the frames of one message together, so a stereo frame makes one chunk),
  ``CallEnded`` ends the legs (and the call, for platforms whose stream is the whole call).
* :class:`TelephonyRuntime` -- per process: the Asterisk AudioSocket TCP listener (``NUQI_AUDIOSOCKET_PORT``) and
  its sessions allocated with a key (``POST /v1/calls/{id}/audiosocket``), and RTP legs on UDP ports from
  ``NUQI_RTP_PORTS`` (``POST /v1/calls/{id}/rtp``), each ended by an idle timeout.  Both are bound to this process:
  with several workers run these transports in one of them (or give each worker its own port).
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from app.deps import Principal, check_call_id
from app.errors import AuthError, RateLimitedError
from app.runtime import Runtime
from app.security.streams import ConnectionGuard, audio_cost
from app.services.stream import StreamSession, end_live_call, send_analysis, telephony
from app.telephony.audiosocket import handle_connection
from app.telephony.events import (
    CallEnded,
    CallStarted,
    Event,
    LegFrame,
    Notice,
    PlatformError,
    ProtocolError,
)
from app.telephony.rtp import RtpReceiver, RtpStream, open_receiver_in_range, parse_port_range
from pipelines.audio.decode import ROLES
from pipelines.errors import ConflictError, InputError, NuqiError

logger = logging.getLogger("nuqi.telephony")

Send = Callable[[dict[str, Any]], Awaitable[None]]
Authorize = Callable[[CallStarted], Awaitable[Principal]]


def parse_roles(spec: str, what: str) -> dict[str, str]:
    """``"inbound=customer,outbound=agent"`` -> {"inbound": "customer", "outbound": "agent"}."""
    out: dict[str, str] = {}
    for part in str(spec).split(","):
        name, sep, role = part.strip().partition("=")
        if not sep or role.strip() not in ROLES:
            raise InputError(f"{what} {spec!r}: use NAME=customer|agent pairs separated by commas", field=what)
        out[name.strip()] = role.strip()
    return out


def all_legs_ended(rt: Runtime, call_id: str, tenant: str) -> bool:
    rec = rt.store.get_call(call_id, tenant=tenant)
    legs = ((rec.state.get("ingest") or {}).get("legs") or {}) if rec is not None else {}
    return bool(legs) and all(leg.get("ended") for leg in legs.values())


class PlatformCall:
    """One platform connection: its events -> a :class:`StreamSession` of the call it names."""

    def __init__(self, rt: Runtime, platform: str, authorize: Authorize, *, send: Send | None = None,
                 ends_call: bool = True, role_for: Callable[[str], str] | None = None, security: Any = None) -> None:
        self.rt, self.platform, self.authorize, self.send = rt, platform, authorize, send
        self.ends_call = ends_call  # the stream is the whole call (Twilio, AudioHook, fork); else one leg
        self.role_for = role_for  # remap a frame's role (AudioSocket: the role its allocation names)
        self.security = security  # the app's SecurityRuntime: the key is checked again while the stream lives
        self.guard: ConnectionGuard | None = None  # set once the stream's key is known (CallStarted)
        self.session: StreamSession | None = None
        self.errors = 0
        self.ended = False
        self._refused = 0  # messages refused over the key's rate since the last warning about them
        self._refused_logged = 0.0

    def log_error(self, exc: NuqiError, where: str) -> None:
        """A message the stream could not take, logged as a warning; refusals over the key's rate (one per message
        while it lasts, 50 a second for 20 ms frames) at most once per 5 s, with their count."""
        self.errors += 1
        if isinstance(exc, RateLimitedError):
            self._refused += 1
            if time.monotonic() - self._refused_logged < 5.0:
                return
            self._refused_logged = time.monotonic()
            logger.warning("%s %s: %d message(s) refused: %s", self.platform, where, self._refused, exc.message)
            self._refused = 0
            return
        logger.warning("%s %s: %s", self.platform, where, exc.message)

    async def check(self, events: list[Event]) -> None:
        """The stream's key, per message (``app.security.streams``): AuthError once it was revoked (the caller
        ends the connection), RateLimitedError when the key is over its rate (the message is refused).  A message
        with audio costs its duration in analysis windows, any other one request."""
        if self.guard is None:
            return
        await self.guard.check_key()
        seconds = max((len(e.samples) / e.sample_rate for e in events if isinstance(e, LegFrame)), default=None)
        await self.guard.spend(1.0 if seconds is None else audio_cost(seconds, telephony(self.rt.settings)
                                                                          .stream_window_s))

    async def handle(self, events: list[Event]) -> None:
        await self.check(events)
        frames: list[LegFrame] = []
        for ev in events:
            if isinstance(ev, LegFrame):
                frames.append(ev if self.role_for is None else dataclasses.replace(ev, role=self.role_for(ev.role)))
                continue
            if frames:
                await self._feed(frames)
                frames = []
            if isinstance(ev, CallStarted):
                await self._start(ev)
            elif isinstance(ev, CallEnded):
                await self.end(ev.reason)
            elif isinstance(ev, PlatformError):
                logger.warning("%s reported an error: %s (code %s)", self.platform, ev.message, ev.code)
            elif isinstance(ev, Notice):
                logger.debug("%s: %s %s", self.platform, ev.kind, ev.data)
        if frames:
            await self._feed(frames)

    async def _start(self, ev: CallStarted) -> None:
        if self.session is not None:
            return
        check_call_id(ev.call_id)
        who = await self.authorize(ev)
        self.guard = ConnectionGuard(self.security, who)
        self.session = StreamSession(self.rt, ev.call_id, who.tenant, ev.agent_id or who.agent_id, new_segment=True)

    async def _feed(self, frames: list[LegFrame]) -> None:
        if self.session is None:
            raise ProtocolError(f"{self.platform}: audio before the stream started", field="body")
        for msg in await self.session.feed(frames):
            if self.send is not None:
                await send_analysis(self.send, msg)

    async def end(self, reason: str) -> None:
        """The platform ended the stream: analyse what is buffered, end the call (or this leg, and the call once
        every leg has ended)."""
        if self.session is None or self.ended:
            return
        self.ended = True
        s = self.session
        if self.ends_call:
            out = await s.end()
            if self.send is not None:
                await self.send({"type": "ended", **out})
            return
        msgs = await s.flush()
        s.closed = True
        if self.send is not None:
            for m in msgs:
                await send_analysis(self.send, m)
        if await self.rt.run(all_legs_ended, self.rt, s.call_id, s.tenant):
            await end_live_call(self.rt, s.call_id, s.tenant)

    async def close(self) -> None:
        """The connection dropped without an end: keep the buffered audio (the leg may reconnect)."""
        if self.session is not None and not self.ended:
            await self.session.close()


# =========================================================================== per-process listeners
@dataclass
class Allocation:
    call_id: str
    role: str
    tenant: str
    agent_id: str | None
    key_id: str | None = None  # the key that allocated it: checked again while the leg streams
    created: float = field(default_factory=time.monotonic)
    in_use: bool = False


@dataclass
class RtpLeg:
    allocation: Allocation
    port: int
    receiver: RtpReceiver
    task: asyncio.Task | None = None


class TelephonyRuntime:
    """The AudioSocket listener and the RTP legs of this process."""

    ALLOCATION_TTL_S = 3600.0  # an AudioSocket session unused this long is forgotten

    def __init__(self, rt: Runtime, security: Any = None) -> None:
        self.rt = rt
        self.security = security  # the app's SecurityRuntime (a leg stops when the key that allocated it is revoked)
        self.tel = telephony(rt.settings)
        self.audiosocket: dict[str, Allocation] = {}
        self.server: asyncio.AbstractServer | None = None
        self.audiosocket_port: int | None = None
        self.rtp: dict[int, RtpLeg] = {}
        self._conns: set[asyncio.Task] = set()

    # ----------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        if self.tel.audiosocket_port is not None:
            self.server = await asyncio.start_server(self._audiosocket_conn, self.tel.audiosocket_host,
                                                     int(self.tel.audiosocket_port))
            self.audiosocket_port = self.server.sockets[0].getsockname()[1]
            logger.info("AudioSocket listener on %s:%s", self.tel.audiosocket_host, self.audiosocket_port)

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for leg in list(self.rtp.values()):
            leg.receiver.close()
            if leg.task is not None:
                leg.task.cancel()
        for t in list(self._conns):
            t.cancel()
        self.rtp.clear()

    # ----------------------------------------------------------------- AudioSocket
    def allocate_audiosocket(self, call_id: str, role: str, who: Principal, agent_id: str | None) -> dict[str, Any]:
        if self.server is None:
            raise ConflictError("the AudioSocket listener is off: set NUQI_AUDIOSOCKET_PORT", field="audiosocket")
        now = time.monotonic()
        for k in [k for k, a in self.audiosocket.items() if not a.in_use and now - a.created > self.ALLOCATION_TTL_S]:
            del self.audiosocket[k]
        key = str(uuid.uuid4())
        self.audiosocket[key] = Allocation(call_id, role, who.tenant, agent_id or who.agent_id, who.key_id)
        return {"call_id": call_id, "role": role, "transport": "audiosocket", "uuid": key,
                "port": self.audiosocket_port, "idle_timeout_s": float(self.tel.audiosocket_idle_s)}

    async def _audiosocket_conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._conns.add(task)
        alloc: list[Allocation] = []

        async def authorize(ev: CallStarted) -> Principal:
            a = self.audiosocket.get(ev.call_id)
            if a is None or a.in_use:
                raise ProtocolError(f"AudioSocket UUID {ev.call_id} was not allocated (POST /v1/calls/{{id}}/"
                                    "audiosocket) or is in use", field="uuid")
            a.in_use = True
            alloc.append(a)
            return Principal(tenant=a.tenant, role="ingest", agent_id=a.agent_id, key_id=a.key_id)

        call = PlatformCall(self.rt, "audiosocket", authorize, ends_call=False,
                            role_for=lambda _role: alloc[0].role, security=self.security)

        async def on_event(ev: Event) -> None:
            if isinstance(ev, CallStarted):  # the UUID names the allocation; the call id is the allocation's
                await authorize(ev)
                a = alloc[0]
                call.session = StreamSession(self.rt, a.call_id, a.tenant, a.agent_id, new_segment=True)
                call.guard = ConnectionGuard(self.security, Principal(a.tenant, "ingest", a.agent_id, a.key_id))
                return
            try:
                await call.handle([ev])
            except AuthError:
                raise  # the key was revoked: the connection ends (handle_connection closes it)
            except NuqiError as exc:
                call.log_error(exc, f"call {alloc[0].call_id if alloc else '?'}")

        try:
            reason = await handle_connection(reader, writer, on_event, idle_timeout_s=self.tel.audiosocket_idle_s)
            logger.info("AudioSocket connection ended: %s", reason)
        except (ProtocolError, AuthError) as exc:
            logger.warning("AudioSocket connection refused: %s", exc.message)
        except Exception:
            logger.exception("AudioSocket connection failed")
        finally:
            await call.close()
            if alloc:
                self.audiosocket.pop(next((k for k, a in self.audiosocket.items() if a is alloc[0]), ""), None)
            if task is not None:
                self._conns.discard(task)

    # ----------------------------------------------------------------- RTP
    async def allocate_rtp(self, call_id: str, role: str, codec: str, who: Principal, agent_id: str | None,
                           source_host: str | None, public_host: str | None) -> dict[str, Any]:
        if not self.tel.rtp_ports:
            raise ConflictError("RTP is off: set NUQI_RTP_PORTS (e.g. 20000-20999)", field="rtp")
        stream = RtpStream(role, codec)
        queue: asyncio.Queue[LegFrame] = asyncio.Queue()
        receiver, port = await open_receiver_in_range(stream, queue.put_nowait, parse_port_range(self.tel.rtp_ports),
                                                      host=self.tel.rtp_host, skip=set(self.rtp),
                                                      allowed_host=source_host)
        alloc = Allocation(call_id, role, who.tenant, agent_id or who.agent_id, who.key_id, in_use=True)
        leg = RtpLeg(alloc, port, receiver)
        self.rtp[port] = leg
        leg.task = asyncio.create_task(self._run_rtp(leg, queue))
        return {"call_id": call_id, "role": role, "transport": "rtp", "host": public_host, "port": port,
                "codec": stream.codec, "payload_type": stream.payload_type,
                "idle_timeout_s": float(self.tel.rtp_idle_timeout_s)}

    async def _run_rtp(self, leg: RtpLeg, queue: asyncio.Queue[LegFrame]) -> None:
        a = leg.allocation

        async def authorize(ev: CallStarted) -> Principal:
            return Principal(tenant=a.tenant, role="ingest", agent_id=a.agent_id, key_id=a.key_id)

        call = PlatformCall(self.rt, "rtp", authorize, ends_call=False, security=self.security)
        idle = float(self.tel.rtp_idle_timeout_s)
        first_wait = max(60.0, idle)  # before the first packet: the platform is still setting the media up
        revoked = False
        try:
            await call.handle([CallStarted(a.call_id, "rtp", leg.receiver.stream.rate, (a.role,), a.agent_id)])
            while True:
                try:
                    frame = await asyncio.wait_for(queue.get(), 0.25)
                except TimeoutError:
                    limit = idle if leg.receiver.stream.packets else first_wait
                    if queue.empty() and leg.receiver.idle_s() >= limit:
                        break
                    continue
                try:
                    await call.handle([frame])
                except NuqiError as exc:
                    call.log_error(exc, f"leg {a.call_id}/{a.role} port {leg.port}")
                    if isinstance(exc, AuthError):  # the key that allocated the leg was revoked: stop taking it
                        revoked = True
                        break
            if not revoked:
                await call.end("idle")
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("RTP leg %s/%s failed", a.call_id, a.role)
        finally:
            leg.receiver.close()
            self.rtp.pop(leg.port, None)
            await call.close()
