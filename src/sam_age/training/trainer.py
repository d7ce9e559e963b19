"""The official SAM training step and loop (spec §2), resumable and data-parallel.

The process group lives in :mod:`.distributed`, the loss networks and the weighted loss
in :mod:`.criteria`; this module holds the step, validation, checkpoints and the loop.

One step, per process (batch (x, y), y = x):
  input ages = DEX(x) / 100; with probability 1/3 (per batch, as the original) no aging,
  else uniform integer targets 0..100 (or --target_age); forward on [x, target] ->
  loss_real, backward; cycle: forward on [y_hat.detach(), input ages] -> cycle_lambda *
  loss_cycle, backward; optimizer step on the encoder (and the decoder with --train_decoder).

Files, as the original writes them, under --exp_dir: ``opt.json``, ``checkpoints/
{best_model,iteration_N}.pt`` (official layout), ``checkpoints/timestamp.txt`` and
TensorBoard logs in ``logs/``; plus ``checkpoints/training_state.pt`` (optimizer, step,
data position, RNG of every process, best loss) for ``--resume``. Only rank 0 writes.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from argparse import Namespace
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from ..checkpoints import build_sam_for_training, load_sam, save_sam
from ..checkpoints.formats import read_torch, save_torch
from ..errors import CheckpointError, SamAgeError, UsageError
from ..fileio import atomic_link
from ..optim import Ranger
from ..weights.store import resolve_weights
from .criteria import LossNets, uses_lpips
from .data import SkipLog, images_per_epoch, list_images, make_loader
from .distributed import Proc, end_processes, start_processes
from .options import DEFAULT_WEIGHTS, validate_options
from .visuals import face_grid

STATE_FILE = "training_state.pt"


# -- weights ------------------------------------------------------------------------------


@dataclass
class WeightFiles:
    checkpoint: Optional[Path] = None
    stylegan: Optional[Path] = None
    psp: Optional[Path] = None
    ir_se50: Optional[Path] = None
    dex: Optional[Path] = None
    alexnet: Optional[Path] = None
    lpips_lin: Optional[Path] = None


def resolve(value: Optional[str], flag: str) -> Path:
    """A weights flag (path or registry name; None = the registry default) -> a file."""
    return resolve_weights(value, DEFAULT_WEIGHTS[flag])


def resolve_weight_files(opts, fresh_model: bool) -> WeightFiles:
    """Only the files this run needs, so a missing one is reported before any work."""
    w = WeightFiles()
    if opts.checkpoint_path is not None and fresh_model:
        w.checkpoint = resolve_weights(opts.checkpoint_path, kind="sam")
    if fresh_model and w.checkpoint is None:
        w.stylegan = resolve(opts.stylegan_weights, "stylegan_weights")
        if opts.start_from_encoded_w_plus:
            w.psp = resolve(opts.pretrained_psp_path, "pretrained_psp_path")
    if (fresh_model and w.checkpoint is None) or opts.id_lambda > 0:
        w.ir_se50 = resolve(opts.ir_se50_weights, "ir_se50_weights")
    w.dex = resolve(opts.age_predictor_weights, "age_predictor_weights")
    if uses_lpips(opts):
        w.alexnet = resolve(opts.alexnet_weights, "alexnet_weights")
        if opts.lpips_lin_weights is not None:
            w.lpips_lin = resolve(opts.lpips_lin_weights, "lpips_lin_weights")
    return w


def with_age(images: torch.Tensor, ages: torch.Tensor) -> torch.Tensor:
    """[N,3,H,W] + ages in [0,1] -> [N,4,H,W], built on the images' device."""
    n, _, h, w = images.shape
    return torch.cat([images, ages.to(images.dtype).view(n, 1, 1, 1).expand(n, 1, h, w)], dim=1)


# -- the trainer --------------------------------------------------------------------------


