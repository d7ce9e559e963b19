"""`sam-age serve`'s weights flags (the same as every command's): the age predictor and
the identity network are resolved at start-up and set on the one pipeline the page and
the API share, so a server started offline with local weights never fetches at a request."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import free_port, running


def test_serve_weights_flags_configure_the_shared_pipeline_at_start(small_sam_path, standin, tmp_path, monkeypatch):
    pytest.importorskip("fastapi")
    pytest.importorskip("gradio")
    httpx = pytest.importorskip("httpx")
    import sam_age.api as api
    import sam_age.cli.serve as serve_cli
    from sam_age.cli.main import main
    from sam_age.pipeline import sample_path

    dex, cf = Path(standin("dex_age_classifier")), Path(standin("curricular_face"))
    monkeypatch.setenv("SAM_AGE_HOME", str(tmp_path / "empty-cache"))  # no registry file to fall back on
    monkeypatch.setenv("SAM_AGE_OFFLINE", "1")  # and nothing fetched
    monkeypatch.setattr(serve_cli.gc, "freeze", lambda: None)  # the test process goes on
    made = {}
    monkeypatch.setattr(api, "serve", lambda server, **kw: made.setdefault("server", server))  # not started
    argv = ["serve", "--checkpoint", str(small_sam_path), "--device", "cpu", "--port", str(free_port())]
    argv += ["--age_predictor_weights", str(dex), "--curricular_face_weights", str(cf)]
    assert main(argv) == 0
    server = made["server"]
    pipe = server.queue.pipeline
    assert server.demo.sam_age.pipeline is pipe  # the page and the API: one pipeline
    assert Path(pipe.age_predictor) == dex
    assert pipe.identity == {"model": "curricularface", "curricular_face_weights": cf}
    with running(server) as url:  # offline, empty cache: the first requests load the files given
        r = httpx.post(f"{url}/v1/estimate", files={"image": ("a.jpg", sample_path().read_bytes())}, timeout=600)
        assert r.status_code == 200, r.text
        assert r.json()["faces_found"] == 1
        _, message = server.demo.sam_age.quick_relative(server.demo.sam_age.sample(), 20)
        assert message.startswith("+20 years: done."), message
        assert pipe.identity_net.path == cf and pipe.identity_net.model == "curricularface"


def test_serve_refuses_a_missing_weights_file_before_loading(tmp_path, capsys):
    from sam_age.cli.main import main

    missing = tmp_path / "no-dex.pt"
    argv = ["serve", "--checkpoint", str(tmp_path / "missing-sam.pt"), "--port", str(free_port())]
    assert main(argv + ["--age_predictor_weights", str(missing)]) == 2
    err = capsys.readouterr().err
    assert "no-dex.pt" in err and "missing-sam.pt" not in err and "Traceback" not in err
