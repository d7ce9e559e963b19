"""The registry holds the published facts and nothing invented."""
from __future__ import annotations

import dataclasses

import pytest

from sam_age import checkpoints
from sam_age.errors import UsageError
from sam_age.weights import registry

EXPECTED = {  # name: (file, kind, Google Drive id or None)
    "sam_ffhq_aging": ("sam_ffhq_aging.pt", "sam", "1XyumF6_fdAxFmxpFcmPf-q84LU_22EMC"),
    "psp_ffhq_encode": ("psp_ffhq_encode.pt", "psp", "1bMTNWkh5LArlaWSc_wa8VKyq2V42T2z0"),
    "stylegan2_ffhq": ("stylegan2-ffhq-config-f.pt", "stylegan2", "1EM87UquaoQmk17Q8d5kYIAHqu0dkYqdT"),
    "ir_se50": ("model_ir_se50.pth", "ir_se50", "1KW7bjndL3QG3sxBbZxreGHigcCCpsDgn"),
    "dex_age": ("dex_age_classifier.pth", "dex", "1atzjZm_dJrCmFWCqWlyspSpr3nI6Evsh"),
    "alexnet": ("alexnet-owt-7be5be79.pth", "alexnet", None),
    "lpips_alex_lin": ("alex.pth", "lpips_lin", None),
    "dlib_68": ("shape_predictor_68_face_landmarks.dat", "dlib", None),
}


def test_every_official_file_is_listed_once():
    assert registry.names() == tuple(EXPECTED)
    for entry in registry.REGISTRY:
        file, kind, drive_id = EXPECTED[entry.name]
        assert (entry.filename, entry.kind) == (file, kind)
        if drive_id:
            assert entry.urls == (f"https://drive.google.com/uc?export=download&id={drive_id}",)
        assert entry.licence and entry.used_for and entry.flag


def test_entries_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        registry.get("sam_ffhq_aging").filename = "other.pt"


def test_no_invented_checksums_or_sizes():
    # only the LPIPS file's digest is known (the copy sam-age ships, from lpips 0.1.4)
    assert [e.name for e in registry.REGISTRY if e.sha256] == ["lpips_alex_lin"]
    assert registry.get("lpips_alex_lin").sha256 == \
        "df73285e35b22355a2df87cdb6b70b343713b667eddbda73e1977e0c860835c0"
    alexnet = registry.get("alexnet")
    assert alexnet.urls == ("https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",)
    assert alexnet.sha256_prefix == "7be5be79" and alexnet.sha256_prefix in alexnet.filename
    assert registry.get("sam_ffhq_aging").size == 2_200_000_000
    assert registry.get("ir_se50").size is None


def test_checksum_matching():
    alexnet = registry.get("alexnet")
    assert alexnet.matches_checksum("7be5be79" + "0" * 56) is True
    assert alexnet.matches_checksum("0" * 64) is False
    assert registry.get("ir_se50").matches_checksum("0" * 64) is None  # unknown: no verdict


def test_packaged_files_are_not_downloaded():
    for name, package in (("lpips_alex_lin", "lpips"), ("dlib_68", "face_recognition_models")):
        entry = registry.get(name)
        assert entry.packaged and entry.package == package and entry.urls == ()
    assert registry.get("lpips_alex_lin").packaged_in[0] == ("sam_age", "data/lpips/alex_v0.1.pth")
    assert not any(e.packaged for e in registry.REGISTRY if e.name not in ("lpips_alex_lin", "dlib_68"))


def test_loaders_exist():
    for entry in registry.REGISTRY:
        if entry.kind != "dlib":
            assert callable(getattr(checkpoints, entry.loader))


def test_lookup_by_name_and_published_stem():
    assert registry.lookup("stylegan2-ffhq-config-f") is registry.get("stylegan2_ffhq")
    assert registry.lookup("model_ir_se50") is registry.get("ir_se50")
    assert registry.lookup("model_ir_se50.pth") is None  # with a suffix it is a path
    assert registry.get("sam_ffhq_aging").env_url == "SAM_AGE_URL_SAM_FFHQ_AGING"
    with pytest.raises(UsageError, match="unknown weights name 'nope'"):
        registry.get("nope")
