"""Property-based (Hypothesis): listing -> naming -> manifest -> resume, over random byte
names, nested folders, both layouts and output folders inside the inputs (issue 22).

Three runs over the same folders (the first with some inputs unreadable, then fixed; the
last with --overwrite). After each: every input has one outcome; every result in place
shows its own input's colour (the stub model gives each input's pixels back), so no result
was ever replaced by another input's; a recorded name never moves to another input; no
result of sam-age's is ever an input; the user's files are untouched; the manifest is
strict UTF-8 JSON whose keys give back the exact paths and whose lines re-encode the same.
The model is a stub (tests/helpers/stub_pipeline.py); the rest is the real CLI."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sam_age.cli.main import main
from sam_age.dataset import manifest

from ..helpers.output import age_args
from ..helpers.stub_pipeline import colour_of, use_stub, write_face

# any byte but "/" and NUL; short, so that a few collide after making names safe
name_bytes = st.binary(min_size=1, max_size=8).map(lambda b: b.replace(b"/", b"_").replace(b"\0", b"~"))
folder = st.sampled_from([b"", b"cam1", b"cam1/deep", b"caf\xe9", b"-x"])
inputs = st.lists(
    st.tuples(folder, name_bytes, st.booleans()), min_size=1, max_size=6, unique_by=lambda t: (t[0], t[1])
)


def _colour(k):
    return (30 + 37 * k % 200, 255 - 23 * k % 200, 90 + k)


def _run(weights, out, dirs, extra=()):
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(io.StringIO()):
        code = main(age_args(weights, out, *dirs, extra=["--no-align", "--json", *extra]))
    return code, json.loads(buf.getvalue())


def _key(rec):
    return manifest.record_key(rec) if hasattr(manifest, "record_key") else rec["input"]  # (main had none)


def _manifest(out):
    raw = (out / "manifest.jsonl").read_bytes()
    lines = raw.decode("utf-8").splitlines(keepends=True)  # strict: valid UTF-8
    recs = [json.loads(line) for line in lines]
    for line, rec in zip(lines, recs):
        assert manifest.encode_record(dict(rec, input=_key(rec))) == line  # reads back the same
    return {_key(r): r for r in recs}


EXAMPLES = int(os.environ.get("SAM_AGE_HYPOTHESIS_EXAMPLES", "30"))  # more for a deeper search, by hand


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(inputs, st.sampled_from(["per-input", "flat"]), st.sampled_from(["beside", b"", b"cam1"]))
def test_every_input_gets_its_own_result_and_keeps_it(monkeypatch, spec, layout, where):
    tmp = Path(tempfile.mkdtemp(prefix="sam-age-prop-"))
    try:
        weights = use_stub(monkeypatch, tmp)
        root = tmp / "photos"
        paths, colours, broken = [], {}, []
        for k, (sub, name, bad) in enumerate(spec):
            p = root / os.fsdecode(sub) / os.fsdecode(name + b".png")
            colours[str(p)] = _colour(k)
            if bad:
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_bytes(b"not an image")
                broken.append(p)
            else:
                write_face(p, _colour(k))
            paths.append(p)
        out = tmp / "out" if where == "beside" else root / os.fsdecode(where)
        dirs = sorted({p.parent for p in paths})
        user_files = {str(p): p.read_bytes() for p in paths}
        names = {}
        for extra in ([], [], ["--overwrite"]):
            code, summary = _run(weights, out, dirs, ["--layout", layout, *extra])
            seen = [r["input"] for r in summary["inputs"]]
            assert sorted(seen) == sorted(str(p) for p in paths)  # every input once, no output as input
            state = _manifest(out)
            for r in summary["inputs"]:
                key = os.path.abspath(r["input"])
                if not r["ok"]:
                    assert Path(key) in broken or "already exists" in r["error"] or "did not write" in r["error"]
                    continue
                rec = state[key]
                assert rec["status"] == "ok" and rec["name"] == r["name"]
                for f in rec["files"]:
                    if f.endswith("age_030.png"):
                        assert colour_of(out / f) == colours[key]
            for key, rec in state.items():  # a recorded name stays its input's, and is nobody else's
                assert names.setdefault(key, rec["name"]) == rec["name"]
            assert len(set(names.values())) == len(names)
            for key, rec in state.items():  # every result in place is still its own input's
                if rec["status"] == "ok":
                    for f in rec["files"]:
                        if f.endswith("age_030.png"):
                            assert colour_of(out / f) == colours[key]
            for p in broken:
                if p in broken and str(p) in user_files:
                    user_files.pop(str(p))
                    write_face(p, colours[str(p)])  # the user fixes it; the next run must redo it
            for key, data in user_files.items():
                assert Path(key).read_bytes() == data
        assert code == 0 or all(
            "already exists" in r.get("error", "") or "did not write" in r.get("error", "")
            for r in summary["inputs"]
            if not r["ok"]
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
