"""Deadlines for slow clients: request headers must arrive within ``header_timeout_s`` of the connection opening
(or of the previous response on a kept-alive connection), else the server closes it.

uvicorn times out idle kept-alive connections (``timeout_keep_alive``) but waits forever for the headers of
a request ("slowloris": a client sending one header byte every few seconds holds a connection and its
buffers).  These protocol classes (uvicorn's own, with one timer added) close such connections;
``nuqi serve`` selects them (uvicorn's ``http=`` option, :func:`protocol_for`).  Trickled *bodies* are
cut by :class:`app.security.limits.BodyLimitMiddleware` (``body_idle_timeout_s``, ``body_min_rate``).
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol as _H11

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _HttpTools
except ImportError:  # pragma: no cover - httptools is optional in uvicorn
    _HttpTools = None  # type: ignore[assignment,misc]

logger = logging.getLogger("nuqi.server")


class HeaderDeadline:
    """Mixin for a uvicorn HTTP protocol: a timer that closes the connection when no request is in flight
    ``header_timeout_s`` after the connection opened or the last response completed."""

    header_timeout_s: float | None = None  # None: the service settings' header_timeout_s
    _header_timer: asyncio.TimerHandle | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.header_timeout_s is None:
            from app.settings import get_service_settings

            self.header_timeout_s = get_service_settings().header_timeout_s

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self._arm_header_deadline()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)  # type: ignore[misc]
        if self.transport.get_protocol() is not self:  # type: ignore[attr-defined]  # upgraded to a WebSocket
            self._disarm_header_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # type: ignore[misc]
        if not self.transport.is_closing():  # type: ignore[attr-defined]
            self._arm_header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_deadline()
        super().connection_lost(exc)  # type: ignore[misc]

    def _arm_header_deadline(self) -> None:
        self._disarm_header_deadline()
        if self.header_timeout_s and self.header_timeout_s > 0:
            self._header_timer = self.loop.call_later(self.header_timeout_s,  # type: ignore[attr-defined]
                                                      self._header_deadline_passed)

    def _disarm_header_deadline(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_deadline_passed(self) -> None:
        self._header_timer = None
        cycle = self.cycle  # type: ignore[attr-defined]
        transport = self.transport  # type: ignore[attr-defined]
        in_flight = cycle is not None and not cycle.response_complete
        if in_flight or transport.is_closing() or transport.get_protocol() is not self:
            return
        client = self.client  # type: ignore[attr-defined]
        logger.warning("closing a connection from %s: no complete request within %g s",
                       client[0] if client else "?", self.header_timeout_s)
        transport.close()


class H11Protocol(HeaderDeadline, _H11):
    pass


if _HttpTools is not None:
    class HttpToolsProtocol(HeaderDeadline, _HttpTools):
        pass
else:  # pragma: no cover
    HttpToolsProtocol = H11Protocol  # type: ignore[misc,assignment]


def protocol_for(header_timeout_s: float | None = None) -> type | str:
    """uvicorn's ``http=`` option: the protocol class (httptools when installed, like uvicorn's ``auto``) with
    this header deadline; without one, the import string of the class, whose instances read the deadline from
    the service settings (``NUQI_HEADER_TIMEOUT_S``) in each worker process."""
    base = HttpToolsProtocol if _HttpTools is not None else H11Protocol
    if header_timeout_s is None:
        return f"{__name__}:{base.__name__}"
    return type(base.__name__, (base,), {"header_timeout_s": float(header_timeout_s)})
