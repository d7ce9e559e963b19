"""The cache: flag value -> file, downloads on a miss, imports, verification."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from sam_age.errors import CheckpointError, UsageError, WeightsUnavailableError
from sam_age.weights import registry, store

from ..helpers.server import LoopbackServer, checkpoint_bytes, closed_port_url, payload_is_the_file

# -- where the cache is --------------------------------------------------------------------


def test_cache_dir_follows_sam_age_home(home):
    assert store.cache_dir() == home


def test_platform_cache_dirs(tmp_path):
    h = Path("/home/u")
    assert store.platform_cache_dir("linux", {}, h) == h / ".cache" / "sam-age"
    assert store.platform_cache_dir("linux", {"XDG_CACHE_HOME": "/x/c"}, h) == Path("/x/c/sam-age")
    assert store.platform_cache_dir("darwin", {}, h) == h / "Library" / "Caches" / "sam-age"
    assert store.platform_cache_dir("win32", {"LOCALAPPDATA": "/w/Local"}, h) == Path("/w/Local/sam-age")


def test_without_sam_age_home_the_platform_cache_is_used(monkeypatch, tmp_path):
    monkeypatch.delenv("SAM_AGE_HOME", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    if os.name != "nt" and os.sys.platform != "darwin":
        assert store.cache_dir() == tmp_path / "sam-age"


# -- resolve_weights -----------------------------------------------------------------------


def test_existing_path_is_returned_as_is(home, tmp_path):
    f = tmp_path / "my.pt"
    f.write_bytes(b"x")
    assert store.resolve_weights(f) == f
    assert store.resolve_weights(str(f)) == f


def test_a_folder_named_like_an_entry_is_not_taken_for_it(home, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ir_se50").mkdir()
    with pytest.raises(WeightsUnavailableError):
        store.resolve_weights("ir_se50", download=False)


def test_registry_name_resolves_from_the_cache_without_network(home, small_sam_path, monkeypatch):
    """``--checkpoint sam_ffhq_aging`` with the file in the cache: no download is tried."""
    home.mkdir()
    (home / "sam_ffhq_aging.pt").symlink_to(small_sam_path)
    monkeypatch.setenv("SAM_AGE_URL_SAM_FFHQ_AGING", closed_port_url())
    assert store.resolve_weights("sam_ffhq_aging") == home / "sam_ffhq_aging.pt"
    assert store.resolve_weights(None, "sam_ffhq_aging") == home / "sam_ffhq_aging.pt"


def test_missing_registry_file_is_downloaded_and_recorded(home, monkeypatch):
    payload = checkpoint_bytes()
    payload_is_the_file(monkeypatch, "ir_se50")  # the transfer is tested here, not the layout
    with LoopbackServer(payload) as server:
        monkeypatch.setenv("SAM_AGE_URL_IR_SE50", server.url("/file.bin"))
        path = store.resolve_weights("ir_se50", progress=False)
        assert path == home / "model_ir_se50.pth" and path.read_bytes() == payload
        assert store.resolve_weights("model_ir_se50", progress=False) == path  # cached now
        assert len(server.requests) == 1
    rec = json.loads((home / "manifest.json").read_text())["ir_se50"]
    assert rec["sha256"] == hashlib.sha256(payload).hexdigest()
    assert rec["file"] == "model_ir_se50.pth" and rec["source"].endswith("/file.bin")
    assert store.status(registry.get("ir_se50"))["verified"] == "sha256"  # not load-checked yet


def test_explicit_url_beats_the_environment(home, monkeypatch):
    payload_is_the_file(monkeypatch, "dex_age")  # the transfer is tested here, not the layout
    with LoopbackServer(checkpoint_bytes()) as server:
        monkeypatch.setenv("SAM_AGE_URL_DEX_AGE", closed_port_url())
        path = store.resolve_weights("dex_age", url=server.url("/file.bin"), progress=False)
    assert path.read_bytes() == checkpoint_bytes()


def test_offline_main_job_gives_the_manual_steps(home, monkeypatch):
    """The README's main command offline with an empty cache: exit 2 with the manual steps."""
    monkeypatch.setenv("SAM_AGE_URL_SAM_FFHQ_AGING", closed_port_url())
    with pytest.raises(WeightsUnavailableError) as info:
        store.resolve_weights("sam_ffhq_aging", progress=False)
    msg = str(info.value)
    lines = msg.splitlines()
    assert info.value.exit_code == 2 and "\n" not in info.value.reason
    # issue 26: a short block, not one 1,300-character line: what is missing, the first
    # URL only, the import command, where the rest are listed, the offline switch
    assert 5 <= len(lines) <= 8 and max(map(len, lines)) <= 200, msg
    assert lines[0].startswith("sam_ffhq_aging (sam_ffhq_aging.pt") and "cannot reach 127.0.0.1" in lines[1]
    assert sum("://" in ln for ln in lines[2:]) == 1  # the steps name the first URL only
    assert "sam-age weights list" in msg and "SAM_AGE_OFFLINE=1" in lines[-1]
    assert "sam-age weights import FILE --name sam_ffhq_aging" in msg
    assert "SAM_AGE_HOME" in msg and str(home) in msg
    assert not (home / "sam_ffhq_aging.pt").exists()


