"""Several sources per registry entry, tried in order until one gives a verified file:
the real ``huggingface_hub`` client against a loopback Hub (``HF_ENDPOINT``), a Drive-like
server with its quota page, cut connections, wrong sizes, wrong bytes, offline."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os

import pytest

from sam_age.errors import CheckpointError, UsageError, WeightsUnavailableError
from sam_age.weights import registry, store

from ..helpers.server import CHECKPOINT_LAYOUT, HubServer, LoopbackServer, checkpoint_bytes, closed_port_url

REV = "1234567890abcdef1234567890abcdef12345678"
PAYLOAD = checkpoint_bytes()
SHA = hashlib.sha256(PAYLOAD).hexdigest()


def use_entry(monkeypatch, name, *sources, **changes):
    """Replace registry entry ``name`` for one test (sources, size, checksum); its layout is
    PAYLOAD's unless given (these tests are about the transfer, not the layout)."""
    changes.setdefault("layout", CHECKPOINT_LAYOUT)
    entry = dataclasses.replace(registry.get(name), sources=tuple(sources), **changes)
    monkeypatch.setitem(registry._BY_NAME, name, entry)
    return entry


def mirror(repo="owner/mirror", filename="w.pt", revision=REV, **kw):
    return registry.hub(repo, filename, revision, **kw)


@pytest.fixture
def hub_env(home, monkeypatch):
    """Start a loopback Hub with ``PAYLOAD`` as owner/mirror/w.pt and point HF_ENDPOINT at it."""

    def start(files=None, **faults):
        server = HubServer({"owner/mirror/w.pt": PAYLOAD} if files is None else files, **faults)
        server.__enter__()
        monkeypatch.setenv("HF_ENDPOINT", server.endpoint)
        started.append(server)
        return server

    started = []
    yield start
    for server in started:
        server.__exit__(None, None, None)


def hub_blobs(home):
    return [p for p in (home.parent / "hf").rglob("blobs/*") if p.is_file()]


# -- the Hub through the real client ---------------------------------------------------------


def test_hub_download_is_verified_and_hard_linked_from_the_hub_cache(home, hub_env, monkeypatch):
    hub = hub_env()
    use_entry(monkeypatch, "ir_se50", mirror())
    path = store.fetch("ir_se50", progress=False, load=False)
    assert path == home / "model_ir_se50.pth" and path.read_bytes() == PAYLOAD
    (blob,) = hub_blobs(home)
    assert blob.name == SHA and os.path.samefile(blob, path)  # one copy on disk, two names
    rec = json.loads((home / "manifest.json").read_text())["ir_se50"]
    assert rec["sha256"] == SHA and rec["source"] == "hub:owner/mirror/w.pt"
    heads = [p for m, p, _ in hub.requests if m == "HEAD"]
    assert heads == [f"/owner/mirror/resolve/{REV}/w.pt"]  # the pinned commit, through HF_ENDPOINT
    assert len(hub.gets()) == 1
    assert store.resolve_weights("ir_se50") == path  # cached: no request
    assert len(hub.requests) == 2 + sum(1 for m, p, _ in hub.requests if p.startswith("/api/"))
    assert not [p for p in home.iterdir() if p.name.startswith(".") or p.suffix == ".part"]


def test_hub_cut_transfer_is_resumed_with_range(home, hub_env, monkeypatch):
    big = checkpoint_bytes(6_000_000)  # 24 MB: the client writes 10 MB chunks, so some arrive first
    hub = hub_env({"owner/mirror/w.pt": big}, cut_first=1)
    use_entry(monkeypatch, "ir_se50", mirror(), layout=((("x",), (6_000_000,)),))
    path = store.fetch("ir_se50", progress=False, load=False)
    assert path.read_bytes() == big
    (first, second) = hub.gets()
    assert first[1] is None and second[1] is not None and second[1].startswith("bytes=")
    assert int(second[1][6:-1]) > 0  # asked for the rest only


def test_hub_wrong_size_is_skipped_and_the_next_source_used(home, hub_env, monkeypatch, capsys):
    hub_env(announce_size=len(PAYLOAD) + 1000)
    with LoopbackServer(PAYLOAD) as plain:
        use_entry(monkeypatch, "ir_se50", mirror(), registry.url(plain.url("/file.bin")))
        path = store.fetch("ir_se50", progress=False, load=False)
    assert path.read_bytes() == PAYLOAD
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("sam-age: ir_se50: skipped hub:owner/mirror/w.pt: received ")
    assert f"where the Hub announced {len(PAYLOAD) + 1000:,}" in line and line.endswith("trying the next source")
    assert json.loads((home / "manifest.json").read_text())["ir_se50"]["source"].endswith("/file.bin")


