"""pytest plugin for the Redis pass of the suite (``-p tests.redis_isolation``, see the Makefile).

With ``NUQI_TEST_STORE=redis://host:port/N`` every test's app shares that Redis database, so this
empties it before each test, as the SQLite pass gets a fresh file per test.  It refuses database 0
so a developer's own Redis data is never flushed.
"""
from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def _fresh_redis_db():
    url = os.environ.get("NUQI_TEST_STORE", "")
    if url.startswith(("redis://", "rediss://")):
        import redis

        client = redis.Redis.from_url(url.split("?", 1)[0], socket_connect_timeout=2)
        if int(client.connection_pool.connection_kwargs.get("db", 0)) == 0:
            raise pytest.UsageError("NUQI_TEST_STORE must name a Redis database other than 0 (it is flushed)")
        client.flushdb()
        client.close()
    yield
