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
import contextlib
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

from ..dataset.listing import name_items
from ..defaults import DEFAULT_AGES, DEFAULT_CHECKPOINT
from ..errors import (
    EXIT_OK,
    EXIT_SOME_FAILED,
    STOP_ERRNOS,
    CheckpointError,
    InputError,
    UsageError,
    WriteError,
    exists_error,
)
from ..fileio import NotOwnError, atomic_dir, foreign_entry, shown

SAMPLE = "sample"


# -- flags ---------------------------------------------------------------------------------


def add_device_arguments(p: argparse.ArgumentParser) -> None:
    """``--device`` and ``--dtype``, spelled the same in every command that runs the model."""
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, mps or auto (default: the best available)")
    p.add_argument(
        "--dtype",
        default="auto",
        choices=("auto", "float32", "bfloat16", "float16"),
        help="compute precision. auto (default): the device's fast path -- float16 on CUDA, bfloat16 "
        "on a CPU with avx512_bf16/AMX, float32 on other CPUs. float32: the exact path, on every "
        "device. bfloat16: fast on CUDA and avx512_bf16/AMX CPUs, emulated (many times slower "
        "than float32) on other CPUs. float16: fast on CUDA, emulated on CPUs without AMX-FP16 "
        "(a one-line warning says so)",
    )


def add_checkpoint_argument(p: argparse.ArgumentParser) -> None:
    """``--checkpoint`` (alias ``--checkpoint_path``, the original's name): optional everywhere."""
    p.add_argument(
        "--checkpoint",
        "--checkpoint_path",
        dest="checkpoint",
        default=DEFAULT_CHECKPOINT,
        metavar="PATH_OR_NAME",
        help="SAM weights: a file (.pt/.pdparams/.safetensors) or a registry name, fetched into "
        "the cache when missing (default: %(default)s)",
    )


def add_batch_size_argument(p: argparse.ArgumentParser) -> None:
    """``--batch-size`` (alias ``--batch_size``, as ``train`` spells it)."""
    p.add_argument(
        "--batch-size",
        "--batch_size",
        dest="batch_size",
        type=int,
        default=None,
        metavar="N",
        help="images per forward pass (default: per device, sam_age.engine.DEFAULT_BATCH: "
        "16 on CUDA, at most 4 on the CPU)",
    )


def add_ages_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--ages",
        default=DEFAULT_AGES,
        metavar="AGES",
        help="target ages: a list '0,10,20' and/or ranges 'START:STOP:STEP' (STOP included); "
        "'+20', '-10' or '-10:+30:10' are relative to the estimated age "
        "(default %(default)s = 11 ages)",
    )


def add_age_predictor_argument(p: argparse.ArgumentParser) -> None:
    """``--age_predictor_weights`` (the name ``train`` and ``evaluate`` use): DEX, for
    relative ages and ``estimate``."""
    p.add_argument(
        "--age_predictor_weights",
        default=None,
        metavar="PATH_OR_NAME",
        help="DEX age classifier for relative ages and estimates: a file or a registry name "
        "(default: dex_age, fetched into the cache when missing)",
    )


def add_common_arguments(p: argparse.ArgumentParser) -> None:
    """Flags shared by ``age`` and ``mix``."""
    p.add_argument(
        "inputs", nargs="*", metavar="INPUT", help="image files, folders or globs ('sample' for the bundled portrait)"
    )
    add_sample_alias(p)
    add_checkpoint_argument(p)
    add_ages_argument(p)
    add_age_predictor_argument(p)
    p.add_argument("--output", "-o", default="results", metavar="DIR", help="output folder (default: %(default)s)")
    p.add_argument(
        "--size",
        type=int,
        choices=(256, 1024),
        default=256,
        help="output size: 256 (pooled, as the original) or 1024 (the generator's own)",
    )
    add_device_arguments(p)
    add_batch_size_argument(p)
    p.add_argument(
        "--no-align",
        action="store_true",
        help="inputs are already aligned square face crops (resized to 256 px; a photo that is not square fails)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an input's existing result folder (as a whole)")
    p.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    add_quiet_argument(p)
    add_mark_arguments(p)


