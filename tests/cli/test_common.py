"""``sam_age.cli.common``: the checks every command makes before its model (the output folder,
the device), the result folder written whole or not at all, and the per-input loop's
progress bar."""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path

import pytest

from sam_age.cli.common import InputLoop, check_device, check_output_folder, results_folder
from sam_age.cli.main import main
from sam_age.engine import available_devices
from sam_age.errors import InputError, UsageError, WriteError
from sam_age.fileio import atomic_write

from ..helpers.output import TTY as _TTY
from ..helpers.output import lines as _lines


@pytest.mark.parametrize("command", ["age", "mix", "evaluate", "estimate", "video", "export"])
def test_output_folder_checked_before_anything_else(command, tmp_path, capsys, face):
    afile = tmp_path / "afile"
    afile.write_text("x")
    missing_ckpt = str(tmp_path / "none.pt")  # were the weights looked at first, this would be the error
    for output, reason in ((afile, "is a file, not a folder"), (afile / "sub", "cannot be made")):
        if command == "evaluate":
            argv = ["evaluate", "--data", str(face.parent), "--output", str(output), "--checkpoint", missing_ckpt]
        elif command == "estimate":
            argv = ["estimate", str(face), "--output", str(output), "--age_predictor_weights", missing_ckpt]
        elif command == "export":
            argv = ["export", "--output", str(output), "--checkpoint", missing_ckpt]
        else:
            argv = [command, str(face), "--output", str(output), "--checkpoint", missing_ckpt]
        assert main(argv) == 2
        err = _lines(capsys.readouterr().err)
        assert len(err) == 1 and "--output" in err[0] and reason in err[0], err
    assert afile.read_text() == "x"


def test_output_folder_unwritable(tmp_path, monkeypatch):
    check_output_folder(tmp_path / "new" / "deeper")  # can be made: fine, and nothing is made
    assert not (tmp_path / "new").exists()
    import tempfile

    def read_only(*a, **k):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkdtemp", read_only)
    with pytest.raises(UsageError, match="cannot write in .*Read-only file system"):
        check_output_folder(tmp_path)


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes in read-only folders")
def test_output_folder_read_only_for_real(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(UsageError, match="cannot write"):
            check_output_folder(ro / "out")
    finally:
        ro.chmod(0o755)


def test_results_folder_write_error_names_the_file_and_leaves_nothing(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(WriteError) as e:
        with results_folder(out / "photo", overwrite=False) as staged:
            atomic_write(staged / "age_030.png", lambda f: f.write(b"ok"))

            def full(f):
                f.write(b"half")
                raise OSError(errno.ENOSPC, "No space left on device")

            atomic_write(staged / "sub" / "strip.png", full)
    assert e.value.reason == f"cannot write {out / 'photo' / 'sub' / 'strip.png'}: No space left on device"
    assert e.value.errno == errno.ENOSPC
    assert list(out.iterdir()) == []  # no partial result, no temporary


def _absent_devices():
    have = available_devices()
    return [d for d in ("cuda", "cuda:1", "mps", "gpu") if d not in have and not (d == "cuda" and "cuda:0" in have)]


def test_check_device():
    check_device("auto")
    check_device("cpu")
    for d in _absent_devices():
        with pytest.raises(UsageError, match=r"this machine has cpu"):
            check_device(d)


@pytest.mark.parametrize("command", ["age", "mix", "evaluate", "estimate", "video", "serve", "train"])
def test_unknown_device_exit_2_at_once(command, tmp_path, capsys, face):
    missing = str(tmp_path / "none.pt")  # the device is refused before the weights are looked at
    argv = {
        "age": ["age", str(face), "--output", str(tmp_path / "o"), "--checkpoint", missing],
        "mix": ["mix", str(face), "--output", str(tmp_path / "o"), "--checkpoint", missing],
        "evaluate": ["evaluate", "--data", str(face.parent), "--output", str(tmp_path / "o"), "--checkpoint", missing],
        "estimate": ["estimate", str(face), "--output", str(tmp_path / "o"), "--age_predictor_weights", missing],
        "video": ["video", str(tmp_path / "clip.mp4"), "--output", str(tmp_path / "o"), "--checkpoint", missing],
        "serve": ["serve", "--checkpoint", missing, "--port", "1"],
        "train": [
            "train",
            "--exp_dir",
            str(tmp_path / "e"),
            "--train_dir",
            str(tmp_path / "t"),
            "--test_dir",
            str(tmp_path / "t"),
            "--id_lambda",
            "0.1",
        ],
    }[command]
    absent = _absent_devices()
    assert absent
    for device in absent:
        assert main([*argv, "--device", device]) == 2
        err = _lines(capsys.readouterr().err)
        assert len(err) == 1 and f"--device {device}" in err[0] and "this machine has cpu" in err[0], err
    assert not (tmp_path / "o").exists() and not (tmp_path / "e").exists()


def test_progress_bar_off_with_quiet_and_counts_face_ages(tmp_path, monkeypatch, capsys):
    class Args:
        json = False
        quiet = False
        output = tmp_path

    tty = _TTY()
    monkeypatch.setattr(sys, "stderr", tty)
    b = InputLoop("age", Args, total=4, per_input=3, unit="face-age")
    b.run("a", Path("a.jpg"), lambda: (b.advance(2), b.advance(2), {"files": []})[-1])  # two faces: grows
    b.run("b", Path("b.jpg"), lambda: (_ for _ in ()).throw(InputError("no face")))
    assert b.bar.total == 13 and b.bar.n == 7  # (4 inputs x 3, one more for the second face)
    b.advance(6)  # a dataset run: the model's passes first, then each input settled
    b.add("c", Path("c.jpg"), True, units=6, files=[])  # two faces x 3 ages
    b.add("d", Path("d.jpg"), False, "no face")  # never reached the model: its share now
    assert b.bar.total == 16 and b.bar.n == 16
    b.finish()
    assert "16/16" in tty.getvalue() and "face-age" in tty.getvalue()
    Args.quiet = True
    tty2 = _TTY()
    monkeypatch.setattr(sys, "stderr", tty2)
    q = InputLoop("age", Args, total=1, per_input=3)
    q.run("a", Path("a.jpg"), lambda: {"files": []})
    q.finish()
    assert tty2.getvalue() == ""
