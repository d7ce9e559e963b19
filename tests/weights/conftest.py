import pytest

from ..helpers.server import isolate_weights_env


@pytest.fixture
def home(tmp_path, monkeypatch):
    """An empty weights cache for one test."""
    folder = tmp_path / "cache"
    isolate_weights_env(monkeypatch, folder)
    return folder