def add_sample_alias(p: argparse.ArgumentParser) -> None:
    """``--sample``: the old spelling of the positional ``sample`` (one way to say it in
    --help; the flag still works, with a note, so old scripts keep running)."""
    p.add_argument("--sample", action="store_true", help=argparse.SUPPRESS)


def add_quiet_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--quiet",
        "-q",
        action="store_true",
        help="no progress bar and no notes (errors and the summary still print); "
        "the bar is also off when stderr is not a terminal",
    )


def add_mark_arguments(p: argparse.ArgumentParser) -> None:
    """``--no-mark``, ``--sign-cert``, ``--sign-key``: how outputs say they were edited by AI
    (:mod:`sam_age.marks`; docs/guides/marks.md)."""
    p.add_argument(
        "--no-mark",
        action="store_true",
        help="write outputs without the AI-edit mark (the XMP digital source type; on by default, "
        "as the EU AI Act, Art. 50, asks)",
    )
    p.add_argument(
        "--sign-cert",
        metavar="PEM",
        default=None,
        help="C2PA Content Credentials: the signing certificate chain (PEM, signer first)",
    )
    p.add_argument(
        "--sign-key",
        metavar="PEM",
        default=None,
        help="C2PA: the private key of --sign-cert (PEM: PKCS#8, SEC1 EC, RSA (PSS) or Ed25519)",
    )


def resolve_mark(args, command: str):
    """The run's :class:`sam_age.marks.Mark` from the flags, or None with ``--no-mark``
    (said in one stderr line). ``--sign-cert``/``--sign-key`` are loaded and tried on a
    tiny image now: a certificate c2pa refuses is a UsageError (exit 2) before any model
    work."""
    from ..marks import Mark, SigningKey

    cert, key = getattr(args, "sign_cert", None), getattr(args, "sign_key", None)
    if getattr(args, "no_mark", False):
        if cert or key:
            raise UsageError("--no-mark and --sign-cert/--sign-key contradict each other: give one")
        print(
            f"sam-age {command}: warning: --no-mark: the outputs do not say that they were edited by AI "
            "(no XMP digital source type, no C2PA)",
            file=sys.stderr,
        )
        return None
    if bool(cert) != bool(key):
        raise UsageError("C2PA signing needs both --sign-cert PEM and --sign-key PEM")
    if not cert:
        return Mark()
    try:
        signer = SigningKey.load(cert, key)
        signer.check()
    except ValueError as e:
        raise UsageError(f"--sign-cert {cert}: {e}" if not str(e).startswith("--") else str(e)) from None
    return Mark(signer=signer)


def check_batch_size(value) -> None:
    if value is not None and value < 1:
        raise UsageError(f"--batch-size must be at least 1, not {value}")


def note(command: str, message: str, args=None) -> None:
    """One line on stderr about something done differently from what the flags might
    suggest (``--quiet`` hides it)."""
    if args is not None and getattr(args, "quiet", False):
        return
    print(f"sam-age {command}: note: {message}", file=sys.stderr)


# -- checks made before any work -----------------------------------------------------------


def check_device(flag: Optional[str], option: str = "--device") -> None:
    """``--device`` names a device torch has here (``auto``: always), else UsageError
    (exit 2) saying which devices exist (:func:`sam_age.engine.resolve_device`, the one
    resolver); called before any weights are fetched or faces detected, by every command
    with ``--device``."""
    if flag in (None, "", "auto"):
        return
    from ..engine import resolve_device

    resolve_device(flag, option=option)


def check_output_folder(folder, option: str = "--output") -> Path:
    """The output folder exists (or can be made) and this process can write in it; else
    UsageError (exit 2), before any model is loaded. Nothing is created: the probe is a
    temporary folder made and removed in the folder or its nearest existing parent."""
    folder = Path(folder).expanduser()
    where = f"{option} {folder}"
    if folder.exists() or folder.is_symlink():
        if not folder.is_dir():
            raise UsageError(f"{where}: is a file, not a folder" if folder.exists() else f"{where}: is a broken link")
        probe = folder
    else:
        probe = folder.absolute().parent
        while not (probe.exists() or probe.is_symlink()) and probe != probe.parent:
            probe = probe.parent
        if not probe.is_dir():
            raise UsageError(f"{where}: cannot be made, {probe} is a file")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".sam-age-probe-", dir=probe))
    except OSError as e:
        raise UsageError(f"{where}: cannot write in {probe} ({e.strerror or e})") from None
    return folder


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
    if getattr(args, "sample", False):
        note(
            getattr(args, "command", None) or "age",
            "--sample is deprecated: write 'sample' as an input (sam-age age sample)",
            args,
        )
    if getattr(args, "sample", False) or SAMPLE in args.inputs:
        paths.insert(0, sample_path())
    if not paths and not missing:
        raise UsageError("no input images (give files, folders, globs, or 'sample')")
    return [(item.name, item.path) for item in name_items(paths)], missing


