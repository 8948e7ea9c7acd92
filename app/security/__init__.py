"""API keys, authentication, access control and rate limiting of the HTTP/WebSocket API.

* ``app.security.auth``: the middleware (key → principal, rate limit) and ``SecurityRuntime``;
* ``app.security.roles``: the roles; each route names the roles it admits with
  ``app.deps.require_roles``;
* ``app.security.keys``, ``ratelimit``, ``limits``: key store, token buckets, body-size cap.
"""
