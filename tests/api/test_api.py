"""The REST API on a real loopback server: answers equal the Python API's, files as the
CLI writes them, every bad input a JSON error with the right status, auth, the bounded queue."""

from __future__ import annotations

import base64
import io
import threading
import time
import zipfile

import numpy as np
import pytest
from PIL import Image

from .conftest import running
from .helpers import alone, decode

httpx = pytest.importorskip("httpx")


@pytest.fixture(scope="module")
def api(api_pipeline, tmp_path_factory):
    """An API-only server (no demo page), no credentials."""
    from sam_age.api import Limits, build_server

    server = build_server(
        api_pipeline,
        Limits(max_upload_mb=2, max_pixels=4_000_000, max_queue=4),
        demo=False,
        workdir=tmp_path_factory.mktemp("api"),
    )
    with running(server) as url:
        with httpx.Client(base_url=url, timeout=300) as client:
            yield server, client


def test_probes_schema_and_docs(api):
    server, client = api
    assert client.get("/v1/health").json() == {"status": "ok"}
    ready = client.get("/v1/ready")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    schema = client.get("/openapi.json").json()
    assert {"/v1/age", "/v1/estimate", "/v1/health", "/v1/ready", "/metrics"} <= set(schema["paths"])
    body = schema["paths"]["/v1/age"]["post"]["requestBody"]["content"]
    assert set(body) == {"multipart/form-data", "application/json"}
    assert {"ages", "paste_back", "mask", "size", "format", "all_faces", "gif"} <= set(
        body["multipart/form-data"]["schema"]["properties"]
    )
    assert "swagger" in client.get("/docs").text.lower()


def test_age_answer_equals_the_python_api_for_the_photo_alone(api, api_pipeline, portrait_bytes):
    server, client = api
    r = client.post(
        "/v1/age", files={"image": ("me.jpg", portrait_bytes)}, data={"ages": "20, 70", "paste_back": "true"}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["ages"] == ["20", "70"] and body["faces_found"] == 1 and len(body["faces"]) == 1
    face = body["faces"][0]
    assert [i["age"] for i in face["images"]] == [20.0, 70.0]
    assert len(face["box"]) == 4 and face["score"] > 0 and face["estimated_age"] is None
    want = alone(server.queue, api_pipeline, portrait_bytes, "20, 70")
    for got, ref in zip(face["images"], want[0]):
        assert np.array_equal(decode(got["image"]), ref)  # exact: same path, same numbers
    ref_result = server.queue.call(lambda: api_pipeline(portrait_bytes, "20, 70", paste_back=True)).result()
    assert np.array_equal(decode(body["pasted"][1]["image"]), np.asarray(ref_result.pasted[1]))

    # The same as JSON with base64, with the Python API's argument types.
    r2 = client.post("/v1/age", json={"image": base64.b64encode(portrait_bytes).decode(), "ages": [20, 70]})
    assert r2.status_code == 200, r2.text
    assert [i["image"] for i in r2.json()["faces"][0]["images"]] == [i["image"] for i in face["images"]]


def test_zip_holds_the_files_the_cli_writes_and_one_age_can_be_one_image(api, portrait_bytes):
    server, client = api
    r = client.post(
        "/v1/age",
        files={"image": ("my photo.jpg", portrait_bytes)},
        data={"ages": "40", "paste_back": "1", "gif": "true", "format": "webp"},
        headers={"Accept": "application/zip"},
    )
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    names = set(zipfile.ZipFile(io.BytesIO(r.content)).namelist())
    assert names == {
        "my_photo/age_040.webp",
        "my_photo/strip.webp",
        "my_photo/animation.gif",
        "my_photo/pasted_040.webp",
    }
    assert not any(server.workdir.iterdir())  # the job folder is gone with the answer

    r = client.post(
        "/v1/age", files={"image": ("a.jpg", portrait_bytes)}, data={"ages": "40"}, headers={"Accept": "image/jpeg"}
    )
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(r.content)).size == (256, 256)
    r = client.post(
        "/v1/age", files={"image": ("a.jpg", portrait_bytes)}, data={"ages": "40, 50"}, headers={"Accept": "image/png"}
    )
    assert r.status_code == 406 and "one age" in r.json()["error"]


