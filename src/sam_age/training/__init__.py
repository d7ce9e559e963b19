"""Training SAM with the official recipe: options, data, the trainer (``sam-age train``)."""
from .options import RECIPE, add_train_arguments, build_parser, validate_options
from .trainer import Trainer, run_training

__all__ = ["RECIPE", "Trainer", "add_train_arguments", "build_parser", "run_training", "validate_options"]
