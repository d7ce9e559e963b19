import os
import pickle

import pytest
import torch

from sam_age import load_sam, save_sam
from sam_age.checkpoints import (
    build_sam_for_training,
    load_alexnet,
    load_dex,
    load_ir_se50,
    load_psp_encoder,
    load_stylegan2,
)
from sam_age.errors import CheckpointError, UnsafeCheckpointError

from ..helpers.paddle_writer import write_pdparams


@pytest.fixture(scope="module")
def small(small_sam_path):
    return load_sam(small_sam_path)


def _x(n=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 4, 256, 256, generator=g) * 2 - 1
    x[:, 3] = torch.linspace(0.1, 0.9, n)[:, None, None]
    return x


def _same_outputs(a, b, x):
    with torch.no_grad():
        ia, ca = a(x, randomize_noise=False, return_latents=True)
        ib, cb = b(x, randomize_noise=False, return_latents=True)
    torch.testing.assert_close(cb, ca, rtol=0, atol=1e-5)
    torch.testing.assert_close(ib, ia, rtol=0, atol=1e-5)


def test_small_sam_is_256(small):
    assert small.output_size == 256 and small.n_styles == 14 and small.input_nc == 4
    assert not small.training
    out = small(_x(1), randomize_noise=False)
    assert out.shape == (1, 3, 256, 256) and torch.isfinite(out).all()


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_round_trip(small, tmp_path, suffix):
    path = save_sam(small, tmp_path / f"model{suffix}")
    again = load_sam(path)
    for k, v in small.state_dict().items():
        assert torch.equal(again.state_dict()[k], v), k
    assert torch.equal(again.latent_avg, small.latent_avg)
    if suffix == ".pt":
        raw = torch.load(path, weights_only=True)
        assert set(raw) == {"state_dict", "opts", "latent_avg"}
        assert raw["opts"]["output_size"] == 256 and raw["opts"]["input_nc"] == 4
    assert not list(tmp_path.glob(".*.tmp"))  # atomic write leaves no temp file


@pytest.mark.parametrize("numpy1_names", [False, True])
def test_pdparams_matches_pt(small, tmp_path, numpy1_names):
    path = tmp_path / "sam.pdparams"
    write_pdparams(path, small.state_dict(), small.latent_avg, numpy1_names=numpy1_names)
    from_paddle = load_sam(path)
    _same_outputs(small, from_paddle, _x(2))


def test_pdparams_nested_under_state_dict(small, tmp_path):
    from ..helpers.paddle_writer import dump, to_paddle_tree

    tree = to_paddle_tree(small.state_dict(), small.latent_avg)
    latent_avg = tree.pop("latent_avg")
    path = tmp_path / "nested.pdparams"
    dump({"state_dict": tree, "latent_avg": ("latent_avg", latent_avg)}, path)
    _same_outputs(small, load_sam(path), _x(1))


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="file not found") as e:
        load_sam(tmp_path / "nope.pt")
    assert "\n" not in str(e.value) and "nope.pt" in str(e.value)


def test_truncated_file(small_sam_path, tmp_path):
    bad = tmp_path / "truncated.pt"
    with open(small_sam_path, "rb") as f:
        bad.write_bytes(f.read(1_000_000))
    with pytest.raises(CheckpointError) as e:
        load_sam(bad)
    assert "truncated.pt" in str(e.value) and "\n" not in str(e.value)


def test_corrupt_and_foreign_bytes(tmp_path):
    for name, data in [
        ("zeros.pt", b"\0" * 4096),
        ("text.pt", b"hello world" * 10),
        ("empty.pt", b""),
        ("junk.pdparams", b"\x80\x04garbage"),
    ]:
        p = tmp_path / name
        p.write_bytes(data)
        with pytest.raises(CheckpointError) as e:
            load_sam(p)
        assert name in str(e.value)


def test_file_of_another_kind(standin):
    with pytest.raises(CheckpointError, match="StyleGAN2"):
        load_sam(standin("stylegan2-256"))
    with pytest.raises(CheckpointError, match="not a SAM"):
        load_sam(standin("model_ir_se50"))


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/sam_age_pwned",))


@pytest.mark.parametrize("suffix", [".pt", ".pdparams"])
def test_malicious_pickle_is_refused(tmp_path, suffix):
    marker = "/tmp/sam_age_pwned"
    if os.path.exists(marker):
        os.unlink(marker)
    p = tmp_path / f"evil{suffix}"
    if suffix == ".pt":
        torch.save({"state_dict": {"x": _Evil()}}, p)
    else:
        p.write_bytes(pickle.dumps({"encoder": _Evil()}))
    with pytest.raises(UnsafeCheckpointError):
        load_sam(p)
    assert not os.path.exists(marker)


def test_legacy_pickle_with_code_is_refused(tmp_path):
    p = tmp_path / "legacy.pt"
    p.write_bytes(pickle.dumps(_Evil(), protocol=2))
    with pytest.raises(CheckpointError):
        load_sam(p)
    assert not os.path.exists("/tmp/sam_age_pwned")


def test_other_loaders(standin):
    gen, avg = load_stylegan2(standin("stylegan2-256"))
    assert gen.size == 256 and avg.shape == (512,)
    enc, avg = load_psp_encoder(standin("psp_encode-256"))
    assert enc.input_nc == 3 and enc.style_count == 14 and avg.shape == (14, 512)
    ir = load_ir_se50(standin("model_ir_se50"))
    feats = ir(torch.rand(2, 3, 112, 112))
    torch.testing.assert_close(feats.norm(dim=1), torch.ones(2))
    dex = load_dex(standin("dex_age_classifier"))
    ages = dex.predict_ages(torch.rand(1, 3, 256, 256) * 2 - 1)
    assert 0 <= float(ages.detach()) <= 100
    alex = load_alexnet(standin("alexnet_features"))
    assert [f.shape[1] for f in alex(torch.rand(1, 3, 64, 64))] == [64, 192, 384, 256, 256]
    with pytest.raises(CheckpointError, match="not a DEX"):
        load_dex(standin("alexnet_features"))


def test_build_for_training(standin):
    g = torch.Generator().manual_seed(1)
    model = build_sam_for_training(
        standin("stylegan2-256"), standin("model_ir_se50"), standin("psp_encode-256"), generator=g
    )
    ir = torch.load(standin("model_ir_se50"), weights_only=True)
    w = model.encoder.input_layer[0].weight
    assert w.shape == (64, 4, 3, 3)
    assert torch.equal(w[:, :3], ir["input_layer.0.weight"])
    assert torch.equal(model.encoder.body[5].res_layer[1].weight, ir["body.5.res_layer.1.weight"])
    sg = torch.load(standin("stylegan2-256"), weights_only=True)
    assert torch.equal(model.latent_avg, sg["latent_avg"].repeat(14, 1))
    assert not any(p.requires_grad for p in model.decoder.parameters())
    assert not any(p.requires_grad for p in model.pretrained_encoder.parameters())
    model.train()
    assert model.encoder.training and not model.pretrained_encoder.training
    with pytest.raises(CheckpointError, match="needs"):
        build_sam_for_training(standin("stylegan2-256"), standin("model_ir_se50"), None)
