import pytest

from ..helpers.server import isolate_weights_env, loopback_only


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    """Every weights test stays on 127.0.0.1."""
    loopback_only(monkeypatch)


@pytest.fixture
def home(tmp_path, monkeypatch):
    """An empty weights cache (and an empty Hugging Face cache beside it) for one test."""
    folder = tmp_path / "cache"
    isolate_weights_env(monkeypatch, folder)
    return folder
