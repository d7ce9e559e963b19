"""Issue 17's rough edges, one test (or a few) per item: what a new user hits at the edges
of every command: outputs that cannot be written, devices that do not exist, file modes,
start-up time, --overwrite, flags that do nothing, misleading errors, progress.

Model runs are few and small (a 256 px stand-in, one aligned face, one or two ages); every
check that can be made before the model is made so (which is the point of most items).
"""

from __future__ import annotations

import errno
import io
import json
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from sam_age.cli.common import InputLoop, check_device, check_output_folder, results_folder
from sam_age.cli.main import main
from sam_age.engine import available_devices
from sam_age.errors import InputError, UsageError, WriteError
from sam_age.face.prepare import prepare_faces
from sam_age.fileio import OWN_MARKER, atomic_dir, atomic_write, mark_own, write_text
from sam_age.pipeline import sample_path


def _lines(text):
    return [ln for ln in text.splitlines() if ln.strip()]


@pytest.fixture(scope="module")
def face(tmp_path_factory) -> Path:
    """An aligned-enough 256 px square crop of the sample portrait (--no-align: no dlib)."""
    p = tmp_path_factory.mktemp("faces") / "face.png"
    Image.open(sample_path()).convert("RGB").crop((128, 20, 384, 276)).save(p)
    return p


@pytest.fixture
def umask022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


class _TTY(io.StringIO):
    """stderr as a terminal (tqdm shows its bar only on one)."""

    def isatty(self):
        return True


# -- 1. output that cannot be written -----------------------------------------------------


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


def test_train_exp_dir_checked_first(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert (
        main(
            [
                "train",
                "--exp_dir",
                str(afile),
                "--train_dir",
                str(tmp_path),
                "--test_dir",
                str(tmp_path),
                "--id_lambda",
                "0.1",
            ]
        )
        == 2
    )
    err = _lines(capsys.readouterr().err)
    assert len(err) == 1 and "--exp_dir" in err[0] and "is a file" in err[0]


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


def test_mix_disk_full_mid_run_one_line_partial_removed_run_stops(small_sam_path, tmp_path, capsys, face, monkeypatch):
    second = tmp_path / "second.png"
    Image.open(face).save(second)
    out = tmp_path / "out"
    calls = []
    real_save = Image.Image.save

    def save(self, fp, *a, **k):  # the disk fills after the first image
        calls.append(fp)
        if len(calls) > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(self, fp, *a, **k)

    monkeypatch.setattr(Image.Image, "save", save)
    code = main(
        [
            "mix",
            str(face),
            str(second),
            "--no-align",
            "--checkpoint",
            str(small_sam_path),
            "--ages",
            "30",
            "--n-random",
            "1",
            "--output",
            str(out),
            "--device",
            "cpu",
        ]
    )
    captured = capsys.readouterr()
    assert code == 1 and "Traceback" not in captured.err
    err = _lines(captured.err)
    assert len(err) == 2, err
    assert err[0] == (f"sam-age mix: {face}: cannot write {out / 'face' / 'grid.png'}: No space left on device")
    assert err[1].startswith("sam-age mix: stopped: 1 input(s) not done")
    assert "0 of 2 inputs done" in captured.out
    assert list(out.iterdir()) == []  # the partial result of the first input is gone


def test_age_disk_full_mid_run_one_line_partial_removed_run_stops(small_sam_path, tmp_path, capsys, face, monkeypatch):
    second = tmp_path / "second.png"
    Image.open(face).save(second)
    out = tmp_path / "out"
    calls = []
    real_save = Image.Image.save

    def save(self, fp, *a, **k):  # the disk fills after the first image (age_030.png)
        calls.append(fp)
        if len(calls) > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(self, fp, *a, **k)

    monkeypatch.setattr(Image.Image, "save", save)
    code = main(
        [
            "age",
            str(face),
            str(second),
            "--no-align",
            "--checkpoint",
            str(small_sam_path),
            "--ages",
            "30",
            "--output",
            str(out),
            "--device",
            "cpu",
            "--batch-size",
            "1",
            "--workers",
            "0",
        ]
    )
    captured = capsys.readouterr()
    assert code == 1 and "Traceback" not in captured.err
    err = _lines(captured.err)
    assert len(err) == 2, err
    assert err[0] == f"sam-age age: {face}: cannot write {out / 'face' / 'strip.png'}: No space left on device"
    assert err[1].startswith("sam-age age: stopped: 1 input(s) not done (cannot write")
    assert "0 of 2 inputs done" in captured.out
    assert not (out / "face").exists() and not (out / "second").exists()  # no partial result
    assert not [p for p in out.rglob("*.png")]


def test_age_overwrite_replaces_folder_progress_bar_modes(small_sam_path, tmp_path, face, monkeypatch, umask022):
    out = tmp_path / "out"
    stale = out / "face" / "age_090.png"  # an earlier run's result for other ages
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"old")
    mark_own(stale.parent)  # (sam-age's own: --overwrite replaces only such a folder, issue 22)
    tty = _TTY()
    monkeypatch.setattr(sys, "stderr", tty)
    code = main(
        [
            "age",
            str(face),
            "--no-align",
            "--checkpoint",
            str(small_sam_path),
            "--ages",
            "30,40",
            "--output",
            str(out),
            "--device",
            "cpu",
            "--overwrite",
            "--workers",
            "0",
        ]
    )
    assert code == 0, tty.getvalue()
    assert sorted(p.name for p in (out / "face").iterdir()) == [OWN_MARKER, "age_030.png", "age_040.png", "strip.png"]
    for p in [out / "face", *(out / "face").iterdir()]:
        assert _mode(p) == (0o755 if p.is_dir() else 0o644), p
    bar = tty.getvalue()
    assert "sam-age age" in bar and "2/2" in bar and "face-age" in bar  # 1 face x 2 ages


