"""Ranger against the recorded 30-step trajectory of the original optimizer."""

import numpy as np
import torch

from sam_age.optim import Ranger

from ..helpers.paths import CASES


def _problem(reference_dir):
    d = np.load(CASES / "ranger.npz")
    case = {k: d[k] for k in d.files}
    assert str(case["loss_expr"]) == "((A @ (W.sum(0) + v) - b) ** 2).mean() + (W ** 2).sum() * 0.01"
    A, b = torch.from_numpy(case["A"]), torch.from_numpy(case["b"])
    W = torch.nn.Parameter(torch.from_numpy(case["W0"]).clone())
    v = torch.nn.Parameter(torch.from_numpy(case["v0"]).clone())

    def loss_fn():
        return ((A @ (W.sum(0) + v) - b) ** 2).mean() + (W**2).sum() * 0.01

    return case, W, v, loss_fn


def _step(opt, loss_fn):
    opt.zero_grad()
    loss_fn().backward()
    opt.step()


def test_ranger_matches_trajectory(reference_dir):
    case, W, v, loss_fn = _problem(reference_dir)
    opt = Ranger([W, v], lr=float(case["lr"]))
    for i in range(len(case["traj_W"])):
        _step(opt, loss_fn)
        for got, want in ((W, case["traj_W"][i]), (v, case["traj_v"][i])):
            err = float(np.abs(got.detach().numpy() - want).max()) / float(np.abs(want).max())
            assert err <= 1e-5, (i, err)


def test_ranger_state_round_trips(reference_dir, tmp_path):
    """Stop after 8 steps, save, load into a fresh optimizer, go on: the same trajectory."""
    case, W, v, loss_fn = _problem(reference_dir)
    opt = Ranger([W, v], lr=float(case["lr"]))
    for _ in range(8):
        _step(opt, loss_fn)
    torch.save({"opt": opt.state_dict(), "W": W.detach(), "v": v.detach()}, tmp_path / "s.pt")
    saved = torch.load(tmp_path / "s.pt", weights_only=True)
    _, W2, v2, loss_fn2 = _problem(reference_dir)
    with torch.no_grad():
        W2.copy_(saved["W"])
        v2.copy_(saved["v"])
    opt2 = Ranger([W2, v2], lr=float(case["lr"]))
    opt2.load_state_dict(saved["opt"])
    for i in range(8, 20):
        _step(opt2, loss_fn2)
        torch.testing.assert_close(W2.detach(), torch.from_numpy(case["traj_W"][i]), rtol=0, atol=1e-5)
        torch.testing.assert_close(v2.detach(), torch.from_numpy(case["traj_v"][i]), rtol=0, atol=1e-5)
