"""Parity with the original code on the stand-in weights (spec §4)."""

import numpy as np
import pytest
import torch

from sam_age import load_sam

from ..helpers.paths import CASES


def rel_err(ours, ref) -> float:
    ref = np.asarray(ref, dtype=np.float64)
    return float(np.abs(np.asarray(ours, dtype=np.float64) - ref).max() / np.abs(ref).max())


@pytest.fixture(scope="module")
def case():
    return np.load(CASES / "sam_forward.npz")


@pytest.fixture(scope="module")
def sam(sam_standin_path):
    return load_sam(sam_standin_path)


@pytest.mark.slow
def test_codes_match_reference(sam, case):
    x = torch.from_numpy(case["x"])
    with torch.no_grad():
        enc = sam.encoder(x)
        base = sam.encode_w_plus(x[:, :3])
    assert rel_err(enc, case["encoder_out"]) <= 1e-4
    assert rel_err(base, case["encoded_w_plus"]) <= 1e-4
    assert rel_err(enc + base, case["codes"]) <= 1e-4


@pytest.mark.slow
def test_images_match_reference(sam, case):
    x = torch.from_numpy(case["x"])
    with torch.no_grad():
        images, codes = sam(x, randomize_noise=False, return_latents=True)
        big = sam(x[1:2], randomize_noise=False, resize=False)
    assert images.shape == (4, 3, 256, 256)
    assert rel_err(codes, case["codes"]) <= 1e-4
    assert rel_err(images, case["images_256"]) <= 1e-3
    assert big.shape == (1, 3, 1024, 1024)
    assert rel_err(big, case["image_1024_second"].astype(np.float32)) <= 1e-3


def test_state_dict_matches_official_manifest(reference_dir):
    import json

    from sam_age.models import SAM

    manifest = json.loads((reference_dir / "sam_ffhq_aging.manifest.json").read_text())
    expected = {e["path"][-1]: tuple(e["shape"]) for e in manifest["tensors"] if e["path"][0] == "state_dict"}
    ours = {k: tuple(v.shape) for k, v in SAM(1024).state_dict().items()}
    assert ours == expected
