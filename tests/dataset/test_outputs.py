"""File names per layout and format, and the move into place (no model; fast)."""

from __future__ import annotations

import pytest
from PIL import Image

from sam_age.dataset.outputs import Layout, Request, Staging
from sam_age.fileio import OWN_MARKER
from sam_age.render import save_image


def _req(**kw):
    return Request(ages=(30, 60.5), checkpoint="x.pt (1 bytes)", **kw)


def test_names_per_layout():
    per = Layout(_req(gif=True, paste_back=True))
    assert per.plan("a").all() == [
        "a/age_030.png",
        "a/age_060.5.png",
        "a/strip.png",
        "a/animation.gif",
        "a/pasted_030.png",
        "a/pasted_060.5.png",
    ]
    flat = Layout(_req(layout="flat", format="jpg", all_faces=True))
    assert flat.plan("a", 2).all() == [
        "a_face1_age_030.jpg",
        "a_face1_age_060.5.jpg",
        "a_face2_age_030.jpg",
        "a_face2_age_060.5.jpg",
    ]
    assert Layout(_req(layout="flat", format="webp")).plan("a").all() == ["a_age_030.webp", "a_age_060.5.webp"]
    assert Layout(_req(all_faces=True)).plan("a", 2).faces[1].strip == "a/face_2/strip.png"
    assert Layout(_req(paste_back=True, align=False)).plan("a").pasted == []  # nothing to paste into


def test_request_equality_is_what_changes_the_files():
    a = _req()
    assert a.same(_req().to_json())
    assert a.to_json()["frames_per_age"] is None  # no animation: its settings do not matter
    assert Request(ages=(30, 60.5), checkpoint="x.pt (1 bytes)", frames_per_age=9).same(a.to_json())
    assert not a.same(_req(format="jpg").to_json())
    assert not a.same(Request(ages=(30,), checkpoint="x.pt (1 bytes)").to_json())
    assert not a.same(None)
    with pytest.raises(ValueError):
        _req(format="gif")


@pytest.mark.parametrize("fmt,pil", [("png", "PNG"), ("jpg", "JPEG"), ("webp", "WEBP")])
def test_formats_are_really_written(tmp_path, fmt, pil):
    path = save_image(Image.new("RGB", (16, 16), (200, 10, 10)), tmp_path / f"x.{fmt}")
    with Image.open(path) as im:
        assert im.format == pil


def _stage(staging, plan):
    for rel in plan.all():
        save_image(Image.new("RGB", (8, 8)), staging.path(rel))


@pytest.mark.parametrize("layout", ["per-input", "flat"])
def test_place_refuses_or_replaces_whole(tmp_path, layout):
    out = tmp_path / "out"
    lay = Layout(_req(layout=layout))
    staging = Staging(out, "me")
    plan = lay.plan("a")
    assert lay.occupied(out, "a") is None
    _stage(staging, plan)
    files = staging.place("a", plan, lay, replace=False)
    assert all(f.is_file() for f in files) and sorted(str(f.relative_to(out)) for f in files) == sorted(plan.all())
    assert lay.occupied(out, "a") is not None
    before = {f: f.read_bytes() for f in files}
    _stage(staging, plan)
    with pytest.raises(FileExistsError):
        staging.place("a", plan, lay, replace=False)
    assert {f: f.read_bytes() for f in files} == before  # nothing moved
    staging.place("a", plan, lay, replace=True, own=set(plan.all()))  # (the manifest's files for "a")
    assert all(f.is_file() for f in files)
    staging.remove()
    temporaries = [p for p in out.rglob("*") if p.name.startswith(".") and p.is_file() and p.name != OWN_MARKER]
    assert not temporaries
    assert (out / "a" / OWN_MARKER).is_file() == (layout == "per-input")  # a result folder says it is sam-age's


def test_weights_identity_says_which_weights_and_old_manifests_still_match(tmp_path):
    from sam_age.checkpoints.load import IDENTITY_SPAN, same_weights, weights_identity

    data = bytes(range(256)) * (3 * IDENTITY_SPAN // 256)
    a, b = tmp_path / "a" / "w.pt", tmp_path / "b" / "w.pt"
    for p in (a, b):
        p.parent.mkdir()
        p.write_bytes(data)
    ident = weights_identity(a)
    assert ident.startswith(f"w.pt ({len(data)} bytes, blake2b ") and ident == weights_identity(b)  # a copy
    b.write_bytes(data[:-1] + b"x")  # the same name and size, other weights (a torch file's CRCs sit at its end)
    other = weights_identity(b)
    assert other != ident and other.startswith(f"w.pt ({len(data)} bytes, ")
    # a manifest written before the digest ("NAME (SIZE bytes)") still names these weights
    old = f"w.pt ({len(data)} bytes)"
    assert same_weights(old, ident) and same_weights(ident, ident) and not same_weights(other, ident)
    new = Request(ages=(30,), checkpoint=ident)
    assert new.same(Request(ages=(30,), checkpoint=old).to_json())
    assert not new.same(Request(ages=(30,), checkpoint=other).to_json())
    assert not new.same(Request(ages=(40,), checkpoint=old).to_json())
