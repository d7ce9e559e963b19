"""Reference: CurricularFace's IR-101, transcribed from HuangYG123/CurricularFace
``backbone/model_irse.py`` (commit 68c8727fb7cd2243ecbfd7e09c35efc87c6e2de4, MIT licence),
the ``mode='ir'`` path of ``Backbone`` that ``IR_101(input_size)`` builds. The weight
initialisation (``_initialize_weights``) is left out: tests load stand-in weights.

Kept apart from ``sam_age.models.curricularface`` on purpose: the test holds our forward
equal to this one (float64, stand-in weights), so a slip in either shows.
"""

from collections import namedtuple

from torch.nn import BatchNorm1d, BatchNorm2d, Conv2d, Dropout, Linear, MaxPool2d, Module, PReLU, Sequential


class Flatten(Module):
    def forward(self, input):
        return input.view(input.size(0), -1)


class bottleneck_IR(Module):
    def __init__(self, in_channel, depth, stride):
        super(bottleneck_IR, self).__init__()
        if in_channel == depth:
            self.shortcut_layer = MaxPool2d(1, stride)
        else:
            self.shortcut_layer = Sequential(Conv2d(in_channel, depth, (1, 1), stride, bias=False), BatchNorm2d(depth))
        self.res_layer = Sequential(
            BatchNorm2d(in_channel),
            Conv2d(in_channel, depth, (3, 3), (1, 1), 1, bias=False),
            PReLU(depth),
            Conv2d(depth, depth, (3, 3), stride, 1, bias=False),
            BatchNorm2d(depth),
        )

    def forward(self, x):
        shortcut = self.shortcut_layer(x)
        res = self.res_layer(x)
        return res + shortcut


class Bottleneck(namedtuple("Block", ["in_channel", "depth", "stride"])):
    """A named tuple describing a ResNet block."""


def get_block(in_channel, depth, num_units, stride=2):
    return [Bottleneck(in_channel, depth, stride)] + [Bottleneck(depth, depth, 1) for i in range(num_units - 1)]


def get_blocks(num_layers):
    assert num_layers == 100  # only IR_101 is transcribed
    return [
        get_block(in_channel=64, depth=64, num_units=3),
        get_block(in_channel=64, depth=128, num_units=13),
        get_block(in_channel=128, depth=256, num_units=30),
        get_block(in_channel=256, depth=512, num_units=3),
    ]


class Backbone(Module):
    def __init__(self, input_size, num_layers, mode="ir"):
        super(Backbone, self).__init__()
        assert input_size[0] in [112, 224], "input_size should be [112, 112] or [224, 224]"
        assert mode == "ir"
        blocks = get_blocks(num_layers)
        unit_module = bottleneck_IR
        self.input_layer = Sequential(Conv2d(3, 64, (3, 3), 1, 1, bias=False), BatchNorm2d(64), PReLU(64))
        if input_size[0] == 112:
            self.output_layer = Sequential(
                BatchNorm2d(512), Dropout(0.4), Flatten(), Linear(512 * 7 * 7, 512), BatchNorm1d(512, affine=False)
            )
        else:
            self.output_layer = Sequential(
                BatchNorm2d(512), Dropout(0.4), Flatten(), Linear(512 * 14 * 14, 512), BatchNorm1d(512, affine=False)
            )
        modules = []
        for block in blocks:
            for bottleneck in block:
                modules.append(unit_module(bottleneck.in_channel, bottleneck.depth, bottleneck.stride))
        self.body = Sequential(*modules)

    def forward(self, x):
        x = self.input_layer(x)
        x = self.body(x)
        conv_out = x.view(x.shape[0], -1)
        x = self.output_layer(x)
        return x, conv_out


def IR_101(input_size):
    """Constructs a ir-101 model."""
    return Backbone(input_size, 100, "ir")


# ---------------------------------------------------------------------- the stand-in manifest


def manifest() -> dict:
    """Keys and shapes of ``IR_101([112, 112]).state_dict()`` (the layout of
    ``CurricularFace_Backbone.pth``) with the value draws of ``../shared/reference``'s
    manifests: convs and the linear N(0, 1/fan_in), BN weights U(0.9, 1.1), biases and means
    N(0, 0.05), variances U(0.9, 1.1), PReLU U(0.2, 0.3), counters 0."""
    tensors = []
    for key, t in IR_101([112, 112]).state_dict().items():
        shape = list(t.shape)
        leaf = key.rsplit(".", 1)[-1]
        if leaf == "num_batches_tracked":
            entry = {"dtype": "int64", "init": {"fill": 0}}
        elif t.ndim >= 2:
            fan_in = 1
            for s in shape[1:]:
                fan_in *= s
            entry = {"dtype": "float32", "init": {"normal": [0.0, fan_in**-0.5]}}
        elif leaf in ("running_var",) or (
            leaf == "weight" and ".res_layer.2." not in key and not key.startswith("input_layer.2")
        ):
            entry = {"dtype": "float32", "init": {"uniform": [0.9, 1.1]}}
        elif leaf == "weight":  # PReLU
            entry = {"dtype": "float32", "init": {"uniform": [0.2, 0.3]}}
        else:  # bias, running_mean
            entry = {"dtype": "float32", "init": {"normal": [0.0, 0.05]}}
        tensors.append({"path": [key], "shape": shape, **entry})
    return {
        "describes": "CurricularFace IR-101 backbone (HuangYG123/CurricularFace IR_101([112, 112]), "
        "flat state_dict as in CurricularFace_Backbone.pth)",
        "tensors": tensors,
    }


if __name__ == "__main__":  # python -m tests.helpers.curricularface_ref > tests/data/curricular_face.manifest.json
    import json
    import sys

    json.dump(manifest(), sys.stdout, separators=(",", ":"))
    sys.stdout.write("\n")
