"""Offline, the manual steps come within seconds (issue 22, item 7): a host name that does
not resolve or a refused connection is not retried with back-off by the Hub client."""

from __future__ import annotations

import time

import pytest

from sam_age.errors import WeightsUnavailableError
from sam_age.weights import store

from ..helpers.server import closed_port_url


@pytest.mark.parametrize("endpoint", ["closed", "http://nonexistent.invalid", "https://huggingface.co"])
def test_offline_first_run_gives_the_manual_steps_within_10_s(home, monkeypatch, endpoint):
    # the real registry entry: two Hub mirrors, then Google Drive (unresolvable here)
    monkeypatch.setenv("HF_ENDPOINT", closed_port_url("").rstrip("/") if endpoint == "closed" else endpoint)
    t0 = time.perf_counter()
    with pytest.raises(WeightsUnavailableError) as info:
        store.resolve_weights("sam_ffhq_aging", progress=False)
    elapsed = time.perf_counter() - t0
    msg = str(info.value)
    assert (
        len(info.value.reason.splitlines()) <= 12
        and "SAM_AGE_OFFLINE" in msg
        and "sam-age weights import FILE --name sam_ffhq_aging" in msg
    )
    assert "cannot reach" in msg
    assert elapsed < 10, f"{elapsed:.1f} s to give the manual steps"