@pytest.mark.parametrize(
    "kwargs, status, words",
    [
        (dict(files={"image": ("notes.png", b"my notes, not a picture")}), 415, "notes.png: not an image"),
        (dict(files={"image": ("a.png", "GREY")}), 422, "no face"),
        (dict(files={"image": ("bomb.png", "BOMB")}), 413, "bomb.png: image too large"),
        (dict(files={"image": ("a.jpg", "PORTRAIT")}, data={"ages": "150"}), 422, "0..100"),
        (dict(files={"image": ("a.jpg", "PORTRAIT")}, data={"ages": "0:100:1"}), 422, "at most 21"),
        (dict(files={"image": ("a.jpg", "PORTRAIT")}, data={"mask": "blob"}), 422, "mask"),
        (dict(files={"image": ("a.jpg", "PORTRAIT")}, data={"size": "999"}), 422, "size"),
        (dict(files={"image": ("a.jpg", "PORTRAIT")}, data={"colour": "red"}), 422, "colour"),
        (dict(files={"image": ("a.jpg", "PORTRAIT")}, data={"gif": "maybe"}), 422, "gif"),
        (dict(data={"ages": "30"}), 400, "image"),
        (dict(json={"image": "not base64!"}), 400, "base64"),
        (dict(json=[1, 2]), 400, "JSON"),
        (dict(content=b"raw", headers={"content-type": "text/plain"}), 415, "multipart"),
        (dict(files={"image": ("big.jpg", b"x" * (3 * 2**20))}), 413, "MB"),
    ],
)
def test_bad_requests_get_a_json_error_that_says_what_is_wrong(api, bad_files, portrait_bytes, kwargs, status, words):
    server, client = api
    known = {"GREY": bad_files["grey.png"], "BOMB": bad_files["bomb.png"], "PORTRAIT": portrait_bytes}
    if "files" in kwargs:
        name, data = kwargs["files"]["image"]
        kwargs = {**kwargs, "files": {"image": (name, known.get(data, data))}}
    r = client.post("/v1/age", **kwargs)
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error", "detail"} and words.lower() in (body["error"] + " " + body["detail"]).lower()


def test_a_full_queue_answers_429_at_once_with_retry_after(api_pipeline, portrait_bytes, tmp_path):
    from sam_age.api import Limits, build_server

    server = build_server(api_pipeline, Limits(max_queue=1), demo=False, workdir=tmp_path)
    with running(server) as url, httpx.Client(base_url=url, timeout=300) as client:
        first = {}
        with server.queue.slot():  # the model is busy (as with a long demo job)
            t = threading.Thread(
                target=lambda: first.setdefault(
                    "r", client.post("/v1/age", files={"image": ("a.jpg", portrait_bytes)}, data={"ages": "30"})
                )
            )
            t.start()
            deadline = time.monotonic() + 120
            while client.get("/v1/ready").json()["in_flight"] < 1 and time.monotonic() < deadline:
                time.sleep(0.05)
            start = time.perf_counter()
            r = client.post("/v1/age", files={"image": ("b.jpg", portrait_bytes)}, data={"ages": "30"})
            assert time.perf_counter() - start < 5  # at once, not after the model
            assert r.status_code == 429 and r.headers["retry-after"] == "2"
            assert "busy" in r.json()["error"] and "try again" in r.json()["detail"]
        t.join(300)
        assert first["r"].status_code == 200  # the one admitted is served when the model frees
        metrics = client.get("/metrics").text
        assert 'sam_age_requests_total{route="/v1/age",status="429"} 1.0' in metrics
        assert 'sam_age_requests_total{route="/v1/age",status="200"} 1.0' in metrics


class _FixedEstimator:
    def __init__(self, age):
        self.age = age

    def estimate_aligned(self, faces):
        return [self.age] * len(faces)


def test_estimate_and_relative_ages(api, api_pipeline, portrait_bytes, monkeypatch):
    server, client = api
    monkeypatch.setattr(api_pipeline, "age_predictor", _FixedEstimator(40.0))
    r = client.post("/v1/estimate", files={"image": ("a.jpg", portrait_bytes)})
    assert r.status_code == 200, r.text
    assert r.json()["faces_found"] == 1 and r.json()["faces"][0]["age"] == 40.0
    r = client.post("/v1/age", files={"image": ("a.jpg", portrait_bytes)}, data={"ages": "+20"})
    assert r.status_code == 200, r.text
    face = r.json()["faces"][0]
    assert face["estimated_age"] == 40.0 and face["images"][0] == {**face["images"][0], "requested": "+20", "age": 60.0}


