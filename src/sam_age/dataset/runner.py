"""One rank's share of an ``age`` run: decide, prepare, age in batches, write, record.

For each input of this rank's shard (:func:`sam_age.dataset.listing.shard`), in order:

1. *Decide* from what ``OUT`` already records (:func:`sam_age.dataset.manifest.read_state`):
   an input whose latest line says ``ok`` for the same request, with its files present, is
   skipped and reported done; an input whose result place is taken by something this
   request did not write (another request, or files the manifest does not know) is
   refused without being read ("already exists (use --overwrite ...)", as before); the
   rest is to do (``--overwrite``: everything is to do, and replaces).
2. *Prepare* in ``DataLoader`` workers (:mod:`sam_age.dataset.loader`): read, detect, align.
3. *Age* the faces of all the photos of a batch together
   (``AgePipeline.age_prepared_many``: relative ages resolved per face, the pretrained
   encoder once per face, faces x ages in forward passes of ``batch_size``), after
   committing a ``started`` line per photo to this rank's part.
4. *Write* each photo's files into staging and rename them into place
   (:mod:`sam_age.dataset.outputs`), then commit the batch's final lines (one fsync).
5. At the end, close the part, tell the other ranks (:class:`sam_age.dataset.handshake.Finish`),
   and, when last, merge the manifest.

A batch of ``ceil(batch_size / len(ages))`` photos keeps a forward pass full however many
ages are asked; a kill loses at most that batch.
"""

from __future__ import annotations

import math
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from ..engine import batch_size_for
from ..errors import STOP_ERRNOS, SamAgeError, UsageError, exists_error
from ..fileio import NotOwnError, not_own_message
from ..launch import Ranks
from ..marks import COMPOSITE, GENERATED, Mark
from ..pipeline import AgePipeline
from ..render import DEFAULT_MARK, label_frames, make_strip, save_gif, save_image, save_mp4, strip_labels
from ..results import AgingResult, relative_notes, relative_report
from .handshake import Finish
from .listing import Item, shard
from .loader import PhotoDataset, Prepared, make_loader
from .manifest import FAILED, OK, STARTED, PartWriter, input_record, merge, read_state
from .outputs import Layout, Plan, Request, Staging

SKIPPED = "skipped"  # an Outcome status: done by an earlier run with the same request
NOT_DONE = "not-done"  # an Outcome status: never started, the run stopped (a full disk); not recorded
EARLIER = "earlier_files"  # a record's files of earlier requests still in OUT (flat layout: never inputs)
REPORT_KEYS = ("requested", "ages", "estimated_ages", "clamped", "report")  # relative_report's, in the manifest


@dataclass
class Outcome:
    item: Item
    status: str  # ok | skipped | failed | no-face
    reason: Optional[str] = None
    files: List[Path] = field(default_factory=list)
    faces: int = 0
    scores: List[float] = field(default_factory=list)
    seconds: float = 0.0
    refused: bool = False  # its place in OUT is taken: nothing done, nothing recorded
    aged: bool = False  # its faces went through the model (counted by the progress hook)
    errno: Optional[int] = None  # a write error's errno (STOP_ERRNOS: the run stops)
    report: Dict[str, object] = field(default_factory=dict)  # ages asked and made (relative_report)
    notes: List[str] = field(default_factory=list)  # one-line notes for the user (estimates, clamping)

    @property
    def ok(self) -> bool:
        return self.status in (OK, SKIPPED)


@dataclass
class ShardResult:
    outcomes: List[Outcome]
    totals: Optional[Dict[str, int]]  # over every rank; None unless this rank finished last
    manifest: Optional[Path]  # written by this rank (the last one), else None

    @property
    def last(self) -> bool:
        return self.totals is not None


def own_files(rec: Optional[dict], item: Item) -> frozenset:
    """The files (relative to ``OUT``) the manifest records as this input's own: those of
    its latest line (``files`` and ``earlier_files``), when that line has the name the
    input has now."""
    if rec is None or rec.get("name") != item.name:
        return frozenset()
    return frozenset(f for key in ("files", EARLIER) for f in rec.get(key, []) if isinstance(f, str))


