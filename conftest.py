"""Root conftest: shared fixtures for every app's tests."""

pytest_plugins = ["tests.fixtures", "tests.fake_provider", "tests.gateway"]
