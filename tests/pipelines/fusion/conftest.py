from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def fuser():
    from pipelines.fusion.fuse import Fuser
    from pipelines.settings import Settings

    return Fuser.load(Settings().models_dir / "fusion" / "params.json")


@pytest.fixture(scope="session")
def rules():
    from pipelines.fusion.rules import Rules

    return Rules.load()