def decide(
    items: Sequence[Item], state: Dict[str, dict], request: Request, layout: Layout, out: Path, overwrite: bool
) -> Tuple[List[Tuple[Item, bool, frozenset]], List[Outcome]]:
    """-> (to do: ``(item, replace, own files)``, already settled: skipped or refused outcomes).
    Replacing (``--overwrite``, or a result the manifest shows is this request's own) only
    ever replaces what sam-age wrote for this input (:meth:`Layout.foreign`)."""
    todo: List[Tuple[Item, bool, frozenset]] = []
    settled: List[Outcome] = []
    for item in items:
        rec = state.get(item.key)
        own = own_files(rec, item)
        ours = rec is not None and rec.get("name") == item.name and request.same(rec.get("request"))
        if ours and not overwrite and rec.get("status") == OK:
            files = [out / f for f in rec.get("files", [])]
            if all(f.is_file() for f in files):
                report = {k: rec[k] for k in REPORT_KEYS if k in rec}
                settled.append(
                    Outcome(
                        item,
                        SKIPPED,
                        None,
                        files,
                        int(rec.get("faces", 0)),
                        list(rec.get("scores", [])),
                        0.0,
                        report=report,
                    )
                )
                continue
        if overwrite or ours:
            foreign = layout.foreign(out, item.name, own)
            reason = (
                not_own_message(foreign if layout.r.layout == "flat" else out / item.name, foreign)
                if foreign is not None
                else None
            )
        else:
            taken = layout.occupied(out, item.name)
            reason = exists_error(taken).reason if taken is not None else None
        if reason is not None:
            settled.append(Outcome(item, FAILED, reason, refused=True))
        else:
            todo.append((item, overwrite or ours, own))
    return todo, settled


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def default_workers(ranks: Ranks, n_batches: int, device: str = "cpu", cpus: Optional[int] = None) -> int:
    """Preparation processes beside the model: none for a single batch (one photo: nothing
    to read ahead of); on a CPU model, one per 4 of this rank's cores (the model's threads
    keep the rest: on 2 or 3 cores the photos are read in this process, between batches,
    instead of two processes fighting for the cores); beside a GPU, every core but one.
    At most 8, and never more than there are batches to read ahead."""
    per_rank = max(1, (cpus or _cpus()) // max(1, ranks.local_world))
    cores = per_rank // 4 if str(device).split(":")[0] == "cpu" else per_rank - 1
    return max(0, min(8, cores, n_batches - 1))


def run_shard(
    items: Sequence[Item],
    *,
    out: Path,
    request: Request,
    get_pipeline: Callable[[], object],
    ranks: Optional[Ranks] = None,
    overwrite: bool = False,
    batch_size: Optional[int] = None,
    workers: Optional[int] = None,
    extra_failed: int = 0,
    on_outcome: Callable[[Outcome], None] = lambda o: None,
    on_progress: Optional[Callable[[int], None]] = None,
    on_prepared: Optional[Callable[[Item, int], None]] = None,
    on_stage: Optional[Callable[[str, str], None]] = None,
    device: str = "cpu",
    mark: Optional[Mark] = DEFAULT_MARK,
) -> ShardResult:
    """Do this rank's share of ``items`` (the whole listing; the split happens here).

    ``get_pipeline()`` returns the loaded :class:`~sam_age.pipeline.AgePipeline` (called
    at the first face: a shard of bad files never loads the model); ``extra_failed``
    counts inputs that failed before the listing (missing files), reported by rank 0;
    ``on_progress(k)``: k more face-ages through the model (a progress bar). A full or
    read-only disk stops the shard after the batch it hit: the inputs not started are
    reported ``NOT_DONE`` (and not recorded, so the next run does them).
    ``on_prepared(item, faces)``: a photo's faces are found, before the model sees them
    (a progress bar's total grows then, not after); ``on_stage(stage, detail)``: reading
    and the face search of the first photo begin (:func:`sam_age.face.prepare.prepare_faces`),
    or ``"prepare"`` when worker processes do them; ``device``: where the model runs (it
    decides how many worker processes, :func:`default_workers`). ``mark``: how
    every file is marked (:mod:`sam_age.marks`; None: ``--no-mark``), per file with its
    age, its kind (face or pasted photo) and the input as C2PA ingredient. ``ranks``
    defaults to the launch this process is in (read when called, not at import)."""
    ranks = Ranks() if ranks is None else ranks
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = PartWriter(out, ranks.rank, ranks.world)  # can this process write its record there?
    except OSError as e:
        raise UsageError(f"--output {out}: cannot write there ({e.strerror or e})") from None
    layout = Layout(request)
    mine = shard(items, ranks.rank, ranks.world)
    try:
        todo, outcomes = decide(mine, read_state(out), request, layout, out, overwrite)
    except BaseException:
        probe.close()
        raise
    for o in outcomes:
        on_outcome(o)
    writer = probe
    try:
        finish = Finish(ranks)  # connect before the work: a broken launch fails fast
        staging = Staging(out, writer.stem)
    except BaseException:
        writer.close()
        raise
    ages = list(request.ages)
    photos = max(1, math.ceil(batch_size_for(device, batch_size) / len(ages)))  # None: per device
    n_batches = math.ceil(len(todo) / photos)
    workers = default_workers(ranks, n_batches, device) if workers is None else min(int(workers), max(0, n_batches - 1))
    dataset = PhotoDataset(
        [it.path for it, _, _ in todo],
        align=request.align,
        all_faces=request.all_faces,
        keep_photo=request.paste_back and request.align,
    )
    if on_stage is not None and todo:
        if workers:
            on_stage("prepare", f"({len(todo)} photos, {workers} worker processes)")
        else:
            dataset.on_stage = on_stage
    finished = False
    pool = ThreadPoolExecutor(max_workers=min(photos, _cpus(), 8)) if photos > 1 else None
    try:
        pipe = None
        stopped = None
        reported = set()
        for batch in make_loader(dataset, photos, workers):
            if pipe is None and any(p.status == OK for p in batch):
                pipe = get_pipeline()
                pipe.check_size(request.size)  # UsageError (exit 2) before anything is written
            for o in _do_batch(
                batch, todo, pipe, request, layout, out, writer, staging, pool, on_progress, on_prepared, mark
            ):
                outcomes.append(o)
                reported.add(o.item.index)
                on_outcome(o)
                if o.errno in STOP_ERRNOS and stopped is None:
                    stopped = o.reason
            if stopped is not None:
                break
        if stopped is not None:  # nothing more can be written: no more work, one outcome each
            for item, _, _ in todo:
                if item.index not in reported:
                    o = Outcome(item, NOT_DONE, stopped)  # reason: the error that stopped the run
                    outcomes.append(o)
                    on_outcome(o)
        finished = True
    finally:
        if pool is not None:
            pool.shutdown(wait=True)
        writer.close()
        staging.remove()
        totals = None
        if finished:
            counts = {
                "inputs": len(mine) + (extra_failed if ranks.rank == 0 else 0),
                "ok": sum(o.status == OK for o in outcomes),
                "skipped": sum(o.status == SKIPPED for o in outcomes),
                "failed": sum(not o.ok for o in outcomes) + (extra_failed if ranks.rank == 0 else 0),
                "files": sum(len(o.files) for o in outcomes if o.ok),
            }
            try:
                totals = finish.report(counts)
            except Exception as e:  # the launch's store is gone: merge anyway, let the last one judge
                print(
                    f"sam-age age: rank {ranks.rank}: cannot report to the other ranks "
                    f"({' '.join(str(e).split())}); merging the manifest here",
                    file=sys.stderr,
                )
                finished = False
        manifest = merge(out) if (totals is not None or not finished) else None
    return ShardResult(outcomes, totals, manifest)


def _age_text(asked: str, made) -> str:
    """The age a file's mark names: as asked, with the age made when it differs (``+20 (57.4)``)."""
    try:
        return asked if float(asked) == float(made) else f"{asked} ({float(made):g})"
    except (TypeError, ValueError):
        return f"{asked} ({float(made):g})" if made is not None else asked


def _marked(mark: Optional[Mark], **what) -> Optional[Mark]:
    return None if mark is None else mark.but(**what)


def write_results(
    staging: Staging, plan: Plan, request: Request, result, frames=None, mark: Optional[Mark] = DEFAULT_MARK
) -> None:
    """Write one input's files into ``staging``: ``result`` is an
    :class:`~sam_age.results.AgingResult`; ``frames[k]``: face k's animation frames when
    the request asks for an animation; ``mark``: the run's mark (None: unmarked), given
    each file's age and kind here (a face: generated; a pasted photo: a composite)."""
    every = ",".join(request.ages)
    for k, (face, files) in enumerate(zip(result.faces, plan.faces)):
        for img, rel, asked, made in zip(face.images, files.ages, request.ages, face.ages):
            save_image(img, staging.path(rel), mark=_marked(mark, source=GENERATED, age=_age_text(asked, made)))
        whole = _marked(mark, source=GENERATED, age=every)
        if files.strip:
            labels = strip_labels(face.ages) if request.labels else None
            save_image(make_strip(face.aligned, face.images, labels), staging.path(files.strip), mark=whole)
        anim = frames[k] if frames is not None else None
        if anim is not None and request.labels:
            anim = label_frames(anim, face.ages, request.frames_per_age)
        if files.gif:
            save_gif(anim, staging.path(files.gif), fps=request.fps, mark=whole)
        if files.mp4:
            staging.path(files.mp4).parent.mkdir(parents=True, exist_ok=True)
            save_mp4(anim, staging.path(files.mp4), fps=request.fps, mark=whole)
    made_ages = result.ages or [None] * len(request.ages)
    for img, rel, asked, made in zip(result.pasted or [], plan.pasted, request.ages, made_ages):
        save_image(img, staging.path(rel), mark=_marked(mark, source=COMPOSITE, age=_age_text(asked, made)))


def _record(
    item: Item,
    status: str,
    request: Request,
    *,
    reason=None,
    files: Sequence[str] = (),
    faces=0,
    scores=(),
    seconds=0.0,
    report=None,
    own=frozenset(),
    out: Optional[Path] = None,
) -> dict:
    """A manifest line (``files`` relative to OUT; ``report``: ages asked and made, and with
    relative ages the estimates, as :func:`sam_age.results.relative_report`). ``own``: the
    files recorded for this input before; those still in ``out`` and not among ``files``
    stay recorded as ``earlier_files`` (sam-age's own: never inputs, replaceable)."""
    rec = input_record(
        item,
        status,
        request,
        reason=reason,
        files=files,
        faces=faces,
        scores=scores,
        seconds=seconds,
        **(report or _asked(request)),
    )
    earlier = sorted(f for f in set(own) - set(files) if out is not None and (Path(out) / f).is_file())
    if earlier:
        rec[EARLIER] = earlier
    return rec


def _do_batch(
    batch: List[Prepared],
    todo,
    pipe,
    request: Request,
    layout: Layout,
    out: Path,
    writer: PartWriter,
    staging: Staging,
    pool: Optional[ThreadPoolExecutor] = None,
    on_progress: Optional[Callable[[int], None]] = None,
    on_prepared: Optional[Callable[[Item, int], None]] = None,
    mark: Optional[Mark] = DEFAULT_MARK,
) -> List[Outcome]:
    """One batch: intents, the model over every face of the batch
    (``AgePipeline.age_prepared_many``), the files (written by ``pool``'s threads, one input
    each: encoders release the GIL), the final lines."""
    results: List[Outcome] = []
    ready: List[Prepared] = []
    own_of = {todo[p.index][0].index: todo[p.index][2] for p in batch}  # item index -> its files before
    for p in batch:
        item, replace, own = todo[p.index]
        if p.status != OK:
            results.append(Outcome(item, p.status, p.reason, seconds=p.seconds, report=_asked(request)))
            continue
        # (flat layout: the files of a second face, seen only now)
        if replace:
            foreign = layout.foreign(out, item.name, own, p.n_faces)
            reason = (
                None
                if foreign is None
                else not_own_message(foreign if layout.r.layout == "flat" else out / item.name, foreign)
            )
        else:
            taken = layout.occupied(out, item.name, p.n_faces)
            reason = None if taken is None else exists_error(taken).reason
        if reason is not None:
            results.append(Outcome(item, FAILED, reason, seconds=p.seconds, refused=True))
            continue
        ready.append(p)
        if on_prepared is not None:
            on_prepared(item, p.n_faces)
        writer.add(
            _record(
                item,
                STARTED,
                request,
                files=layout.plan(item.name, p.n_faces).all(),
                faces=p.n_faces,
                scores=p.scores,
                report=_asked(request),
                own=own,
                out=out,
            )
        )
    writer.commit()

    if ready:
        t0 = time.perf_counter()
        aged = pipe.age_prepared_many(
            [(None, p.prepared_faces()) for p in ready], list(request.ages), size=request.size, progress=on_progress
        )
        model_seconds = time.perf_counter() - t0
        n_total = sum(p.n_faces for p in ready)
        jobs = []
        for p, result in zip(ready, aged):
            frames = (
                [pipe.animate(f, frames_per_age=request.frames_per_age) for f in result.faces]
                if request.gif or request.mp4
                else None
            )  # the model: in this thread
            share = model_seconds * p.n_faces / max(1, n_total)
            args = (p, todo[p.index], result, frames, share, request, layout, out, staging, mark)
            jobs.append(pool.submit(_finish_one, *args) if pool is not None else _finish_one(*args))
        results += [j.result() if pool is not None else j for j in jobs]

    results.sort(key=lambda o: o.item.index)
    for o in results:
        if not o.refused:  # a refusal leaves the input's record (the other request's) alone
            writer.add(
                _record(
                    o.item,
                    o.status,
                    request,
                    reason=o.reason,
                    faces=o.faces,
                    scores=o.scores,
                    files=[Path(f).relative_to(out).as_posix() for f in o.files],
                    seconds=o.seconds,
                    report=o.report,
                    own=own_of.get(o.item.index, frozenset()),
                    out=out,
                )
            )
    writer.commit()
    return results


def _asked(request: Request) -> dict:
    return {"requested": list(request.ages), "ages": []}


def _finish_one(
    p: Prepared,
    job: Tuple[Item, bool, frozenset],
    result: AgingResult,
    frames,
    model_share: float,
    request: Request,
    layout: Layout,
    out: Path,
    staging: Staging,
    mark: Optional[Mark] = DEFAULT_MARK,
) -> Outcome:
    """Paste back, write into staging, rename into place: one input, no model."""
    t1 = time.perf_counter()
    item, replace, own = job
    photo = p.photo_image()
    if photo is not None and any(q is not None for q in p.quads):
        result.source = photo
        result.pasted = [AgePipeline.paste(photo, result.faces, k, mask=request.mask) for k in range(len(request.ages))]
    plan = layout.plan(item.name, len(result.faces))
    try:
        write_results(staging, plan, request, result, frames, _marked(mark, ingredient=str(item.path)))
        files = staging.place(item.name, plan, layout, replace, own)
    except FileExistsError as e:  # a race: the place was free (or sam-age's own) when checked
        staging.discard(item.name, plan)
        reason = str(e) if isinstance(e, NotOwnError) else exists_error(e.filename or str(e)).reason
        return Outcome(
            item, FAILED, reason, faces=len(result.faces), seconds=p.seconds, report=_asked(request), aged=True
        )
    except SamAgeError as e:  # C2PA refused to sign this input's files (its ingredient): it fails
        staging.discard(item.name, plan)
        return Outcome(
            item, FAILED, e.reason, faces=len(result.faces), seconds=p.seconds, report=_asked(request), aged=True
        )
    except OSError as e:  # disk full, permissions, ...: this input fails (a full disk stops the run)
        staging.discard(item.name, plan)
        return Outcome(
            item,
            FAILED,
            f"cannot write {_final_name(e, staging, out)}: {e.strerror or e}",
            faces=len(result.faces),
            seconds=p.seconds,
            report=_asked(request),
            aged=True,
            errno=e.errno,
        )
    seconds = p.seconds + model_share + (time.perf_counter() - t1)
    return Outcome(
        item,
        OK,
        None,
        files,
        len(result.faces),
        list(p.scores),
        seconds,
        report=relative_report(result),
        notes=relative_notes(result),
        aged=True,
    )


def _final_name(error: OSError, staging: Staging, out: Path):
    """The name the user knows: a file being written in staging, by its place in ``OUT``."""
    if error.filename is None:
        return out
    try:
        return out / Path(str(error.filename)).relative_to(staging.root)
    except ValueError:
        return error.filename
