"""CurricularFace IR-101: our module and loader against a transcription of the original code."""

from __future__ import annotations

import json

import pytest
import torch

from sam_age.checkpoints import load_curricular_face
from sam_age.errors import CheckpointError

from ..helpers.curricularface_ref import IR_101, manifest
from ..helpers.standins import TEST_DATA


def test_standin_manifest_is_the_original_layout():
    # the manifest under tests/data is IR_101([112, 112])'s state dict, key for key
    stored = json.loads((TEST_DATA / "curricular_face.manifest.json").read_text())
    assert stored == json.loads(json.dumps(manifest()))
    ref = IR_101([112, 112]).state_dict()
    assert [t["path"][0] for t in stored["tensors"]] == list(ref)
    assert all(list(ref[t["path"][0]].shape) == t["shape"] for t in stored["tensors"])
    assert "output_layer.4.weight" not in ref and "output_layer.4.running_mean" in ref  # affine=False


def test_forward_equals_the_original_in_float64(curricular_face_path):
    ours = load_curricular_face(curricular_face_path).double()
    ref = IR_101([112, 112])
    ref.load_state_dict(torch.load(curricular_face_path, weights_only=True))
    ref = ref.double().eval()
    x = torch.rand(2, 3, 112, 112, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 2 - 1
    with torch.no_grad():
        want, conv_out = ref(x)
        got = ours(x)
    assert conv_out.shape == (2, 512 * 7 * 7)
    assert got.shape == (2, 512)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    # the embedding is returned as the original does: not normalised
    assert not torch.allclose(got.norm(dim=1), torch.ones(2, dtype=torch.float64))
    torch.testing.assert_close(ours.embed(x), torch.nn.functional.normalize(want, dim=1))


def test_module_prefix_and_wrong_files(curricular_face_path, standin, tmp_path):
    state = torch.load(curricular_face_path, weights_only=True)
    wrapped = tmp_path / "dp.pth"
    torch.save({f"module.{k}": v for k, v in state.items()}, wrapped)
    net = load_curricular_face(wrapped)
    assert net.output_layer[4].affine is False
    with pytest.raises(CheckpointError, match="IR-SE|not a CurricularFace"):
        load_curricular_face(standin("model_ir_se50"))
    broken = dict(state)
    broken["body.0.res_layer.1.weight"] = torch.zeros(3, 3)
    with pytest.raises(CheckpointError, match="wrong shape"):
        load_curricular_face(broken)
