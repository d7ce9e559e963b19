"""`sam-age serve` as a user runs it: refuses an open server without credentials, and
stops cleanly on Ctrl+C (SIGINT) within a few seconds (a real subprocess)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sam_age.cli.main import main

from ..helpers.output import lines as _lines
from .conftest import free_port

SRC = str(Path(__file__).resolve().parents[2] / "src")


@pytest.mark.parametrize(
    "flags, words",
    [
        (["--host", "0.0.0.0"], "--host 0.0.0.0 lets other machines in"),
        (["--share"], "--share makes the server public"),
        (["--host", "0.0.0.0", "--auth", "nopassword"], "USER:PASSWORD"),
        (["--auth-file", "/nonexistent/users.txt"], "--auth-file /nonexistent/users.txt: cannot read it"),
        (["--max-queue", "0"], "--max-queue must be positive"),
    ],
)
def test_open_server_without_credentials_is_refused_before_loading(tmp_path, capsys, flags, words):
    from sam_age.cli.main import main

    assert main(["serve", "--checkpoint", str(tmp_path / "missing.pt"), *flags]) == 2
    err = capsys.readouterr().err
    assert words in err and "missing.pt" not in err and len(err.strip().splitlines()) == 1


def test_no_auth_means_the_user_means_it(tmp_path, capsys):
    from sam_age.cli.main import main

    # Past the credentials check: the next problem is the missing checkpoint.
    assert (
        main(
            [
                "serve",
                "--checkpoint",
                str(tmp_path / "missing.pt"),
                "--host",
                "0.0.0.0",
                "--no-auth",
                "--port",
                str(free_port()),
            ]
        )
        == 2
    )
    assert "missing.pt" in capsys.readouterr().err


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_stops_serve_within_seconds(small_sam_path, tmp_path, sig):
    pytest.importorskip("fastapi")
    httpx = pytest.importorskip("httpx")
    port = free_port()
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""), "TMPDIR": str(tmp_path)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sam_age",
            "serve",
            "--checkpoint",
            str(small_sam_path),
            "--device",
            "cpu",
            "--port",
            str(port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        deadline = time.monotonic() + 240
        while True:
            assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v1/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the server did not come up"
            time.sleep(0.5)
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=30).status_code == 200  # the demo too
        start = time.monotonic()
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
        took = time.monotonic() - start
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert took < 5, f"took {took:.1f} s to stop"
    assert proc.returncode == 0 and "Traceback" not in err.decode(), err.decode()[-2000:]
    assert "stopped" in err.decode()
    assert not any(tmp_path.glob("sam-age-serve-*"))  # its work folder removed on the way out


def test_serve_on_a_busy_port_names_the_flag(tmp_path, capsys):
    pytest.importorskip("gradio")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        code = main(["serve", "--checkpoint", str(tmp_path / "none.pt"), "--port", str(port), "--device", "cpu"])
    err = _lines(capsys.readouterr().err)
    assert code == 2 and len(err) == 1, err
    assert f"port {port} on 127.0.0.1 is in use" in err[0] and "--port" in err[0]
