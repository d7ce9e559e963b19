"""SAM's three networks as standalone files for other runtimes: ONNX and OpenVINO IR.

For people who deploy elsewhere (and for the benchmark's peers). The networks, float32,
batch size dynamic, the generator's noise fixed (the pipeline's default)::

    pretrained_encoder   rgb [N, 3, 256, 256] in [-1, 1]          -> w_plus [N, S, 512]
    age_encoder          x [N, 4, 256, 256] (rgb + age/100 plane),
                         w_plus [N, S, 512]                       -> codes [N, S, 512]
    generator            codes [N, S, 512]                        -> image [N, 3, 256, 256]

``w_plus`` is the pretrained encoder's output plus ``latent_avg`` (computed once per face,
as ``engine.age_faces`` does); ``codes = age_encoder(x) + w_plus``; the image is the
generator's output average-pooled to 256 px, in [-1, 1] (not clamped). A SAM trained
with ``start_from_latent_avg`` has no pretrained encoder: its ``age_encoder`` takes ``x``
only and adds ``latent_avg`` itself. ``manifest.json`` beside the files says all this.

The graphs are exported from the *reference* forms (BatchNorm layers, NVlabs'
shared-weight modulated convs -- the form whose batch size can stay symbolic): every
runtime folds and fuses by itself. ONNX comes from ``torch.onnx.export(dynamo=True)``
(needs ``onnx`` and ``onnxscript``); OpenVINO IR is converted from that ONNX with
``openvino.convert_model`` and saved uncompressed (``compress_to_fp16=False``), so both
formats hold the float32 weights. :func:`check_export` runs each file with ONNX Runtime
or OpenVINO (whichever is installed; OpenVINO in its f32 precision) against torch.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import torch
from torch import nn

from . import __version__
from .errors import SamAgeError, UsageError, exists_error
from .fileio import not_own_file, note_own, shown
from .models.sam import SAM

FORMATS = ("onnx", "openvino")
NETWORKS = ("pretrained_encoder", "age_encoder", "generator")
PARITY_RTOL = 1e-4


class ExportError(SamAgeError):
    """An export that failed or whose file does not compute what torch computes."""

    exit_code = 1


class PretrainedEncoderNet(nn.Module):
    def __init__(self, sam: SAM):
        super().__init__()
        self.encoder = sam.pretrained_encoder
        self.register_buffer("latent_avg", sam.latent_avg.detach().clone())

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        return self.encoder(rgb, impl="reference") + self.latent_avg


class AgeEncoderNet(nn.Module):
    def __init__(self, sam: SAM):
        super().__init__()
        self.encoder = sam.encoder
        self.takes_base = sam.start_from_encoded_w_plus
        self.adds_latent_avg = sam.start_from_latent_avg and not self.takes_base
        self.register_buffer("latent_avg", sam.latent_avg.detach().clone())

    def forward(self, x: torch.Tensor, w_plus: Optional[torch.Tensor] = None) -> torch.Tensor:
        codes = self.encoder(x, impl="reference")
        if w_plus is not None:
            return codes + w_plus
        return codes + self.latent_avg if self.adds_latent_avg else codes


class GeneratorNet(nn.Module):
    def __init__(self, sam: SAM):
        super().__init__()
        self.decoder = sam.decoder
        self.face_pool = sam.face_pool

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        image = self.decoder.synthesis(codes, self.decoder.fixed_noise(), impl="shared")
        return self.face_pool(image)


def networks(sam: SAM) -> Dict[str, nn.Module]:
    """The modules that are exported, by file name (in float32, eval mode)."""
    out: Dict[str, nn.Module] = {}
    if sam.pretrained_encoder is not None:
        out["pretrained_encoder"] = PretrainedEncoderNet(sam)
    out["age_encoder"] = AgeEncoderNet(sam)
    out["generator"] = GeneratorNet(sam)
    return {k: v.eval() for k, v in out.items()}


def example_inputs(sam: SAM, name: str, batch: int = 2, seed: int = 0) -> tuple:
    """Inputs of the right shapes and ranges (faces in [-1, 1], ages in [0, 1], codes
    around latent_avg)."""
    g = torch.Generator().manual_seed(seed)
    rgb = torch.rand(batch, 3, 256, 256, generator=g) * 2 - 1
    w_plus = sam.latent_avg.float()[None].repeat(batch, 1, 1) + 0.3 * torch.randn(batch, sam.n_styles, 512, generator=g)
    if name == "pretrained_encoder":
        return (rgb,)
    if name == "age_encoder":
        age = torch.rand(batch, 1, 1, 1, generator=g).expand(batch, 1, 256, 256)
        x = torch.cat([rgb, age], 1)
        return (x, w_plus) if sam.start_from_encoded_w_plus else (x,)
    return (w_plus,)


def input_names(sam: SAM, name: str) -> List[str]:
    return {
        "pretrained_encoder": ["rgb"],
        "generator": ["codes"],
        "age_encoder": ["x", "w_plus"] if sam.start_from_encoded_w_plus else ["x"],
    }[name]


OUTPUT_NAMES = {"pretrained_encoder": "w_plus", "age_encoder": "codes", "generator": "image"}


@dataclass
class ExportResult:
    output: Path
    format: str
    files: Dict[str, Path]
    parity: Dict[str, float] = field(default_factory=dict)  # max error / max |torch|, per network


def _need(module: str, extra: str, what: str):
    try:
        return __import__(module)
    except ImportError as e:
        raise UsageError(f"{what} needs the {module!r} package: pip install 'sam-age[{extra}]'") from e


def _export_onnx(
    module: nn.Module, args: tuple, names: Sequence[str], out_name: str, path: Path, opset: Optional[int]
) -> None:
    _need("onnx", "export", "ONNX export")
    _need("onnxscript", "export", "ONNX export")
    batch = torch.export.Dim("batch", min=1, max=1024)
    dynamic = tuple({0: batch} for _ in args)
    kwargs = {"opset_version": opset} if opset else {}
    with torch.no_grad():
        program = torch.onnx.export(
            module,
            args,
            dynamo=True,
            input_names=list(names),
            output_names=[out_name],
            dynamic_shapes=dynamic,
            external_data=True,
            verbose=False,
            **kwargs,
        )
    if program is None:
        raise ExportError(f"torch.onnx.export returned nothing for {path.name}")
    program.save(str(path), external_data=True)


def _to_openvino(onnx_path: Path, xml_path: Path) -> None:
    ov = _need("openvino", "bench", "OpenVINO export")
    model = ov.convert_model(str(onnx_path))
    ov.save_model(model, str(xml_path), compress_to_fp16=False)


def _files_of(fmt: str, name: str) -> List[str]:
    return [f"{name}.onnx", f"{name}.onnx.data"] if fmt == "onnx" else [f"{name}.xml", f"{name}.bin"]


def check_output(output: Union[str, Path], fmt: str, overwrite: bool = False, names: Sequence[str] = NETWORKS) -> Path:
    """The output folder, checked before any work: a folder (or creatable), without the
    files an export would write unless ``overwrite``. Raises :class:`UsageError` (exit 2)."""
    if fmt not in FORMATS:
        raise UsageError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")
    unknown = [n for n in names if n not in NETWORKS]
    if unknown:
        raise UsageError(f"unknown network {unknown[0]!r}; use some of {', '.join(NETWORKS)}")
    output = Path(output).expanduser()
    if output.exists() and not output.is_dir():
        raise UsageError(f"--output must be a folder, not a file: {output}")
    wanted = [f for n in names for f in _files_of(fmt, n)] + ["manifest.json"]
    clash = [f for f in wanted if os.path.lexists(output / f)]
    if clash and not overwrite:
        raise exists_error(output / clash[0], error=UsageError)
    theirs = not_own_file(output, clash) if clash else None
    if theirs is not None:  # --overwrite replaces only what sam-age wrote (issue 22)
        raise UsageError(
            f"{shown(theirs)} was not written by sam-age: left alone, even with --overwrite "
            "(move it away or choose another --output)"
        )
    return output


def export_sam(
    sam: SAM,
    output: Union[str, Path],
    fmt: str = "onnx",
    *,
    names: Sequence[str] = NETWORKS,
    opset: Optional[int] = None,
    overwrite: bool = False,
    check: bool = True,
    on_note=None,
) -> ExportResult:
    """Write the networks ``names`` of ``sam`` (converted to float32 in place) to
    ``output`` (a folder) as ``fmt`` files plus ``manifest.json``. Files are written in a
    temporary folder inside ``output`` and moved in when all of them are done; existing
    files are replaced only with ``overwrite``. With ``check`` each file is run against
    torch (:func:`check_export`) and an :class:`ExportError` raised past :data:`PARITY_RTOL`
    (nothing is written then)."""
    output = check_output(output, fmt, overwrite, names)
    sam = sam.float().eval()
    nets = {n: m for n, m in networks(sam).items() if n in names}
    output.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".export-", dir=output))
    try:
        for name, module in nets.items():
            if on_note:
                on_note(f"exporting {name} ...")
            args = example_inputs(sam, name)
            onnx_path = tmp / f"{name}.onnx"
            _export_onnx(module, args, input_names(sam, name), OUTPUT_NAMES[name], onnx_path, opset)
            if fmt == "openvino":
                ov_dir = tmp / "ov"
                ov_dir.mkdir(exist_ok=True)
                _to_openvino(onnx_path, ov_dir / f"{name}.xml")
        if fmt == "openvino":
            for f in list(tmp.iterdir()):
                if f.is_file():
                    f.unlink()
            for f in (tmp / "ov").iterdir():
                os.replace(f, tmp / f.name)
            (tmp / "ov").rmdir()
        files = {n: tmp / _files_of(fmt, n)[0] for n in nets}
        result = ExportResult(output, fmt, files)
        if check:
            result.parity = check_export(sam, files, fmt)
            bad = {n: e for n, e in result.parity.items() if not e <= PARITY_RTOL}
            if bad:
                n, e = next(iter(bad.items()))
                raise ExportError(
                    f"{n}: the exported network differs from torch by {e:.2e} "
                    f"(relative, limit {PARITY_RTOL:.0e}); nothing was written"
                )
        manifest = _manifest(sam, fmt, result.parity, list(nets))
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        written = sorted(f.name for f in tmp.iterdir())
        theirs = not_own_file(output, written)  # (checked again: the export took minutes)
        if theirs is not None:
            raise UsageError(
                f"{shown(theirs)} was not written by sam-age: left alone, even with --overwrite "
                "(move it away or choose another --output)"
            )
        for name in written:
            os.chmod(tmp / name, 0o644 & ~_umask())
            os.replace(tmp / name, output / name)
        note_own(output, written)
        result.files = {n: output / p.name for n, p in files.items()}
        return result
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _manifest(sam: SAM, fmt: str, parity: Dict[str, float], names: Sequence[str]) -> dict:
    nets = {}
    for name in names:
        nets[name] = {"file": _files_of(fmt, name)[0], "inputs": input_names(sam, name), "output": OUTPUT_NAMES[name]}
    return {
        "sam_age_version": __version__,
        "format": fmt,
        "dtype": "float32",
        "batch": "dynamic",
        "n_styles": sam.n_styles,
        "generator_size": sam.output_size,
        "image_size": 256,
        "networks": nets,
        "parity_max_relative_error": parity,
        "schedule": [
            "w_plus = pretrained_encoder(rgb)  # once per face",
            "x = concat(rgb, full(age / 100))  # per age",
            "codes = age_encoder(x, w_plus)",
            "image = generator(codes)  # [-1, 1], 256 px",
        ],
        "noise": "fixed (the generator's stored noise maps)",
    }


# -- running exported files -------------------------------------------------------------


class Runner:
    """One exported network in ONNX Runtime or OpenVINO: ``runner(*numpy arrays) -> array``."""

    def __init__(
        self, path: Union[str, Path], runtime: str, threads: Optional[int] = None, precision: Optional[str] = "f32"
    ):
        """``precision``: OpenVINO's inference precision ("f32"; None: the device's default,
        bf16 on CPUs with AMX/avx512_bf16)."""
        self.path, self.runtime = Path(path), runtime
        if runtime == "onnxruntime":
            ort = _need("onnxruntime", "bench", "ONNX Runtime")
            opts = ort.SessionOptions()
            if threads:
                opts.intra_op_num_threads = threads
                opts.inter_op_num_threads = 1
            self.session = ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])
            self.inputs = [i.name for i in self.session.get_inputs()]
        elif runtime == "openvino":
            ov = _need("openvino", "bench", "OpenVINO")
            core = ov.Core()
            config = {"INFERENCE_PRECISION_HINT": precision} if precision else {}
            if threads:
                config["INFERENCE_NUM_THREADS"] = threads
            self.compiled = core.compile_model(core.read_model(str(self.path)), "CPU", config)
            self.inputs = [i.get_any_name() for i in self.compiled.inputs]
        else:
            raise UsageError(f"unknown runtime {runtime!r}")

    def __call__(self, *arrays):
        feed = dict(zip(self.inputs, arrays))
        if self.runtime == "onnxruntime":
            return self.session.run(None, feed)[0]
        return next(iter(self.compiled(feed).values()))


def check_export(
    sam: SAM, files: Dict[str, Path], fmt: str, runtime: Optional[str] = None, batch: int = 2
) -> Dict[str, float]:
    """``max |runtime - torch| / max |torch|`` per network on example inputs. ONNX files
    run in ONNX Runtime when installed, else OpenVINO; IR files in OpenVINO (f32)."""
    if runtime is None:
        runtime = "openvino"
        if fmt == "onnx":
            try:
                import onnxruntime  # noqa: F401

                runtime = "onnxruntime"
            except ImportError:
                pass
    nets = networks(sam.float().eval())
    out = {}
    for name, path in files.items():
        args = example_inputs(sam, name, batch=batch, seed=1)
        with torch.no_grad():
            ref = nets[name](*args).numpy()
        got = Runner(path, runtime)(*[a.numpy() for a in args])
        out[name] = float(abs(got - ref).max() / max(abs(ref).max(), 1e-12))
    return out
