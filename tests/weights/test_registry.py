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
    "curricular_face": ("CurricularFace_Backbone.pth", "curricular_face", "1upOyrPzZ5OI3p6WkA5D5JFYCeiZuaPcp"),
    "alexnet": ("alexnet-owt-7be5be79.pth", "alexnet", None),
    "lpips_alex_lin": ("alex.pth", "lpips_lin", None),
    "dlib_68": ("shape_predictor_68_face_landmarks.dat", "dlib", None),
}


def test_every_official_file_is_listed_once():
    assert registry.names() == tuple(EXPECTED)
    for entry in registry.REGISTRY:
        file, kind, drive_id = EXPECTED[entry.name]
        assert (entry.filename, entry.kind) == (file, kind)
        if drive_id:  # the authors' link, tried last (a quota page there is common)
            assert entry.sources[-1] == registry.drive(drive_id)
            assert entry.urls[-1] == f"https://drive.google.com/uc?export=download&id={drive_id}"
        assert entry.licence and entry.used_for and entry.flag


def test_entries_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        registry.get("sam_ffhq_aging").filename = "other.pt"


def test_no_invented_checksums_or_sizes():
    # only the LPIPS file's digest is known (the copy sam-age ships, from lpips 0.1.4)
    assert [e.name for e in registry.REGISTRY if e.sha256] == ["lpips_alex_lin"]
    assert registry.get("lpips_alex_lin").sha256 == "df73285e35b22355a2df87cdb6b70b343713b667eddbda73e1977e0c860835c0"
    alexnet = registry.get("alexnet")
    assert alexnet.urls == ("https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",)
    assert [s.transport for s in alexnet.sources] == ["url"]
    assert alexnet.sha256_prefix == "7be5be79" and alexnet.sha256_prefix in alexnet.filename
    sam = registry.get("sam_ffhq_aging")  # reported, not published: a hint
    assert sam.size == 2_270_547_237 and not sam.size_exact
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


HUB_MIRRORS = {  # name: [(repo id, file in the repo, commit it was seen at), ...]
    "sam_ffhq_aging": [
        ("aimi-models/sam-aging", "sam_ffhq_aging.pt", "f05249c0faa14a1d0c0347fdc2cb8131503db74a"),
        ("deneesk/sam-model", "pretrained_models/sam_ffhq_aging.pt", "2302223da4cbb1f0db53e1519c8ea679acec3d6a"),
    ],
    "psp_ffhq_encode": [("trysem/pixel2style2pixel", "psp_ffhq_encode.pt", "1ed74b0e83cd17e3ce3b0070a56f581f54b9b0e3")],
    "stylegan2_ffhq": [("wmpscc/StyleGene", "stylegan2-ffhq-config-f.pt", "e301280ac9a63ba7ebb4be3311128bb6c9cb9ae2")],
    "ir_se50": [
        (
            "lithiumice/ArcFace_PyTorch",
            "InsightFace_Pytorch+model_ir_se50.pth",
            "086811ee76897fdfd94335ea4ff40ae074136022",
        ),
        ("adirik/stylemc-demo", "pretrained/model_ir_se50.pth", "74880fc98f769a37b6227fb75bd0362b0ddff595"),
    ],
}


def test_hub_mirrors_come_first_pinned_to_the_commit_they_were_seen_at():
    for entry in registry.REGISTRY:
        hubs = entry.sources_of("hub")
        assert [(s.location, s.filename, s.revision) for s in hubs] == HUB_MIRRORS.get(entry.name, [])
        assert list(entry.sources[: len(hubs)]) == list(hubs)  # the Hub before Drive
        for s in hubs:
            assert len(s.revision) == 40 and s.note
            assert (s.sha256 is None) == (s.size is None)  # both seen in an LFS pointer, or neither
    assert registry.get("dex_age").sources_of("hub") == ()  # none found that could be named with confidence


def test_source_labels_and_links(monkeypatch):
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    sam = registry.get("sam_ffhq_aging")
    assert sam.source == (
        "hub:aimi-models/sam-aging/sam_ffhq_aging.pt, "
        "hub:deneesk/sam-model/pretrained_models/sam_ffhq_aging.pt, "
        "drive:1XyumF6_fdAxFmxpFcmPf-q84LU_22EMC"
    )
    assert sam.urls[0] == (
        "https://huggingface.co/aimi-models/sam-aging/resolve/"
        "f05249c0faa14a1d0c0347fdc2cb8131503db74a/sam_ffhq_aging.pt"
    )
    space = registry.get("ir_se50").sources[1]
    assert space.label == "hub:spaces/adirik/stylemc-demo/pretrained/model_ir_se50.pth"
    assert space.url().startswith("https://huggingface.co/spaces/adirik/stylemc-demo/resolve/")
    assert "InsightFace_Pytorch%2Bmodel_ir_se50.pth" in registry.get("ir_se50").sources[0].url()
    monkeypatch.setenv("HF_ENDPOINT", "http://mirror.example/")  # a Hub mirror: the links follow it
    assert sam.urls[0].startswith("http://mirror.example/aimi-models/sam-aging/resolve/")


def test_parse_source():
    sam = registry.get("sam_ffhq_aging")
    assert registry.parse_source("https://x.example/f.pt", sam) == registry.url(
        "https://x.example/f.pt", note="given on the command line", user=True
    )
    s = registry.parse_source("hub:me/mirror", sam)
    assert (s.transport, s.location, s.filename, s.revision) == ("hub", "me/mirror", "sam_ffhq_aging.pt", None)
    s = registry.parse_source("hub:spaces/me/app/models/sam.pt", sam)
    assert (s.repo_type, s.location, s.filename) == ("space", "me/app", "models/sam.pt")
    for bad in ("hub:onlyowner", "ftp://x/y", "gdrive"):
        with pytest.raises(UsageError, match="--source"):
            registry.parse_source(bad, sam)