# -- 2. --device that does not exist here ------------------------------------------------


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


# -- 3. file modes as open() gives them -----------------------------------------------------


def test_written_files_get_the_umask_mode(tmp_path, umask022):
    import torch

    from sam_age.checkpoints.formats import save_torch

    json_file = write_text(tmp_path / "summary.json", json.dumps({"a": 1}))
    ckpt = save_torch({"w": torch.zeros(2)}, tmp_path / "model.pt")
    img = atomic_write(tmp_path / "img.png", lambda f: Image.new("RGB", (4, 4)).save(f, format="PNG"))
    for p in (json_file, ckpt, img):
        assert _mode(p) == 0o644, p
    with atomic_dir(tmp_path / "folder") as d:
        (d / "x").write_text("x")
    assert _mode(tmp_path / "folder") == 0o755
    os.umask(0o077)  # a private umask stays private
    assert _mode(write_text(tmp_path / "private.json", "{}")) == 0o600
    os.chmod(json_file, 0o640)  # an existing file keeps its mode, as open() keeps it
    assert _mode(write_text(json_file, "{}")) == 0o640


# -- 4. start-up -----------------------------------------------------------------------------


def test_help_and_version_import_no_torch():
    code = r"""
import sys
from sam_age.cli.main import main, SUBCOMMANDS
for argv in (["--version"], ["--help"], *([c, "--help"] for c in SUBCOMMANDS)):
    try:
        main(argv)
    except SystemExit:
        pass
heavy = [m for m in ("torch", "numpy", "PIL", "gradio", "sam_age.pipeline") if m in sys.modules]
print("HEAVY", heavy, file=sys.stderr)
"""
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2] / "src"))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY []" in proc.stderr, proc.stderr[-2000:]


# -- 5. --overwrite replaces the result folder whole; 8. progress; 3. modes ---------------


def test_mix_overwrite_replaces_folder_progress_bar_modes(
    small_sam_path, tmp_path, capsys, face, monkeypatch, umask022
):
    out = tmp_path / "out"
    stale = out / "face" / "random_7" / "age_090.png"  # from an earlier run with other flags
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"old")
    mark_own(out / "face")  # (sam-age's own: --overwrite replaces only such a folder, issue 22)
    tty = _TTY()
    monkeypatch.setattr(sys, "stderr", tty)
    code = main(
        [
            "mix",
            str(face),
            "--no-align",
            "--checkpoint",
            str(small_sam_path),
            "--ages",
            "30",
            "--n-random",
            "1",
            "--output",
            str(out),
            "--device",
            "cpu",
            "--overwrite",
        ]
    )
    assert code == 0, tty.getvalue()
    assert not stale.exists() and not stale.parent.exists()
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files == [f"face/{OWN_MARKER}", "face/grid.png", "face/random_0/age_030.png"]
    for p in out.rglob("*"):
        assert _mode(p) == (0o755 if p.is_dir() else 0o644), p
    bar = tty.getvalue()
    assert "sam-age mix" in bar and "2/2" in bar and "image" in bar  # 1 age + 1 age x 1 style


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


