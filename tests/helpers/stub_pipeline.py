"""A stand-in for the model in ``sam-age age`` runs that test files, names and records.

``StubPipeline`` ages nothing: each "aged" image is the input face itself, so a result's
pixels say which input made it (tests give each input its own colour). ``use_stub`` puts it
behind the CLI's model loader (``sam_age.pipeline.shared_pipeline``), so a run goes through
the real listing, naming, manifest, staging and placing, with ``--no-align`` square inputs
(no dlib) and any file as ``--checkpoint`` (it is never read).
"""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image

import sam_age.pipeline as pipeline
from sam_age.results import AgingResult, FaceResult


class StubPipeline:
    def check_size(self, size: int) -> bool:
        return True

    def age_prepared_many(self, jobs, ages, size=256, progress=None):
        out = []
        for photo, faces in jobs:
            made = []
            for f in faces:
                img = f.image.resize((size, size)) if f.image.size != (size, size) else f.image
                made.append(
                    FaceResult(
                        aligned=f.image,
                        quad=None,
                        ages=[float(a) for a in ages],
                        images=[img] * len(ages),
                        latents=torch.zeros(len(ages), 1, 1),
                    )
                )
            if progress:
                progress(len(faces) * len(ages))
            out.append(AgingResult(source=photo, ages=[float(a) for a in ages], faces=made))
        return out


def use_stub(monkeypatch, folder: Path) -> Path:
    """Route the CLI's model loading to :class:`StubPipeline`; returns a weights path to pass.
    The one place tests swap the model loader (every caller imports ``pipeline.shared_pipeline``
    when it loads, so one patch reaches them all)."""
    monkeypatch.setattr(pipeline, "shared_pipeline", lambda *a, **k: StubPipeline())
    weights = Path(folder) / "stub-weights.pt"
    weights.write_bytes(b"never read")
    return weights


def write_face(path, colour) -> Path:
    """A 32 px square of one colour (an aligned 'face' for --no-align)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (32, 32), tuple(colour)).save(path, format="PNG")
    return path


def colour_of(path):
    """The colour of a result (the centre pixel)."""
    with Image.open(path) as img:
        return img.convert("RGB").getpixel((img.width // 2, img.height // 2))
