"""``sam-age weights ...`` end to end, in-process, against stand-ins and a loopback server."""
from __future__ import annotations

import json
import os
import shutil

import pytest
import torch

from sam_age.cli.main import main

from ..helpers.server import LoopbackServer, closed_port_url, isolate_weights_env


@pytest.fixture
def home(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    isolate_weights_env(monkeypatch, folder)
    return folder


@pytest.fixture
def lpips_file(tmp_path):
    """A user's copy of the real LPIPS alex lin file that sam-age ships (6 kB)."""
    from sam_age.weights import registry, store
    f = tmp_path / "user" / "alex.pth"
    f.parent.mkdir()
    shutil.copy(store.package_file(registry.get("lpips_alex_lin")), f)
    return f


def test_list_table_and_json(home, lpips_file, capsys):
    assert main(["weights", "import", str(lpips_file), "--name", "lpips_alex_lin"]) == 0
    capsys.readouterr()
    assert main(["weights", "list"]) == 0
    out = capsys.readouterr().out
    header, *rows = out.splitlines()
    assert header.split()[:7] == ["NAME", "FILE", "SIZE", "CACHED", "VERIFIED", "LICENCE", "SOURCE"]
    sam_row = next(r for r in rows if r.startswith("sam_ffhq_aging "))
    assert "2.2 GB" in sam_row and " no " in sam_row and "drive.google.com" in sam_row
    lpips_row = next(r for r in rows if r.startswith("lpips_alex_lin "))
    assert " yes " in lpips_row and "BSD-2" in lpips_row
    assert out.rstrip().endswith(f"cache: {home}")

    assert main(["weights", "list", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["cache"] == str(home)
    files = {f["name"]: f for f in data["files"]}
    assert set(files) >= {"sam_ffhq_aging", "psp_ffhq_encode", "stylegan2_ffhq", "ir_se50", "dex_age",
                          "alexnet", "lpips_alex_lin", "dlib_68"}
    assert files["lpips_alex_lin"]["cached"] and files["lpips_alex_lin"]["verified"] == "yes"
    assert files["sam_ffhq_aging"]["cached"] is False and files["sam_ffhq_aging"]["sha256"] is None


def test_download_with_url_then_cached(home, capsys):
    payload = os.urandom(100_000)
    with LoopbackServer(payload) as server:
        code = main(["weights", "download", "dex_age", "--url", server.url("/uc?id=D"), "--no-progress"])
        assert code == 0
        assert (home / "dex_age_classifier.pth").read_bytes() == payload
        assert main(["weights", "download", "dex_age", "--no-progress"]) == 0  # already there
        assert len(server.requests) == 2  # the confirm page and the file, nothing more
    assert "ok   dex_age" in capsys.readouterr().out


def test_download_env_override(home, monkeypatch):
    with LoopbackServer(b"weights") as server:
        monkeypatch.setenv("SAM_AGE_URL_PSP_FFHQ_ENCODE", server.url("/file.bin"))
        assert main(["weights", "download", "psp_ffhq_encode", "--no-progress"]) == 0
    assert (home / "psp_ffhq_encode.pt").read_bytes() == b"weights"


def test_download_offline_exit_2_with_manual_steps(home, monkeypatch, capsys):
    monkeypatch.setenv("SAM_AGE_URL_SAM_FFHQ_AGING", closed_port_url())
    assert main(["weights", "download", "sam_ffhq_aging", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "sam-age weights import FILE --name sam_ffhq_aging" in err and "drive.google.com" in err


def test_download_some_failed_exit_1(home, monkeypatch):
    with LoopbackServer(b"x") as server:
        monkeypatch.setenv("SAM_AGE_URL_IR_SE50", server.url("/file.bin"))
        monkeypatch.setenv("SAM_AGE_URL_DEX_AGE", server.url("/missing"))
        assert main(["weights", "download", "ir_se50", "dex_age", "--no-progress"]) == 1


def test_download_usage_errors(home, capsys):
    assert main(["weights", "download", "nope"]) == 2
    assert "unknown weights name 'nope'" in capsys.readouterr().err
    assert main(["weights", "download", "ir_se50", "dex_age", "--url", "http://127.0.0.1:1/x"]) == 2
    assert main(["weights"]) == 2


def test_import_link_then_the_name_resolves_to_it(home, standin, capsys):
    """``weights import --link``; afterwards a weights flag given ``ir_se50`` finds it."""
    from sam_age.weights import resolve_weights
    user_file = standin("model_ir_se50")
    assert main(["weights", "import", str(user_file), "--name", "ir_se50", "--link"]) == 0
    cached = home / "model_ir_se50.pth"
    assert cached.is_symlink() and user_file.exists()
    assert resolve_weights(None, "ir_se50", download=False) == cached
    capsys.readouterr()
    assert main(["weights", "verify", "ir_se50", "--no-load", "--json"]) == 0
    (report,) = json.loads(capsys.readouterr().out)
    assert report["ok"] and "sha256 matches the manifest" in report["checks"]


def test_import_move_and_errors(home, lpips_file, tmp_path, capsys):
    assert main(["weights", "import", str(tmp_path / "missing.pt"), "--name", "lpips_alex_lin"]) == 2
    assert "file not found" in capsys.readouterr().err
    assert main(["weights", "import", str(lpips_file), "--name", "ir_se50"]) == 2
    assert "not an IR-SE-50 backbone" in capsys.readouterr().err
    assert lpips_file.exists()
    assert main(["weights", "import", str(lpips_file), "--name", "lpips_alex_lin", "--move"]) == 0
    assert not lpips_file.exists() and (home / "alex.pth").is_file()
    with pytest.raises(SystemExit) as info:  # argparse: the modes exclude each other
        main(["weights", "import", "x", "--name", "y", "--copy", "--link"])
    assert info.value.code == 2


def test_verify_reports_each_file_and_exits_1_on_a_bad_one(home, lpips_file, capsys):
    assert main(["weights", "import", str(lpips_file), "--name", "lpips_alex_lin"]) == 0
    (home / "model_ir_se50.pth").write_bytes(b"\x80\x02 truncated pickle")
    capsys.readouterr()
    assert main(["weights", "verify", "lpips_alex_lin"]) == 0
    assert capsys.readouterr().out.startswith("ok   lpips_alex_lin")
    assert main(["weights", "verify"]) == 1  # every cached file
    out = capsys.readouterr().out
    assert "ok   lpips_alex_lin" in out and "bad  ir_se50" in out
    assert main(["weights", "verify", "dex_age"]) == 1
    assert "not in the cache" in capsys.readouterr().out


def test_convert_to_safetensors_and_refuse_overwrite(home, small_sam_path, tmp_path, capsys):
    from safetensors import safe_open
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    assert main(["weights", "convert", str(small_sam_path), "--output", str(out_dir)]) == 0
    out = out_dir / f"{small_sam_path.stem}.safetensors"
    original = torch.load(small_sam_path, map_location="cpu", weights_only=True, mmap=True)
    with safe_open(str(out), framework="pt") as f:
        assert json.loads(f.metadata()["opts"])["output_size"] == 256
        torch.testing.assert_close(f.get_tensor("latent_avg"), original["latent_avg"].float())
        key = "encoder.input_layer.0.weight"
        torch.testing.assert_close(f.get_tensor(key), original["state_dict"][key].float())
    before = out.stat().st_mtime_ns
    capsys.readouterr()
    assert main(["weights", "convert", str(small_sam_path), "--output", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err and out.stat().st_mtime_ns == before


def test_convert_refuses_other_kinds_and_wrong_suffix(home, lpips_file, tmp_path, capsys):
    assert main(["weights", "convert", str(lpips_file), "--output", str(tmp_path / "o.safetensors")]) == 2
    assert "not a SAM checkpoint" in capsys.readouterr().err
    assert main(["weights", "convert", str(lpips_file), "--output", str(tmp_path / "o.bin"),
                 "--format", "safetensors"]) == 2
    assert main(["weights", "convert", "sam_ffhq_aging", "--output", str(tmp_path)]) == 2  # not cached
    assert "sam-age weights import FILE" in capsys.readouterr().err
    assert not (tmp_path / "o.safetensors").exists()


def test_main_command_offline_stops_early_with_manual_steps(home, monkeypatch, tmp_path, capsys):
    """``sam-age age sample`` (the README's main command) with an empty cache and no network:
    exit 2 before any work, one line with the manual steps, nothing written."""
    import importlib.util
    if importlib.util.find_spec("sam_age.cli.age") is None:
        pytest.skip("the age command is not in this tree")
    monkeypatch.setenv("SAM_AGE_URL_SAM_FFHQ_AGING", closed_port_url())
    out = tmp_path / "results"
    assert main(["age", "sample", "--output", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "sam-age weights import FILE --name sam_ffhq_aging" in err[0] and "SAM_AGE_HOME" in err[0]
    assert not out.exists() or not any(out.iterdir())
