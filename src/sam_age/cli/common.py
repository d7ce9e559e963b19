"""What several commands share: flags, input listing, the per-input loop, the model cache.

Floor 6 (shells). Imports of torch and the model stay inside functions, so that
``sam-age --help`` stays fast (the one exception to "imports at the top").

Flag spelling, one per flag: our own flags are written with hyphens (``--batch-size``,
``--paste-back``); flags that exist in the original SAM code keep its underscore name
(weights flags, training flags), and where one of our flags means an original one, the
original spelling is accepted as an alias (``--batch_size``, ``--checkpoint_path``,
``--latent_mask``, ``--mix_alpha``, ``--n_outputs_to_generate``).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Tuple

from ..batch.listing import name_items
from ..defaults import DEFAULT_AGES, DEFAULT_BATCH_SIZE, DEFAULT_CHECKPOINT
from ..errors import EXIT_OK, EXIT_SOME_FAILED, CheckpointError, InputError, UsageError

SAMPLE = "sample"


# -- flags ---------------------------------------------------------------------------------

def add_device_arguments(p: argparse.ArgumentParser) -> None:
    """``--device`` and ``--dtype``, spelled the same in every command that runs the model."""
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, mps or auto (default: the best available)")
    p.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16", "float16"),
                   help="compute precision. auto (default): the device's fast path -- float16 on CUDA, bfloat16 "
                        "on a CPU with avx512_bf16/AMX, float32 on other CPUs. float32: the exact path, on every "
                        "device. bfloat16: fast on CUDA and avx512_bf16/AMX CPUs, emulated (many times slower "
                        "than float32) on other CPUs. float16: fast on CUDA, emulated on CPUs without AMX-FP16 "
                        "(a one-line warning says so)")


def add_checkpoint_argument(p: argparse.ArgumentParser) -> None:
    """``--checkpoint`` (alias ``--checkpoint_path``, the original's name): optional everywhere."""
    p.add_argument("--checkpoint", "--checkpoint_path", dest="checkpoint", default=DEFAULT_CHECKPOINT,
                   metavar="PATH_OR_NAME",
                   help="SAM weights: a file (.pt/.pdparams/.safetensors) or a registry name, fetched into "
                        "the cache when missing (default: %(default)s)")


def add_batch_size_argument(p: argparse.ArgumentParser) -> None:
    """``--batch-size`` (alias ``--batch_size``, as ``train`` spells it)."""
    p.add_argument("--batch-size", "--batch_size", dest="batch_size", type=int, default=DEFAULT_BATCH_SIZE,
                   metavar="N", help="images per forward pass (default: %(default)s)")


def add_ages_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ages", default=DEFAULT_AGES, metavar="AGES",
                   help="target ages: a list '0,10,20' and/or ranges 'START:STOP:STEP' (STOP included); "
                        "'+20', '-10' or '-10:+30:10' are relative to the estimated age "
                        "(default %(default)s = 11 ages)")


def add_age_predictor_argument(p: argparse.ArgumentParser) -> None:
    """``--age_predictor_weights`` (the name ``train`` and ``evaluate`` use): DEX, for
    relative ages and ``estimate``."""
    p.add_argument("--age_predictor_weights", default=None, metavar="PATH_OR_NAME",
                   help="DEX age classifier for relative ages and estimates: a file or a registry name "
                        "(default: dex_age, fetched into the cache when missing)")


def add_common_arguments(p: argparse.ArgumentParser) -> None:
    """Flags shared by ``age`` and ``mix``."""
    p.add_argument("inputs", nargs="*", metavar="INPUT", help="image files, folders or globs ('sample' for the bundled portrait)")
    p.add_argument("--sample", action="store_true", help="also process the bundled sample portrait")
    add_checkpoint_argument(p)
    add_ages_argument(p)
    add_age_predictor_argument(p)
    p.add_argument("--output", "-o", default="results", metavar="DIR", help="output folder (default: %(default)s)")
    p.add_argument("--size", type=int, choices=(256, 1024), default=256,
                   help="output size: 256 (pooled, as the original) or 1024 (the generator's own)")
    add_device_arguments(p)
    add_batch_size_argument(p)
    p.add_argument("--no-align", action="store_true", help="inputs are already aligned 256 px face crops")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--json", action="store_true", help="print a JSON summary on stdout")


def check_batch_size(value) -> None:
    if value is not None and value < 1:
        raise UsageError(f"--batch-size must be at least 1, not {value}")


# -- inputs and outputs --------------------------------------------------------------------

def age_label(age) -> str:
    """``030``, ``030.21``, ``+20``: unique per distinct age (:func:`sam_age.ages.age_label`)."""
    from ..ages import age_label as label
    return label(age)


def collect_inputs(args) -> Tuple[List[Tuple[str, Path]], List[str]]:
    """-> (list of (name, path)), missing-argument messages). Names are unique stems."""
    from ..images import list_inputs
    from ..pipeline import sample_path
    raw = [a for a in args.inputs if a != SAMPLE]
    paths, missing = list_inputs(raw)
    if args.sample or SAMPLE in args.inputs:
        paths.insert(0, sample_path())
    if not paths and not missing:
        raise UsageError("no input images (give files, folders, globs, or 'sample')")
    return [(item.name, item.path) for item in name_items(paths)], missing


def check_output_dir(folder: Path, overwrite: bool) -> None:
    if folder.exists() and not overwrite and (not folder.is_dir() or any(folder.iterdir())):
        raise InputError(f"output {folder} already exists (use --overwrite to replace it)")


# -- the model, once per process -----------------------------------------------------------

_PIPELINE_CACHE: Dict[tuple, object] = {}


