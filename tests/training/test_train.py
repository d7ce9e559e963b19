"""End-to-end training on CPU with the 256 px stand-ins: train, checkpoint, resume, torchrun.

Each step runs the 256 px encoder and generator twice (real + cycle) with backward, so
these tests keep to a handful of steps on two or three tiny synthetic faces.
"""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sam_age import load_psp_encoder, load_sam, load_stylegan2
from sam_age.checkpoints.formats import read_torch
from sam_age.cli.main import main
from sam_age.training import build_parser

RECIPE_LAMBDAS = [
    "--start_from_encoded_w_plus",
    "--id_lambda",
    "0.1",
    "--lpips_lambda",
    "0.1",
    "--lpips_lambda_aging",
    "0.1",
    "--lpips_lambda_crop",
    "0.6",
    "--l2_lambda",
    "0.25",
    "--l2_lambda_aging",
    "0.25",
    "--l2_lambda_crop",
    "1",
    "--w_norm_lambda",
    "0.005",
    "--aging_lambda",
    "5",
    "--cycle_lambda",
    "1",
    "--target_age",
    "uniform_random",
    "--use_weighted_id_loss",
]


def _faces(folder: Path, n: int, seed: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        small = (rng.random((32, 32, 3)) * 255).astype(np.uint8)
        Image.fromarray(small).resize((256, 256), Image.BICUBIC).save(folder / f"face{i}.png")
    return folder


@pytest.fixture(scope="module")
def weights(standin):
    return {
        "stylegan_weights": standin("stylegan2-256"),
        "pretrained_psp_path": standin("psp_encode-256"),
        "ir_se50_weights": standin("model_ir_se50"),
        "age_predictor_weights": standin("dex_age_classifier"),
        "alexnet_weights": standin("alexnet_features"),
        "lpips_lin_weights": standin("lpips_alex_lin"),
    }


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("faces")
    train = _faces(root / "train", 2, 0)
    (train / "broken.jpg").write_bytes(b"this is not a jpeg")
    return {"train": train, "test": _faces(root / "test", 2, 1), "empty": _faces(root / "empty", 0, 2)}


def _args(exp_dir, weights, data, *extra, train_dir=None, lambdas=RECIPE_LAMBDAS):
    args = [
        "train",
        "--exp_dir",
        str(exp_dir),
        "--train_dir",
        str(train_dir or data["train"]),
        "--test_dir",
        str(data["test"]),
        "--output_size",
        "256",
        "--workers",
        "0",
        "--test_workers",
        "0",
        "--device",
        "cpu",
        "--board_interval",
        "1",
        "--image_interval",
        "1000",
        "--val_interval",
        "1000",
    ]
    for flag, path in weights.items():
        args += [f"--{flag}", str(path)]
    return args + list(lambdas) + list(extra)


def _encoder(state):
    return {k: v for k, v in state.items() if k.startswith("encoder.")}


def _check_frozen_parts(model, weights):
    gen, _ = load_stylegan2(weights["stylegan_weights"])
    for k, v in gen.state_dict().items():
        assert torch.equal(model.decoder.state_dict()[k], v), k
    enc, _ = load_psp_encoder(weights["pretrained_psp_path"])
    for k, v in enc.state_dict().items():
        assert torch.equal(model.pretrained_encoder.state_dict()[k], v), k


def _check_run(exp, weights, world=1, ranger=True):
    ckpts = exp / "checkpoints"
    it2, it3 = load_sam(ckpts / "iteration_2.pt"), load_sam(ckpts / "iteration_3.pt")
    assert load_sam(ckpts / "best_model.pt").output_size == 256
    # the encoder moved at every step; the generator and the pretrained encoder did not
    moved = [
        k
        for k, v in it2.encoder.state_dict().items()
        if v.is_floating_point() and not torch.equal(v, it3.encoder.state_dict()[k])
    ]
    assert len(moved) > 100
    _check_frozen_parts(it3, weights)
    # official layout: {'state_dict', 'opts', 'latent_avg'}
    raw = read_torch(ckpts / "iteration_3.pt", mmap=False)
    assert set(raw) == {"state_dict", "opts", "latent_avg"} and raw["opts"]["output_size"] == 256
    state = read_torch(ckpts / "training_state.pt", mmap=False)
    assert state["step"] == 3 and state["checkpoint"] == "iteration_3.pt" and len(state["rng"]) == world
    assert state["best_val_loss"] is not None
    # the optimizer went on from its saved state: it counted 3 steps, not 1
    opt_state = state["optimizer"]["state"].values()
    assert {int(s["step"]) for s in opt_state} == {3}
    assert all(("slow_buffer" in s) == ranger for s in opt_state)
    log = (ckpts / "timestamp.txt").read_text()
    assert "**Best**: Step - 2" in log and "Step - 3, " in log and "loss_aging_real" in log
    events = list((exp / "logs").glob("events.out.tfevents.*"))
    assert events and (exp / "opt.json").is_file()
    assert list((exp / "logs" / "images" / "test" / "faces").glob("*.jpg"))


def test_train_checkpoint_resume(tmp_path, weights, data, capsys):
    exp = tmp_path / "exp"
    assert (
        main(
            _args(
                exp,
                weights,
                data,
                "--batch_size",
                "1",
                "--test_batch_size",
                "1",
                "--max_steps",
                "2",
                "--save_interval",
                "2",
            )
        )
        == 0
    )
    err = capsys.readouterr().err
    assert "skipping unreadable image" in err and "broken.jpg" in err
    assert "1 unreadable image(s) skipped" in err
    ckpts = exp / "checkpoints"
    assert (ckpts / "iteration_2.pt").is_file() and (ckpts / "best_model.pt").is_file()
    # step 2's best model is step 2's checkpoint: one file under two names, not two writes
    assert (ckpts / "iteration_2.pt").samefile(ckpts / "best_model.pt")
    # a used experiment folder is never silently reused
    assert main(_args(exp, weights, data, "--batch_size", "1", "--max_steps", "3")) == 2
    assert "not empty" in capsys.readouterr().err
    assert (
        main(
            _args(
                exp,
                weights,
                data,
                "--batch_size",
                "1",
                "--test_batch_size",
                "1",
                "--max_steps",
                "3",
                "--save_interval",
                "2",
                "--resume",
            )
        )
        == 0
    )
    _check_run(exp, weights)


def test_aging_loss_alone_moves_the_encoder(tmp_path, weights, data):
    """The aging loss is the only signal: the encoder must still get a gradient through DEX."""
    from sam_age.training.trainer import Trainer

    argv = _args(
        tmp_path / "exp",
        weights,
        data,
        "--batch_size",
        "1",
        lambdas=["--start_from_encoded_w_plus", "--aging_lambda", "5", "--target_age", "90"],
    )[1:]
    trainer = Trainer(build_parser().parse_args(argv))
    faces = torch.rand(1, 3, 256, 256) * 2 - 1
    terms, _ = trainer.train_step(faces)
    assert set(terms) == {"loss", "loss_real", "loss_aging_real"}
    grads = [p.grad for p in trainer.model.encoder.parameters()]
    assert all(g is not None for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0
    assert all(p.grad is None for p in trainer.model.decoder.parameters())
    assert all(p.grad is None for p in trainer.model.pretrained_encoder.parameters())


@pytest.mark.parametrize("case", ["empty_train", "missing_weights", "no_losses", "missing_folder"])
def test_bad_inputs_fail_before_work(tmp_path, weights, data, capsys, case):
    exp = tmp_path / "exp"
    if case == "empty_train":
        args = _args(exp, weights, data, train_dir=data["empty"])
        expect = "no readable images"
    elif case == "missing_weights":
        args = _args(exp, dict(weights, age_predictor_weights=tmp_path / "nope.pth"), data)
        expect = "nope.pth: file not found"
    elif case == "no_losses":
        args = _args(exp, weights, data, lambdas=["--start_from_encoded_w_plus"])
        expect = "nothing to train"
    else:
        args = _args(exp, weights, data, train_dir=tmp_path / "missing")
        expect = "folder not found"
    assert main(args) == 2
    err = capsys.readouterr().err
    errors = [ln for ln in err.strip().splitlines() if not ln.startswith("warning: ")]  # (skipped images)
    assert expect in err and "Traceback" not in err and len(errors) == 1
    assert not exp.exists()  # nothing was started
