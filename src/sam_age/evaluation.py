"""The paper's quantitative view of an aging model: for every face and target age, how old
the output looks (DEX) and how much of the person is left (cosine similarity of face
embeddings: CurricularFace IR-101 on its five-point crop by default, as the paper; IR-SE-50
on the training crop with ``id_model="ir_se50"``; see :mod:`sam_age.identity`).

The faces go through the same :class:`~sam_age.pipeline.AgePipeline` as the CLI and the web
demo; this module only measures the results and writes them down:

* ``results.csv``: one row per face and target age;
* ``summary.json``: means per target age, overall means, the inputs that failed and why;
* ``age_accuracy.png`` (predicted vs target age) and ``identity_vs_age_gap.png``.

FID per age group is optional (``fid=True``): it needs torch-fidelity or clean-fid *and*
their Inception weights on disk; when either is missing the report says so and goes on.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence

import torch

from .engine import batch_size_for
from .errors import InputError
from .fileio import atomic_write, note_own, write_text
from .images import to_batch
from .losses import AgingLoss, IDLoss

CSV_COLUMNS = (
    "image",
    "face",
    "target_age",
    "predicted_age",
    "age_error",
    "signed_age_error",
    "identity_similarity",
    "input_predicted_age",
    "age_gap",
)
RESULTS_CSV, SUMMARY_JSON = "results.csv", "summary.json"
AGE_PLOT, IDENTITY_PLOT = "age_accuracy.png", "identity_vs_age_gap.png"
OUTPUT_FILES = (RESULTS_CSV, SUMMARY_JSON, AGE_PLOT, IDENTITY_PLOT)


@dataclass
class Row:
    image: str
    face: int
    target_age: float
    predicted_age: float
    age_error: float  # |predicted - target|, what the paper averages
    signed_age_error: float  # predicted - target: tells too old from too young
    identity_similarity: float
    input_predicted_age: float
    age_gap: float  # |target - input_predicted_age|: how far the face was moved


@dataclass
class Report:
    ages: List[float]
    rows: List[Row] = field(default_factory=list)
    failures: List[Dict[str, str]] = field(default_factory=list)  # {"image", "reason"}
    n_inputs: int = 0
    fid: Optional[Dict[str, float]] = None
    fid_note: Optional[str] = None
    identity_model: Optional[str] = None  # "curricularface" / "ir_se50" (None: a caller's own net)

    @property
    def n_failed(self) -> int:
        return len(self.failures)


class Evaluator:
    """Measures a pipeline's outputs with an age net (DEX) and an identity net (IR-SE-50).

    ``age_net`` has ``predict_ages(images) -> years`` and ``identity_net`` has
    ``features(images) -> L2-normalised features``, both for 256 px faces in [-1, 1]: the
    training losses' networks (:class:`~sam_age.losses.AgingLoss`,
    :class:`~sam_age.losses.IDLoss`), so evaluation measures what training optimised."""

    def __init__(
        self,
        pipeline,
        age_net,
        identity_net,
        device="cpu",
        batch_size: Optional[int] = None,
        save_dir: Optional[Path] = None,
    ):
        self.pipeline = pipeline
        self.device = torch.device(device)
        self.age_net = age_net
        self.identity_net = identity_net
        self.batch_size = batch_size_for(self.device, batch_size)  # None: per device
        # where the aligned inputs and the outputs go as PNGs (FID reads folders), if anywhere
        self.save_dir = None if save_dir is None else Path(save_dir)

    @classmethod
    def from_weights(
        cls,
        pipeline,
        identity_weights,
        age_predictor_weights,
        device="cpu",
        batch_size: Optional[int] = None,
        id_model: str = "ir_se50",
    ) -> "Evaluator":
        """``id_model`` ``"ir_se50"``: training's :class:`~sam_age.losses.IDLoss` (fixed crop);
        ``"curricularface"``: :class:`~sam_age.identity.IdentityNet` (five-point crop)."""
        batch_size = batch_size_for(device, batch_size)
        if id_model == "ir_se50":
            identity = IDLoss(identity_weights, device=device)
        else:
            from .identity import IdentityNet

            identity = IdentityNet.from_weights(identity_weights, id_model, device=device, batch_size=batch_size)
        return cls(
            pipeline, AgingLoss(age_predictor_weights, device=device), identity, device=device, batch_size=batch_size
        )

    @property
    def identity_model(self) -> Optional[str]:
        if isinstance(self.identity_net, IDLoss):
            return "ir_se50"
        return getattr(self.identity_net, "model", None)

    @torch.no_grad()
    def _measure(self, images: torch.Tensor):
        """``[N, 3, 256, 256]`` in [-1, 1] -> (DEX ages [N], identity features [N, 512])."""
        ages, feats = [], []
        for start in range(0, images.shape[0], self.batch_size):
            chunk = images[start : start + self.batch_size].to(self.device, torch.float32)
            ages.append(self.age_net.predict_ages(chunk).float().cpu())
            feats.append(self.identity_net.features(chunk).float().cpu())
        return torch.cat(ages), torch.cat(feats)

    @torch.no_grad()
    def _ages(self, images: torch.Tensor) -> torch.Tensor:
        return torch.cat(
            [
                self.age_net.predict_ages(images[s : s + self.batch_size].to(self.device, torch.float32)).float().cpu()
                for s in range(0, images.shape[0], self.batch_size)
            ]
        )

    def evaluate_image(self, path, ages: Sequence[float], align: bool = True, all_faces: bool = False) -> List[Row]:
        """Age the face(s) of one photo to every age and measure each result.
        Raises :class:`~sam_age.errors.InputError` (unreadable, no face, ...)."""
        result = self.pipeline(str(path), list(ages), all_faces=all_faces, align=align)
        rows: List[Row] = []
        for k, face in enumerate(result.faces):
            batch = to_batch([face.aligned, *face.images])
            if hasattr(self.identity_net, "similarities"):  # one crop kind for the input and its outputs
                predicted = self._ages(batch)
                similarity = self.identity_net.similarities(batch[0], batch[1:]).values
            else:
                predicted, feats = self._measure(batch)
                similarity = (feats[1:] @ feats[0]).tolist()
            input_age = float(predicted[0])
            if self.save_dir is not None:
                self._save_images(f"{Path(str(path)).stem}_{k}.png", face, ages)
            for target, pred, sim in zip(ages, predicted[1:].tolist(), similarity):
                rows.append(
                    Row(
                        image=Path(str(path)).name,
                        face=k,
                        target_age=float(target),
                        predicted_age=pred,
                        age_error=abs(pred - target),
                        signed_age_error=pred - target,
                        identity_similarity=sim,
                        input_predicted_age=input_age,
                        age_gap=abs(target - input_age),
                    )
                )
        return rows

    def _save_images(self, name: str, face, ages: Sequence[float]) -> None:
        (self.save_dir / "inputs").mkdir(parents=True, exist_ok=True)
        face.aligned.save(self.save_dir / "inputs" / name)
        for age, image in zip(ages, face.images):
            folder = self.save_dir / f"age_{_age_key(age)}"
            folder.mkdir(exist_ok=True)
            image.save(folder / name)

    def evaluate(
        self,
        paths: Iterable,
        ages: Sequence[float],
        align: bool = True,
        all_faces: bool = False,
        on_error: Optional[Callable[[str, str], None]] = None,
        progress: bool = False,
    ) -> Report:
        """Every image x every age. Bad inputs are recorded (and passed to ``on_error``
        as ``(name, one-line message)``), never raised."""
        paths = list(paths)
        report = Report(ages=[float(a) for a in ages], n_inputs=len(paths), identity_model=self.identity_model)
        iterator = paths
        if progress:
            from tqdm.auto import tqdm

            iterator = tqdm(paths, desc="evaluate", unit="image")
        for path in iterator:
            try:
                rows = self.evaluate_image(path, ages, align=align, all_faces=all_faces)
            except InputError as e:
                report.failures.append({"image": str(path), "reason": e.reason})
                if on_error is not None:
                    on_error(str(path), str(e))
                continue
            report.rows.extend(rows)
        return report


# --------------------------------------------------------------------------- writing


def summarize(report: Report) -> dict:
    def stats(rows: List[Row]) -> dict:
        n = len(rows)
        if n == 0:
            return {
                "n": 0,
                "mean_age_error": None,
                "mean_signed_age_error": None,
                "mean_predicted_age": None,
                "mean_identity_similarity": None,
            }
        mean = lambda values: float(sum(values) / n)  # noqa: E731
        return {
            "n": n,
            "mean_age_error": mean([r.age_error for r in rows]),
            "mean_signed_age_error": mean([r.signed_age_error for r in rows]),
            "mean_predicted_age": mean([r.predicted_age for r in rows]),
            "mean_identity_similarity": mean([r.identity_similarity for r in rows]),
        }

    per_age = {_age_key(a): stats([r for r in report.rows if r.target_age == a]) for a in report.ages}
    n_faces = len({(r.image, r.face) for r in report.rows})
    summary = {
        "target_ages": report.ages,
        "per_target_age": per_age,
        "overall": stats(report.rows),
        "counts": {
            "inputs": report.n_inputs,
            "succeeded": report.n_inputs - report.n_failed,
            "failed": report.n_failed,
            "faces": n_faces,
            "rows": len(report.rows),
        },
        "failed": report.failures,
    }
    if report.identity_model is not None:
        from .identity import LABELS

        summary["identity_model"] = {
            "name": report.identity_model,
            "network": LABELS.get(report.identity_model, report.identity_model),
        }
    if report.fid is not None or report.fid_note is not None:
        summary["fid"] = {"per_target_age": report.fid, "note": report.fid_note}
    return summary


def _age_key(age: float) -> str:
    return str(int(age)) if float(age).is_integer() else str(age)


def write_report(report: Report, output: Path) -> Dict[str, Path]:
    """Write the table, the summary and the two plots into ``output`` (each atomically:
    a crash never leaves half a file that looks finished); returns their paths."""
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    paths = {name: output / name for name in OUTPUT_FILES}

    table = io.StringIO(newline="")
    writer = csv.DictWriter(table, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in report.rows:
        writer.writerow({k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(row).items()})
    write_text(paths[RESULTS_CSV], table.getvalue())
    summary = json.dumps(summarize(report), indent=2) + "\n"
    write_text(paths[SUMMARY_JSON], summary)
    for name, plot in ((AGE_PLOT, plot_age_accuracy), (IDENTITY_PLOT, plot_identity_vs_gap)):
        fig = plot(report)
        try:
            atomic_write(paths[name], lambda f: fig.savefig(f, format="png"))
        finally:
            _pyplot().close(fig)
    note_own(output, OUTPUT_FILES)  # (--overwrite may replace these, and only these, later)
    return paths


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: never needs a display
    import matplotlib.pyplot as plt

    return plt


def _finish_plot(fig, ax, xlabel: str, ylabel: str, title: str, legend: str):
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(loc=legend)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_age_accuracy(report: Report):
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 5), dpi=100)
    targets = [r.target_age for r in report.rows]
    predicted = [r.predicted_age for r in report.rows]
    ax.scatter(targets, predicted, s=12, alpha=0.4, label="one face")
    means = [(a, _mean([r.predicted_age for r in report.rows if r.target_age == a])) for a in report.ages]
    means = [(a, m) for a, m in means if m is not None]
    if means:
        ax.plot(*zip(*means), "o-", color="C1", label="mean")
    lo, hi = 0, max([100.0] + targets + predicted)
    ax.plot([lo, hi], [lo, hi], "--", color="grey", linewidth=1, label="ideal")
    return _finish_plot(fig, ax, "target age", "predicted age (DEX)", "Aging accuracy", "upper left")


def plot_identity_vs_gap(report: Report):
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 5), dpi=100)
    gaps = [r.age_gap for r in report.rows]
    sims = [r.identity_similarity for r in report.rows]
    ax.scatter(gaps, sims, s=12, alpha=0.4, label="one face and age")
    if gaps:
        width = 10.0
        bins: Dict[int, List[float]] = {}
        for g, s in zip(gaps, sims):
            bins.setdefault(int(g // width), []).append(s)
        centres = sorted(bins)
        ax.plot(
            [(b + 0.5) * width for b in centres],
            [_mean(bins[b]) for b in centres],
            "o-",
            color="C1",
            label=f"mean per {int(width)} years",
        )
    return _finish_plot(
        fig,
        ax,
        "|target age - input age (DEX)|",
        f"identity similarity ({_id_label(report)} cosine)",
        "Identity preservation vs age gap",
        "lower left",
    )


def _id_label(report: Report) -> str:
    from .identity import LABELS

    return LABELS.get(report.identity_model or "", "embedding")


def _mean(values: Sequence[float]) -> Optional[float]:
    return float(sum(values) / len(values)) if values else None


# --------------------------------------------------------------------------- FID


def fid_backend() -> tuple:
    """``(name, None)`` when an FID library and its Inception weights are on disk, else
    ``(None, why-not)``. Never downloads anything."""
    import importlib.util

    hub = Path(os.environ.get("TORCH_HOME", Path.home() / ".cache" / "torch")) / "hub" / "checkpoints"
    if importlib.util.find_spec("torch_fidelity") is not None:
        if any(hub.glob("weights-inception-2015-12-05-*.pth")):
            return "torch-fidelity", None
        return None, f"torch-fidelity is installed but its Inception weights are not in {hub}"
    if importlib.util.find_spec("cleanfid") is not None:
        candidates = [
            Path(tempfile.gettempdir()) / "inception-2015-12-05.pt",
            Path.home() / ".cache" / "cleanfid" / "inception-2015-12-05.pt",
        ]
        if any(p.exists() for p in candidates):
            return "clean-fid", None
        return None, "clean-fid is installed but its Inception weights are not on disk"
    return None, "neither torch-fidelity nor clean-fid is installed (pip install torch-fidelity)"


def fid_per_age(images_dir: Path, ages: Sequence[float], backend: str) -> Dict[str, Optional[float]]:
    """FID of each age group's outputs against the inputs, from the folders that
    :class:`Evaluator` writes with ``save_dir`` (``inputs/``, ``age_<A>/``)."""
    inputs_dir = Path(images_dir) / "inputs"
    scores: Dict[str, Optional[float]] = {}
    for age in map(_age_key, ages):
        folder = Path(images_dir) / f"age_{age}"
        if not folder.is_dir():
            scores[age] = None
            continue
        if backend == "torch-fidelity":
            import torch_fidelity

            metrics = torch_fidelity.calculate_metrics(
                input1=str(folder), input2=str(inputs_dir), fid=True, cuda=torch.cuda.is_available(), verbose=False
            )
            scores[age] = float(metrics["frechet_inception_distance"])
        else:
            from cleanfid import fid

            scores[age] = float(fid.compute_fid(str(folder), str(inputs_dir), mode="clean"))
        if math.isnan(scores[age]):
            scores[age] = None
    return scores


# --------------------------------------------------------------------------- all of it


def run_evaluation(
    evaluator: Evaluator,
    paths: Sequence,
    ages: Sequence[float],
    output: Path,
    align: bool = True,
    all_faces: bool = False,
    fid: bool = False,
    on_error: Optional[Callable[[str, str], None]] = None,
    on_note: Optional[Callable[[str], None]] = None,
    progress: bool = False,
) -> Report:
    """Evaluate ``paths`` at ``ages``, add FID when asked and possible, write the report."""
    note = on_note or (lambda message: None)
    backend = None
    if fid:
        backend, why_not = fid_backend()
        if backend is None:
            note(f"FID skipped: {why_not}")
    with tempfile.TemporaryDirectory(prefix="sam-age-eval-") as images_dir:
        evaluator.save_dir = Path(images_dir) if backend else None
        try:
            report = evaluator.evaluate(
                paths, ages, align=align, all_faces=all_faces, on_error=on_error, progress=progress
            )
        finally:
            evaluator.save_dir = None
        if fid and backend is None:
            report.fid_note = f"skipped: {why_not}"
        elif backend is not None:
            if len({(r.image, r.face) for r in report.rows}) < 2:
                report.fid_note = "skipped: FID needs at least two faces"
                note(f"FID {report.fid_note}")
            else:
                try:
                    report.fid = fid_per_age(Path(images_dir), ages, backend)
                    report.fid_note = f"computed with {backend} against the aligned inputs"
                except Exception as e:  # an optional extra must not cost the whole evaluation
                    report.fid_note = f"failed: {backend}: {type(e).__name__}: {e}"
                    note(f"FID {report.fid_note}")
    write_report(report, output)
    return report
