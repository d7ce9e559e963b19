"""``sam-age align``: a folder of photos -> the FFHQ-aligned faces that training reads.

What the official ``scripts/align_all_parallel.py`` does, through the dataset runner's
parts: the listing and its names (:mod:`.listing`: unique names, round-robin ``torchrun``
shards), the manifest (:mod:`.manifest`: per-rank parts, ``started`` lines before files,
the atomic merge, resume), ``DataLoader`` workers for reading and aligning, the end-of-run
handshake (:mod:`.handshake`), and the runner's :class:`~sam_age.dataset.runner.Outcome`.
The alignment is the one ``age`` uses (:func:`sam_age.face.align.align_faces`: dlib's 68
landmarks, the FFHQ quad) at ``size`` 256 (what SAM trains on) or 1024 (FFHQ's own).

Files (``OUT`` relative): ``NAME.png`` (the best face), or with ``all_faces``
``NAME_face1.png``, ``NAME_face2.png``, ... (best first). With ``split`` (a fraction in
(0, 1)) they go to ``train/`` or ``test/``: an input's side is a pure function of its
name (the first 8 bytes of sha256(name) as a fraction below ``split`` -> test), so a
re-run, another rank count or more photos never move a face to the other side. Each file is
written atomically (:func:`sam_age.render.save_image`). A re-run skips the inputs the
manifest records as done for the same request with their files present; a file in the
way that this request did not write is left alone (that input fails) unless ``overwrite``.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, List, Optional, Sequence

import numpy as np
from torch.utils.data import Dataset

from ..errors import InputError, NoFaceError, UsageError, exists_error
from ..launch import Ranks
from .handshake import Finish
from .listing import Item, shard
from .loader import make_loader
from .manifest import FAILED, NO_FACE, OK, STARTED, PartWriter, input_record, merge, read_state
from .runner import SKIPPED, Outcome, ShardResult, default_workers

SIZES = (256, 1024)
SPLITS = ("train", "test")


@dataclass(frozen=True)
class AlignRequest:
    size: int = 256
    all_faces: bool = False
    split: Optional[float] = None

    def __post_init__(self):
        if self.size not in SIZES:
            raise UsageError(f"--size must be 256 or 1024, not {self.size}")
        if self.split is not None and not 0.0 < self.split < 1.0:
            raise UsageError(f"--split is the test fraction, between 0 and 1 (exclusive), not {self.split:g}")

    def to_json(self) -> dict:
        return {"command": "align", **asdict(self)}

    def same(self, recorded) -> bool:
        return isinstance(recorded, dict) and recorded == self.to_json()


def split_side(name: str, fraction: Optional[float]) -> Optional[str]:
    """``"test"`` or ``"train"`` for an input named ``name`` (None without a split)."""
    if fraction is None:
        return None
    u = int.from_bytes(hashlib.sha256(name.encode("utf-8", "surrogatepass")).digest()[:8], "big") / 2**64
    return "test" if u < fraction else "train"


def face_files(name: str, n_faces: int, request: AlignRequest) -> List[str]:
    side = split_side(name, request.split)
    prefix = f"{side}/" if side else ""
    if not request.all_faces:
        return [f"{prefix}{name}.png"]
    return [f"{prefix}{name}_face{k + 1}.png" for k in range(n_faces)]


class AlignDataset(Dataset):
    """``dataset[i]`` -> ``(i, status, reason, faces uint8 [F, S, S, 3] or None, scores, seconds)``,
    never raising (a bad file comes back with its one-line reason)."""

    def __init__(self, paths: Sequence[Path], size: int, all_faces: bool):
        self.paths, self.size, self.all_faces = [Path(p) for p in paths], size, all_faces

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        from ..face.align import align_faces
        from ..images import read_image

        t0 = time.perf_counter()
        path = self.paths[i]
        try:
            photo = read_image(path)
            faces = align_faces(photo, all_faces=self.all_faces, output_size=self.size, name=str(path))
        except NoFaceError as e:
            return (i, NO_FACE, e.reason, None, [], time.perf_counter() - t0)
        except InputError as e:
            return (i, FAILED, e.reason, None, [], time.perf_counter() - t0)
        except Exception as e:  # a library's own failure on a strange file: that input fails
            reason = " ".join(f"{type(e).__name__}: {e}".split())
            return (i, FAILED, f"cannot align the image ({reason})", None, [], time.perf_counter() - t0)
        arr = np.stack([np.asarray(f.image.convert("RGB"), dtype=np.uint8) for f in faces])
        return (i, OK, None, arr, [float(f.score) for f in faces], time.perf_counter() - t0)


def _record(
    item: Item, status: str, request: AlignRequest, reason=None, files=(), faces=0, scores=(), seconds=0.0
) -> dict:
    return input_record(item, status, request, reason=reason, files=files, faces=faces, scores=scores, seconds=seconds)


def run_align(
    items: Sequence[Item],
    *,
    out: Path,
    request: AlignRequest,
    ranks: Optional[Ranks] = None,
    overwrite: bool = False,
    workers: Optional[int] = None,
    batch: int = 8,
    on_outcome: Callable[[Outcome], None] = lambda o: None,
    extra_failed: int = 0,
) -> ShardResult:
    """Align this rank's share of ``items`` into ``out`` (see the module docstring).
    ``ranks`` defaults to the launch this process is in (read when called)."""
    ranks = Ranks() if ranks is None else ranks
    from PIL import Image

    from ..render import save_image

    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        writer = PartWriter(out, ranks.rank, ranks.world)
    except OSError as e:
        raise UsageError(f"--output {out}: cannot write there ({e.strerror or e})") from None
    mine = shard(items, ranks.rank, ranks.world)
    outcomes: List[Outcome] = []
    finished = False
    try:
        finish = Finish(ranks)
        state = read_state(out)
        todo: List[tuple] = []
        for item in mine:  # decide: done before, in the way, or to do
            rec = state.get(item.key)
            ours = rec is not None and request.same(rec.get("request"))
            if ours and not overwrite and rec.get("status") == OK:
                files = [out / f for f in rec.get("files", [])]
                if files and all(f.is_file() for f in files):
                    o = Outcome(item, SKIPPED, None, files, int(rec.get("faces", 0)), list(rec.get("scores", [])))
                    outcomes.append(o)
                    on_outcome(o)
                    continue
            todo.append((item, ours or overwrite))
        n_batches = -(-len(todo) // max(1, batch))
        workers = default_workers(ranks, n_batches) if workers is None else min(int(workers), max(0, n_batches - 1))
        dataset = AlignDataset([it.path for it, _ in todo], request.size, request.all_faces)
        for got in make_loader(dataset, batch, workers):
            for i, status, reason, faces, scores, seconds in got:
                item, replace = todo[i]
                if status != OK:
                    o = Outcome(item, status, reason, seconds=seconds)
                    writer.add(_record(item, status, request, reason, seconds=seconds))
                    outcomes.append(o)
                    on_outcome(o)
                    continue
                rels = face_files(item.name, len(faces), request)
                taken = next((out / r for r in rels if (out / r).exists() or (out / r).is_symlink()), None)
                link = next((out / r for r in rels if (out / r).is_symlink()), None)
                if link is not None:  # a link is never ours: never written through, never replaced
                    taken, replace = link, False
                if taken is not None and not replace:
                    o = Outcome(item, FAILED, exists_error(taken).reason, seconds=seconds, refused=True)
                    outcomes.append(o)
                    on_outcome(o)
                    continue
                writer.add(_record(item, STARTED, request, files=rels, faces=len(faces), scores=scores))
                writer.commit()
                try:
                    for arr, rel in zip(faces, rels):
                        target = out / rel
                        target.parent.mkdir(parents=True, exist_ok=True)
                        save_image(Image.fromarray(arr, "RGB"), target)
                except OSError as e:
                    o = Outcome(
                        item, FAILED, f"cannot write {out / rel}: {e.strerror or e}", seconds=seconds, errno=e.errno
                    )
                else:
                    o = Outcome(item, OK, None, [out / r for r in rels], len(faces), list(scores), seconds)
                writer.add(
                    _record(
                        item,
                        o.status,
                        request,
                        o.reason,
                        files=rels if o.ok else (),
                        faces=o.faces,
                        scores=o.scores,
                        seconds=seconds,
                    )
                )
                writer.commit()
                outcomes.append(o)
                on_outcome(o)
        finished = True
    finally:
        writer.close()
    counts = {
        "inputs": len(mine) + (extra_failed if ranks.rank == 0 else 0),
        "ok": sum(o.status == OK for o in outcomes),
        "skipped": sum(o.status == SKIPPED for o in outcomes),
        "failed": sum(not o.ok for o in outcomes) + (extra_failed if ranks.rank == 0 else 0),
        "files": sum(len(o.files) for o in outcomes if o.ok),
    }
    totals = finish.report(counts) if finished else None
    manifest = merge(out) if totals is not None else None
    return ShardResult(outcomes, totals, manifest)