def test_credentials_guard_the_api_the_page_and_the_metrics_not_the_probes(api_pipeline, tmp_path):
    from sam_age.api import build_server

    server = build_server(api_pipeline, users={"ann": "s3cret", "bob": "pw"}, workdir=tmp_path)  # with the demo
    with running(server) as url, httpx.Client(base_url=url, timeout=120) as client:
        for path in ("/", "/metrics", "/docs", "/openapi.json"):
            r = client.get(path)
            assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Basic")
            assert r.json()["error"] == "authentication required"
            assert client.get(path, auth=("ann", "wrong")).status_code == 401
            assert client.get(path, auth=("bob", "pw")).status_code == 200
        r = client.post("/v1/age", files={"image": ("a.jpg", b"x")})
        assert r.status_code == 401
        assert client.post("/v1/age", files={"image": ("a.jpg", b"x")}, auth=("ann", "s3cret")).status_code == 415
        assert client.get("/v1/health").status_code == 200 and client.get("/v1/ready").status_code == 200
        assert (
            "<gradio-app" in client.get("/", auth=("ann", "s3cret")).text
            or "gradio" in client.get("/", auth=("ann", "s3cret")).text.lower()
        )


def test_credentials_from_flags_and_files(tmp_path):
    from sam_age.api import check_exposure, parse_credentials
    from sam_age.errors import UsageError

    f = tmp_path / "users.txt"
    f.write_text("# team\nann:pa:ss\n\nbob:pw\n")
    assert parse_credentials(["cy:x"], [str(f)]) == {"cy": "x", "ann": "pa:ss", "bob": "pw"}
    with pytest.raises(UsageError, match="line 2"):
        f.write_text("ok:1\nnopassword\n")
        parse_credentials([], [str(f)])
    with pytest.raises(UsageError, match="USER:PASSWORD"):
        parse_credentials(["justme"])
    check_exposure("127.0.0.1", False, {}, False)
    check_exposure("::1", False, {}, False)
    check_exposure("localhost", False, {}, False)
    check_exposure("0.0.0.0", False, {"a": "b"}, False)
    check_exposure("0.0.0.0", True, {}, True)
    for host, share in (("0.0.0.0", False), ("192.168.1.5", False), ("127.0.0.1", True)):
        with pytest.raises(UsageError, match="--auth"):
            check_exposure(host, share, {}, False)


def test_report_field_gives_each_output_its_achieved_age_and_identity(api, api_pipeline, portrait_bytes, standin):
    """``report`` (issue 25): per face and age, the age DEX sees on the output and its identity
    score, the same numbers as the Python API's ``report=True``; off unless asked."""
    from sam_age.identity import IdentityNet

    server, client = api
    old_predictor, old_identity = api_pipeline.age_predictor, api_pipeline.identity
    api_pipeline.age_predictor = standin("dex_age_classifier")
    api_pipeline.identity = IdentityNet.from_weights(standin("model_ir_se50"), "ir_se50")
    try:
        r = client.post("/v1/age", files={"image": ("me.jpg", portrait_bytes)}, data={"ages": "30", "report": "true"})
        assert r.status_code == 200, r.text
        (rep,) = r.json()["faces"][0]["report"]
        assert rep["identity_model"] == "ir_se50" and rep["age"] == 30.0
        assert {"achieved_age", "identity", "caption"} <= set(rep)
        want = server.queue.call(lambda: api_pipeline(portrait_bytes, [30], report=True)).result()
        (ref,) = want.faces[0].report
        assert rep["achieved_age"] == pytest.approx(ref.achieved_age, abs=0.006)  # (rounded to 0.01)
        assert rep["identity"] == pytest.approx(ref.identity, abs=1e-3)
        plain = client.post("/v1/age", files={"image": ("me.jpg", portrait_bytes)}, data={"ages": "30"})
        assert plain.status_code == 200 and plain.json()["faces"][0]["report"] is None
    finally:
        api_pipeline.age_predictor, api_pipeline.identity = old_predictor, old_identity


def test_animation_frames_show_their_age_unless_labels_false(api, portrait_bytes):
    from sam_age.render import label_band

    server, client = api
    gifs = []
    for labels in ("true", "false"):
        r = client.post(
            "/v1/age",
            files={"image": ("a.jpg", portrait_bytes)},
            data={"ages": "20, 70", "gif": "true", "labels": labels},
        )
        assert r.status_code == 200, r.text
        gifs.append(base64.b64decode(r.json()["faces"][0]["animation"]))
    band = label_band(256)
    with Image.open(io.BytesIO(gifs[0])) as on, Image.open(io.BytesIO(gifs[1])) as off:
        assert on.n_frames == off.n_frames > 2
        for i in range(on.n_frames):
            on.seek(i)
            off.seek(i)
            x, y = (np.asarray(g.convert("RGB")).astype(int) for g in (on, off))
            assert (x[256 - band :].min(axis=2) > 200).sum() > 20  # white text in the band
            assert (y[256 - band :].min(axis=2) > 200).sum() < 20  # none without labels
            assert np.abs(x[: 256 - band] - y[: 256 - band]).mean() < 8.0  # above it: the palette's rounding only