def refuse_existing_result(folder: Path, overwrite: bool) -> None:
    """The ``--overwrite`` check, before any work: ``folder`` is free (absent or empty), or
    ``overwrite`` and all of it is sam-age's own (:func:`sam_age.fileio.foreign_entry`);
    else InputError. (:func:`check_output_folder` is the other check: can ``--output`` be
    written at all.)"""
    if os.path.lexists(folder) and not overwrite and (not folder.is_dir() or any(folder.iterdir())):
        raise exists_error(folder)
    foreign = foreign_entry(folder) if overwrite else None
    if foreign is not None:
        raise InputError(str(NotOwnError(folder, foreign)))


def write_error(error: OSError, stage: Optional[Path] = None, final: Optional[Path] = None) -> WriteError:
    """An ``OSError`` from writing -> one line naming the file (its final name, when it
    was written in ``stage`` on the way to ``final``)."""
    name = error.filename
    if name is not None and stage is not None and final is not None:
        try:
            name = final / Path(str(name)).relative_to(stage)
        except ValueError:
            pass
    reason = error.strerror or str(error) or type(error).__name__
    return WriteError(f"cannot write {name}: {reason}" if name else f"cannot write: {reason}", errno=error.errno)


@contextlib.contextmanager
def results_folder(folder: Path, overwrite: bool) -> Iterator[Path]:
    """One input's result folder, written whole or not at all: the block writes into a
    folder beside ``folder`` (yielded), which then takes ``folder``'s place in one rename
    (``--overwrite``: the old folder goes as a whole, nothing of it stays). A write error
    removes what was written and becomes a :class:`WriteError` naming the file."""
    folder = Path(folder)
    stage: List[Path] = []
    try:
        with atomic_dir(folder, replace=overwrite) as s:
            stage.append(s)
            yield s
    except NotOwnError as e:
        raise InputError(str(e)) from None
    except FileExistsError:
        raise exists_error(folder) from None
    except OSError as e:
        raise write_error(e, stage[0] if stage else None, folder) from None


@dataclass
class RunSetup:
    ages: list  # floats and RelativeAge ("+20"), as parsed
    named: List[Tuple[str, Path]]  # (unique name, path) per input, in listing order
    missing: List[str]  # "ARG: reason" for the arguments that named nothing
    weights: Path  # the resolved weights file
    get_pipeline: Callable[[], object]  # loads the model (once per process) when first called
    mark: object = None  # sam_age.marks.Mark for every output, None with --no-mark (resolve_mark)


def prepare_run(args) -> RunSetup:
    """Check flags, resolve the weights (may download; exit 2 early when unavailable),
    list inputs, pick this process's device (``cuda:LOCAL_RANK`` under torchrun,
    :mod:`sam_age.launch`). The model itself loads at the first face (bad inputs cost
    nothing)."""
    from ..ages import parse_ages
    from ..engine import resolve_device
    from ..launch import Ranks
    from ..weights.store import resolve_weights

    ages = parse_ages(args.ages, "--ages", relative=True)
    mark = resolve_mark(args, getattr(args, "command", None) or "age")
    check_batch_size(args.batch_size)
    check_device(args.device)
    check_output_folder(args.output)
    named, missing = collect_inputs(args)
    weights = resolve_weights(args.checkpoint, progress=not args.json, kind="sam")
    if not Path(weights).is_file():
        raise CheckpointError("not a weights file", weights)
    predictor = age_predictor_for(args, ages)  # only for relative ages (exit 2 now if missing)
    device = resolve_device(args.device, Ranks.from_env())
    dtype = None if args.dtype == "auto" else args.dtype

    def get_pipeline():
        from ..pipeline import shared_pipeline

        pipe = shared_pipeline(weights, device, dtype, args.batch_size)
        if predictor is not None:
            pipe.age_predictor = predictor
        return pipe

    return RunSetup(ages, named, missing, Path(weights), get_pipeline, mark)


