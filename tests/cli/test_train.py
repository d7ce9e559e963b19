"""``sam-age train`` as a command: its folders are checked first, before any weights."""

from __future__ import annotations

from sam_age.cli.main import main

from ..helpers.output import lines as _lines


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
