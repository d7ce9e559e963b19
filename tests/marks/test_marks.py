"""The AI-edit marks, checked with readers nobody here wrote: exiftool (Debian's
libimage-exiftool-perl) reads the IPTC digital source type from every format sam-age
writes; c2pa-python's ``Reader`` validates a signed output (a test CA made here); a PIL
re-save without metadata is reported unmarked by ``sam-age inspect``."""

from __future__ import annotations

import io
import json
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from sam_age.cli.main import main
from sam_age.marks import (
    COMPOSITE,
    GENERATED,
    Mark,
    SigningKey,
    encode_image,
    ffmpeg_metadata,
    parse_xmp,
    read_marks,
    xmp_packet,
)
from sam_age.render import gif_bytes, image_bytes, mp4_available, save_gif, save_image, save_mp4

FORMATS = [
    ("PNG", ".png", {}),
    ("JPEG", ".jpg", {"quality": 95}),
    ("WEBP", ".webp", {"quality": 95}),
    ("GIF", ".gif", {}),
]


def exiftool(*args) -> list:
    exe = shutil.which("exiftool")
    if exe is None:
        pytest.skip("exiftool missing (apt-get install libimage-exiftool-perl)")
    out = subprocess.run([exe, "-j", "-G1", *map(str, args)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def _photo(seed=0, size=64) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))


