"""Cog predictor (https://cog.run, Replicate): the official SAM repository's interface over
:class:`sam_age.AgePipeline`.

Inputs as the official ``predict.py``: ``image`` and ``target_age`` (``default``: a GIF of
the face from 0 to 100, young -> old -> young), plus what sam-age adds: ``target_age`` in the
one age syntax (``30``, or ``+20`` = 20 years older than the face's estimated age), and
``paste_back`` (the whole photo with the aged face put back instead of the aligned crop).
``SAM_AGE_CHECKPOINT`` (a registry name or a path) picks the weights; default the official
``sam_ffhq_aging``, fetched into the cache at ``setup``.
"""
import os
import sys
import tempfile
from pathlib import Path as _Path

from cog import BasePredictor, Input, Path

_SRC = _Path(__file__).resolve().parent / "src"
if _SRC.is_dir() and str(_SRC) not in sys.path:  # the repository as cog copies it (/src)
    sys.path.insert(0, str(_SRC))

from sam_age import AgePipeline  # noqa: E402
from sam_age.ages import parse_ages  # noqa: E402
from sam_age.errors import SamAgeError  # noqa: E402
from sam_age.render import save_gif, save_image  # noqa: E402

DEFAULT_GIF_AGES = "0:100:10"
GIF_FRAMES_PER_AGE = 4
GIF_FPS = 12.0


class Predictor(BasePredictor):
    def setup(self) -> None:
        """Load the model once (the weights are fetched into the cache when missing)."""
        self.pipeline = AgePipeline.from_pretrained(os.environ.get("SAM_AGE_CHECKPOINT", "sam_ffhq_aging"))

    def predict(
        self,
        image: Path = Input(description="Facial image"),
        target_age: str = Input(
            description="Desired age of the output image (0..100, or +N / -N years from the face's estimated "
                        "age); 'default' makes a GIF of ages 0..100",
            default="default"),
        paste_back: bool = Input(description="Put the aged face back into the whole photo", default=False),
    ) -> Path:
        out = _Path(tempfile.mkdtemp(prefix="sam-age-cog-"))
        gif = target_age.strip().lower() == "default"
        try:
            ages = parse_ages(DEFAULT_GIF_AGES if gif else target_age, relative=True)
            if not gif and len(ages) != 1:
                raise ValueError(f"target_age: one age or 'default', not {target_age!r}")
            result = self.pipeline(str(image), ages, paste_back=paste_back and not gif)
        except SamAgeError as e:  # one line, naming what is wrong (no traceback)
            raise ValueError(str(e)) from None
        if gif:
            frames = self.pipeline.animate(result.faces[0], frames_per_age=GIF_FRAMES_PER_AGE)
            return Path(save_gif(frames, out / "aging.gif", fps=GIF_FPS))
        img = result.pasted[0] if result.pasted else result.images[0]
        return Path(save_image(img, out / "result.png"))
