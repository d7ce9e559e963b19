"""One network per file. Modules take plain sizes; loading lives in ``sam_age.checkpoints``."""

from .encoder import GradualStyleEncoder
from .irse import IRSEBackbone
from .sam import SAM
from .stylegan2 import Generator

__all__ = ["GradualStyleEncoder", "Generator", "IRSEBackbone", "SAM"]
