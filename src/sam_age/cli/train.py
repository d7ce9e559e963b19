"""``sam-age train``: the official SAM training recipe (also under ``torchrun -m sam_age train``)."""

from __future__ import annotations

import argparse

from ..errors import EXIT_OK
from .common import check_device, check_output_folder


def add_parser(subparsers) -> argparse.ArgumentParser:
    from ..training.options import RECIPE, add_train_arguments

    parser = subparsers.add_parser(
        "train",
        help="train SAM on folders of aligned faces (the official recipe)",
        description="Train SAM exactly as the paper did; resumable; multi-GPU with "
        "`torchrun --nproc_per_node N -m sam_age train ...`.",
        epilog=f"The published recipe: sam-age train --exp_dir EXP --train_dir FFHQ --test_dir CELEBA_TEST {RECIPE}",
    )
    add_train_arguments(parser)
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    check_device(args.device)
    check_output_folder(args.exp_dir, "--exp_dir")
    from ..training.trainer import run_training

    opts = argparse.Namespace(**{k: v for k, v in vars(args).items() if k not in ("run", "command")})
    run_training(opts)
    return EXIT_OK
