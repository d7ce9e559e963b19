"""The measured forms (sam_age.autotune) in the models: whatever form a tuner picks, the
networks stay equal to their references, and the pipeline says what it runs."""

import pytest
import torch

from sam_age import load_sam
from sam_age.autotune import Tuner
from sam_age.engine import apply_forms
from sam_age.models.stylegan2 import Generator


class Rigged(Tuner):
    """A tuner whose measurement says ``winner`` is fastest (injected timings)."""

    def __init__(self, winner):
        super().__init__(None, "on", reps=1)
        self.winner, self.measured = winner, []
        self.clock = self._clock
        self._t, self._next = 0.0, None

    def _clock(self):
        return self._t

    def pick(self, name, fns, plain, rule, reps=None, warmup=True):
        if name not in self.choices:
            self.measured.append(name)
        timed = {}
        for f, fn in fns.items():

            def run(f=f, fn=fn):
                out = fn()
                self._t += 1.0 if f == (self.winner if self.winner in fns else plain) else 2.0
                return out

            timed[f] = run
        return super().pick(name, timed, plain, rule, reps, warmup)


@pytest.mark.parametrize("form", ["auto-packed", "auto-plain", "packed", "plain"])
def test_encoder_forms_equal_reference(small_sam_path, form):
    model = load_sam(small_sam_path)
    enc = model.encoder
    tuner = Rigged(form.split("-")[-1])
    enc.conv_form, enc.tuner = form.split("-")[0], tuner
    torch.manual_seed(1)
    x = torch.rand(1, 4, 256, 256) * 2 - 1
    with torch.no_grad():
        ref = enc(x, impl="reference")
        out, again = enc(x), enc(x)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-4 * float(ref.abs().max()))
    torch.testing.assert_close(again, out, rtol=0, atol=1e-5 * float(ref.abs().max()))
    if form.startswith("auto"):  # one measurement per conv shape and input size
        assert tuner.measured and len(tuner.measured) == len(set(tuner.measured))
        assert tuner.summary("conv:") == form.split("-")[1]
        assert sorted(tuner.measured) == sorted(tuner.used)  # each shape measured once, then reused
    else:
        assert tuner.measured == []


@pytest.mark.parametrize("winner", ["shared", "per_sample", "grouped"])
def test_generator_auto_with_a_tuner_keeps_the_measured_form_equal_to_reference(winner):
    torch.manual_seed(0)
    g = Generator(32, style_dim=64, n_mlp=2, channel_multiplier=1).eval()
    tuner = Rigged(winner)
    g.tuner = tuner
    latent = torch.randn(2, g.n_latent, 64)
    with torch.no_grad():
        ref = g.synthesis(latent, g.fixed_noise(), impl="reference")
        first = g.synthesis(latent, g.fixed_noise())
        second = g.synthesis(latent, g.fixed_noise())
    torch.testing.assert_close(first, ref, rtol=0, atol=1e-5 * float(ref.abs().max()))
    torch.testing.assert_close(second, first, rtol=0, atol=1e-5 * float(ref.abs().max()))
    assert tuner.measured == ["generator:32:float32:n2:poolNone"]  # once
    assert tuner.used["generator:32:float32:n2:poolNone"] == winner


def test_pipeline_forms_and_compute_path(small_sam_path):
    from sam_age import AgePipeline

    tuner = Tuner(None, "off")
    pipe = AgePipeline.from_pretrained(
        small_sam_path, device="cpu", dtype="float32", forms={"conv": "plain", "generator": "shared"}
    )
    path = pipe.compute_path
    assert path["device"] == "cpu" and path["dtype"] == "float32" and path["why"] == "asked: float32"
    assert path["forms"]["conv"] == "plain" and path["forms"]["generator"] == "shared"
    assert pipe.model.encoder.conv_form == "plain" and pipe.model.decoder.impl == "shared"
    with pytest.raises(AttributeError):
        pipe.compute_path = {}  # read-only
    auto = AgePipeline(pipe.model, "cpu", "auto", tuner=tuner)
    assert auto.compute_path["forms"]["conv"].startswith("auto")
    torch.manual_seed(0)
    _images, _ = auto.age_aligned(torch.rand(1, 3, 256, 256) * 2 - 1, [30])
    used = auto.compute_path["forms"]
    assert used["conv"] in ("packed", "plain") and used["generator"] == "per_sample" and used["autotune"] == "off"
    assert auto.compute_path["why"]
    with pytest.raises(ValueError, match="generator form"):
        apply_forms(pipe.model, {"generator": "fastest"})
    with pytest.raises(ValueError, match="unknown forms"):
        apply_forms(pipe.model, {"dtype": "bf16"})