def test_downloads_can_be_turned_off(home, monkeypatch):
    with LoopbackServer(checkpoint_bytes()) as server:
        monkeypatch.setenv("SAM_AGE_URL_IR_SE50", server.url("/file.bin"))
        with pytest.raises(WeightsUnavailableError, match="downloads are turned off"):
            store.resolve_weights("ir_se50", download=False)
        monkeypatch.setenv("SAM_AGE_OFFLINE", "1")
        with pytest.raises(WeightsUnavailableError, match="SAM_AGE_OFFLINE"):
            store.resolve_weights("ir_se50")
        assert server.requests == []


def test_unknown_missing_path_is_file_not_found(home, tmp_path):
    missing = tmp_path / "nope.pt"
    with pytest.raises(CheckpointError, match="file not found") as info:
        store.resolve_weights(missing)
    assert not isinstance(info.value, WeightsUnavailableError)
    assert info.value.path == str(missing)
    with pytest.raises(CheckpointError, match="nope_name: file not found"):
        store.resolve_weights("nope_name")


def test_resolve_weights_prefers_the_flag(home, tmp_path):
    f = tmp_path / "ir.pth"
    f.write_bytes(b"x")
    assert store.resolve_weights(f, "ir_se50") == f
    with pytest.raises(WeightsUnavailableError, match="ir_se50"):
        store.resolve_weights(None, "ir_se50", download=False)


def test_packaged_file_missing_says_pip_install(home, monkeypatch):
    monkeypatch.setattr(store, "package_file", lambda entry: None)
    with pytest.raises(WeightsUnavailableError, match="pip install --no-deps lpips"):
        store.resolve_weights("lpips_alex_lin")


def test_packaged_dlib_model_is_found_in_its_package(home):
    pytest.importorskip("dlib")
    entry = registry.get("dlib_68")
    if store.package_file(entry) is None:
        pytest.skip("face-recognition-models is not installed")
    path = store.resolve_weights("dlib_68")
    assert path.name == "shape_predictor_68_face_landmarks.dat" and "face_recognition_models" in str(path)


# -- import --------------------------------------------------------------------------------


@pytest.fixture
def lpips_file(tmp_path):
    """A user's copy of the real LPIPS alex lin file (6 kB, its sha256 is in the registry)."""
    shipped = store.package_file(registry.get("lpips_alex_lin"))
    assert shipped is not None and shipped.parent.name == "lpips"
    f = tmp_path / "user" / "alex.pth"
    f.parent.mkdir()
    shutil.copy(shipped, f)
    return f


def test_shipped_lpips_file_resolves_without_the_lpips_package(home):
    path = store.resolve_weights("lpips_alex_lin")
    assert path == store.package_file(registry.get("lpips_alex_lin"))
    report = store.verify("lpips_alex_lin")
    assert report.ok and "sha256 matches the published one" in report.checks
    assert not (home / "manifest.json").exists()  # package files are not the cache's business


def test_import_copy_keeps_the_users_file(home, lpips_file):
    dest = store.import_file(lpips_file, "lpips_alex_lin")
    assert dest == home / "alex.pth" and lpips_file.exists()
    assert dest.read_bytes() == lpips_file.read_bytes() and not dest.is_symlink()
    assert store.resolve_weights("lpips_alex_lin") == dest  # the cache beats the package
    st = store.status(registry.get("lpips_alex_lin"))
    assert st["cached"] and st["verified"] == "yes"
    assert (
        json.loads((home / "manifest.json").read_text())["lpips_alex_lin"]["sha256"]
        == hashlib.sha256(lpips_file.read_bytes()).hexdigest()
    )
    assert [p.name for p in home.iterdir() if p.name.startswith(".")] == []  # no temp left


