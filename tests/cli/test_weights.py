"""``sam-age weights ...`` end to end, in-process, against stand-ins and a loopback server."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import torch

from sam_age.cli.main import main

from ..helpers.server import (
    HubServer,
    LoopbackServer,
    checkpoint_bytes,
    closed_port_url,
    isolate_weights_env,
    loopback_only,
    payload_is_the_file,
)


@pytest.fixture
def home(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    isolate_weights_env(monkeypatch, folder)
    loopback_only(monkeypatch)
    return folder


@pytest.fixture
def lpips_file(tmp_path):
    """A user's copy of the real LPIPS alex lin file that sam-age ships (6 kB)."""
    from sam_age.weights import registry, store

    f = tmp_path / "user" / "alex.pth"
    f.parent.mkdir()
    shutil.copy(store.package_file(registry.get("lpips_alex_lin")), f)
    return f


def test_list_table_and_json(home, lpips_file, capsys, monkeypatch):
    assert main(["weights", "import", str(lpips_file), "--name", "lpips_alex_lin"]) == 0
    capsys.readouterr()
    monkeypatch.setenv("COLUMNS", "250")
    assert main(["weights", "list"]) == 0
    out = capsys.readouterr().out
    header, *rows = out.splitlines()
    assert header.split() == ["NAME", "SIZE", "CACHED", "VERIFIED", "SOURCES", "FILE", "LICENCE"]
    sam_row = next(r for r in rows if r.startswith("sam_ffhq_aging "))
    assert "2.3 GB" in sam_row and " no " in sam_row
    assert " hub x2, drive " in sam_row  # the kinds of every source, in the order tried
    lpips_row = next(r for r in rows if r.startswith("lpips_alex_lin "))
    assert " yes " in lpips_row and "BSD-2" in lpips_row
    assert f"cache: {home}" in out and out.rstrip().endswith("sam-age weights list --json")

    assert main(["weights", "list", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["cache"] == str(home)
    files = {f["name"]: f for f in data["files"]}
    assert set(files) >= {
        "sam_ffhq_aging",
        "psp_ffhq_encode",
        "stylegan2_ffhq",
        "ir_se50",
        "dex_age",
        "alexnet",
        "lpips_alex_lin",
        "dlib_68",
    }
    assert files["lpips_alex_lin"]["cached"] and files["lpips_alex_lin"]["verified"] == "yes"
    assert files["sam_ffhq_aging"]["cached"] is False and files["sam_ffhq_aging"]["sha256"] is None
    assert [x["label"] for x in files["sam_ffhq_aging"]["sources"]][-1] == "drive:1XyumF6_fdAxFmxpFcmPf-q84LU_22EMC"
    assert files["sam_ffhq_aging"]["sources"][0]["url"].endswith(
        "/resolve/f05249c0faa14a1d0c0347fdc2cb8131503db74a/sam_ffhq_aging.pt"
    )


def test_download_with_url_then_cached_is_checked(home, capsys, monkeypatch):
    """``--url`` (the older spelling of ``--source URL``) through Drive's confirm page; a
    second ``download`` checks the cached file as ``verify`` does instead of saying ok:
    this one is a checkpoint but not a DEX classifier."""
    payload = checkpoint_bytes()
    payload_is_the_file(monkeypatch, "dex_age")  # its layout passes: the loader is what refuses it here
    with LoopbackServer(payload) as server:
        code = main(["weights", "download", "dex_age", "--url", server.url("/uc?id=D"), "--no-progress"])
        assert code == 2  # a checkpoint, but not a DEX classifier: its loader is the last check
        assert "load_dex cannot load it (not a DEX age classifier" in capsys.readouterr().err
        assert not (home / "dex_age_classifier.pth").exists()
        code = main(["weights", "download", "dex_age", "--url", server.url("/uc?id=D"), "--no-progress", "--no-load"])
        assert code == 0
        assert (home / "dex_age_classifier.pth").read_bytes() == payload
        assert "ok   dex_age" in capsys.readouterr().out
        assert main(["weights", "download", "dex_age", "--no-progress"]) == 2
        assert len(server.requests) == 4  # twice the confirm page and the file, nothing more
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not a DEX age classifier" in err
    assert "run `sam-age weights download dex_age --force`" in err


def test_download_env_override(home, monkeypatch):
    payload_is_the_file(monkeypatch, "psp_ffhq_encode")
    with LoopbackServer(checkpoint_bytes()) as server:
        monkeypatch.setenv("SAM_AGE_URL_PSP_FFHQ_ENCODE", server.url("/file.bin"))
        assert main(["weights", "download", "psp_ffhq_encode", "--no-progress", "--no-load"]) == 0
    assert (home / "psp_ffhq_encode.pt").read_bytes() == checkpoint_bytes()


@pytest.mark.parametrize("columns", [80, 120])
def test_list_fits_the_terminal_and_knows_every_size(home, capsys, monkeypatch, columns):
    """Issue 26: ``weights list`` was ~250 columns wide and showed ``?`` for the sizes of
    psp_ffhq_encode and dex_age."""
    monkeypatch.setenv("COLUMNS", str(columns))
    assert main(["weights", "list"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert max(map(len, lines)) < columns, out
    rows = {ln.split()[0]: ln for ln in lines[1:] if ln and not ln.startswith(("cache:", "every "))}
    assert set(rows) >= {"sam_ffhq_aging", "psp_ffhq_encode", "dex_age", "dlib_68"}
    assert " ? " not in out and "?" not in "".join(ln.split()[1] for ln in rows.values())
    assert "~1.2 GB" in rows["psp_ffhq_encode"] and "~539 MB" in rows["dex_age"]  # estimated: marked ~
    assert ("FILE" in lines[0]) == (columns >= 120)
    monkeypatch.setenv("COLUMNS", "80")
    assert main(["weights", "list", "--json"]) == 0
    files = {f["name"]: f for f in json.loads(capsys.readouterr().out)["files"]}
    assert files["psp_ffhq_encode"]["size_from"] == "estimate" and files["sam_ffhq_aging"]["size_from"] == "reported"


def test_download_offline_exit_2_with_manual_steps(home, monkeypatch, capsys):
    monkeypatch.setenv("SAM_AGE_URL_SAM_FFHQ_AGING", closed_port_url())
    assert main(["weights", "download", "sam_ffhq_aging", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert 5 <= len(err.splitlines()) <= 8 and max(map(len, err.splitlines())) <= 200
    assert "sam-age weights import FILE --name sam_ffhq_aging" in err and "sam-age weights list" in err
    assert "/aimi-models/sam-aging/resolve/" in err  # the first source only (the Hub, at HF_ENDPOINT)
    assert "drive.google.com" not in err  # the rest: in `sam-age weights list`


def test_download_some_failed_exit_1(home, monkeypatch):
    payload_is_the_file(monkeypatch, "ir_se50", "dex_age")
    with LoopbackServer(checkpoint_bytes()) as server:
        monkeypatch.setenv("SAM_AGE_URL_IR_SE50", server.url("/file.bin"))
        monkeypatch.setenv("SAM_AGE_URL_DEX_AGE", server.url("/missing"))
        assert main(["weights", "download", "ir_se50", "dex_age", "--no-progress", "--no-load"]) == 1


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


def test_convert_streams_every_tensor_and_refuses_overwrite(home, small_sam_path, tmp_path, capsys):
    """The streamed converter writes what ``save_sam(load_sam(src))`` writes; the source
    here was written by ``save_sam``, so every tensor, opts and latent_avg must come out
    as they are in it. Then: an existing output is never replaced without --overwrite."""
    from safetensors import safe_open

    out_dir = tmp_path / "out"
    out_dir.mkdir()
    assert main(["weights", "convert", str(small_sam_path), "--output", str(out_dir)]) == 0
    out = out_dir / f"{small_sam_path.stem}.safetensors"
    src = torch.load(small_sam_path, map_location="cpu", weights_only=True, mmap=True)
    with safe_open(str(out), framework="pt") as f:
        assert set(f.keys()) == set(src["state_dict"]) | {"latent_avg"}
        for key, value in src["state_dict"].items():
            got = f.get_tensor(key)
            assert got.dtype == value.dtype and torch.equal(got, value), key
        assert torch.equal(f.get_tensor("latent_avg"), src["latent_avg"].float())
        meta = f.metadata()
    assert meta["kind"] == "sam" and meta["format"] == "sam-age" and json.loads(meta["opts"]) == src["opts"]
    assert json.loads(meta["opts"])["output_size"] == 256
    before = out.stat().st_mtime_ns
    capsys.readouterr()
    assert main(["weights", "convert", str(small_sam_path), "--output", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err and out.stat().st_mtime_ns == before
    assert [p.name for p in out_dir.iterdir()] == [out.name]  # no temporary left


def test_convert_refuses_other_kinds_and_wrong_suffix(home, lpips_file, tmp_path, capsys):
    assert main(["weights", "convert", str(lpips_file), "--output", str(tmp_path / "o.safetensors")]) == 2
    assert "not a SAM checkpoint" in capsys.readouterr().err
    assert (
        main(["weights", "convert", str(lpips_file), "--output", str(tmp_path / "o.bin"), "--format", "safetensors"])
        == 2
    )
    assert main(["weights", "convert", "sam_ffhq_aging", "--output", str(tmp_path)]) == 2  # not cached
    assert "sam-age weights import FILE" in capsys.readouterr().err
    assert not (tmp_path / "o.safetensors").exists()


def test_main_command_offline_stops_early_with_manual_steps(home, monkeypatch, tmp_path, capsys):
    """``sam-age age sample`` (the README's main command) with an empty cache and no network:
    exit 2 before any work, a short block with the manual steps, nothing written."""
    monkeypatch.setenv("SAM_AGE_URL_SAM_FFHQ_AGING", closed_port_url())
    out = tmp_path / "results"
    assert main(["age", "sample", "--output", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("sam-age age: error: sam_ffhq_aging") and len(err) <= 8
    text = "\n".join(err)
    assert "sam-age weights import FILE --name sam_ffhq_aging" in text and "SAM_AGE_HOME" in text
    assert "sam-age weights list" in text and "SAM_AGE_OFFLINE=1" in text
    assert not out.exists() or not any(out.iterdir())


# -- sources, bad cached files, kinds ----------------------------------------------------------


def test_download_source_flag(home, capsys, monkeypatch):
    payload_is_the_file(monkeypatch, "dex_age")
    with LoopbackServer(checkpoint_bytes()) as server:
        assert main(["weights", "download", "ir_se50", "dex_age", "--source", server.url("/file.bin")]) == 2
        assert "names one place: give exactly one NAME" in capsys.readouterr().err
        assert main(["weights", "download", "dex_age", "--source", "hub"]) == 2  # it has none
        assert "dex_age has no hub source" in capsys.readouterr().err
        assert main(["weights", "download", "dex_age", "--source", "ftp://x"]) == 2
        assert server.requests == []
        assert (
            main(["weights", "download", "dex_age", "--source", server.url("/file.bin"), "--no-progress", "--no-load"])
            == 0
        )
    assert (home / "dex_age_classifier.pth").read_bytes() == checkpoint_bytes()


def test_list_download_verify_report_a_truncated_cached_file(home, small_sam_path, capsys):
    """Issue 17: a 100 kB sam_ffhq_aging.pt in the cache is no longer ``ok`` / cached-and-fine."""
    home.mkdir()
    bad = home / "sam_ffhq_aging.pt"
    with open(small_sam_path, "rb") as f:
        bad.write_bytes(f.read(100_000))
    fix = "`sam-age weights download sam_ffhq_aging --force`"
    assert main(["weights", "download", "sam_ffhq_aging", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "far too small" in err and fix in err
    assert main(["weights", "list"]) == 0
    out = capsys.readouterr().out
    row = next(r for r in out.splitlines() if r.startswith("sam_ffhq_aging "))
    assert " yes " in row and " bad " in row
    flat = " ".join(out.split())  # the problem line is wrapped to the terminal
    assert f"bad sam_ffhq_aging {bad}: far too small" in flat and f"fix: {fix}, or delete {bad}" in flat
    assert main(["weights", "verify", "sam_ffhq_aging"]) == 1
    assert fix in capsys.readouterr().out
    assert main(["age", "sample", "--output", str(home.parent / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.endswith("or delete the file")


def test_a_registry_name_of_another_kind_is_refused_before_any_download(home, tmp_path, capsys):
    with HubServer({"trysem/pixel2style2pixel/psp_ffhq_encode.pt": checkpoint_bytes()}) as hub:
        os.environ["HF_ENDPOINT"] = hub.endpoint  # restored by isolate_weights_env's monkeypatch
        assert main(["age", "sample", "--checkpoint", "psp_ffhq_encode", "--output", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err.strip()
        assert main(["weights", "convert", "psp_ffhq_encode", "--output", str(tmp_path)]) == 2
        err2 = capsys.readouterr().err.strip()
        assert hub.requests == []
    assert (
        err.endswith(
            "psp_ffhq_encode is a pSp encoder, not a SAM checkpoint; give sam_ffhq_aging or the "
            "path of a SAM checkpoint"
        )
        and len(err.splitlines()) == 1
    )
    assert "not a SAM checkpoint" in err2
    assert not home.exists() or not any(home.iterdir())


@pytest.mark.slow  # 1.8 GB through the loopback Hub, then the age command: 30-70 s on 2 busy cores
def test_fresh_clone_age_sample_paste_back_downloads_from_a_loopback_hub_mirror(
    tmp_path, monkeypatch, small_sam_path, capsys
):
    """Issue 13's "done when": an empty cache, HF_ENDPOINT at a loopback Hub mirror that holds
    the 256 px stand-in SAM as aimi-models/sam-aging/sam_ffhq_aging.pt (the registry's
    first source), and the README's main command: it downloads through huggingface_hub,
    verifies (the Hub's sha256; the size hint only warns: the stand-in is smaller than the
    real file), links it into the cache and ages the sample with paste-back."""
    pytest.importorskip("dlib")
    from ..helpers.server import sha256_file

    home = tmp_path / "cache"
    with HubServer({"aimi-models/sam-aging/sam_ffhq_aging.pt": small_sam_path}) as hub:
        isolate_weights_env(monkeypatch, home, hub_endpoint=hub.endpoint)
        loopback_only(monkeypatch)
        import dataclasses

        from sam_age.weights import registry

        monkeypatch.setitem(
            registry._BY_NAME,
            "sam_ffhq_aging",
            dataclasses.replace(  # the 256 px stand-in's layout
                registry.get("sam_ffhq_aging"),
                layout=((("state_dict", "encoder.input_layer.0.weight"), (64, 4, 3, 3)),),
            ),
        )
        out = tmp_path / "results"
        code = main(["age", "sample", "--paste-back", "--ages", "30", "--output", str(out), "--device", "cpu"])
        captured = capsys.readouterr()
        assert code == 0, captured.err
        heads = [p for m, p, _ in hub.requests if m == "HEAD"]
        assert heads == ["/aimi-models/sam-aging/resolve/f05249c0faa14a1d0c0347fdc2cb8131503db74a/sam_ffhq_aging.pt"]
        assert len(hub.gets()) == 1
    cached = home / "sam_ffhq_aging.pt"
    rec = json.loads((home / "manifest.json").read_text())["sam_ffhq_aging"]
    assert rec["source"] == "hub:aimi-models/sam-aging/sam_ffhq_aging.pt"
    assert rec["sha256"] == sha256_file(small_sam_path) and rec["size"] == small_sam_path.stat().st_size
    (blob,) = [p for p in (tmp_path / "hf").rglob("blobs/*") if p.is_file()]
    assert os.path.samefile(blob, cached)  # linked, not a second 1.8 GB copy
    warning = [ln for ln in captured.err.splitlines() if ln.startswith("sam-age: warning: sam_ffhq_aging")]
    assert len(warning) == 1 and "where 2,270,547,237 were reported (a hint" in warning[0]
    for name in ("age_030.png", "pasted_030.png"):
        assert (out / "astronaut" / name).is_file(), name
