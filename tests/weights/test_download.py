"""The downloader against a loopback server: no network is used."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from sam_age.errors import WeightsUnavailableError
from sam_age.weights.download import DownloadError, confirm_url, download

from ..helpers.server import COOKIE_TOKEN, LoopbackServer, closed_port_url

PAYLOAD = os.urandom(3 * (1 << 20) + 12345)  # several chunks, not a multiple of one
SHA = hashlib.sha256(PAYLOAD).hexdigest()


@pytest.fixture
def server():
    with LoopbackServer(PAYLOAD) as s:
        yield s


def test_full_download_checks_sha_and_renames(server, tmp_path):
    dest = tmp_path / "w" / "file.pt"
    path, digest = download(server.url("/file.bin"), dest, sha256=SHA, progress=False)
    assert path == dest and digest == SHA
    assert dest.read_bytes() == PAYLOAD
    assert list((tmp_path / "w").iterdir()) == [dest]  # no .part, no sidecar, no temp
    assert server.requests == [("/file.bin", None)]


def test_interrupted_transfer_keeps_part_and_resumes_with_range(server, tmp_path):
    dest = tmp_path / "file.pt"
    part = tmp_path / "file.pt.part"
    with pytest.raises(DownloadError, match="run again to resume"):
        download(server.url("/cut.bin"), dest, sha256=SHA, progress=False, retries=0)
    assert not dest.exists()
    kept = part.stat().st_size
    assert 0 < kept < len(PAYLOAD)
    assert part.read_bytes() == PAYLOAD[:kept]

    path, digest = download(server.url("/cut.bin"), dest, sha256=SHA, progress=False, retries=0)
    assert digest == SHA and path.read_bytes() == PAYLOAD and not part.exists()
    assert server.requests[-1] == ("/cut.bin", f"bytes={kept}-")


def test_one_call_retries_and_resumes(server, tmp_path):
    dest = tmp_path / "file.pt"
    _, digest = download(server.url("/cut.bin"), dest, sha256=SHA, progress=False)
    assert digest == SHA
    assert [r[1] is not None for r in server.requests] == [False, True]


def test_server_ignoring_range_restarts_cleanly(server, tmp_path):
    dest = tmp_path / "file.pt"
    _left_over(tmp_path, "file.pt", b"first bytes", server.url("/norange.bin"))
    _, digest = download(server.url("/norange.bin"), dest, sha256=SHA, progress=False)
    assert digest == SHA and dest.read_bytes() == PAYLOAD
    assert server.requests == [("/norange.bin", "bytes=11-")]  # asked, got 200, started over


def test_part_file_from_another_url_is_not_resumed(server, tmp_path):
    dest = tmp_path / "file.pt"
    _left_over(tmp_path, "file.pt", b"bytes of another file", "http://mirror.invalid/x")
    _, digest = download(server.url("/file.bin"), dest, sha256=SHA, progress=False)
    assert digest == SHA and server.requests == [("/file.bin", None)]
    assert list(tmp_path.iterdir()) == [dest]  # no .part, no sidecar


def test_changed_file_on_the_server_is_sent_whole(server, tmp_path):
    """If-Range: the part came from version "v1"; the server now has v2 and sends all of it."""
    dest = tmp_path / "file.pt"
    server.etag = '"v2"'
    _left_over(tmp_path, "file.pt", b"old version bytes", server.url("/file.bin"), '"v1"')
    _, digest = download(server.url("/file.bin"), dest, sha256=SHA, progress=False)
    assert digest == SHA
    _, headers = server.full_requests[-1]
    assert headers["Range"] == "bytes=17-" and headers["If-Range"] == '"v1"'


def test_resume_sends_if_range_with_the_etag(server, tmp_path):
    server.etag = '"v1"'
    dest = tmp_path / "file.pt"
    with pytest.raises(DownloadError):
        download(server.url("/cut.bin"), dest, sha256=SHA, progress=False, retries=0)
    download(server.url("/cut.bin"), dest, sha256=SHA, progress=False, retries=0)
    assert server.full_requests[-1][1]["If-Range"] == '"v1"'
    assert dest.read_bytes() == PAYLOAD


def _left_over(tmp_path, name, data, url, validator=None):
    """A ``.part`` file (and its sidecar) as an interrupted download leaves it."""
    (tmp_path / f"{name}.part").write_bytes(data)
    (tmp_path / f"{name}.part.json").write_text(json.dumps({"url": url, "validator": validator}))


def test_complete_part_file_is_finished_without_refetching(server, tmp_path):
    dest = tmp_path / "file.pt"
    _left_over(tmp_path, "file.pt", PAYLOAD, server.url("/file.bin"))
    _, digest = download(server.url("/file.bin"), dest, sha256=SHA, progress=False)
    assert digest == SHA and dest.read_bytes() == PAYLOAD
    assert server.requests == [("/file.bin", f"bytes={len(PAYLOAD)}-")]  # answered 416


def test_checksum_mismatch_leaves_nothing_in_place(server, tmp_path):
    dest = tmp_path / "file.pt"
    with pytest.raises(DownloadError, match="sha256"):
        download(server.url("/file.bin"), dest, sha256="0" * 64, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_sha256_prefix_is_enough(server, tmp_path):
    _, digest = download(server.url("/file.bin"), tmp_path / "a.pth", sha256_prefix=SHA[:8], progress=False)
    assert digest == SHA
    with pytest.raises(DownloadError, match=r"expected 7be5be79\.\.\."):
        download(server.url("/file.bin"), tmp_path / "b.pth", sha256_prefix="7be5be79", progress=False)


def test_drive_confirm_form_is_followed(server, tmp_path):
    dest = tmp_path / "sam.pt"
    _, digest = download(server.url("/uc?export=download&id=ABC123"), dest, sha256=SHA, progress=False)
    assert digest == SHA and dest.read_bytes() == PAYLOAD
    paths = [p for p, _ in server.requests]
    assert paths[0] == "/uc?export=download&id=ABC123"
    assert paths[1].startswith("/download?") and "confirm=t" in paths[1] and "uuid=" in paths[1]
    assert "id=ABC123" in paths[1]


def test_drive_confirm_after_interruption_resumes(server, tmp_path):
    dest = tmp_path / "sam.pt"
    url = server.url("/uc?export=download&id=ABC123")
    _left_over(tmp_path, "sam.pt", PAYLOAD[:1000], url)
    _, digest = download(url, dest, sha256=SHA, progress=False)
    assert digest == SHA
    assert server.requests[-1][1] == "bytes=1000-"  # the HTML page was not appended


def test_drive_cookie_token_is_followed(server, tmp_path):
    dest = tmp_path / "sam.pt"
    _, digest = download(server.url("/uc-cookie?export=download&id=XYZ"), dest, sha256=SHA, progress=False)
    assert digest == SHA
    assert f"confirm={COOKIE_TOKEN}" in server.requests[-1][0]


def test_web_page_without_confirm_is_an_error(server, tmp_path):
    with pytest.raises(DownloadError, match="web page instead of the file"):
        download(server.url("/quota"), tmp_path / "x.pt", progress=False)
    assert not (tmp_path / "x.pt").exists() and not (tmp_path / "x.pt.part").exists()


def test_404_fails_at_once(server, tmp_path):
    with pytest.raises(DownloadError, match="HTTP 404"):
        download(server.url("/missing.pt"), tmp_path / "x.pt", progress=False)
    assert len(server.requests) == 1  # no pointless retries
    assert not (tmp_path / "x.pt").exists()


def test_next_url_is_tried_after_a_failure(server, tmp_path):
    _, digest = download(
        [server.url("/missing.pt"), server.url("/file.bin")], tmp_path / "x.pt", sha256=SHA, progress=False
    )
    assert digest == SHA


def test_offline_closed_port(tmp_path):
    with pytest.raises(WeightsUnavailableError, match="cannot reach 127.0.0.1") as info:
        download(closed_port_url(), tmp_path / "x.pt", progress=False, timeout=5)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "x.pt").exists()


def test_confirm_url_parses_both_page_styles():
    form = (
        '<form id="download-form" action="https://drive.usercontent.google.com/download" method="get">'
        '<input type="hidden" name="id" value="F1"><input type="hidden" name="confirm" value="t">'
        '<input type="hidden" name="uuid" value="u-1"></form>'
    )
    url = confirm_url(form, "https://drive.google.com/uc?export=download&id=F1")
    assert url == "https://drive.usercontent.google.com/download?id=F1&confirm=t&uuid=u-1"
    link = '<a id="uc-download-link" href="/uc?export=download&amp;confirm=AbC1&amp;id=F1">Download</a>'
    assert (
        confirm_url(link, "https://drive.google.com/uc?export=download&id=F1")
        == "https://drive.google.com/uc?export=download&confirm=AbC1&id=F1"
    )
    assert confirm_url("<html><body>nothing here</body></html>", "https://x/y") is None
