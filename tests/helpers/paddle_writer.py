"""Write a ``.pdparams`` the way ``paddle.save`` does, without Paddle: nested dicts of
``(name, ndarray)`` tuples, linear weights transposed, Paddle's BatchNorm/PReLU names."""

from __future__ import annotations

import pickle
from collections import OrderedDict

import numpy as np


def to_paddle_tree(state: dict, latent_avg) -> dict:
    tree = {"encoder": OrderedDict(), "decoder": OrderedDict(), "pretrained_encoder": OrderedDict()}
    counter = 0
    for key, value in state.items():
        if key.endswith("num_batches_tracked"):
            continue
        part, _, rest = key.partition(".")
        head, _, last = rest.rpartition(".")
        arr = value.detach().cpu().numpy()
        if last == "running_mean":
            last = "_mean"
        elif last == "running_var":
            last = "_variance"
        elif (
            last == "weight"
            and arr.ndim == 1
            and ".res_layer.2" in f".{head}"
            or (last == "weight" and head.endswith("input_layer.2"))
        ):
            last = "_weight"  # PReLU
        if arr.ndim == 2 and last == "weight":
            arr = np.ascontiguousarray(arr.T)
        counter += 1
        tree[part][f"{head}.{last}" if head else last] = (f"param_{counter}", arr)
    tree["latent_avg"] = latent_avg.detach().cpu().numpy()
    return tree


class _Numpy1Names:
    """A file whose writes say ``numpy.core.multiarray`` where numpy 2 says ``numpy._core``."""

    def __init__(self, f):
        self.f = f

    def write(self, data):
        return self.f.write(bytes(data).replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n"))


def write_pdparams(path, state: dict, latent_avg, numpy1_names: bool = False) -> None:
    dump(to_paddle_tree(state, latent_avg), path, numpy1_names)


def dump(tree, path, numpy1_names: bool = False) -> None:
    """Streamed to the file, never held whole in memory (a 256 px SAM is a 1.8 GB pickle)."""
    with open(path, "wb") as f:
        # Protocol 2 writes each global as one text line, and the pure-Python pickler writes
        # opcode by opcode: the module name is rewritten on its way to the file.
        pickler = pickle._Pickler(_Numpy1Names(f), protocol=2) if numpy1_names else pickle.Pickler(f, protocol=4)
        # ``fast``: no memo, which would hold every array's bytes until the end (the tree has no
        # shared or recursive objects to refer back to).
        pickler.fast = True
        pickler.dump(tree)
    if numpy1_names:
        with open(path, "rb") as f:
            assert b"numpy.core.multiarray" in f.read(1 << 16)