def age_predictor_for(args, ages):
    """The age predictor's file when some age is relative (fetched now, so a missing file
    stops the run with exit 2 before any photo), else None (nothing is loaded)."""
    from ..ages import is_relative

    if not any(is_relative(a) for a in ages):
        return None
    from ..estimate import resolve_age_predictor

    return resolve_age_predictor(getattr(args, "age_predictor_weights", None), progress=not args.json)


# -- the per-input loop --------------------------------------------------------------------


class InputLoop:
    """The per-input loop every command shares: progress bar, one stderr line per failed
    input, JSON summary, exit code.

    The bar counts ``per_input`` units per input (``age``: face-ages, one per image the
    model makes), advanced by the model's forward passes through :meth:`advance`; it is
    off with ``--json`` or ``--quiet`` and when stderr is not a terminal. A write error
    (:class:`WriteError`) fails its input; a full or read-only disk also stops the run
    (the inputs not started are counted as failed, in one line at the end)."""

    def __init__(self, command: str, args, total: int, per_input: int = 1, unit: str = "image", progress: bool = True):
        from tqdm import tqdm

        self.command, self.args = command, args
        self.records: List[dict] = []
        self.start = time.perf_counter()
        self.per_input = max(1, int(per_input))
        self.stopped: Optional[str] = None
        self.not_done = 0
        self._done = 0  # units of the current input (inside :meth:`run`)
        self._in_run = False
        quiet = bool(getattr(args, "json", False) or getattr(args, "quiet", False) or not progress)
        self.bar = tqdm(
            total=total * self.per_input,
            unit=unit,
            file=sys.stderr,
            disable=True if quiet else None,
            dynamic_ncols=True,
            desc=f"sam-age {command}",
        )

    def advance(self, n: int) -> None:
        """``n`` more units of the current input (more than ``per_input`` in all, as with
        several faces in a photo, grows the total)."""
        if self._in_run and self._done + n > self.per_input and not self.bar.disable:
            self.bar.total += self._done + n - max(self.per_input, self._done)
        self._done += n
        self.bar.update(n)

    def expect(self, key: str, units: int) -> None:
        """Input ``key`` will take ``units`` (its faces x ages), known once its faces are
        found and before the model starts on them: the total grows now, so the bar never
        passes it (:meth:`add` then counts nothing twice)."""
        expected = self.__dict__.setdefault("_expected", {})
        expected[key] = int(units)
        if not self.bar.disable and units != self.per_input:
            self.bar.total += int(units) - self.per_input
            self.bar.refresh()

    def _input_done(self) -> None:
        if self._done < self.per_input:
            self.bar.update(self.per_input - self._done)
        self._done = 0

    def fail(self, name: str, reason: str, path=None) -> None:
        self.records.append(
            {"input": str(path) if path else name, "name": name, "ok": False, "error": reason, "files": []}
        )
        self.bar.write(f"sam-age {self.command}: {shown(path or name)}: {shown(reason)}", file=sys.stderr)

    def fail_missing(self, messages: Iterable[str]) -> None:
        """The inputs that named nothing (``"ARG: reason"`` from :func:`list_inputs`)."""
        for msg in messages:
            arg, _, reason = msg.partition(": ")
            self.fail(arg, reason)
            self._input_done()

    def run(self, name: str, path: Path, work: Callable[[], dict]) -> None:
        t0 = time.perf_counter()
        self._done, self._in_run = 0, True
        try:
            rec = work()
        except InputError as e:
            self.fail(name, e.reason, path)
            if isinstance(e, WriteError) and e.errno in STOP_ERRNOS:
                self.stopped = e.reason
        except OSError as e:  # not from our writers (those raise WriteError): still one line
            self.fail(name, write_error(e).reason if e.filename else (e.strerror or str(e)), path)
        else:
            rec.update({"input": str(path), "name": name, "ok": True, "seconds": round(time.perf_counter() - t0, 3)})
            rec["files"] = [str(f) for f in rec.get("files", [])]
            self.records.append(rec)
        finally:
            self._input_done()
            self._in_run = False

    def run_each(self, named: Sequence[Tuple[str, Path]], work: Callable[[str, Path], dict]) -> None:
        """:meth:`run` for each input in turn, stopping after a disk-full (or read-only)
        error: the rest are recorded as not done, in one stderr line."""
        for i, (name, path) in enumerate(named):
            if self.stopped:
                for n, p in named[i:]:
                    self.skip_stopped(n, p, self.stopped)
                return
            self.run(name, path, lambda: work(name, path))

    def skip_stopped(self, name: str, path: Path, reason: str) -> None:
        """An input never started because the run stopped: counted as failed, without a
        line of its own (:meth:`finish` says how many, once)."""
        self.stopped = self.stopped or reason
        self.not_done += 1
        self.records.append(
            {
                "input": str(path),
                "name": name,
                "ok": False,
                "error": f"not done: the run stopped ({self.stopped})",
                "files": [],
            }
        )
        self.bar.update(self.per_input)

    def add(self, name: str, path: Path, ok: bool, reason: str = "", units: int = 0, **fields) -> None:
        """One input settled elsewhere (a dataset run): ``fields`` go into its record;
        ``units``: what the model did for it (already counted through :meth:`advance`),
        0 when it never reached the model (its share is counted now)."""
        if ok:
            self.records.append({"input": str(path), "name": name, "ok": True, **fields})
        else:
            self.fail(name, reason, path)
        expected = self.__dict__.get("_expected", {}).pop(name, None)
        if units:
            if not self.bar.disable and units != (expected if expected is not None else self.per_input):
                self.bar.total += units - (expected if expected is not None else self.per_input)
                self.bar.refresh()
        elif expected is not None:  # expected, then never through the model: its share is counted now
            self.bar.update(expected)
        else:
            self.bar.update(self.per_input)

    def finish(self, heading: str = "", extra: Dict[str, object] = None) -> int:
        """Print the summary (``heading`` before the line; ``extra`` into the JSON) and
        return the exit code for these records."""
        self.bar.close()
        if self.not_done:
            print(
                f"sam-age {self.command}: stopped: {self.not_done} input(s) not done ({self.stopped})", file=sys.stderr
            )
        ok = sum(r["ok"] for r in self.records)
        failed = len(self.records) - ok
        skipped = sum(bool(r.get("skipped")) for r in self.records)
        seconds = round(time.perf_counter() - self.start, 3)
        if self.args.json:
            summary = {
                "command": self.command,
                "output": str(self.args.output),
                **(extra or {}),
                "ok": ok,
                "failed": failed,
                "skipped": skipped,
                "seconds": seconds,
                "inputs": self.records,
                **getattr(self, "json_extra", {}),
            }  # (age: stage timings, compute path)
            print(json.dumps(summary, indent=None if extra else 2))
        else:
            n_files = sum(len(r["files"]) for r in self.records)
            before = f" ({skipped} done before)" if skipped else ""
            print(
                f"{heading}{ok} of {len(self.records)} inputs done{before}, {n_files} files in "
                f"{shown(self.args.output)} ({seconds:.1f} s)"
            )
        return EXIT_SOME_FAILED if failed else EXIT_OK


