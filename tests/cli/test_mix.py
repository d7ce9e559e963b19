"""``sam-age mix``: random styles injected into the fine layers change the result."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from sam_age.cli.main import main
from sam_age.cli.mix import parse_mask
from sam_age.errors import UsageError

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
