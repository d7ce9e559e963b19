"""Training options: every flag of the official SAM ``train.py`` with its name, default
and meaning, plus ours (image folders, the weights of the loss networks, device, resume,
mixed precision, seed).

Differences from the original, all deliberate: ``--target_age`` left unset means
``uniform_random`` (the original crashed on ``int(None)``); a step number N means "N
optimizer steps done" (the original counted from 0 and so ran max_steps + 1 steps).
"""

from __future__ import annotations

import argparse
from typing import Optional

# Registry names of the default weights (see sam_age.weights.registry).
DEFAULT_WEIGHTS = {
    "stylegan_weights": "stylegan2_ffhq",
    "pretrained_psp_path": "psp_ffhq_encode",
    "ir_se50_weights": "ir_se50",
    "age_predictor_weights": "dex_age",
    "alexnet_weights": "alexnet",
    "lpips_lin_weights": "lpips_alex_lin",
}

LAMBDAS = (
    "id_lambda",
    "lpips_lambda",
    "lpips_lambda_aging",
    "lpips_lambda_crop",
    "l2_lambda",
    "l2_lambda_aging",
    "l2_lambda_crop",
    "w_norm_lambda",
    "aging_lambda",
    "cycle_lambda",
)

# The published recipe (SAM README): what `sam-age train --help` shows as the example.
RECIPE = (
    "--start_from_encoded_w_plus --batch_size 6 --test_batch_size 6 --workers 6 --test_workers 6 "
    "--val_interval 2500 --save_interval 5000 --id_lambda 0.1 --lpips_lambda 0.1 "
    "--lpips_lambda_aging 0.1 --lpips_lambda_crop 0.6 --l2_lambda 0.25 --l2_lambda_aging 0.25 "
    "--l2_lambda_crop 1 --w_norm_lambda 0.005 --aging_lambda 5 --cycle_lambda 1 "
    "--target_age uniform_random --use_weighted_id_loss"
)