# -- --report (age, video) -------------------------------------------------------------------


def finish_ranks(loop: "InputLoop", command: str, args, ranks, result) -> int:
    """The end of one rank's run under torchrun (``age``, ``align``): this rank's summary;
    the last rank to finish (``result.last``, :class:`sam_age.dataset.handshake.Finish`) also
    sums up the launch (one line, or ``--json``) and alone returns 1 for failures anywhere."""
    loop.finish(f"rank {ranks.rank} of {ranks.world}: ", {"rank": ranks.rank, "world": ranks.world})
    if not result.last:
        return EXIT_OK
    t = result.totals
    if args.json:
        summary = {"command": command, "output": str(args.output), "world": ranks.world, "totals": t}
        print(json.dumps({**summary, "manifest": str(result.manifest)}))
    else:
        before = f" ({t['skipped']} done before)" if t["skipped"] else ""
        print(
            f"all {ranks.world} ranks: {t['ok'] + t['skipped']} of {t['inputs']} inputs done{before}, "
            f"{t['failed']} failed; manifest: {result.manifest}"
        )
    return EXIT_SOME_FAILED if t["failed"] else EXIT_OK


def add_report_arguments(p: argparse.ArgumentParser) -> None:
    """``--report`` and its thresholds, and the identity networks' weights flags."""
    p.add_argument(
        "--report",
        action="store_true",
        help="measure every output: the age DEX sees on it (achieved_age; DEX is the network SAM "
        "was trained against, not an independent judge) and its identity similarity with "
        "the input (CurricularFace IR-101 when its weights resolve, else IR-SE-50); in "
        "--json and the manifest, with a caption",
    )
    p.add_argument(
        "--max-age-error",
        dest="max_age_error",
        type=float,
        default=None,
        metavar="Y",
        help="with --report (implied): flag outputs whose achieved age is more than Y years from "
        'the age asked (one line each; "check": "failed"; the exit status stays 0)',
    )
    p.add_argument(
        "--min-identity",
        dest="min_identity",
        type=float,
        default=None,
        metavar="X",
        help="with --report (implied): flag outputs whose identity similarity is below X",
    )
    add_identity_weights_arguments(p)


