"""``sam-age export``: the three networks as ONNX / OpenVINO files that compute what torch
computes (<= 1e-4 relative), on the 256 px stand-in SAM."""

import json

import numpy as np
import pytest
import torch

from sam_age import load_sam
from sam_age.cli.main import build_parser, main
from sam_age.export import PARITY_RTOL, Runner, example_inputs, export_sam, networks

pytest.importorskip("onnx")
pytest.importorskip("onnxscript")


@pytest.fixture(scope="module")
def exported(small_sam_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx")
    code = main(["export", "--checkpoint", str(small_sam_path), "--format", "onnx", "--output", str(out), "--quiet"])
    return code, out


def test_export_onnx_cli_writes_three_networks_that_match_torch(exported, small_sam_path):
    code, out = exported
    assert code == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["networks"]) == {"pretrained_encoder", "age_encoder", "generator"}
    assert manifest["dtype"] == "float32" and manifest["n_styles"] == 14
    for name, err in manifest["parity_max_relative_error"].items():
        assert err <= PARITY_RTOL, name
    assert not [p for p in out.iterdir() if p.name.startswith(".export-")]  # no temp folder left
    pytest.importorskip("onnxruntime")
    # the schedule of the manifest, composed in ONNX Runtime, equals the engine's result
    from sam_age.engine import age_channel, age_faces

    model = load_sam(small_sam_path)
    torch.manual_seed(0)
    face = torch.rand(1, 3, 256, 256) * 2 - 1
    ages = [20, 70]
    images, codes = age_faces(model, face, ages)
    run = {n: Runner(out / manifest["networks"][n]["file"], "onnxruntime") for n in manifest["networks"]}
    w_plus = run["pretrained_encoder"](face.numpy())
    x = age_channel(face, ages).numpy()
    ort_codes = run["age_encoder"](x, np.repeat(w_plus, len(ages), axis=0))
    ort_images = run["generator"](ort_codes)
    ref_c, ref_i = codes[0].numpy(), images[0].numpy()
    assert abs(ort_codes - ref_c).max() <= PARITY_RTOL * abs(ref_c).max()
    assert abs(ort_images - ref_i).max() <= PARITY_RTOL * abs(ref_i).max()


def test_export_refuses_before_loading(exported, tmp_path, capsys):
    _, out = exported
    assert main(["export", "--checkpoint", str(tmp_path / "missing.pt"), "--output", str(out)]) == 2
    assert "exists (use --overwrite" in capsys.readouterr().err  # checked before the checkpoint
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert main(["export", "--output", str(afile)]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err  # (the check every --output shares)
    assert main(["export", "--output", str(tmp_path / "new"), "--networks", "decoder"]) == 2
    with pytest.raises(SystemExit) as e:
        main(["export", "--output", str(tmp_path / "new"), "--format", "tflite"])
    assert e.value.code == 2


def test_export_openvino_generator_matches_torch(small_sam_path, tmp_path):
    pytest.importorskip("openvino")
    model = load_sam(small_sam_path)
    result = export_sam(model, tmp_path, "openvino", names=["generator"])
    assert (tmp_path / "generator.xml").exists() and (tmp_path / "generator.bin").exists()
    assert result.parity["generator"] <= PARITY_RTOL
    # batch size is dynamic in the file: one code at a time works too
    net = networks(model)["generator"]
    (codes,) = example_inputs(model, "generator", batch=1, seed=3)
    with torch.no_grad():
        ref = net(codes).numpy()
    got = Runner(tmp_path / "generator.xml", "openvino", threads=2)(codes.numpy())
    assert abs(got - ref).max() <= PARITY_RTOL * abs(ref).max()


def test_checkpoint_of_another_kind_exits_2_before_any_download(tmp_path, monkeypatch, capsys):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("SAM_AGE_HOME", str(home))
    monkeypatch.setenv("SAM_AGE_OFFLINE", "1")
    code = main(["export", "--checkpoint", "psp_ffhq_encode", "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "psp_ffhq_encode is a pSp encoder, not a SAM checkpoint" in err, err
    assert not any(home.iterdir()) and not (tmp_path / "out").exists()


def test_export_takes_checkpoint_path_and_defaults_its_output(small_sam_path, tmp_path, monkeypatch, capsys):
    pytest.importorskip("onnx")
    parser = build_parser()
    args = parser.parse_args(["export", "--checkpoint_path", "x.pt"])
    assert args.checkpoint == "x.pt" and args.output is None  # -> exported-onnx, after --format
    monkeypatch.chdir(tmp_path)
    assert (
        main(["export", "--checkpoint_path", str(small_sam_path), "--networks", "age_encoder", "--no-check", "--quiet"])
        == 0
    )
    assert (tmp_path / "exported-onnx" / "manifest.json").is_file()
    assert json.loads((tmp_path / "exported-onnx" / "manifest.json").read_text())