def test_import_move_and_link(home, lpips_file):
    data = lpips_file.read_bytes()
    linked = store.import_file(lpips_file, "lpips_alex_lin", mode="link")
    assert linked.is_symlink() and linked.resolve() == lpips_file.resolve()
    moved = store.import_file(lpips_file, "lpips_alex_lin", mode="move")
    assert not lpips_file.exists() and not moved.is_symlink() and moved.read_bytes() == data


def test_import_refuses_a_file_of_another_kind(home, lpips_file):
    with pytest.raises(CheckpointError, match="not a SAM checkpoint"):
        store.import_file(lpips_file, "sam_ffhq_aging")
    assert not home.exists() or not any(home.iterdir())
    assert lpips_file.exists()


def test_import_refuses_a_checksum_that_contradicts_the_published_one(home, standin):
    with pytest.raises(CheckpointError, match="does not match the published 7be5be79"):
        store.import_file(standin("alexnet_features"), "alexnet")
    with pytest.raises(CheckpointError, match="does not match the published df73285e"):
        store.import_file(standin("lpips_alex_lin"), "lpips_alex_lin")  # loads, but not the real one
    assert not home.exists() or not any(home.iterdir())


def test_import_never_replaces_another_file_without_overwrite(home, standin):
    first, other = standin("model_ir_se50"), standin("model_ir_se50", salt="other")
    store.import_file(first, "ir_se50")
    with pytest.raises(UsageError, match="--overwrite"):
        store.import_file(other, "ir_se50")
    assert (
        hashlib.sha256((home / "model_ir_se50.pth").read_bytes()).hexdigest()
        == hashlib.sha256(first.read_bytes()).hexdigest()
    )
    store.import_file(first, "ir_se50")  # the same file again is fine
    dest = store.import_file(other, "ir_se50", overwrite=True, check=False)
    assert dest.stat().st_size == other.stat().st_size
    assert store.status(registry.get("ir_se50"))["verified"] == "sha256"  # not load-checked


def test_import_of_safetensors_keeps_its_suffix(home, lpips_file, tmp_path):
    from safetensors.torch import save_file

    state = torch.load(lpips_file, map_location="cpu", weights_only=True)
    st = tmp_path / "alex.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(st))
    dest = store.import_file(st, "dex_age", check=False)  # only the file name is under test
    assert dest == home / "dex_age_classifier.safetensors"
    assert store.resolve_weights("dex_age") == dest


def test_import_unknown_name_or_missing_file(home, lpips_file, tmp_path):
    with pytest.raises(UsageError, match="unknown weights name"):
        store.import_file(lpips_file, "nope")
    with pytest.raises(CheckpointError, match="file not found"):
        store.import_file(tmp_path / "missing.pt", "lpips_alex_lin")


# -- verify --------------------------------------------------------------------------------


def test_verify_ok_then_changed_file_is_bad(home, standin):
    store.import_file(standin("model_ir_se50"), "ir_se50")
    report = store.verify("ir_se50", load=False)
    assert report.ok and "sha256 matches the manifest" in report.checks
    cached = home / "model_ir_se50.pth"
    with open(cached, "r+b") as f:  # one byte changed in the middle of the data
        f.seek(cached.stat().st_size // 2)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0xFF]))
    report = store.verify("ir_se50")
    assert not report.ok and "changed since it was recorded" in report.problem
    assert store.status(registry.get("ir_se50"))["verified"] == "changed"


def test_verify_load_checks_and_records(home, lpips_file):
    store.import_file(lpips_file, "lpips_alex_lin", check=False)
    assert store.status(registry.get("lpips_alex_lin"))["verified"] == "sha256"
    report = store.verify("lpips_alex_lin")
    assert report.ok and "lpips_lin_state" in report.checks
    assert store.status(registry.get("lpips_alex_lin"))["verified"] == "yes"


def test_verify_a_file_dropped_into_the_cache_by_hand(home):
    home.mkdir()
    (home / "model_ir_se50.pth").write_bytes(b"PK\x03\x04 this is not a checkpoint")
    report = store.verify("ir_se50")
    assert not report.ok and "cut short or damaged" in report.problem
    assert not store.verify("dex_age").ok  # not cached at all
    assert "not in the cache" in store.verify("dex_age").problem