def add_identity_weights_arguments(p: argparse.ArgumentParser) -> None:
    """The identity networks' weights flags (``--report`` in ``age`` and ``video``, the
    report of ``serve``'s page and API)."""
    p.add_argument(
        "--curricular_face_weights",
        default=None,
        metavar="PATH_OR_NAME",
        help="CurricularFace IR-101 for --report's identity (default: the registry's "
        "curricular_face; IR-SE-50 when it cannot be had)",
    )
    p.add_argument(
        "--ir_se50_weights",
        default=None,
        metavar="PATH_OR_NAME",
        help="IR-SE-50, --report's identity network when CurricularFace's weights cannot be had "
        "(default: the registry's ir_se50)",
    )


def report_options(args, command: str) -> Optional[dict]:
    """None without ``--report`` (or a threshold, which implies it); else the pipeline's
    report settings, with the weights resolved now (exit 2 before any photo when missing)."""
    y, x = getattr(args, "max_age_error", None), getattr(args, "min_identity", None)
    if not (getattr(args, "report", False) or y is not None or x is not None):
        return None
    if y is not None and y < 0:
        raise UsageError(f"--max-age-error must be 0 or more, not {y:g}")
    if x is not None and not -1.0 <= x <= 1.0:
        raise UsageError(f"--min-identity is a cosine similarity, -1..1, not {x:g}")
    from ..estimate import resolve_age_predictor

    dex = resolve_age_predictor(getattr(args, "age_predictor_weights", None), progress=not args.json)
    return {
        "report": True,
        "max_age_error": y,
        "min_identity": x,
        "age_predictor": dex,
        "identity": identity_option(args, command),
    }


def identity_option(args, command: str) -> dict:
    """The identity network from ``--curricular_face_weights`` / ``--ir_se50_weights``,
    resolved now (CurricularFace when its weights resolve, else IR-SE-50, with a note):
    ``{"model", "<its flag>": file}``, the pipeline's ``identity=``."""
    from ..identity import resolve_identity_weights

    quiet = getattr(args, "json", False)
    model, path = resolve_identity_weights(
        None,
        args.curricular_face_weights,
        args.ir_se50_weights,
        progress=not quiet,
        on_note=lambda m: note(command, m, args),
    )
    weights_flag = "curricular_face_weights" if model == "curricularface" else "ir_se50_weights"
    return {"model": model, weights_flag: path}


def apply_report(pipe, options: Optional[dict]):
    """Set (or clear) a pipeline's report settings from :func:`report_options`."""
    pipe.report = bool(options)
    if options:
        pipe.max_age_error, pipe.min_identity = options["max_age_error"], options["min_identity"]
        if pipe.age_predictor is None or str(pipe.age_predictor) != str(options["age_predictor"]):
            pipe.age_predictor = options["age_predictor"]
        spec = options["identity"]
        loaded = pipe.identity
        if not (
            getattr(loaded, "model", None) == spec["model"]
            and str(getattr(loaded, "path", None)) == str(next(v for k, v in spec.items() if k != "model"))
        ):
            pipe.identity = dict(spec)  # loaded at the first report
    return pipe
