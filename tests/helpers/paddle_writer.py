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


def write_pdparams(path, state: dict, latent_avg, numpy1_names: bool = False) -> None:
    tree = to_paddle_tree(state, latent_avg)
    if numpy1_names:
        # Protocol 2 writes globals as text lines, so the module name can be rewritten to
        # what numpy 1.x pickles say.
        data = pickle.dumps(tree, protocol=2)
        data = data.replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
        assert b"numpy.core.multiarray" in data
    else:
        data = pickle.dumps(tree, protocol=4)
    with open(path, "wb") as f:
        f.write(data)
