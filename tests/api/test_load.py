"""A bounded load test on loopback: 16 concurrent clients (httpx, one thread each), 16
requests of four different photos. Nothing is lost (every request answered 200), nothing is
mixed up (each answer equals what AgePipeline gives for that client's photo alone), and the
faces of concurrent requests went through the model together (batch sizes > 1)."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from .conftest import running
from .helpers import alone, decode, variants

httpx = pytest.importorskip("httpx")
CLIENTS, PER_CLIENT = 16, 1


def test_sixteen_clients_nothing_lost_or_mixed_up_and_batched(api_pipeline, portrait_bytes, tmp_path):
    from sam_age.api import Limits, build_server

    photos = variants(portrait_bytes, 4)
    server = build_server(api_pipeline, Limits(max_queue=CLIENTS, wait_ms=20), demo=False, workdir=tmp_path)
    with running(server) as url:
        want = [alone(server.queue, api_pipeline, p, "35")[0][0] for p in photos]
        assert not np.array_equal(want[0], want[1])  # the photos' answers differ

        def client(k):
            got = []
            with httpx.Client(base_url=url, timeout=600) as c:
                for j in range(PER_CLIENT):
                    which = (k + j) % len(photos)
                    r = c.post("/v1/age", files={"image": (f"c{k}_{j}.png", photos[which])}, data={"ages": "35"})
                    got.append((which, r.status_code, r.json()))
            return got

        with ThreadPoolExecutor(CLIENTS) as pool:
            answers = [a for got in pool.map(client, range(CLIENTS)) for a in got]
        metrics = httpx.get(url + "/metrics").text
    assert len(answers) == CLIENTS * PER_CLIENT
    assert all(status == 200 for _, status, _ in answers), {s for _, s, _ in answers}
    for which, _, body in answers:
        assert np.array_equal(decode(body["faces"][0]["images"][0]["image"]), want[which])
    faces_batched = float(re.search(r"^sam_age_batch_faces_sum ([0-9.e+]+)$", metrics, re.M).group(1))
    calls = float(re.search(r"^sam_age_batch_faces_count ([0-9.e+]+)$", metrics, re.M).group(1))
    assert faces_batched == CLIENTS * PER_CLIENT  # every face once (the references ran alone)
    assert calls < faces_batched  # some model calls took several clients' faces