class Trainer:
    def __init__(self, opts: Namespace, proc: Optional[Proc] = None):
        problem = validate_options(opts)
        if problem:
            raise UsageError(problem)
        self.opts = opts
        self.exp_dir = Path(opts.exp_dir).expanduser()
        self.ckpt_dir = self.exp_dir / "checkpoints"
        self.state_path = self.ckpt_dir / STATE_FILE
        self.skipped = SkipLog(verbose=(int(os.environ.get("RANK", "0")) == 0))

        # Everything that can be wrong with the inputs is found before any work starts.
        # (the weights last: a typo in a folder must not cost a download first)
        resume_state = self._check_exp_dir()
        self.train_paths = list_images(Path(opts.train_dir), self.skipped, "training")
        self.test_paths = list_images(Path(opts.test_dir), self.skipped, "test")
        self.files = resolve_weight_files(opts, fresh_model=resume_state is None)

        self.proc = proc or start_processes(opts.device)
        self.device = self.proc.device
        self._seed(opts.seed)
        if self.proc.main:
            (self.exp_dir / "logs").mkdir(parents=True, exist_ok=True)
            self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        self.proc.barrier()

        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(opts.amp)
        self.model = self._build_model(resume_state)
        self.model.train()
        self.params = list(self.model.encoder.parameters())
        if opts.train_decoder:
            self.params += list(self.model.decoder.parameters())
        self.optimizer = (
            Ranger(self.params, lr=opts.learning_rate)
            if opts.optim_name == "ranger"
            else torch.optim.Adam(self.params, lr=opts.learning_rate)
        )
        self.scaler = torch.amp.GradScaler("cuda", enabled=opts.amp == "fp16" and self.device.type == "cuda")
        self.losses = LossNets(opts, self.files, self.device)
        self.net = self.model
        if self.proc.distributed:
            self.net = DistributedDataParallel(
                self.model,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                gradient_as_bucket_view=True,
            )

        pin = self.device.type == "cuda"
        self.train_loader = make_loader(
            self.train_paths,
            opts.batch_size,
            opts.workers,
            self.proc.rank,
            self.proc.world,
            opts.seed,
            train=True,
            pin_memory=pin,
        )
        self.test_loader = make_loader(
            self.test_paths,
            opts.test_batch_size,
            opts.test_workers,
            self.proc.rank,
            self.proc.world,
            opts.seed,
            train=False,
            pin_memory=pin,
        )
        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.best_val_loss: Optional[float] = None
        self._best_step: Optional[int] = None  # the step best_model.pt was written at, in this process
        if resume_state is not None:
            self._restore(resume_state)
        self.logger = self._tensorboard() if self.proc.main else None
        if self.proc.main and resume_state is None:
            (self.exp_dir / "opt.json").write_text(json.dumps(self._opts_dict(), indent=4, sort_keys=True))

    # -- setup ----------------------------------------------------------------------------
    def _check_exp_dir(self) -> Optional[dict]:
        if self.opts.resume:
            if self.state_path.is_file():
                state = read_torch(self.state_path)  # memory-mapped: the optimizer state is large
                if not isinstance(state, dict) or "step" not in state:
                    raise CheckpointError("not a sam-age training state", self.state_path)
                return state
            return None  # nothing saved yet: start (or restart) from scratch
        if self.exp_dir.exists() and (not self.exp_dir.is_dir() or any(self.exp_dir.iterdir())):
            raise SamAgeError(
                "experiment folder exists and is not empty (use --resume to continue it, or pick a new --exp_dir)",
                self.exp_dir,
            )
        return None

    def _seed(self, seed: int) -> None:
        s = seed + self.proc.rank  # every process draws its own ages, flips and noise
        random.seed(s)
        torch.manual_seed(s)

    def _build_model(self, resume_state):
        o = self.opts
        if resume_state is not None:
            path = self.ckpt_dir / resume_state["checkpoint"]
            model = load_sam(path)
        elif self.files.checkpoint is not None:
            model = load_sam(self.files.checkpoint)
        else:
            model = build_sam_for_training(
                self.files.stylegan,
                self.files.ir_se50,
                self.files.psp,
                input_nc=o.input_nc,
                start_from_encoded_w_plus=o.start_from_encoded_w_plus,
                start_from_latent_avg=o.start_from_latent_avg,
                output_size=o.output_size,
                generator=torch.Generator().manual_seed(o.seed),
            )
        if model.output_size != o.output_size:
            raise UsageError(f"the model generates {model.output_size} px but --output_size is {o.output_size}")
        model.requires_grad_(False)
        model.encoder.requires_grad_(True)
        model.decoder.requires_grad_(bool(o.train_decoder))
        return model.to(self.device)

    def _tensorboard(self):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            print(
                "warning: tensorboard is not installed (pip install 'sam-age[train]'); "
                "no TensorBoard logs will be written",
                file=sys.stderr,
            )
            return None
        return SummaryWriter(log_dir=str(self.exp_dir / "logs"))

    def _opts_dict(self) -> dict:
        return {
            k: (str(v) if isinstance(v, Path) else v)
            for k, v in vars(self.opts).items()
            if isinstance(v, (str, int, float, bool, type(None), Path))
        }

    # -- one step -------------------------------------------------------------------------
    def _targets(self, input_ages: torch.Tensor) -> Tuple[torch.Tensor, bool]:
        no_aging = random.random() <= 1.0 / 3
        if no_aging:
            return input_ages, True
        n = input_ages.shape[0]
        if self.opts.target_age in (None, "uniform_random"):
            ages = torch.randint(0, 101, (n,))
        else:
            ages = torch.full((n,), int(self.opts.target_age))
        return (ages.float() / 100).to(self.device, non_blocking=True), False

    def _autocast(self):
        return torch.autocast(
            device_type=self.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None
        )

    def _passes(self, x: torch.Tensor, net, backward: bool):
        """Real and cycle passes; returns (terms, images for logging)."""
        o = self.opts
        with torch.no_grad(), self._autocast():
            input_ages = (self.losses.aging.predict_ages(x) / 100).float()
        target_ages, no_aging = self._targets(input_ages)
        latent_avg = self.model.latent_avg
        with self._autocast():
            y_hat, codes = net(with_age(x, target_ages), return_latents=True)
            loss_real, terms = self.losses(x, x, y_hat, codes, latent_avg, target_ages, input_ages, no_aging, "real")
        if backward:
            self.scaler.scale(loss_real).backward()
        y_rec = None
        if o.cycle_lambda > 0:  # with weight 0 the original's cycle pass adds nothing to the gradient
            y_hat_in = y_hat.detach().float()
            with self._autocast():
                y_rec, codes_rec = net(with_age(y_hat_in, input_ages), return_latents=True)
                loss_cycle, cycle_terms = self.losses(
                    x, x, y_rec, codes_rec, latent_avg, input_ages, input_ages, no_aging, "cycle"
                )
            if backward:
                self.scaler.scale(loss_cycle * o.cycle_lambda).backward()
            terms.update(cycle_terms)
            terms["loss"] = terms["loss_real"] + terms["loss_cycle"]
        else:
            terms["loss"] = terms["loss_real"]
        images = (x, y_hat.detach(), None if y_rec is None else y_rec.detach(), input_ages, target_ages)
        return terms, images

    def train_step(self, x: torch.Tensor):
        """One optimizer step on a batch of faces [N,3,256,256] in [-1, 1]."""
        x = x.to(self.device, non_blocking=True).float()
        # the original's RandomHorizontalFlip(0.5), drawn here so that resume replays it
        flip = (torch.rand(x.shape[0]) < 0.5).to(self.device, non_blocking=True)
        x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
        self.optimizer.zero_grad(set_to_none=True)
        terms, images = self._passes(x, self.net, backward=True)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return terms, images

    @torch.no_grad()
    def validate(self) -> Dict[str, float]:
        self.model.eval()
        sums: Dict[str, torch.Tensor] = {}
        batches = 0
        for i, (faces, failed) in enumerate(self.test_loader):
            self._note_failed(failed)
            x = faces.to(self.device, non_blocking=True).float()
            terms, images = self._passes(x, self.model, backward=False)
            for k, v in terms.items():
                sums[k] = sums.get(k, 0) + v.float()
            batches += 1
            if i == 0 and self.proc.main:
                self._log_images("test", images)
        self.model.train()
        keys = sorted(sums)
        packed = torch.stack([sums[k] for k in keys] + [torch.tensor(float(batches), device=self.device)])
        if self.proc.distributed:
            dist.all_reduce(packed)
        values = (packed[:-1] / packed[-1].clamp(min=1)).tolist()
        return dict(zip(keys, values))

    # -- logging and files ----------------------------------------------------------------
    def _note_failed(self, failed: List[Tuple[str, str]]) -> None:
        for path, reason in failed:
            self.skipped.add(path, reason)

    def _log_scalars(self, prefix: str, values: Dict[str, float]) -> None:
        if self.logger is None:
            return
        for k, v in values.items():
            self.logger.add_scalar(f"{prefix}/{k}", v, self.step)
        self.logger.add_scalar(f"{prefix}/skipped_images", len(self.skipped), self.step)
        self.logger.flush()

    def _log_images(self, split: str, images) -> None:
        x, y_hat, y_rec, input_ages, target_ages = images
        n = min(2, x.shape[0])
        with torch.no_grad(), self._autocast():
            out_ages = self.losses.aging.predict_ages(y_hat[:n]).float()
            rec_ages = None if y_rec is None else self.losses.aging.predict_ages(y_rec[:n]).float()
        grid = face_grid(
            x[:n],
            y_hat[:n],
            None if y_rec is None else y_rec[:n],
            input_ages[:n] * 100,
            target_ages[:n] * 100,
            out_ages,
            rec_ages,
        )
        path = self.exp_dir / "logs" / "images" / split / "faces" / f"{self.step:06d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        grid.save(path, quality=90)
        if self.logger is not None:
            self.logger.add_image(f"images/{split}/faces", np.asarray(grid), self.step, dataformats="HWC")

    def _append_timestamp(self, text: str) -> None:
        with open(self.ckpt_dir / "timestamp.txt", "a") as f:
            f.write(text)

    def _rng_states(self) -> List[dict]:
        mine = {"python": random.getstate(), "torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            mine["cuda"] = torch.cuda.get_rng_state(self.device)
        if not self.proc.distributed:
            return [mine]
        everyone: List[Optional[dict]] = [None] * self.proc.world
        dist.all_gather_object(everyone, mine)
        return everyone

    def checkpoint(self, loss_dict: Dict[str, float], is_best: bool) -> None:
        """``best_model.pt`` or ``iteration_N.pt`` (+ the training state); rank 0 writes."""
        rngs = None if is_best else self._rng_states()  # a collective: every rank takes part
        if self.proc.main:
            name = "best_model.pt" if is_best else f"iteration_{self.step}.pt"
            # The step's best model is this step's checkpoint too: the same bytes, so a hard
            # link (no second 2.2 GB write) where the file system has them.
            if (
                is_best
                or self._best_step != self.step
                or not atomic_link(self.ckpt_dir / "best_model.pt", self.ckpt_dir / name)
            ):
                # the model's own configuration wins over the flags (a --checkpoint_path may differ)
                save_sam(self.model, self.ckpt_dir / name, {**self._opts_dict(), **self.model.opts})
            if is_best:
                self._best_step = self.step
                self._append_timestamp(f"**Best**: Step - {self.step}, Loss - {self.best_val_loss:.3f} \n{loss_dict}\n")
            else:
                state = {
                    "step": self.step,
                    "epoch": self.epoch,
                    "batch_in_epoch": self.batch_in_epoch,
                    "best_val_loss": self.best_val_loss,
                    "checkpoint": name,
                    "optimizer": self.optimizer.state_dict(),
                    "scaler": self.scaler.state_dict(),
                    "rng": rngs,
                    "world_size": self.proc.world,
                    "seed": self.opts.seed,
                    "skipped_images": sorted(self.skipped.paths),
                }
                save_torch(state, self.state_path)
                self._append_timestamp(f"Step - {self.step}, \n{loss_dict}\n")
        self.proc.barrier()

    def _restore(self, state: dict) -> None:
        try:
            self.optimizer.load_state_dict(state["optimizer"])
        except (ValueError, KeyError) as e:
            raise CheckpointError(
                f"optimizer state does not fit this model ({e}); was --train_decoder or --optim_name changed?",
                self.state_path,
            ) from None
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.step = int(state["step"])
        self.epoch = int(state["epoch"])
        self.batch_in_epoch = int(state["batch_in_epoch"])
        self.best_val_loss = state.get("best_val_loss")
        for p in state.get("skipped_images", []):
            self.skipped.paths.add(p)
        rngs = state.get("rng") or []
        if len(rngs) == self.proc.world:
            mine = rngs[self.proc.rank]
            py = mine["python"]
            random.setstate((py[0], tuple(py[1]), py[2]))
            torch.set_rng_state(mine["torch"])
            if "cuda" in mine and self.device.type == "cuda":
                torch.cuda.set_rng_state(mine["cuda"], self.device)
        else:  # another number of processes: fresh, distinct streams
            self._seed(self.opts.seed + 1000 * self.step)

    # -- the loop -------------------------------------------------------------------------
    def train(self) -> dict:
        o = self.opts
        bar = tqdm(
            total=o.max_steps,
            initial=self.step,
            unit="step",
            dynamic_ncols=True,
            disable=not self.proc.main,
            file=sys.stderr,
        )
        per_epoch = images_per_epoch(self.train_loader)
        started, first_step = time.time(), self.step
        while self.step < o.max_steps:
            self.train_loader.sampler.set_epoch(self.epoch, self.batch_in_epoch, o.batch_size)
            for faces, failed in self.train_loader:
                self._note_failed(failed)
                terms, images = self.train_step(faces)
                self.step += 1
                self.batch_in_epoch += 1
                bar.update(1)
                self._after_step(terms, images, bar)
                if self.step >= o.max_steps:
                    break
            if self.batch_in_epoch >= per_epoch:
                self.epoch += 1
                self.batch_in_epoch = 0
        bar.close()
        elapsed = time.time() - started
        if self.logger is not None:
            self.logger.close()
        if self.proc.main:
            print(
                f"finished: {self.step} steps ({(self.step - first_step) and elapsed / (self.step - first_step):.2f} "
                f"s/step), best val loss {self.best_val_loss}, checkpoints in {self.ckpt_dir}, "
                f"{len(self.skipped)} unreadable image(s) skipped",
                file=sys.stderr,
            )
        return {
            "steps": self.step,
            "best_val_loss": self.best_val_loss,
            "skipped_images": len(self.skipped),
            "seconds": elapsed,
        }

    def _after_step(self, terms, images, bar) -> None:
        o, step = self.opts, self.step
        train_values = None
        if self.proc.main and (step % o.image_interval == 0 or (step < 1000 and step % 25 == 0)):
            self._log_images("train", images)
        if step % o.board_interval == 0:
            keys = sorted(terms)
            train_values = dict(zip(keys, torch.stack([terms[k].float() for k in keys]).tolist()))
            if self.proc.main:
                self._log_scalars("train", train_values)
                bar.set_postfix(loss=f"{train_values['loss']:.4f}")
                bar.write(f"step {step} train: " + ", ".join(f"{k}={v:.4f}" for k, v in train_values.items()))
        val_values = None
        if step % o.val_interval == 0 or step == o.max_steps:
            val_values = self.validate()
            if self.proc.main:
                self._log_scalars("test", val_values)
                bar.write(f"step {step} test: " + ", ".join(f"{k}={v:.4f}" for k, v in val_values.items()))
            if self.best_val_loss is None or val_values["loss"] < self.best_val_loss:
                self.best_val_loss = val_values["loss"]
                self.checkpoint(val_values, is_best=True)
        save_every = o.save_interval or o.max_steps
        if step % save_every == 0 or step == o.max_steps:
            if val_values is None and train_values is None:
                keys = sorted(terms)
                train_values = dict(zip(keys, torch.stack([terms[k].float() for k in keys]).tolist()))
            self.checkpoint(val_values if val_values is not None else train_values, is_best=False)


def run_training(opts: Namespace) -> dict:
    """What ``sam-age train`` does: set up (every input checked first), train, clean up."""
    try:
        return Trainer(opts).train()
    finally:
        end_processes()
