"""Real PostgreSQL and SeaweedFS for the scale-out tests (started once per session)."""

from __future__ import annotations

import pytest

from ..servers import SeaweedServer, postgres, seaweedfs  # noqa: F401  (session fixtures)


@pytest.fixture
def s3_credentials(seaweedfs: SeaweedServer, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """The test server's credentials where AWS tools look first: the environment."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    for name, value in seaweedfs.environment().items():
        monkeypatch.setenv(name, value)
