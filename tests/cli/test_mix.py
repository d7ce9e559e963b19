"""``sam-age mix``: random styles injected into the fine layers change the result."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from PIL import Image

from sam_age.cli.main import main
from sam_age.cli.mix import parse_mask
from sam_age.errors import UsageError
from sam_age.fileio import OWN_MARKER, mark_own

from ..helpers.output import TTY as _TTY
from ..helpers.output import lines as _lines
from ..helpers.output import mode as _mode

pytest.importorskip("dlib")


def test_parse_mask():
    assert parse_mask("8,9, 10") == [8, 9, 10] and parse_mask(None) is None
    with pytest.raises(UsageError):
        parse_mask("a,b")


def test_mix_random_styles(small_sam_path, tmp_path, capsys):
    out = tmp_path / "mix"
    code = main(
        [
            "mix",
            "sample",
            "--checkpoint",
            str(small_sam_path),
            "--ages",
            "50",
            "--n-random",
            "1",
            "--seed",
            "1",
            "--output",
            str(out),
            "--json",
            "--device",
            "cpu",
            "--no-labels",  # bare tiles: the grid's pixels are the age files' own
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    rec = json.loads(captured.out)["inputs"][0]
    assert rec["sources"] == ["random_0"] and rec["latent_mask"] == list(range(8, 14))
    grid = np.asarray(Image.open(out / "astronaut" / "grid.png"), float)
    assert grid.shape == (512, 512, 3)  # rows: plain aging, random_0; columns: input, age 50
    mixed = np.asarray(Image.open(out / "astronaut" / "random_0" / "age_050.png"), float)
    np.testing.assert_array_equal(grid[256:, 256:], mixed)
    assert np.abs(grid[:256, 256:] - mixed).mean() > 0.5  # differs from plain aging
    np.testing.assert_array_equal(grid[:256, :256], grid[256:, :256])  # same aligned input


def test_mix_grid_is_labelled_only_in_the_band_and_no_labels_leaves_it_bare(small_sam_path, tmp_path, capsys):
    """Issue 26 item 6, as ``age``'s strip: every grid tile shows its age in a band at the
    bottom (``render.draw_label``); ``--no-labels`` gives the bare grid (the age files' pixels)."""
    from sam_age.render import label_band

    base = ["mix", "sample", "--checkpoint", str(small_sam_path), "--ages", "50", "--n-random", "1"]
    base += ["--device", "cpu", "--json"]
    assert main(base + ["--output", str(tmp_path / "on")]) == 0
    assert main(base + ["--output", str(tmp_path / "off"), "--no-labels"]) == 0
    capsys.readouterr()
    a = np.asarray(Image.open(tmp_path / "on" / "astronaut" / "grid.png").convert("RGB")).astype(int)
    b = np.asarray(Image.open(tmp_path / "off" / "astronaut" / "grid.png").convert("RGB")).astype(int)
    assert a.shape == b.shape == (512, 512, 3)
    band = label_band(256)
    mixed = np.asarray(Image.open(tmp_path / "off" / "astronaut" / "random_0" / "age_050.png").convert("RGB"))
    assert np.array_equal(b[256:, 256:], mixed)  # bare: the old grid
    for row in range(2):
        top = row * 256
        assert np.array_equal(a[top : top + 256 - band], b[top : top + 256 - band])  # above the band: untouched
        for t in range(2):  # every tile labelled: white text on the dark band
            tile = a[top + 256 - band : top + 256, t * 256 : (t + 1) * 256]
            assert (tile.min(axis=2) > 200).sum() > 20 and (tile.max(axis=2) < 40).sum() > 1000, (row, t)


def test_mix_bad_flags(small_sam_path, tmp_path, capsys):
    base = ["mix", "sample", "--checkpoint", str(small_sam_path), "--output", str(tmp_path)]
    assert main(base + ["--alpha", "2"]) == 2
    assert main(base + ["--reference", str(tmp_path / "nope.jpg")]) == 2
    assert "--reference" in capsys.readouterr().err


def test_mix_reference_guided(small_sam_path, tmp_path, capsys):
    from ..helpers.images import sample

    ref = tmp_path / "ref.png"
    sample().transpose(Image.FLIP_LEFT_RIGHT).save(ref)
    out = tmp_path / "mix"
    code = main(
        [
            "mix",
            "sample",
            "--checkpoint",
            str(small_sam_path),
            "--ages",
            "40",
            "--reference",
            str(ref),
            "--alpha",
            "0.5",
            "--latent-mask",
            "10,11",
            "--output",
            str(out),
            "--json",
            "--device",
            "cpu",
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    rec = json.loads(captured.out)["inputs"][0]
    assert rec["sources"] == ["reference"] and rec["latent_mask"] == [10, 11] and rec["alpha"] == 0.5
    assert (out / "astronaut" / "reference" / "age_040.png").is_file()
    assert Image.open(out / "astronaut" / "grid.png").size == (512, 512)


def test_mix_disk_full_mid_run_one_line_partial_removed_run_stops(
    small_sam_path, tmp_path, capsys, face, disk_full_after_first_image
):
    second = tmp_path / "second.png"
    Image.open(face).save(second)
    out = tmp_path / "out"
    disk_full_after_first_image()
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