# -- 6. things done without a word -----------------------------------------------------------


def test_no_align_refuses_a_photo_that_is_not_square(tmp_path, capsys, small_sam_path):
    wide = tmp_path / "wide.jpg"
    Image.new("RGB", (1280, 886), (120, 100, 90)).save(wide)
    with pytest.raises(InputError, match="is 1280x886, not a square"):
        prepare_faces(wide, align=False)
    square = tmp_path / "big.png"
    Image.new("RGB", (1024, 1024)).save(square)
    assert prepare_faces(square, align=False)[1][0][0].size == (256, 256)  # a square crop is resized
    code = main(
        [
            "age",
            str(wide),
            "--no-align",
            "--checkpoint",
            str(small_sam_path),
            "--output",
            str(tmp_path / "o"),
            "--device",
            "cpu",
        ]
    )
    err = _lines(capsys.readouterr().err)
    assert code == 1 and len(err) == 1 and "not a square" in err[0] and str(wide) in err[0]


def test_flags_that_do_nothing_say_so(tmp_path, capsys, small_sam_path):
    gone = str(tmp_path / "gone.jpg")  # no model run needed: the notes come first
    base = ["age", gone, "--checkpoint", str(small_sam_path), "--output", str(tmp_path / "o"), "--device", "cpu"]
    assert main([*base, "--no-align", "--paste-back", "--gif", "--ages", "30"]) == 1
    err = _lines(capsys.readouterr().err)
    notes = [ln for ln in err if ": note: " in ln]
    assert len(notes) == 2, err
    assert "--paste-back does nothing with --no-align" in notes[0]
    assert "--gif with one age" in notes[1]
    assert main([*base, "--no-align", "--paste-back", "--gif", "--ages", "30", "--quiet"]) == 1
    assert not [ln for ln in _lines(capsys.readouterr().err) if ": note: " in ln]


def test_frames_per_age_help_agrees_with_the_animation(capsys):
    with pytest.raises(SystemExit):
        main(["age", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "the age's own frame included" in text and "4 = each age and 3 in between" in text
    import torch

    from sam_age.render import interpolate_codes, ping_pong

    codes = torch.zeros(2, 1, 1)  # 2 ages, K = 4: the first age and 3 in between, then the last
    frames = interpolate_codes(codes, 4)
    assert frames.shape[0] == 4 + 1 and len(ping_pong(list(range(frames.shape[0])))) == 8


# -- 7. misleading errors ------------------------------------------------------------------------


def test_checkpoint_folder_says_folder(tmp_path, capsys, face):
    assert main(["age", str(face), "--checkpoint", str(tmp_path), "--output", str(tmp_path / "o")]) == 2
    err = _lines(capsys.readouterr().err)
    assert len(err) == 1 and "is a folder" in err[0] and str(tmp_path) in err[0], err


def test_evaluate_missing_data_says_it_does_not_exist(tmp_path, capsys, face):
    assert main(["evaluate", "--data", str(tmp_path / "missing"), "--output", str(tmp_path / "o")]) == 2
    err = _lines(capsys.readouterr().err)
    assert len(err) == 1 and "does not exist" in err[0] and "missing" in err[0], err
    assert main(["evaluate", "--data", str(face), "--output", str(tmp_path / "o")]) == 2
    assert "is a file" in capsys.readouterr().err


def test_train_checks_folders_before_fetching_weights(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SAM_AGE_HOME", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("SAM_AGE_OFFLINE", "1")  # a fetch would say "not in the weights cache"
    assert (
        main(
            [
                "train",
                "--exp_dir",
                str(tmp_path / "e"),
                "--train_dir",
                str(tmp_path / "nope"),
                "--test_dir",
                str(tmp_path / "nope"),
                "--device",
                "cpu",
                "--id_lambda",
                "0.1",
            ]
        )
        == 2
    )
    err = _lines(capsys.readouterr().err)
    assert len(err) == 1 and "training folder not found" in err[0] and "nope" in err[0], err


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
