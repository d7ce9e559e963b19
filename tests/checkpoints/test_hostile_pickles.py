"""Hostile ``.pdparams`` pickles (issue 22, item 5): each is refused with one line, quickly,
without the memory it asks for. Every load runs in a subprocess under an address-space limit,
so the old unpickler (which let ``_codecs.encode`` grow a 2 KB file to gigabytes and numpy's
``_reconstruct`` allocate any shape) fails these tests with a MemoryError instead of taking
the machine down."""

from __future__ import annotations

import json
import os
import pickle
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sam_age.checkpoints.formats import read_pickle_restricted
from sam_age.errors import UnsafeCheckpointError

from ..helpers.paths import REPO

PROBE = r"""
import json, resource, sys, time
resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))  # the old code dies of MemoryError, not the OOM killer
from sam_age.checkpoints.formats import read_any
from sam_age.errors import CheckpointError, UnsafeCheckpointError
t0 = time.perf_counter()
try:
    read_any(sys.argv[1]); err, kind = None, None
except CheckpointError as e:
    err, kind = str(e), type(e).__name__
# this process's own peak (VmHWM: its memory map starts at exec; getrusage's ru_maxrss would
# carry over the forking parent's peak, a test runner's gigabytes)
hwm = [int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")][0]
print(json.dumps({"elapsed": time.perf_counter() - t0, "error": err, "kind": kind,
                  "maxrss_mb": hwm / 1024}))
"""


def _probe(path: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"), PYTHONWARNINGS="ignore")
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, str(path)], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- hand-made pickles ------------------------------------------------------------------
PROTO2 = b"\x80\x02"
STOP = b"."