def _target_age(text: str) -> str:
    if text == "uniform_random":
        return text
    try:
        age = int(float(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an age 0..100 or uniform_random, got {text!r}") from None
    if not 0 <= age <= 100:
        raise argparse.ArgumentTypeError(f"target age must be within 0..100, got {age}")
    return str(age)


def add_train_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    o = p.add_argument_group("experiment (official flags)")
    o.add_argument("--exp_dir", required=True, help="Path to experiment output directory")
    o.add_argument("--dataset_type", default="ffhq_aging", help="Type of dataset/experiment (only ffhq_aging)")
    o.add_argument("--input_nc", default=4, type=int, help="Number of input image channels to the encoder")
    o.add_argument("--label_nc", default=0, type=int, help="Number of input label channels (unused, kept)")
    o.add_argument("--output_size", default=1024, type=int, help="Output size of generator")
    o.add_argument("--batch_size", default=4, type=int, help="Batch size for training (per process)")
    o.add_argument("--test_batch_size", default=2, type=int, help="Batch size for testing and inference")
    o.add_argument("--workers", default=4, type=int, help="Number of train dataloader workers")
    o.add_argument("--test_workers", default=2, type=int, help="Number of test dataloader workers")
    o.add_argument("--learning_rate", default=0.0001, type=float, help="Optimizer learning rate")
    o.add_argument("--optim_name", default="ranger", choices=("ranger", "adam"), help="Which optimizer to use")
    o.add_argument("--train_decoder", action="store_true", help="Whether to train the decoder model")
    o.add_argument(
        "--start_from_latent_avg",
        action="store_true",
        help="Whether to add average latent vector to generate codes from encoder",
    )
    o.add_argument(
        "--start_from_encoded_w_plus",
        action="store_true",
        help="Whether to learn residual wrt w+ of encoded image using pretrained pSp",
    )

    lam = p.add_argument_group("loss weights (official flags; a loss is computed only when its weight > 0)")
    lam.add_argument("--lpips_lambda", default=0.0, type=float, help="LPIPS loss multiplier factor")
    lam.add_argument("--id_lambda", default=0.0, type=float, help="ID loss multiplier factor")
    lam.add_argument("--l2_lambda", default=0.0, type=float, help="L2 loss multiplier factor")
    lam.add_argument("--w_norm_lambda", default=0.0, type=float, help="W-norm loss multiplier factor")
    lam.add_argument("--aging_lambda", default=0.0, type=float, help="Aging loss multiplier factor")
    lam.add_argument("--cycle_lambda", default=0.0, type=float, help="Cycle loss multiplier factor")
    lam.add_argument(
        "--lpips_lambda_crop", default=0.0, type=float, help="LPIPS loss multiplier factor for inner image region"
    )
    lam.add_argument(
        "--l2_lambda_crop", default=0.0, type=float, help="L2 loss multiplier factor for inner image region"
    )
    lam.add_argument(
        "--lpips_lambda_aging", default=0.0, type=float, help="LPIPS loss multiplier factor on the real pass when aging"
    )
    lam.add_argument(
        "--l2_lambda_aging", default=0.0, type=float, help="L2 loss multiplier factor on the real pass when aging"
    )
    lam.add_argument(
        "--target_age",
        default=None,
        type=_target_age,
        help="Target age for training: an age, or uniform_random (the default when unset)",
    )
    lam.add_argument(
        "--use_weighted_id_loss",
        action="store_true",
        help="Weight the ID loss by the change in age (more change -> less weight)",
    )

    sch = p.add_argument_group("schedule (official flags)")
    sch.add_argument("--max_steps", default=500000, type=int, help="Maximum number of training steps")
    sch.add_argument("--image_interval", default=100, type=int, help="Interval for logging train images")
    sch.add_argument("--board_interval", default=50, type=int, help="Interval for logging metrics to tensorboard")
    sch.add_argument("--val_interval", default=1000, type=int, help="Validation interval")
    sch.add_argument(
        "--save_interval", default=None, type=int, help="Model checkpoint interval (unset: only at --max_steps)"
    )

    w = p.add_argument_group("weights (a path or a registry name; see `sam-age weights list`)")
    w.add_argument("--checkpoint_path", default=None, help="Start from this SAM checkpoint instead of a fresh encoder")
    w.add_argument("--stylegan_weights", default=None, help="StyleGAN2 generator (default: stylegan2_ffhq)")
    w.add_argument("--pretrained_psp_path", default=None, help="pretrained pSp encoder (default: psp_ffhq_encode)")
    w.add_argument(
        "--ir_se50_weights", default=None, help="IR-SE-50: ID loss and encoder initialisation (default: ir_se50)"
    )
    w.add_argument("--age_predictor_weights", default=None, help="DEX age classifier (default: dex_age)")
    w.add_argument("--alexnet_weights", default=None, help="torchvision AlexNet for LPIPS (default: alexnet)")
    w.add_argument(
        "--lpips_lin_weights", default=None, help="LPIPS v0.1 alex lin layers (default: the copy shipped with sam-age)"
    )

    ours = p.add_argument_group("data and run")
    ours.add_argument("--train_dir", required=True, help="folder of aligned face images (searched recursively)")
    ours.add_argument("--test_dir", required=True, help="folder of aligned face images for validation")
    ours.add_argument(
        "--device",
        default="auto",
        help="cpu, cuda, cuda:1, ... (default: cuda when available; under torchrun each process takes cuda:LOCAL_RANK)",
    )
    ours.add_argument(
        "--resume",
        action="store_true",
        help="continue from the newest checkpoint in --exp_dir (weights, optimizer, step, RNG, best loss)",
    )
    ours.add_argument(
        "--amp",
        default="none",
        choices=("none", "bf16", "fp16"),
        help="mixed precision for forward passes (fp16 uses a GradScaler on CUDA)",
    )
    ours.add_argument("--seed", default=0, type=int, help="random seed (each process adds its rank)")
    return p


def validate_options(opts: argparse.Namespace) -> Optional[str]:
    """A usage problem in words, or None."""
    if not any(getattr(opts, k) > 0 for k in LAMBDAS if k != "cycle_lambda"):
        return "every loss weight is 0: nothing to train (see the recipe in --help)"
    if opts.start_from_latent_avg and opts.start_from_encoded_w_plus:
        return "--start_from_latent_avg and --start_from_encoded_w_plus exclude each other"
    for name in ("batch_size", "test_batch_size", "max_steps", "image_interval", "board_interval", "val_interval"):
        if getattr(opts, name) < 1:
            return f"--{name} must be at least 1"
    if opts.save_interval is not None and opts.save_interval < 1:
        return "--save_interval must be at least 1"
    if opts.workers < 0 or opts.test_workers < 0:
        return "--workers and --test_workers must be >= 0"
    if opts.input_nc != 4:
        return "--input_nc must be 4 for SAM (RGB + target age)"
    if opts.dataset_type != "ffhq_aging":
        return "--dataset_type: only ffhq_aging is supported"
    return None


def build_parser(prog: str = "sam-age train") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog, description="Train SAM (the official recipe).", epilog=f"The published recipe: {RECIPE}"
    )
    return add_train_arguments(p)
