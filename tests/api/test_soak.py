"""The soak test of issue 22 on loopback: 32 clients, a bounded number of requests, good
and bad uploads. Every request is answered (200) or refused with a JSON message (4xx, 429
when the bounded queue is full), never a 5xx or a dropped connection; afterwards the
process's RSS and the temp folders are back where they started."""

from __future__ import annotations

import gc
import tempfile
from concurrent.futures import ThreadPoolExecutor

import pytest

from .conftest import running

httpx = pytest.importorskip("httpx")
CLIENTS, PER_CLIENT = 32, 2


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def test_soak_32_clients_good_and_bad_uploads(api_pipeline, portrait_bytes, bad_files, tmp_path, monkeypatch):
    from sam_age.api import Limits, build_server
    from sam_age.memory import trim_heap

    tmp = tmp_path / "tmp"  # the process's temp folder (multipart spools, job folders) for this test
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    work = tmp_path / "work"
    uploads = [
        ("files", ("me.jpg", portrait_bytes), {"ages": "30"}, "ok"),
        ("files", ("me.jpg", portrait_bytes), {"ages": "30", "paste_back": "1"}, "ok"),
        ("json", ("me.jpg", portrait_bytes), {"ages": "+oops"}, "bad"),
        ("files", ("notes.png", bad_files["notes.png"]), {}, "bad"),
        ("files", ("grey.png", bad_files["grey.png"]), {}, "bad"),
        ("files", ("bomb.png", bad_files["bomb.png"]), {}, "bad"),
        ("files", ("big.jpg", b"\xff" * (2 * 2**20)), {}, "bad"),
        ("raw", ("x", b"\x00" * 1000), {}, "bad"),
    ]
    server = build_server(api_pipeline, Limits(max_upload_mb=1, max_queue=8, max_faces=2), demo=False, workdir=work)
    with running(server) as url:

        def send(c, k):
            kind, (name, data), fields, _ = uploads[k % len(uploads)]
            try:
                if kind == "files":
                    r = c.post("/v1/age", files={"image": (name, data)}, data=fields)
                elif kind == "json":
                    import base64

                    r = c.post("/v1/age", json={"image": base64.b64encode(data).decode(), **fields})
                else:
                    r = c.post("/v1/age", content=data, headers={"content-type": "application/octet-stream"})
            except httpx.HTTPError as e:
                return k, None, repr(e)
            return k, r.status_code, r.json()

        with httpx.Client(base_url=url, timeout=600) as c:  # warm up: the first request loads the detector
            assert send(c, 0)[1] == 200
        gc.collect()
        trim_heap()
        rss0 = rss_mb()

        def client(i):
            with httpx.Client(base_url=url, timeout=600) as c:
                return [send(c, i * PER_CLIENT + j) for j in range(PER_CLIENT)]

        with ThreadPoolExecutor(CLIENTS) as pool:
            answers = [a for got in pool.map(client, range(CLIENTS)) for a in got]
        assert len(answers) == CLIENTS * PER_CLIENT
        statuses = {}
        for k, status, body in answers:
            assert status is not None, body  # answered, never dropped
            statuses[status] = statuses.get(status, 0) + 1
            assert status < 500, body
            if status == 200:
                assert uploads[k % len(uploads)][3] == "ok" and body["faces"][0]["images"]
            else:
                assert body["error"] and body["detail"], body  # refused with a message
                if status == 429:
                    continue
                assert uploads[k % len(uploads)][3] == "bad", body
        assert statuses.get(200, 0) >= 1 and statuses.get(415, 0) >= 1
        gc.collect()
        trim_heap()
        rss1 = rss_mb()
        assert not any(work.iterdir()) and not any(tmp.iterdir())  # no job folder or spool left
    print(f"soak: statuses {statuses}; RSS {rss0:.0f} -> {rss1:.0f} MB")
    assert rss1 - rss0 < 150, (rss0, rss1)  # back to start (allocator slack allowed)
