from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def fuser():
    from pipelines.fusion.fuse import Fuser

    return Fuser.load()


@pytest.fixture(scope="session")
def rules():
    from pipelines.fusion.rules import Rules

    return Rules.load()
