"""Streamed audio: frames of any size per call and leg -> the framer -> analysis windows -> the call's state.

Every transport (``WS /v1/calls/{id}/stream``, short ``POST .../audio`` chunks, Twilio, AudioHook, FreeSWITCH fork,
AudioSocket, RTP) feeds :class:`StreamSession`: frames of each leg go through :class:`pipelines.ingest.CallFramer`
(reorder, loss -> silence, duplicates, legs aligned on the call's media clock), and each completed window is
analysed exactly as a 1 s chunk is today (``process_audio`` on ``window_chunk``), committed to the call's timeline
with a version check, and answered with one analysis message.

The framer's state lives in the call's state (``CallState.ingest``) and is written with each committed window, at a
leg's first frame (so a second leg sees the call's media-clock origin) and when the connection closes, not per
frame.  A connection keeps its framer in memory and owns the legs it feeds: on each write it merges only those legs
into the stored state, so two legs on two workers never overwrite each other.  A reconnecting leg loads its stored
leg state and continues with the same sequence numbers; a native platform's new stream (its own numbering and
timestamps) starts a new segment of the leg.

A connection holds each leg it feeds on a lease (``ingest["owners"][role]``: its token and an expiry, renewed with
every write, released when it closes).  A reconnect that arrives before the dropped connection has saved its leg
(its close runs after the disconnect, possibly on another worker) waits for that release, so it continues from the
leg's last frame instead of a stale copy; a leg whose holder died is taken over once the lease expires
(``stream_leg_lease_s``), and the old holder, should it still be alive, is fenced off (its next write is refused).
A short POST of a frame never waits: it gets 409 while a live connection streams the same leg.

Each committed window of a call with live ASR is also handed to ``rt.asr`` (:mod:`app.services.asr`; never waited
for), and ending a call lets live ASR transcribe its last utterance first (:func:`end_live_call`).

Streams are limited on audio time (a leg may not run more than ``stream_max_ahead_s`` ahead of the wall clock since
the call's media time 0) and on messages (``stream_max_messages_per_s`` per connection).
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from app import observability as obs
from app.errors import RateLimitedError
from app.runtime import Runtime
from app.security.ratelimit import LocalLimiter
from app.services.calls import (
    _stored_entry,
    decide_asr,
    end_call,
    ensure_call,
    feed_asr,
    state_dict,
    store_alert,
)
from app.services.cas import CasRetry
from app.telephony.events import ALAW_PCM16, MULAW_PCM16, LegFrame
from pipelines.asr.admission import note_request
from pipelines.audio.decode import ROLES, ChunkFormat, Encoding, _roles_for, decode_chunk
from pipelines.errors import AudioDecodeError, ConflictError, InputError
from pipelines.ingest import CallFramer, PushResult, Window, window_chunk
from pipelines.ingest.framer import LegFramer, as_int16
from pipelines.session import CallState, process_audio

logger = logging.getLogger("nuqi.stream")
_CLOSING: set[asyncio.Task[None]] = set()  # closing connections' saves still running (StreamSession.close)

IngestUpdate = Callable[[dict[str, Any]], dict[str, Any]]


def telephony(settings: Any) -> Any:
    """The telephony settings group (``app.settings.TelephonySettings``)."""
    return settings.telephony


def framer_params(settings: Any) -> dict[str, float]:
    tel = telephony(settings)
    return {"window_s": tel.stream_window_s, "jitter_s": tel.stream_jitter_s}


def group_windows(windows: Iterable[Window]) -> list[list[Window]]:
    """Completed windows -> analysis chunks: the windows of one index (one per leg) that completed together make one
    chunk (a stereo frame: exactly today's stereo 1 s chunk), in window order."""
    groups: dict[int, list[Window]] = {}
    for w in windows:
        g = groups.setdefault(w.index, [])
        if any(x.role == w.role for x in g):  # cannot happen within one push; keep it a separate chunk anyway
            groups[-len(groups) - 1] = [w]
        else:
            g.append(w)
    return [groups[k] for k in sorted(groups, key=lambda k: groups[k][0].index)]


@dataclass(frozen=True)
class Lease:
    """What a write does to the leases of the legs it carries: ``token`` None = a session without a lease (a short
    POST: refused while another connection holds the leg); ``until`` None = release; ``takeover``: ignore another
    holder (ending the call over HTTP)."""

    token: str | None = None
    until: float | None = None
    takeover: bool = False


def leg_holder(stored: dict[str, Any], role: str, now: float) -> dict[str, Any] | None:
    """The live lease on a leg (token, until), or None when it is free or its lease expired."""
    owner = (stored.get("owners") or {}).get(role)
    return owner if owner and float(owner.get("until", 0)) > now else None


def _check_holder(stored: dict[str, Any], role: str, lease: Lease, now: float, call_id: str) -> None:
    holder = leg_holder(stored, role, now)
    if holder is not None and holder.get("token") != lease.token and not lease.takeover:
        raise ConflictError(f"the {role} leg of call {call_id!r} is being streamed by another connection",
                            call_id=call_id, role=role, retry_after_s=round(float(holder["until"]) - now, 3))


def merge_ingest(stored: dict[str, Any], mine: dict[str, Any], roles: Iterable[str],
                 lease: Lease | None = None, call_id: str = "") -> dict[str, Any]:
    """The stored framer state with this connection's legs (``roles``) replaced by its own (``mine``: a
    ``CallFramer.state_dict()``); the media-clock origin stays the stored one once set.  With a ``lease``: a leg held
    by another live connection is refused (ConflictError), and the leases of ``roles`` are renewed or released."""
    out = dict(stored) if stored else {**mine, "legs": {}}
    legs = dict(out.get("legs") or {})
    owners = dict(out.get("owners") or {})
    now = time.time()
    for r in roles:
        if lease is not None:
            _check_holder(out, r, lease, now, call_id)
            if lease.token is not None and lease.until is not None:
                owners[r] = {"token": lease.token, "until": round(lease.until, 3)}
            elif lease.token is not None or lease.takeover:
                owners.pop(r, None)
        if r in mine["legs"]:
            legs[r] = mine["legs"][r]
    out["legs"] = legs
    out["owners"] = owners
    if out.get("t0_wall") is None:
        out["t0_wall"] = mine["t0_wall"]
    return out


def claim_leg(rt: Runtime, call_id: str, tenant: str, agent_id: str | None, role: str, lease: Lease
              ) -> tuple[float, dict[str, Any]]:
    """Take the lease on a leg (``lease.token`` None: only check that nobody else holds it).  Returns (0, the stored
    framer state) once taken, or (seconds the current holder's lease still runs, {}) while another connection
    holds it."""
    races = CasRetry(f"claiming the {role} leg of call {call_id!r}", call_id=call_id)
    while True:
        rec = ensure_call(rt, call_id, tenant, agent_id)
        if rec.status == "ended":
            raise ConflictError(f"call {call_id!r} has ended; no more audio is accepted", call_id=call_id)
        stored = dict(rec.state.get("ingest") or {})
        now = time.time()
        holder = leg_holder(stored, role, now)
        if holder is not None and holder.get("token") != lease.token and not lease.takeover:
            if lease.token is None:
                _check_holder(stored, role, lease, now, call_id)  # raises: a short POST never waits
            return float(holder["until"]) - now, {}
        if lease.token is None or not stored:  # nothing stored yet: the lease is written with the leg's first save
            return 0.0, stored
        state = CallState.from_state(rec.state)
        state.ingest = {**stored, "owners": {**(stored.get("owners") or {}),
                                             role: {"token": lease.token, "until": round(lease.until or now, 3)}}}
        expected = rec.version
        rec.state = state_dict(state)
        if rt.store.save_call(rec, expected):
            return 0.0, stored
        races.lose_and_wait()


def commit_window(rt: Runtime, call_id: str, tenant: str, agent_id: str | None, group: list[Window],
                  update: IngestUpdate | None, asr: str | None = None) -> dict[str, Any]:
    """Analyse one chunk of completed windows and commit it (timeline entry + state + framer state) with a version
    check; a lost race re-reads the call and analyses again.  Returns the analysis message (alerts stored)."""
    races = CasRetry(f"window {group[0].index} of call {call_id!r}", call_id=call_id)
    chunk = window_chunk(group)
    while True:
        rec = ensure_call(rt, call_id, tenant, agent_id)
        if rec.status == "ended":
            raise ConflictError(f"call {call_id!r} has ended; no more audio is accepted", call_id=call_id)
        state = CallState.from_state(rec.state)
        if update is not None:
            state.ingest = update(state.ingest)
        expected = rec.version
        seq = state.last_seq + 1
        level_before = obs.stage_level(rec.state)
        with obs.inference("audio"):
            result = process_audio(state, chunk, seq, rt.models, start_s=group[0].t_start)
        walls = [w.wall_s for w in group if w.wall_s is not None]
        result.entry["windows"] = [w.to_dict() for w in group]
        result.entry["wall_s"] = round(max(walls) if walls else time.time(), 3)
        decide_asr(rt, call_id, tenant, state, asr)
        rec.state = state_dict(state)
        if rt.store.commit_chunk(rec, expected, seq, _stored_entry(result)):
            feed_asr(rt, call_id, tenant, state, chunk, result.entry["t_start"])
            obs.stage_change(level_before, rec.state)
            alerts = [a for a in (store_alert(rt, rec, a) for a in result.alerts) if a is not None]
            return {"type": "analysis", "call_id": call_id, **result.entry, "duplicate": False, "alerts": alerts}
        races.lose_and_wait()


def save_ingest(rt: Runtime, call_id: str, tenant: str, agent_id: str | None, update: IngestUpdate,
                asr: str | None = None) -> None:
    """Write the framer state alone (a leg's first frame, a disconnect, a short POST that completed nothing),
    with a live-ASR override sent before the call's first window (``asr``)."""
    races = CasRetry(f"saving the stream of call {call_id!r}", call_id=call_id)
    while True:
        rec = ensure_call(rt, call_id, tenant, agent_id)
        if rec.status == "ended":
            return
        state = CallState.from_state(rec.state)
        state.ingest = update(state.ingest)
        state.asr = note_request(state.asr, asr)
        expected = rec.version
        rec.state = state_dict(state)
        if rt.store.save_call(rec, expected):
            return
        races.lose_and_wait()


class StreamSession:
    """One connection (or one short POST) feeding legs of one call through the call's framer."""

    def __init__(self, rt: Runtime, call_id: str, tenant: str, agent_id: str | None = None, *,
                 new_segment: bool = False, anchor_s: float | None = None, locked: bool = False,
                 takeover: bool = False, asr: str | None = None) -> None:
        self.rt, self.call_id, self.tenant, self.agent_id = rt, call_id, tenant, agent_id
        self.asr = asr  # live-ASR override (on | off) for the call's first window
        self.tel = telephony(rt.settings)
        self.framer = CallFramer(**framer_params(rt.settings))
        self.owned: set[str] = set()
        self.new_segment = new_segment  # a platform's new stream: own numbering/timestamps (CallFramer.new_segment)
        self.anchor_s = anchor_s  # media time of each leg's first sample (explicit alignment), else arrival time
        self.locked = locked  # the caller holds the call's lock (a POST) for the whole session
        # a connection holds its legs on a lease; a POST holds none (it is over before another could take over)
        self.token = None if locked else secrets.token_hex(8)
        self.takeover = takeover  # ending the call over HTTP: whatever connection holds a leg
        self.lost: list[dict[str, Any]] = []  # gaps not yet reported
        self.stats = {"frames": 0, "windows": 0, "duplicates": 0, "late": 0, "lost_s": 0.0}
        self._limiter = LocalLimiter()
        self.closed = False

    # ----------------------------------------------------------------- helpers
    async def _locked(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self.locked:
            return await self.rt.run(fn, *args)
        async with self.rt.lock_for(self.call_id):
            return await self.rt.run(fn, *args)

    def _lease(self, release: bool = False) -> Lease:
        until = None if release or self.token is None else time.time() + float(self.tel.stream_leg_lease_s)
        return Lease(self.token, until, self.takeover)

    def _update(self, release: bool = False) -> IngestUpdate:
        mine = self.framer.state_dict()  # taken now (event loop), merged in the worker thread
        roles, lease, call_id = set(self.owned), self._lease(release), self.call_id
        return lambda stored: merge_ingest(stored, mine, roles, lease, call_id)

    async def _adopt(self, role: str) -> None:
        """A leg's first frame on this connection: take the leg's lease, the stored media-clock origin and the leg's
        stored state (a reconnect continues it).  While the leg's previous connection still holds it (its close has
        not saved yet, or its worker died), wait for the release or the lease's expiry, then take it over."""
        lease_s = float(self.tel.stream_leg_lease_s)
        deadline = time.monotonic() + lease_s + 1.0
        while True:
            lease = self._lease()
            if time.monotonic() >= deadline:
                lease = dataclasses.replace(lease, takeover=True)
            wait_s, stored = await self._locked(claim_leg, self.rt, self.call_id, self.tenant, self.agent_id,
                                                role, lease)
            if wait_s <= 0:
                break
            await asyncio.sleep(min(0.05, wait_s))
        if stored:
            if self.framer.t0_wall is None and stored.get("t0_wall") is not None:
                self.framer.t0_wall = float(stored["t0_wall"])
            leg = (stored.get("legs") or {}).get(role)
            if leg is not None and role not in self.framer.legs:
                self.framer.legs[role] = LegFramer.from_state(leg)
        leg_now = self.framer.legs.get(role)
        if leg_now is not None and leg_now.ended:
            raise ConflictError(f"the {role} leg of call {self.call_id!r} has ended", call_id=self.call_id, role=role)
        if self.new_segment and leg_now is not None and leg_now.started:
            self.lost.extend(g.to_dict() for g in self.framer.new_segment(role, time.time()).gaps)

    def check_rate(self) -> None:
        rate = float(self.tel.stream_max_messages_per_s)
        # burst of 5 s: after a stall of the server (or the network), the frames queued meanwhile arrive at once
        if not self._limiter.take_sync("m", rate, max(5 * rate, 50.0)).allowed:
            raise RateLimitedError(f"more than {rate:g} messages/s on one stream; slow down", retry_after_s=1)

    # ----------------------------------------------------------------- feeding
    async def feed(self, frames: list[LegFrame], wall: float | None = None) -> list[dict[str, Any]]:
        """Frames that arrived together (one per leg of a stereo frame, or one) -> analysis messages of the windows
        they completed (possibly none)."""
        now = time.time() if wall is None else wall
        first = [f.role for f in frames if f.role not in self.owned]
        for role in dict.fromkeys(first):
            await self._adopt(role)
            self.owned.add(role)
        limit = float(self.tel.stream_max_ahead_s)
        res = PushResult()
        for f in frames:
            ahead = self.framer.ahead_s(f.role, now)
            if ahead is not None and ahead > limit:
                raise RateLimitedError(f"the {f.role} leg is {ahead:.1f} s of audio ahead of real time (limit "
                                       f"{limit:g} s): send audio no faster than it plays", role=f.role,
                                       retry_after_s=round(ahead - limit, 3))
            res.extend(self.framer.push(f.role, f.samples, wall=now, anchor_s=self.anchor_s, **f.push_kwargs()))
            self.stats["frames"] += 1
        out = await self._handle(res)
        if first and not res.windows:  # publish the leg's start (media-clock origin) for the call's other legs
            await self._locked(save_ingest, self.rt, self.call_id, self.tenant, self.agent_id, self._update(),
                               self.asr)
        return out

    async def feed_chunk(self, chunk: Frame, *, seq: int | None = None) -> list[dict[str, Any]]:
        """A decoded chunk of any length (one or two legs) -> frames of its legs, pushed together."""
        frames = [LegFrame(role, x, chunk.sample_rate, seq=seq) for role, x in chunk.audio.items()]
        return await self.feed(frames)

    async def _handle(self, res: PushResult) -> list[dict[str, Any]]:
        self.stats["duplicates"] += res.duplicates
        self.stats["late"] += res.late
        for g in res.gaps:
            self.lost.append(g.to_dict())
            self.stats["lost_s"] += g.duration_s
        out = []
        for group in group_windows(res.windows):
            msg = await self._locked(commit_window, self.rt, self.call_id, self.tenant, self.agent_id, group,
                                     self._update(), self.asr)
            self.stats["windows"] += 1
            msg["lost"], self.lost = self.lost, []
            if msg["alerts"]:
                await self.rt.alerts.notify()
            out.append(msg)
        return out

    def buffered_s(self) -> dict[str, float]:
        return {r: round(leg.buffered_s, 4) for r, leg in self.framer.legs.items() if r in self.owned}

    async def flush(self, roles: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """End legs (default: all this connection feeds): waiting frames placed, the last short windows analysed."""
        res = PushResult()
        for r in list(roles if roles is not None else self.owned):
            if r in self.owned:
                res.extend(self.framer.flush(r, time.time()))
        out = await self._handle(res)
        await self.save(release=True)
        return out

    async def save(self, release: bool = False) -> None:
        if self.owned:
            await self._locked(save_ingest, self.rt, self.call_id, self.tenant, self.agent_id,
                               self._update(release), self.asr)

    async def end(self) -> dict[str, Any]:
        """Flush this connection's legs and end the call (the summary)."""
        await self.flush()
        self.closed = True
        return await end_live_call(self.rt, self.call_id, self.tenant)

    async def close(self) -> None:
        """The connection went away without ending the call: keep the buffered audio for a reconnect.

        The save runs in a task of its own that a cancelled handler does not take with it.  A handler can be
        cancelled while it closes (a worker shutting down, which is when reconnects go to another worker;
        Starlette's TestClient cancels on every close), and a close cancelled before it saved lost the leg's
        buffered audio and kept its lease until it expired: the reconnect waited that out, then continued from
        a stale copy."""
        if self.closed:
            return
        self.closed = True
        task = asyncio.get_running_loop().create_task(self._save_and_release())
        _CLOSING.add(task)  # the loop keeps only a weak reference to a task
        task.add_done_callback(_CLOSING.discard)
        await asyncio.shield(task)

    async def _save_and_release(self) -> None:
        try:
            await self.save(release=True)
        except ConflictError as exc:  # fenced off: another connection took the leg over after our lease expired
            logger.warning("stream of call %s not saved: %s", self.call_id, exc.message)
        except Exception:  # the call may have ended meanwhile, or the store be down: nothing to send anyway
            logger.exception("could not save the stream state of call %s", self.call_id)

    def all_legs_ended(self) -> bool:
        return bool(self.framer.legs) and all(leg.ended for leg in self.framer.legs.values())


async def end_live_call(rt: Runtime, call_id: str, tenant: str) -> dict[str, Any]:
    """End a call whose audio is all analysed: live ASR's last utterance is transcribed and applied first
    (bounded by ``NUQI_ASR_END_WAIT_S``), then the summary."""
    if rt.asr is not None:
        await rt.asr.finish(call_id, tenant)
    return await rt.run(end_call, rt, call_id, tenant)


async def flush_stored(rt: Runtime, call_id: str, tenant: str) -> list[dict[str, Any]]:
    """Before a call ends over HTTP: the audio its streamed legs still buffer (stored framer state) is analysed."""
    stored = await rt.run(lambda: (rt.store.get_call(call_id, tenant=tenant) or None))
    if stored is None or stored.status == "ended" or not stored.state.get("ingest"):
        return []
    session = StreamSession(rt, call_id, tenant, takeover=True)
    session.framer = CallFramer.from_state(stored.state["ingest"])
    session.owned = {r for r, leg in session.framer.legs.items() if not leg.ended}
    return await session.flush()


@dataclass(frozen=True, eq=False)
class Frame:
    """A decoded frame: int16 samples per role at ``sample_rate`` (what the framer takes, bit-exact)."""

    sample_rate: int
    duration_s: float
    audio: dict[str, np.ndarray]


_FAST_RATES = (8000, 16000)  # rates decode_chunk does not resample: int16 straight from the bytes is exact


def decode_frame(rt: Runtime, body: bytes, fmt: ChunkFormat) -> Frame:
    """One frame or chunk as the service decodes it: silence is valid audio; no clipping verdict on a frame (one
    shout would fail a 20 ms frame).  Raw s16le / G.711 at 8 or 16 kHz go straight to int16 (a 20 ms frame arrives
    50 times a second per call); anything else (WAV, other rates) through ``decode_chunk``."""
    enc = None
    if body[:4] not in (b"RIFF", b"RIFX", b"RF64") and fmt.sample_rate in _FAST_RATES and body:
        enc = Encoding.parse(fmt.encoding, body)
    if enc in (Encoding.pcm_s16le, Encoding.mulaw, Encoding.alaw):
        channels = fmt.channels or (len(fmt.channel_map) if fmt.channel_map else 1)
        if channels in (1, 2):
            width = (2 if enc is Encoding.pcm_s16le else 1) * channels
            if len(body) % width:
                raise AudioDecodeError(f"{enc.value} frame of {len(body)} bytes is not a whole number of "
                                       f"{channels}-channel samples", field="body")
            n = len(body) // width
            if n / fmt.sample_rate > rt.settings.ingest.max_chunk_seconds:
                decode_chunk(body, fmt, max_seconds=rt.settings.ingest.max_chunk_seconds)  # raises its 413
            if enc is Encoding.pcm_s16le:
                x = np.frombuffer(body, "<i2").reshape(n, channels)
            else:
                x = (MULAW_PCM16 if enc is Encoding.mulaw else ALAW_PCM16)[np.frombuffer(body, np.uint8)]
                x = x.reshape(n, channels)
            roles = _roles_for(channels, fmt)
            audio = {r: np.ascontiguousarray(x[:, i], dtype=np.int16) for i, r in enumerate(roles) if r in ROLES}
            if not audio:
                raise InputError("channel_map assigns no channel to customer or agent", field="channel_map")
            return Frame(int(fmt.sample_rate), n / fmt.sample_rate, audio)
    chunk = decode_chunk(body, fmt, max_seconds=rt.settings.ingest.max_chunk_seconds, allow_silence=True,
                         check_clipping=False)
    return Frame(chunk.sample_rate, chunk.duration_s, {r: as_int16(x) for r, x in chunk.audio.items()})


def wants_frames(rt: Runtime, call_id: str, tenant: str, chunk: Frame) -> bool:
    """``mode=auto``: frames for a call already streamed in frames, and for a new call whose first chunk is shorter
    than the analysis window; a call fed whole chunks keeps taking them as they are (its short last chunk too)."""
    rec = rt.store.get_call(call_id, tenant=tenant)
    if rec is not None and rec.state.get("ingest"):
        return True
    if rec is not None and int(rec.state.get("chunks", 0)) > 0:
        return False
    return chunk.duration_s < telephony(rt.settings).stream_window_s - 1e-9


def as_frame(rt: Runtime, call_id: str, tenant: str, body: bytes, fmt: ChunkFormat, force: bool) -> Frame | None:
    """The decoded body when it is to be buffered as a frame (``force``: ``mode=frames``), else None (a whole chunk,
    analysed as it is).  One thread hop for the decode and the call lookup."""
    chunk = decode_frame(rt, body, fmt)
    return chunk if force or wants_frames(rt, call_id, tenant, chunk) else None


async def post_frames(rt: Runtime, call_id: str, chunk: Frame, seq: int | None, *, tenant: str,
                      agent_id: str | None, anchor_s: float | None = None, asr: str | None = None) -> dict[str, Any]:
    """``POST .../audio`` of a frame: buffered with the call's stored framer state; answers the windows it completed
    (possibly none), what each leg buffers, and the loss it revealed."""
    async with rt.lock_for(call_id):
        session = StreamSession(rt, call_id, tenant, agent_id, anchor_s=anchor_s, locked=True, asr=asr)
        before = dict(session.stats)
        completed = await session.feed_chunk(chunk, seq=seq)
        await session.save()
    dup = session.stats["duplicates"] - before["duplicates"]
    return {"call_id": call_id, "completed": completed, "buffered_s": session.buffered_s(),
            "lost": session.lost, "duplicate": dup > 0 and not completed, "late": session.stats["late"],
            "wall_s": round(time.time(), 3)}


async def send_analysis(send: Callable[[dict[str, Any]], Awaitable[None]], msg: dict[str, Any]) -> None:
    """An analysis message, then one ``{"type": "alert"}`` message per alert it raised."""
    await send(msg)
    for alert in msg.get("alerts") or ():
        await send({"type": "alert", "call_id": msg["call_id"], **alert})