def _global(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _short_unicode(s: str) -> bytes:
    b = s.encode()
    return b"\x8c" + bytes([len(b)]) + b


def _short_bytes(b: bytes) -> bytes:
    return b"C" + bytes([len(b)]) + b


def codecs_bomb(times: int = 40) -> bytes:
    """encode(encode(...encode(b'A' * 200, 'hex')..., 'hex'), 'hex'): doubles each time."""
    out = PROTO2 + _global("_codecs", "encode") + b"q\x00"  # BINPUT 0
    out += b"h\x00" * times  # BINGET 0: the callable, once per level
    out += _short_bytes(b"A" * 200)
    out += (_short_unicode("hex") + b"\x86R") * times  # TUPLE2, REDUCE
    return out + STOP


def reconstruct_bomb(build: bool) -> bytes:
    """_reconstruct(ndarray, (2**31,), b'b') of float64: 16 GiB asked for by a tiny file."""
    out = PROTO2 + _global("numpy._core.multiarray", "_reconstruct")
    out += _global("numpy", "ndarray") + b"J" + struct.pack("<i", 2**31 - 1) + b"\x85"  # BININT, TUPLE1
    out += _short_bytes(b"b") + b"\x87R"  # TUPLE3, REDUCE
    if build:
        # BUILD with (1, (2**31,), dtype('f8'), False, b'') : shape that the data does not hold
        out += b"(" + b"K\x01" + b"J" + struct.pack("<i", 2**31 - 1) + b"\x85"
        out += _global("numpy", "dtype") + _short_unicode("f8") + b"\x89\x88\x87R"
        out += b"(K\x03" + _short_unicode("<") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
        out += b"\x89" + _short_bytes(b"") + b"tb"
    return out + STOP


def ndarray_call() -> bytes:
    """numpy.ndarray((2**31,), 'f8') called directly: an uninitialised 16 GiB array."""
    out = PROTO2 + _global("numpy", "ndarray") + b"J" + struct.pack("<i", 2**31 - 1) + b"\x85"
    out += _short_unicode("f8") + b"\x86R"
    return out + STOP


def forged_length() -> bytes:
    """BINBYTES8 that says 16 GiB and holds 4 bytes."""
    return b"\x80\x04\x8e" + struct.pack("<Q", 16 << 30) + b"AAAA" + STOP


def list_copies(n: int = 20000, copies: int = 4000) -> bytes:
    """builtins.list(x) of one long list, thousands of times: quadratic growth."""
    out = PROTO2 + _global("builtins", "list") + b"q\x00" + b"]q\x01(" + b"K\x00" * n + b"e"
    out += b"(" + (b"h\x00h\x01\x85R") * copies + b"l"
    return out + STOP


HOSTILE = {
    "codecs.pdparams": codecs_bomb(),
    "reconstruct.pdparams": reconstruct_bomb(build=False),
    "reconstruct_build.pdparams": reconstruct_bomb(build=True),
    "ndarray.pdparams": ndarray_call(),
    "forged_length.pdparams": forged_length(),
    "list_copies.pdparams": list_copies(),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_pickle_is_refused_fast_and_small(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(HOSTILE[name])
    r = _probe(path)
    assert r["error"] is not None, f"{name} was loaded"
    assert "\n" not in r["error"] and name in r["error"]
    assert "MemoryError" not in r["error"]  # refused for what it is, not for running out
    assert "refusing" in r["error"] or "truncated" in r["error"] or "forged" in r["error"], r["error"]
    assert r["elapsed"] < 2.0, r
    assert r["maxrss_mb"] < 1536, r


def test_codecs_encode_only_as_latin1_bytes(tmp_path):
    # protocol 2 of a numpy array uses _codecs.encode(str, 'latin1'): that still loads
    good = tmp_path / "p2.pdparams"
    arr = np.arange(300, dtype=np.float32).reshape(10, 30)
    good.write_bytes(pickle.dumps({"w": ("p", arr), "b": arr[0].astype(">f8")}, protocol=2))
    got = read_pickle_restricted(good)
    assert np.array_equal(got["w"][1], arr) and np.array_equal(got["b"], arr[0].astype(np.float64))
    bad = tmp_path / "rot13.pdparams"
    bad.write_bytes(
        PROTO2 + _global("_codecs", "encode") + _short_unicode("abc") + _short_unicode("rot13") + b"\x86R" + STOP
    )
    with pytest.raises(UnsafeCheckpointError, match="latin-1"):
        read_pickle_restricted(bad)


def test_array_shape_must_match_its_data(tmp_path):
    arr = np.arange(12, dtype=np.float32)
    data = pickle.dumps({"w": arr}, protocol=4)
    raw = arr.tobytes()
    bad = tmp_path / "short.pdparams"
    # the same pickle with a shape of 13: 52 bytes asked for, 48 given
    bad.write_bytes(data.replace(b"K\x0c\x85", b"K\x0d\x85", 1))
    assert raw in data
    with pytest.raises(UnsafeCheckpointError, match="needs 52 bytes but the file gives 48"):
        read_pickle_restricted(bad)


def test_object_dtype_and_cycles_refused(tmp_path):
    p = tmp_path / "obj.pdparams"
    p.write_bytes(pickle.dumps({"w": np.array([1, "a"], dtype=object)}, protocol=4))
    with pytest.raises(UnsafeCheckpointError):
        read_pickle_restricted(p)
    cyc = []
    cyc.append(cyc)
    p.write_bytes(pickle.dumps({"w": cyc}, protocol=4))
    with pytest.raises(UnsafeCheckpointError, match="cycle"):
        read_pickle_restricted(p)


def test_cli_refuses_hostile_checkpoint_in_one_line(tmp_path):
    path = tmp_path / "sam.pdparams"
    path.write_bytes(codecs_bomb())
    img = REPO / "src" / "sam_age" / "data" / "astronaut.jpg"
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"), PYTHONWARNINGS="ignore")
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import resource; resource.setrlimit(resource.RLIMIT_AS, "
            "(4 << 30, 4 << 30)); import sys; from sam_age.cli.main import main; "
            "sys.exit(main(sys.argv[1:]))",
            "age",
            str(img),
            "--checkpoint",
            str(path),
            "--output",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert len(lines) == 1 and "sam.pdparams" in lines[0] and "refusing" in lines[0], lines