def _pixels(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


@pytest.mark.parametrize("fmt,suffix,opts", FORMATS)
def test_exiftool_reads_the_digital_source_type(tmp_path, fmt, suffix, opts):
    for source in (GENERATED, COMPOSITE):
        path = tmp_path / f"out_{source.rsplit('/', 1)[-1]}{suffix}"
        path.write_bytes(encode_image(_photo(), fmt, Mark(source=source, age="70"), **opts))
        tags = exiftool(path)[0]
        assert tags["XMP-iptcExt:DigitalSourceType"] == source
        assert tags["XMP-iptcExt:AIPromptInformation"] == "age 70"
        assert str(tags["XMP-iptcExt:AISystemVersionUsed"]) == __import__("sam_age").__version__
        assert tags["XMP-xmp:CreatorTool"].startswith("sam-age ")


@pytest.mark.parametrize("fmt,suffix,opts", FORMATS)
def test_marking_never_changes_the_pixels(fmt, suffix, opts):
    img = _photo(1)
    plain = encode_image(img, fmt, None, **opts)
    marked = encode_image(img, fmt, Mark(age="30"), **opts)
    assert marked != plain and xmp_packet(Mark(age="30")) in marked
    assert np.array_equal(_pixels(plain), _pixels(marked))
    # mark=None is exactly what Pillow writes by itself
    buf = io.BytesIO()
    img.save(buf, format=fmt, **opts)
    assert plain == buf.getvalue()


def test_render_writers_mark_by_default_and_not_with_none(tmp_path):
    img = _photo(2)
    for suffix in (".png", ".jpg", ".webp"):
        assert read_marks(save_image(img, tmp_path / f"a{suffix}"))["digital_source_type"] == GENERATED
        rec = read_marks(save_image(img, tmp_path / f"b{suffix}", mark=None))
        assert not rec["marked"] and rec["xmp"] is None
        assert np.array_equal(
            _pixels((tmp_path / f"a{suffix}").read_bytes()), _pixels((tmp_path / f"b{suffix}").read_bytes())
        )
    frames = [_photo(i, 32) for i in range(3)]
    assert read_marks(save_gif(frames, tmp_path / "a.gif"))["digital_source_type"] == GENERATED
    assert not read_marks(save_gif(frames, tmp_path / "b.gif", mark=None))["marked"]
    with Image.open(tmp_path / "a.gif") as gif:  # still an animation of the same frames
        assert gif.n_frames == 3
    assert image_bytes(img, ".png", None) == encode_image(img, "PNG", None)
    assert gif_bytes(frames, 12.0, None) != gif_bytes(frames, 12.0)


def test_mp4_container_metadata_read_by_exiftool(tmp_path):
    if not mp4_available():
        pytest.skip("imageio-ffmpeg missing")
    frames = [_photo(i, 32) for i in range(4)]
    path = save_mp4(frames, tmp_path / "anim.mp4", mark=Mark(age="0,50,100"))
    tags = exiftool(path)[0]
    assert tags["XMP-iptcExt:DigitalSourceType"] == GENERATED
    assert GENERATED in tags["ItemList:Comment"] and "age 0,50,100" in tags["ItemList:Comment"]
    assert read_marks(path)["xmp"]["samage:AgeRequested"] == "0,50,100"
    plain = save_mp4(frames, tmp_path / "plain.mp4", mark=None)
    assert not read_marks(plain)["marked"]
    assert "XMP-iptcExt:DigitalSourceType" not in exiftool(plain)[0]


def test_video_concat_is_marked_as_a_composite(tmp_path):
    """``sam-age video``'s last step (segments joined, audio copied) writes the mark."""
    pytest.importorskip("imageio_ffmpeg")
    from fractions import Fraction

    from sam_age.video.io import SegmentWriter, concat_and_mux

    seg = SegmentWriter(tmp_path / "seg0.mp4", 32, 32, Fraction(10, 1))
    for i in range(5):
        seg.write(np.full((32, 32, 3), 40 * i, np.uint8))
    seg.close()
    out = tmp_path / "clip_age070.mp4"
    concat_and_mux([tmp_path / "seg0.mp4"], None, out, has_audio=False, mark=Mark(source=COMPOSITE, age="70"))
    tags = exiftool(out)[0]
    assert tags["XMP-iptcExt:DigitalSourceType"] == COMPOSITE
    assert "pasted into the video at age 70" in tags["ItemList:Comment"]
    assert read_marks(out)["digital_source_type"] == COMPOSITE
    assert ffmpeg_metadata(None) == []


def test_parse_xmp_refuses_doctype_and_reads_element_form():
    bomb = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><!DOCTYPE a [<!ENTITY a "aa">]></x:xmpmeta>'
    with pytest.raises(ValueError):
        parse_xmp(bomb)
    element = (
        b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        b'<rdf:Description xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/">'
        b"<Iptc4xmpExt:DigitalSourceType>" + GENERATED.encode() + b"</Iptc4xmpExt:DigitalSourceType>"
        b"</rdf:Description></rdf:RDF></x:xmpmeta>"
    )
    assert parse_xmp(element)["Iptc4xmpExt:DigitalSourceType"] == GENERATED


# -- inspect ---------------------------------------------------------------------------------


def test_inspect_reports_a_pil_resave_unmarked(tmp_path, capsys):
    marked = save_image(_photo(3), tmp_path / "age_070.png", mark=Mark(age="70"))
    with Image.open(marked) as im:
        im.save(tmp_path / "resaved.png")  # Pillow re-save: no pnginfo, the XMP is gone
        im.convert("RGB").save(tmp_path / "resaved.jpg")
    assert main(["inspect", str(marked), str(tmp_path / "resaved.png"), str(tmp_path / "resaved.jpg"), "--json"]) == 0
    recs = json.loads(capsys.readouterr().out)
    assert [r["marked"] for r in recs] == [True, False, False]
    assert recs[0]["xmp"]["samage:AgeRequested"] == "70" and recs[1]["xmp"] is None
    # text form; --strict: an unmarked file is exit 1; a missing file is exit 1 with one line
    assert main(["inspect", str(tmp_path / "resaved.png")]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == f"{tmp_path / 'resaved.png'}: unmarked"
    assert main(["inspect", "--strict", str(tmp_path / "resaved.png")]) == 1
    capsys.readouterr()
    (tmp_path / "notes.txt").write_text("hello")
    assert main(["inspect", str(marked), str(tmp_path / "missing.png"), str(tmp_path / "notes.txt")]) == 1
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 2 and "missing.png: no such file" in err[0] and "notes.txt: not an image" in err[1]
    assert str(tmp_path) not in err[1].split(": ", 2)[2]  # the path once


# -- C2PA ------------------------------------------------------------------------------------


def _c2pa():
    return pytest.importorskip("c2pa")


def _reader(path, root=None):
    c2pa = _c2pa()
    settings = {"verify": {"remote_manifest_fetch": False, "ocsp_fetch": False}}
    if root is not None:
        settings["trust"] = {"user_anchors": root.read_text()}
    ctx = c2pa.Context(c2pa.Settings.from_dict(settings))
    with open(path, "rb") as f, c2pa.Reader(marks_mime(path), f, context=ctx) as r:
        return json.loads(r.json()), r.get_validation_state()


def marks_mime(path):
    from sam_age.marks import SUFFIX_MIME

    return SUFFIX_MIME[path.suffix.lower()]


@pytest.mark.parametrize("fmt,suffix,opts", FORMATS)
def test_c2pa_reader_validates_a_signed_output(tmp_path, fmt, suffix, opts):
    _c2pa()
    from ..helpers.certs import make_ca

    ca = make_ca(tmp_path / "ca")
    photo = tmp_path / "photo.jpg"
    _photo(4, 96).save(photo, quality=90)
    key = SigningKey.load(ca.chain, ca.key)
    out = tmp_path / f"pasted_070{suffix}"
    out.write_bytes(
        encode_image(_photo(5), fmt, Mark(source=COMPOSITE, age="70", signer=key, ingredient=str(photo)), **opts)
    )
    store, state = _reader(out, ca.root)
    assert state == "Trusted", store.get("validation_status")
    active = store["manifests"][store["active_manifest"]]
    actions = [a for x in active["assertions"] if x["label"].startswith("c2pa.actions") for a in x["data"]["actions"]]
    assert [a["action"] for a in actions] == ["c2pa.opened", "c2pa.edited"]
    assert actions[1]["digitalSourceType"] == COMPOSITE
    assert [(i["title"], i["relationship"]) for i in active["ingredients"]] == [("photo.jpg", "parentOf")]
    assert "thumbnail" not in active["ingredients"][0]  # no copy of the input photo travels along
    # without the test root as an anchor: the signature holds, the signer is unknown
    store, state = _reader(out)
    assert state == "Valid"
    assert [s["code"] for s in store["validation_status"]] == ["signingCredential.untrusted"]
    # the XMP is still there for readers that know no C2PA
    assert read_marks(out)["digital_source_type"] == COMPOSITE
    if shutil.which("exiftool"):
        assert exiftool(out)[0]["XMP-iptcExt:DigitalSourceType"] == COMPOSITE
    assert read_marks(out, trust_anchors=str(ca.root))["c2pa"]["state"] == "Trusted"


@pytest.mark.parametrize("kind,key_format", [("ec", "sec1"), ("rsa", "pkcs1"), ("rsa", "pkcs8"), ("ed25519", "pkcs8")])
def test_c2pa_key_kinds(tmp_path, kind, key_format):
    _c2pa()
    from ..helpers.certs import make_ca

    ca = make_ca(tmp_path / "ca", kind, key_format)
    key = SigningKey.load(ca.chain, ca.key)
    assert key.alg == {"ec": "es256", "rsa": "ps256", "ed25519": "ed25519"}[kind]
    key.check()
    out = tmp_path / "age_030.jpg"
    out.write_bytes(encode_image(_photo(6), "JPEG", Mark(age="30", signer=key)))
    assert _reader(out, ca.root)[1] == "Trusted"


def test_c2pa_tampered_file_is_invalid(tmp_path, capsys):
    _c2pa()
    from ..helpers.certs import make_ca

    ca = make_ca(tmp_path / "ca")
    key = SigningKey.load(ca.chain, ca.key)
    out = tmp_path / "age_030.png"
    out.write_bytes(encode_image(_photo(7), "PNG", Mark(age="30", signer=key)))
    data = bytearray(out.read_bytes())
    i = data.index(b"IDAT") + 20
    data[i] ^= 0xFF  # one byte of the image data
    out.write_bytes(bytes(data))
    assert main(["inspect", "--json", "--trust", str(ca.root), str(out)]) == 0
    rec = json.loads(capsys.readouterr().out)[0]
    assert rec["c2pa"]["state"] == "Invalid" and any("mismatch" in f for f in rec["c2pa"]["failures"])
    assert main(["inspect", "--strict", str(out)]) == 1


def test_signed_mp4_validates(tmp_path):
    _c2pa()
    if not mp4_available():
        pytest.skip("imageio-ffmpeg missing")
    from ..helpers.certs import make_ca

    ca = make_ca(tmp_path / "ca")
    key = SigningKey.load(ca.chain, ca.key)
    path = save_mp4([_photo(i, 32) for i in range(4)], tmp_path / "anim.mp4", mark=Mark(age="0,100", signer=key))
    assert _reader(path, ca.root)[1] == "Trusted"
    assert read_marks(path)["digital_source_type"] == GENERATED


def test_refused_certificate_exit_2_before_model_work(tmp_path, capsys):
    _c2pa()
    from ..helpers.certs import bad_leaf, make_ca

    bad = bad_leaf(tmp_path / "bad")
    missing = tmp_path / "no-such-checkpoint.pt"  # would be exit 2 too, with another message
    code = main(
        [
            "age",
            "sample",
            "--checkpoint",
            str(missing),
            "--output",
            str(tmp_path / "out"),
            "--sign-cert",
            str(bad.chain),
            "--sign-key",
            str(bad.key),
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "c2pa refuses this certificate" in err[0] and "self-signed" in err[0]
    assert not (tmp_path / "out").exists()
    for argv in (["serve"], ["mix", "sample", "--checkpoint", str(missing)], ["video", "clip.mp4"]):
        assert main([*argv, "--sign-cert", str(bad.chain), "--sign-key", str(bad.key)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "c2pa refuses this certificate" in err[0], (argv, err)
    # a key that is not the certificate's; one flag without the other; --no-mark with signing
    other = make_ca(tmp_path / "other")
    good = make_ca(tmp_path / "good")
    for flags, words in (
        (["--sign-cert", str(good.chain), "--sign-key", str(other.key)], "does not match"),
        (["--sign-cert", str(good.chain)], "needs both"),
        (["--no-mark", "--sign-cert", str(good.chain), "--sign-key", str(good.key)], "contradict"),
        (["--sign-cert", str(tmp_path / "none.pem"), "--sign-key", str(good.key)], "none.pem"),
    ):
        assert main(["video", "clip.mp4", "--output", str(tmp_path / "v"), *flags]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and words in err[0], err


def test_marks_module_keeps_its_floor():
    """marks.py is floor 1: it imports no torch and nothing above it."""
    import ast
    from pathlib import Path

    import sam_age.marks as m

    tree = ast.parse(Path(m.__file__).read_text())
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {f"{'.' * n.level}{n.module or ''}" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not any(x.startswith(("torch", ".pipeline", ".engine", ".models", ".cli")) for x in names), names