def load_pipeline(path: Path, device, dtype, batch_size):
    """Load once per process and settings (tests and the web demo call the CLI in-process)."""
    from ..pipeline import AgePipeline
    st = Path(path).stat()
    key = (str(Path(path).resolve()), st.st_mtime_ns, st.st_size, str(device), str(dtype))
    pipe = _PIPELINE_CACHE.get(key)
    if pipe is None:
        _PIPELINE_CACHE.clear()  # keep one model in memory
        pipe = AgePipeline.from_pretrained(path, device=device, dtype=dtype, batch_size=batch_size)
        _PIPELINE_CACHE[key] = pipe
    pipe.batch_size = max(1, int(batch_size or DEFAULT_BATCH_SIZE))
    return pipe


@dataclass
class RunSetup:
    ages: list  # floats and RelativeAge ("+20"), as parsed
    named: List[Tuple[str, Path]]  # (unique name, path) per input, in listing order
    missing: List[str]  # "ARG: reason" for the arguments that named nothing
    weights: Path  # the resolved weights file
    get_pipeline: Callable[[], object]  # loads the model (once per process) when first called


def prepare_run(args) -> RunSetup:
    """Check flags, resolve the weights (may download; exit 2 early when unavailable),
    list inputs, pick this process's device (``cuda:LOCAL_RANK`` under torchrun,
    :mod:`sam_age.launch`). The model itself loads at the first face (bad inputs cost
    nothing)."""
    from ..ages import parse_ages
    from ..launch import Ranks
    from ..weights.store import resolve_weights
    ages = parse_ages(args.ages, "--ages", relative=True)
    check_batch_size(args.batch_size)
    named, missing = collect_inputs(args)
    weights = resolve_weights(args.checkpoint, progress=not args.json, kind="sam")
    if not Path(weights).is_file():
        raise CheckpointError("file not found", weights)
    predictor = age_predictor_for(args, ages)  # only for relative ages (exit 2 now if missing)
    device = Ranks.from_env().device(args.device)
    dtype = None if args.dtype == "auto" else args.dtype

    def get_pipeline():
        pipe = load_pipeline(weights, device, dtype, args.batch_size)
        if predictor is not None:
            pipe.age_predictor = predictor
        return pipe
    return RunSetup(ages, named, missing, Path(weights), get_pipeline)


def age_predictor_for(args, ages):
    """The age predictor's file when some age is relative (fetched now, so a missing file
    stops the run with exit 2 before any photo), else None (nothing is loaded)."""
    from ..ages import is_relative
    if not any(is_relative(a) for a in ages):
        return None
    from ..estimate import resolve_age_predictor
    return resolve_age_predictor(getattr(args, "age_predictor_weights", None), progress=not args.json)


# -- the per-input loop --------------------------------------------------------------------

class Batch:
    """The per-input loop every command shares: progress bar, one stderr line per failed
    input, JSON summary, exit code."""

    def __init__(self, command: str, args, total: int, progress: bool = True):
        from tqdm import tqdm
        self.command, self.args = command, args
        self.records: List[dict] = []
        self.start = time.perf_counter()
        self.bar = tqdm(total=total, unit="image", file=sys.stderr,
                        disable=True if (args.json or not progress) else None,
                        dynamic_ncols=True, desc=f"sam-age {command}")

    def fail(self, name: str, reason: str, path=None) -> None:
        self.records.append({"input": str(path) if path else name, "name": name, "ok": False,
                             "error": reason, "files": []})
        self.bar.write(f"sam-age {self.command}: {path or name}: {reason}", file=sys.stderr)

    def fail_missing(self, messages: Iterable[str]) -> None:
        """The inputs that named nothing (``"ARG: reason"`` from :func:`list_inputs`)."""
        for msg in messages:
            arg, _, reason = msg.partition(": ")
            self.fail(arg, reason)
            self.bar.update(1)

    def run(self, name: str, path: Path, work: Callable[[], dict]) -> None:
        t0 = time.perf_counter()
        try:
            rec = work()
        except InputError as e:
            self.fail(name, e.reason, path)
        else:
            rec.update({"input": str(path), "name": name, "ok": True,
                        "seconds": round(time.perf_counter() - t0, 3)})
            rec["files"] = [str(f) for f in rec.get("files", [])]
            self.records.append(rec)
        finally:
            self.bar.update(1)

    def add(self, name: str, path: Path, ok: bool, reason: str = "", **fields) -> None:
        """One input settled elsewhere (a dataset run): ``fields`` go into its record."""
        if ok:
            self.records.append({"input": str(path), "name": name, "ok": True, **fields})
        else:
            self.fail(name, reason, path)
        self.bar.update(1)

    def finish(self, heading: str = "", extra: Dict[str, object] = None) -> int:
        """Print the summary (``heading`` before the line; ``extra`` into the JSON) and
        return the exit code for these records."""
        self.bar.close()
        ok = sum(r["ok"] for r in self.records)
        failed = len(self.records) - ok
        skipped = sum(bool(r.get("skipped")) for r in self.records)
        seconds = round(time.perf_counter() - self.start, 3)
        if self.args.json:
            summary = {"command": self.command, "output": str(self.args.output), **(extra or {}), "ok": ok,
                       "failed": failed, "skipped": skipped, "seconds": seconds, "inputs": self.records}
            print(json.dumps(summary, indent=None if extra else 2))
        else:
            n_files = sum(len(r["files"]) for r in self.records)
            before = f" ({skipped} done before)" if skipped else ""
            print(f"{heading}{ok} of {len(self.records)} inputs done{before}, {n_files} files in "
                  f"{self.args.output} ({seconds:.1f} s)")
        return EXIT_SOME_FAILED if failed else EXIT_OK
