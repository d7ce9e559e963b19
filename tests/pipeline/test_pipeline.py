"""AgePipeline on the small 256 px stand-in SAM: aging, paste-back, strip, animation, mixing."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from sam_age.errors import NoFaceError, UsageError
from sam_age.mixing import StyleMixer
from sam_age.render import interpolate_codes, make_strip, ping_pong, save_gif

from ..helpers.images import SAMPLE

pytest.importorskip("dlib")

AGES = [0, 100]


@pytest.fixture(scope="module")
def pipe(small_pipeline):
    return small_pipeline  # the session's one 256 px pipeline (tests/conftest.py)


@pytest.fixture(scope="module")
def result(pipe):
    return pipe(str(SAMPLE), AGES, paste_back=True)


def test_aging_result(pipe, result):
    assert result.ages == AGES and len(result.faces) == 1
    face = result.faces[0]
    assert [im.size for im in result.images] == [(256, 256)] * 2
    assert result.latents.shape == (2, pipe.model.n_styles, 512)
    assert face.quad is not None and face.score > 1.0 and result.aligned.size == (256, 256)
    # different ages give different faces
    a0, a100 = (np.asarray(result.images[i], float) for i in (0, 1))
    assert np.abs(a0 - a100).mean() > 0.5


def test_paste_back_full_photo(result):
    src = np.asarray(result.source, int)
    assert len(result.pasted) == 2
    for im in result.pasted:
        assert im.size == result.source.size
        diff = np.abs(np.asarray(im, int) - src).sum(axis=2)
        q = result.faces[0].quad
        ys, xs = np.nonzero(diff)
        assert len(xs) > 1000
        assert xs.min() >= q[:, 0].min() - 1 and xs.max() <= q[:, 0].max() + 1
        assert ys.max() <= q[:, 1].max() + 1


def test_seam_of_the_standin_output(pipe, result):
    """The real stand-in SAM's output (noise), pasted with both masks: the default (face
    mask + colour matching) leaves less edge energy on the border than the earlier box."""
    from sam_age.face import paste_face, seam_ratio

    face = result.faces[0]
    width = 0.02 * float(np.hypot(*(face.quad[3] - face.quad[0])))
    ratios = {}
    for name, kind, colour in (("box", "box", False), ("face+colour", "face", True)):
        out, mask = paste_face(
            result.source,
            face.images[0],
            face.quad,
            kind,
            landmarks=face.landmarks,
            colour_match=colour,
            return_mask=True,
        )
        ratios[name] = seam_ratio(result.source, out, mask, width)
    assert ratios["face+colour"] < 0.85 * ratios["box"], ratios
    pasted = pipe.paste(result.source, result.faces, 0)  # the default is face + colour
    out = paste_face(result.source, face.images[0], face.quad, "face", landmarks=face.landmarks)
    assert np.array_equal(np.asarray(pasted), np.asarray(out))
    assert isinstance(pasted, Image.Image)


def test_strip_size():
    tiles = [Image.new("RGB", (256, 256), (i * 40, 0, 0)) for i in range(3)]
    strip = make_strip(Image.new("RGB", (256, 256)), tiles)
    assert strip.size == (1024, 256)
    assert strip.getpixel((256 * 3 + 5, 5)) == (80, 0, 0)
    big = make_strip(Image.new("RGB", (256, 256)), [Image.new("RGB", (1024, 1024))] * 3)
    assert big.size == (4096, 1024)


def test_animation_frames_and_gif(pipe, result, tmp_path, monkeypatch):
    face = result.faces[0]
    made = []

    def fake_generate(codes, size=256, randomize_noise=False):  # distinct flat frames
        made.append(codes.shape[0])
        return [Image.new("RGB", (size, size), (40 * (i + 1), 0, 0)) for i in range(codes.shape[0])]

    monkeypatch.setattr(pipe, "generate", fake_generate)
    frames = pipe.animate(face, frames_per_age=3)
    # 2 ages, 3 steps between them -> 4 frames up, then 2 back down (ends not repeated);
    # the key frames are the aged images themselves, only the 2 in-between are generated
    assert len(frames) == 4 + 2 and made == [2]
    assert frames[0] is face.images[0] and frames[3] is face.images[1] and frames[5] is frames[1]
    path = save_gif(frames, tmp_path / "a.gif")
    with Image.open(path) as gif:
        assert gif.n_frames == 6 and gif.size == (256, 256)


def test_interpolation_helpers():
    codes = torch.arange(3, dtype=torch.float32).view(3, 1, 1).expand(3, 2, 4)
    steps = interpolate_codes(codes, 4)
    assert steps.shape == (9, 2, 4)
    torch.testing.assert_close(steps[:, 0, 0], torch.tensor([0, 0.25, 0.5, 0.75, 1, 1.25, 1.5, 1.75, 2]))
    assert ping_pong([1, 2, 3]) == [1, 2, 3, 2]


def test_mixing_differs_from_plain_aging(pipe, result):
    face = result.faces[0]
    one_age = dataclasses.replace(face, ages=face.ages[:1], images=face.images[:1], latents=face.latents[:1])
    mixer = StyleMixer(pipe)
    sources = mixer.style_sources(one_age.ages, n_random=1, seed=3)
    mixed = mixer.mix_face(one_age, sources)[0]
    assert len(mixed) == 1
    plain = np.asarray(face.images[0], float)
    assert np.abs(np.asarray(mixed[0], float) - plain).mean() > 0.5
    # only the fine layers changed in the codes
    lat = one_age.latents
    new = mixer.mix_codes(lat, sources[0][1], range(8, pipe.model.n_styles))
    torch.testing.assert_close(new[:, :8], lat[:, :8])
    assert not torch.equal(new[:, 8:], lat[:, 8:])
    half = mixer.mix_codes(lat, sources[0][1], [8], alpha=0.5)
    torch.testing.assert_close(half[:, 8], 0.5 * (lat[:, 8] + sources[0][1][:, 8]))
    # reference-guided: the reference face's own codes, per age
    assert mixer.style_sources(face.ages, reference=face)[0][1] is face.latents


def test_errors(pipe):
    with pytest.raises(UsageError, match="0..100"):
        pipe(str(SAMPLE), [120])
    with pytest.raises(UsageError, match="size"):
        pipe(str(SAMPLE), [10], size=1024)  # the small stand-in generates 256 px only
    with pytest.raises(NoFaceError):
        pipe(Image.new("RGB", (128, 128), (90, 90, 90)), [10])


def test_mp4(tmp_path):
    pytest.importorskip("imageio_ffmpeg")
    from sam_age.render import save_mp4

    frames = [Image.new("RGB", (64, 64), (i * 25, 0, 0)) for i in range(6)]
    path = save_mp4(frames, tmp_path / "a.mp4")
    import imageio.v2 as imageio

    with imageio.get_reader(str(path)) as reader:
        assert reader.count_frames() == 6
    assert [p.name for p in tmp_path.iterdir()] == ["a.mp4"]  # no temporary left


def test_generator_makes_the_random_parts_repeat(pipe, result):
    """``generator=`` (a torch.Generator, as diffusers takes it): the same seed gives the same
    random styles and noise; the global RNG is left alone."""
    mixer = StyleMixer(pipe)
    a = mixer.random_styles(2, generator=torch.Generator().manual_seed(5))
    b = mixer.random_styles(2, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(a, b)
    assert not torch.equal(a, mixer.random_styles(2, generator=torch.Generator().manual_seed(6)))
    codes = result.faces[0].latents[:1]
    state = torch.get_rng_state()
    one = pipe.generate(codes, randomize_noise=True, generator=torch.Generator().manual_seed(1))
    two = pipe.generate(codes, randomize_noise=True, generator=torch.Generator().manual_seed(1))
    assert torch.equal(torch.get_rng_state(), state)
    assert np.array_equal(np.asarray(one[0]), np.asarray(two[0]))


def test_to_moves_and_returns_the_pipeline(pipe):
    assert pipe.to("cpu") is pipe and pipe.device.type == "cpu"
    assert next(pipe.model.parameters()).device.type == "cpu"