def test_hub_bytes_that_do_not_match_its_sha256_are_dropped(home, hub_env, monkeypatch, capsys):
    hub = hub_env(corrupt=True)
    with LoopbackServer(PAYLOAD) as plain:
        use_entry(monkeypatch, "ir_se50", mirror(), registry.url(plain.url("/file.bin")))
        path = store.fetch("ir_se50", progress=False, load=False)
    assert path.read_bytes() == PAYLOAD
    assert len(hub.gets()) == 2  # fetched again once, damaged again: skipped
    err = capsys.readouterr().err
    assert f"the Hub says {SHA}" in err and "removed from the Hugging Face cache" in err
    assert hub_blobs(home) == []  # a damaged blob is not served again from the Hub cache


def test_hub_mirror_without_the_file_then_drive_quota_page_then_a_url(home, hub_env, monkeypatch, capsys):
    hub_env({})
    with LoopbackServer(PAYLOAD) as drive:
        use_entry(
            monkeypatch,
            "ir_se50",
            mirror(),
            registry.drive(drive.url("/uc-quota?id=F")),
            registry.url(drive.url("/file.bin")),
        )
        path = store.fetch("ir_se50", progress=False, load=False)
    assert path.read_bytes() == PAYLOAD
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2  # one line per skipped source
    assert "skipped hub:owner/mirror/w.pt: " in lines[0] and "has no owner/mirror/w.pt" in lines[0]
    assert "skipped drive:" in lines[1] and "answered with a web page" in lines[1]


def test_every_source_failing_is_one_error_with_the_last_reason_and_a_count(home, hub_env, monkeypatch, capsys):
    hub_env({})
    with LoopbackServer(PAYLOAD) as drive:
        use_entry(
            monkeypatch,
            "ir_se50",
            mirror(),
            registry.drive(drive.url("/uc-quota?id=F")),
            registry.url(closed_port_url()),
        )
        with pytest.raises(WeightsUnavailableError) as info:
            store.fetch("ir_se50", progress=False, load=False)
    msg = str(info.value)
    assert info.value.exit_code == 2
    assert len(msg.splitlines()) <= 12  # the short block of issue 26
    assert "3 sources tried, the last: " in msg and "cannot reach 127.0.0.1" in msg
    assert "sam-age weights import FILE --name ir_se50" in msg
    # the earlier sources' reasons were printed as each was skipped, one line each
    said = capsys.readouterr().err
    assert "skipped hub:owner/mirror/w.pt: " in said and "web page" in said
    assert not (home / "model_ir_se50.pth").exists()


# -- what a source's file must be --------------------------------------------------------------


