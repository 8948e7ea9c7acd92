"""API keys, authentication, access control and rate limiting of the HTTP/WebSocket API.

``install(app, settings)`` adds the middlewares; ``SecurityRuntime.start`` (called in the app
lifespan) opens the key store next to the call store and creates the bootstrap admin key.
"""
from app.security.auth import SecurityRuntime, install

__all__ = ["SecurityRuntime", "install"]
