"""The training losses against the values recorded from the original code."""

import numpy as np
import pytest
import torch

from sam_age.losses import LPIPS, AgingLoss, IDLoss, crop_face, default_lpips_lin_path, id_loss_weights, w_norm_loss

from ..helpers.paths import CASES


def _close(got, want, rel=1e-4):
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    scale = max(float(np.abs(want).max()), 1e-12)
    assert float(np.abs(got - want).max()) / scale <= rel, (got, want)


@pytest.fixture(scope="module")
def case(reference_dir):
    d = np.load(CASES / "losses.npz")
    return {k: d[k] for k in d.files}


def _t(a):
    return torch.from_numpy(np.asarray(a)).float()


def test_id_loss_matches_reference(standin, case):
    loss_fn = IDLoss(standin("model_ir_se50"))
    weights = id_loss_weights(torch.abs(_t(case["target_ages"]) - _t(case["input_ages"])))
    _close(weights, case["id_weights"], 1e-6)
    loss, improvement = loss_fn(_t(case["y_hat"]), _t(case["y"]), _t(case["x"]), weights=weights)
    _close(float(loss), case["loss_id"])
    _close(improvement, case["id_improve"])
    _close(loss_fn.features(_t(case["y_hat"])).detach(), case["id_feats_y_hat"])


def test_aging_loss_matches_reference_and_passes_gradient(standin, case):
    loss_fn = AgingLoss(standin("dex_age_classifier"))
    with torch.no_grad():
        _close(loss_fn.predict_ages(_t(case["y"])), case["ages_y"])
        _close(loss_fn.predict_ages(_t(case["y_hat"])), case["ages_y_hat"])
    y_hat = _t(case["y_hat"]).requires_grad_(True)
    loss = loss_fn(y_hat, _t(case["target_ages"]))
    _close(float(loss.detach()), case["loss_aging"])
    loss.backward()
    # the age net is frozen, yet the gradient reaches the image (and so the encoder)
    assert y_hat.grad is not None and float(y_hat.grad.abs().sum()) > 0
    assert all(p.grad is None and not p.requires_grad for p in loss_fn.parameters())
    loss_fn.train()
    assert not loss_fn.age_net.training


def test_lpips_matches_reference(standin, case):
    loss_fn = LPIPS(standin("alexnet_features"), standin("lpips_alex_lin"))
    y_hat, y = _t(case["y_hat"]).requires_grad_(True), _t(case["y"])
    full = loss_fn(y_hat, y)
    _close(float(full.detach()), case["lpips"])
    _close(float(loss_fn(crop_face(y_hat), crop_face(y)).detach()), case["lpips_crop"])
    full.backward()
    assert float(y_hat.grad.abs().sum()) > 0


def test_lpips_default_lin_weights_are_shipped(standin):
    assert default_lpips_lin_path().is_file()
    loss_fn = LPIPS(standin("alexnet_features"))
    assert [tuple(w.shape) for w in loss_fn.lins] == [(1, c, 1, 1) for c in (64, 192, 384, 256, 256)]


def test_w_norm_matches_reference(case):
    _close(float(w_norm_loss(_t(case["latent"]), _t(case["latent_avg"]))), case["w_norm"])