@pytest.mark.parametrize(
    "route, payload, changes, reason",
    [
        ("/page-as-file", PAYLOAD, {}, "a web page"),
        ("/file.bin", PAYLOAD, {"size": 10_000_000}, "far too small"),
        ("/file.bin", bytes(range(256)) * 20, {}, "not a zip/pickle checkpoint"),
        ("/file.bin", PAYLOAD[: len(PAYLOAD) * 2 // 3], {}, "cut short or damaged"),
        ("/file.bin", PAYLOAD, {"sha256": "0" * 64}, "expected 0000"),
        ("/file.bin", PAYLOAD, {"size": len(PAYLOAD) + 1, "size_exact": True}, f"the file has {len(PAYLOAD) + 1:,}"),
    ],
)
def test_a_file_that_is_not_the_file_is_rejected_with_its_reason(home, monkeypatch, route, payload, changes, reason):
    with LoopbackServer(payload) as server:
        use_entry(monkeypatch, "ir_se50", registry.url(server.url(route)), **changes)
        with pytest.raises(WeightsUnavailableError, match=reason) as info:
            store.fetch("ir_se50", progress=False, load=False)
    assert len(info.value.reason.splitlines()) <= 12  # the short block of issue 26
    assert sorted(p.name for p in home.iterdir()) == []  # no file took the name, no .part kept


def test_a_size_that_is_only_reported_warns_and_keeps_the_file(home, monkeypatch, capsys):
    with LoopbackServer(PAYLOAD) as server:
        use_entry(
            monkeypatch, "sam_ffhq_aging", registry.url(server.url("/file.bin")), size=len(PAYLOAD) + 1234
        )  # a hint, like the 2,270,547,237 bytes reported for SAM
        path = store.fetch("sam_ffhq_aging", progress=False, load=False)
    assert path.read_bytes() == PAYLOAD
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("sam-age: warning: sam_ffhq_aging from http://127.0.0.1:")
    assert f"{len(PAYLOAD):,} bytes where {len(PAYLOAD) + 1234:,} were reported" in line


def test_a_truncated_download_is_rejected_then_resumed(home, monkeypatch):
    """A connection that keeps dropping: the reason, the bytes kept; the next run resumes."""
    with LoopbackServer(PAYLOAD, cut_first=3) as server:
        use_entry(monkeypatch, "ir_se50", registry.url(server.url("/cut.bin")))
        with pytest.raises(
            WeightsUnavailableError,
            match=r"connection closed after \S+ of "
            rf"{len(PAYLOAD):,} bytes.*run again to resume",
        ):
            store.fetch("ir_se50", progress=False, load=False)  # three attempts, each cut
        assert not (home / "model_ir_se50.pth").exists() and (home / "model_ir_se50.pth.part").exists()
        path = store.fetch("ir_se50", progress=False, load=False)
        assert path.read_bytes() == PAYLOAD and server.requests[-1][1].startswith("bytes=")


# -- choosing a source -----------------------------------------------------------------------


def test_source_choice(home, hub_env, monkeypatch):
    hub = hub_env({"owner/mirror/w.pt": PAYLOAD, "other/repo/model_ir_se50.pth": PAYLOAD})
    with LoopbackServer(PAYLOAD) as drive:
        use_entry(monkeypatch, "ir_se50", mirror(), registry.drive(drive.url("/file.bin")))
        assert store.sources_for(registry.get("ir_se50"), "drive") == [registry.drive(drive.url("/file.bin"))]
        store.fetch("ir_se50", source="drive", progress=False, load=False)
        assert hub.gets() == [] and len(drive.requests) == 1
        store.fetch("ir_se50", source="hub", progress=False, force=True, load=False)
        assert len(hub.gets()) == 1 and len(drive.requests) == 1
        store.fetch("ir_se50", source="hub:other/repo", progress=False, force=True, load=False)
        assert ("HEAD", "/other/repo/resolve/main/model_ir_se50.pth", None) in hub.requests
        store.fetch("ir_se50", source=drive.url("/norange.bin"), progress=False, force=True, load=False)
        assert drive.requests[-1][0] == "/norange.bin"
    with pytest.raises(UsageError, match="dex_age has no hub source"):
        store.fetch("dex_age", source="hub", load=False)


# -- offline -------------------------------------------------------------------------------------


def test_offline_takes_the_file_from_the_hugging_face_cache(home, hub_env, monkeypatch, tmp_path):
    hub = hub_env()
    use_entry(monkeypatch, "ir_se50", mirror())
    store.fetch("ir_se50", progress=False, load=False)
    hub.__exit__(None, None, None)  # the Hub is gone; the Hugging Face cache stays
    for switch in ("HF_HUB_OFFLINE", "SAM_AGE_OFFLINE"):
        monkeypatch.setenv("SAM_AGE_HOME", str(tmp_path / switch))  # an empty sam-age cache
        monkeypatch.setenv(switch, "1")
        path = store.resolve_weights("ir_se50", progress=False)
        assert path == tmp_path / switch / "model_ir_se50.pth" and path.read_bytes() == PAYLOAD
        monkeypatch.delenv(switch)


def test_offline_with_nothing_anywhere_gives_the_last_reason_and_the_manual_steps(home, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # and nobody listens on HF_ENDPOINT or the Drive URL
    use_entry(monkeypatch, "ir_se50", mirror(), registry.drive(closed_port_url("/uc?id=F")))
    with pytest.raises(WeightsUnavailableError) as info:
        store.resolve_weights("ir_se50", progress=False)
    msg = str(info.value)
    assert info.value.exit_code == 2
    assert len(msg.splitlines()) <= 12  # the short block of issue 26
    assert "2 sources tried, the last: " in msg and "cannot reach 127.0.0.1" in msg
    assert "sam-age weights import FILE --name ir_se50" in msg
    said = capsys.readouterr().err
    assert "hub:owner/mirror/w.pt: offline (HF_HUB_OFFLINE" in said and "has no copy" in said


# -- a bad file in the cache -----------------------------------------------------------------


@pytest.fixture
def truncated_sam(home, small_sam_path):
    """The 100 kB head of a real SAM checkpoint where the cache expects sam_ffhq_aging."""
    home.mkdir(parents=True, exist_ok=True)
    with open(small_sam_path, "rb") as f:
        (home / "sam_ffhq_aging.pt").write_bytes(f.read(100_000))
    return home / "sam_ffhq_aging.pt"


def test_a_truncated_cached_file_is_reported_with_the_fix(truncated_sam, hub_env, monkeypatch):
    hub = hub_env()
    for call in (
        lambda: store.resolve_weights("sam_ffhq_aging"),
        lambda: store.fetch("sam_ffhq_aging", progress=False),
    ):
        with pytest.raises(CheckpointError) as info:
            call()
        msg = str(info.value)
        assert msg.startswith(f"{truncated_sam}: the cached sam_ffhq_aging is bad (far too small: 100.0 kB")
        assert msg.endswith(
            "run `sam-age weights download sam_ffhq_aging --force` to fetch it again, or delete the file"
        )
    assert store.status(registry.get("sam_ffhq_aging"))["verified"] == "bad"
    assert not store.verify("sam_ffhq_aging").ok
    assert hub.requests == []  # a bad cached file is reported, not silently replaced


def test_force_replaces_a_bad_cached_file_once_the_new_one_passed(truncated_sam, home, monkeypatch):
    with LoopbackServer(PAYLOAD) as server:
        use_entry(
            monkeypatch,
            "sam_ffhq_aging",
            registry.url(server.url("/quota")),
            registry.url(server.url("/file.bin")),
            size=None,
        )
        path = store.fetch("sam_ffhq_aging", progress=False, force=True, load=False)
    assert path == truncated_sam and path.read_bytes() == PAYLOAD


def test_a_checkpoint_of_another_kind_is_refused_before_any_download(home, hub_env, monkeypatch):
    hub = hub_env()
    use_entry(monkeypatch, "psp_ffhq_encode", mirror())
    with pytest.raises(
        CheckpointError,
        match="psp_ffhq_encode is a pSp encoder, not a SAM checkpoint; "
        "give sam_ffhq_aging or the path of a SAM checkpoint",
    ):
        store.resolve_weights("psp_ffhq_encode", kind="sam")
    with pytest.raises(CheckpointError, match="sam_ffhq_aging is a SAM checkpoint, not a DEX age classifier"):
        store.resolve_weights("sam_ffhq_aging", "dex_age")  # a flag's default names its kind
    assert hub.requests == [] and not home.exists()
    assert store.resolve_weights("psp_ffhq_encode", progress=False) == home / "psp_ffhq_encode.pt"


def test_a_folder_given_as_a_weights_file_says_so(home, tmp_path):
    with pytest.raises(CheckpointError, match="is a folder, expected a weights file"):
        store.resolve_weights(tmp_path)


def test_a_file_its_loader_cannot_open_is_skipped_before_it_takes_the_name(home, standin, monkeypatch, capsys):
    """``weights download`` (``load=True``): a checkpoint of another kind is one more bad
    answer: skipped with its reason, the next source tried, the good file recorded as loaded."""
    real = standin("model_ir_se50").read_bytes()
    with LoopbackServer(PAYLOAD) as wrong, LoopbackServer(real) as right:
        use_entry(
            monkeypatch,
            "ir_se50",
            registry.url(wrong.url("/file.bin")),
            registry.url(right.url("/file.bin")),
            layout=registry.get("ir_se50").layout,
        )
        path = store.fetch("ir_se50", progress=False)
    assert path.read_bytes() == real
    (line,) = capsys.readouterr().err.strip().splitlines()
    # the layout check refuses it first (the loader would too: its own test below)
    assert "not an IR-SE-50 face-recognition network: no input_layer.0.weight" in line
    assert line.endswith("trying the next source")
    assert json.loads((home / "manifest.json").read_text())["ir_se50"]["loaded"] is True
    assert store.fetch("ir_se50", progress=False) == path  # cached and vouched for: no check again


def test_the_loader_still_refuses_a_file_whose_layout_passes(home, monkeypatch, capsys):
    with LoopbackServer(PAYLOAD) as wrong:
        use_entry(monkeypatch, "ir_se50", registry.url(wrong.url("/file.bin")))  # PAYLOAD's layout
        with pytest.raises(WeightsUnavailableError, match="load_ir_se50 cannot load it"):
            store.fetch("ir_se50", progress=False)
    assert not (home / "model_ir_se50.pth").exists()
