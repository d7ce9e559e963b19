"""Property test of the restricted unpickler (issue 22): any pickle, random or a mutated
valid one, is either refused with a :class:`CheckpointError` or gives a plain tree of
dicts/lists/tuples/strings/numbers/numpy arrays, and never allocates more than a bounded
multiple of its own size (measured with tracemalloc, which numpy reports to)."""

from __future__ import annotations

import collections
import pickle
import tracemalloc

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sam_age.checkpoints.formats import read_pickle_restricted
from sam_age.errors import CheckpointError

SETTINGS = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

dtypes = st.sampled_from(["<f4", ">f4", "<f8", "<i8", "|u1", "|b1", "<f2", "<i4"])
arrays = st.builds(
    lambda shape, dt, seed: np.random.default_rng(seed).integers(0, 3, size=shape).astype(dt),
    st.lists(st.integers(0, 4), max_size=3).map(tuple),
    dtypes,
    st.integers(0, 2**16),
)
leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False),
    st.text(max_size=8),
    arrays,
    st.builds(lambda a: ("param", a), arrays),
)
trees = st.recursive(
    leaves,
    lambda kids: st.one_of(
        st.lists(kids, max_size=4),
        st.lists(kids, max_size=3).map(tuple),
        st.dictionaries(st.text(max_size=6), kids, max_size=4),
        st.dictionaries(st.text(max_size=6), kids, max_size=4).map(collections.OrderedDict),
    ),
    max_leaves=12,
)


def _plain(obj) -> bool:
    if obj is None or isinstance(obj, (str, bytes, bool, int, float, np.generic)):
        return True
    if isinstance(obj, np.ndarray):
        return obj.dtype.kind in "biufc" and obj.dtype.fields is None
    if isinstance(obj, (list, tuple)):
        return all(_plain(v) for v in obj)
    if isinstance(obj, dict):
        return all(_plain(k) and _plain(v) for k, v in obj.items())
    return False


def _same(a, b) -> bool:
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.shape == b.shape and np.array_equal(a, b)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    return a == b or (a != a and b != b)


def _load_bounded(path, size):
    tracemalloc.start()
    try:
        try:
            out = read_pickle_restricted(path)
        except CheckpointError as e:
            assert "\n" not in str(e)
            out = e
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak <= 64 * size + (16 << 20), f"{peak} bytes for a {size}-byte pickle"
    return out


@SETTINGS
@given(tree=trees, protocol=st.sampled_from([2, 3, 4]))
def test_valid_pickles_round_trip(tmp_path_factory, tree, protocol):
    path = tmp_path_factory.mktemp("p") / "x.pdparams"
    data = pickle.dumps(tree, protocol=protocol)
    path.write_bytes(data)
    got = _load_bounded(path, len(data))
    assert not isinstance(got, CheckpointError), got
    assert _plain(got) and _same(tree, got)


@SETTINGS
@given(
    tree=trees,
    protocol=st.sampled_from([2, 4]),
    edits=st.lists(
        st.tuples(st.sampled_from(["set", "insert", "delete", "cut"]), st.integers(0, 1 << 30), st.integers(0, 255)),
        min_size=1,
        max_size=4,
    ),
)
def test_mutated_pickles_refused_or_plain(tmp_path_factory, tree, protocol, edits):
    data = bytearray(pickle.dumps(tree, protocol=protocol))
    for kind, where, byte in edits:
        if not data:
            break
        i = where % len(data)
        if kind == "set":
            data[i] = byte
        elif kind == "insert":
            data.insert(i, byte)
        elif kind == "delete":
            del data[i]
        else:
            del data[i:]
    path = tmp_path_factory.mktemp("p") / "x.pdparams"
    path.write_bytes(bytes(data) or b"\x80")
    got = _load_bounded(path, max(1, len(data)))
    assert isinstance(got, CheckpointError) or _plain(got)


@SETTINGS
@given(body=st.binary(min_size=1, max_size=300))
def test_random_bytes_refused_or_plain(tmp_path_factory, body):
    path = tmp_path_factory.mktemp("p") / "x.pdparams"
    data = b"\x80\x04" + body
    path.write_bytes(data)
    got = _load_bounded(path, len(data))
    assert isinstance(got, CheckpointError) or _plain(got)
