"""pytest fixtures; conftest.py loads them through `tests.fake_provider`, which re-exports them."""

import pytest

from .server import FakeProvider


@pytest.fixture(scope="session")
def fake_provider():
    """One server for the whole session; starting a thread per test would dominate fast tests."""
    with FakeProvider() as provider:
        yield provider


@pytest.fixture
def fake(fake_provider):
    """The session's server with records and defaults cleared for this test."""
    fake_provider.reset()
    yield fake_provider
    fake_provider.reset()
