import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(autouse=True)
def _fresh_plugins(monkeypatch, tmp_path):
    """Each test sees freshly loaded plugins and its own model cache."""
    from harness import plugins

    monkeypatch.setenv("HARNESS_CACHE", os.environ.get("HARNESS_TEST_CACHE", str(tmp_path / "cache")))
    plugins.reset()
    yield
    plugins.reset()
