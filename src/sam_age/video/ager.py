"""Age the people in a video clip: :class:`VideoAger`, used by ``sam-age video`` and the web demo.

    from sam_age import AgePipeline
    from sam_age.video import VideoAger, VideoJob
    ager = VideoAger(AgePipeline.from_pretrained("sam_ffhq_aging"))
    result = ager.run("clip.mp4", "out", VideoJob(ages=[70]))   # -> out/clip_age070.mp4

Three streaming passes over the clip, each frame decoded afresh (decoding costs little next
to the model; memory never holds more than one chunk of frames):

1. *analyse*: faces detected (every frame, or every ``detect_every``-th with the landmarks
   carried in between by dlib's shape predictor), then tracked (:mod:`.track`: one track per
   person, short gaps bridged) and each track's landmarks smoothed over time
   (:mod:`.smooth`) before the FFHQ quad is computed -- the quad no longer wobbles with
   landmark noise.
2. *encode*: every face of every frame is aligned with its smoothed quad and encoded once
   (pretrained encoder once per face, then the age encoder per age) to W+ codes.
3. *render*: each track's codes are smoothed over time (a centred Gaussian needing
   ``radius(sigma)`` frames of look-ahead: the neighbouring chunks' codes), generated with
   the generator's fixed noise, pasted back with :func:`sam_age.face.paste.paste_face` (its
   face mask follows the smoothed landmarks and quad; colours matched to the untouched frame),
   and encoded to H.264 one chunk per segment.

Every chunk's result (detections, codes, segments) is written atomically under
``OUTPUT/.sam-age-video/<stem>-<key>/`` where ``key`` hashes the input file (path, size,
mtime), the model and every option: a run that was interrupted (Ctrl-C, SIGKILL) picks up
at the first missing chunk when run again with the same arguments. The segments are joined
without re-encoding, the input's audio streams are copied unchanged, and the final file is
renamed into place; then the cache folder is removed.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import shutil
import sys
import time
from contextlib import closing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image

from ..ages import absolute_ages, age_label
from ..checkpoints.load import weights_identity
from ..engine import age_encoded_per_face
from ..errors import InputError, NoFaceError, UsageError, exists_error
from ..face.prepare import INPUT_SIZE
from ..fileio import atomic_write, not_own_file, note_own, shown
from ..images import to_batch
from ..marks import COMPOSITE, Mark
from ..marks import DEFAULT as DEFAULT_MARK
from .io import DEFAULT_CRF, SegmentWriter, VideoInfo, concat_and_mux, pad_even, probe_video, read_frames
from .smooth import gaussian_smooth, radius, rms_second_difference
from .track import MAX_GAP, MIN_FRAMES, FrameFaces, Track, Tracker, select_tracks

CACHE_DIR = ".sam-age-video"
CACHE_VERSION = 1
SMOOTH_LANDMARKS = 2.0  # sigma in frames (radius 6)
SMOOTH_CODES = 1.5  # sigma in frames (radius 5)
# Frames per cached chunk / encoded segment. Small, so that Ctrl+C loses little: a rerun
# redoes at most the chunk each pass was in (< 8 frames), whatever the clip's length (at 32,
# a clip shorter than that was redone from the start). At least the code smoothing's
# look-ahead (radius(SMOOTH_CODES) = 5 frames: neighbouring chunks cover it). Each segment
# starts with a key frame: about 4 per second at 30 fps.
CHUNK = 8


@dataclass
class VideoJob:
    """What to do with a clip. Exactly one of ``ages`` (one output per age) or ``ramp``
    (``(start, end)``: the age moves linearly from the first to the last frame)."""

    ages: Optional[List[float]] = None
    ramp: Optional[Tuple[float, float]] = None
    size: int = 256  # generated face size before paste-back (256 or the generator's)
    side_by_side: bool = False
    face: Optional[int] = None  # age only this track id
    largest: bool = False  # age only the track with the largest face
    detect_every: int = 1
    smooth_landmarks: float = SMOOTH_LANDMARKS
    smooth_codes: float = SMOOTH_CODES
    max_gap: int = MAX_GAP
    min_track: int = MIN_FRAMES
    chunk: int = CHUNK
    crf: int = DEFAULT_CRF
    max_frames: Optional[int] = None

    def check(self) -> "VideoJob":
        if (self.ages is None) == (self.ramp is None):
            raise UsageError("give target ages or an age ramp (not both)")
        if self.ages is not None:
            self.ages = absolute_ages(self.ages)
        else:
            self.ramp = tuple(absolute_ages(self.ramp))
            if len(self.ramp) != 2:
                raise UsageError("an age ramp is START:END, e.g. 20:80")
        if self.detect_every < 1 or self.chunk < 1 or self.max_gap < 0 or self.min_track < 1:
            raise UsageError("--detect-every, --chunk and --min-track must be >= 1, --max-gap >= 0")
        if self.smooth_landmarks < 0 or self.smooth_codes < 0:
            raise UsageError("smoothing sigmas must be >= 0 (0 turns smoothing off)")
        if not 0 <= self.crf <= 51:
            raise UsageError("--crf must lie in 0..51")
        if self.max_frames is not None and self.max_frames < 1:
            raise UsageError("--max-frames must be >= 1")
        # chunks hold whole detection periods and cover the code smoothing's look-ahead
        need = max(radius(self.smooth_codes), 1)
        self.chunk = max(self.chunk, need)
        self.chunk = int(math.ceil(self.chunk / self.detect_every) * self.detect_every)
        return self


def output_names(stem: str, job: VideoJob) -> List[str]:
    """``clip_age070.mp4`` per age, ``clip_age020-080.mp4`` for a ramp (``_sbs`` side by side)."""
    tail = "_sbs.mp4" if job.side_by_side else ".mp4"
    if job.ramp is not None:
        return [f"{stem}_age{age_label(job.ramp[0])}-{age_label(job.ramp[1])}{tail}"]
    return [f"{stem}_age{age_label(a)}{tail}" for a in job.ages]


@dataclass
class VideoResult:
    input: str
    info: VideoInfo
    files: List[Path]
    tracks: List[Track]  # every track found (dense, bridged, raw landmarks)
    aged: List[int]  # ids of the tracks that were aged
    quads: Dict[int, np.ndarray]  # track id -> [L, 4, 2] paste quads (smoothed), from track.first
    steadiness: Dict[int, dict]  # track id -> RMS second difference of the quad, raw and smoothed
    notes: List[str] = field(default_factory=list)
    frames: int = 0
    seconds: float = 0.0
    resumed_chunks: int = 0
    stage_seconds: Dict[str, float] = field(default_factory=dict)
    report: Optional[list] = None  # with the pipeline's report on: sam_age.video.report.VideoReport.to_json

    def to_json(self) -> dict:
        tracks = []
        for t in self.tracks:
            d = t.to_json()
            d["aged"] = t.id in self.aged
            d.update(self.steadiness.get(t.id, {}))
            tracks.append(d)
        return {
            "input": self.input,
            "video": self.info.to_json(),
            "frames_processed": self.frames,
            "files": [str(f) for f in self.files],
            "tracks": tracks,
            "notes": self.notes,
            "seconds": round(self.seconds, 3),
            "frames_per_second": round(self.frames / self.seconds, 3) if self.seconds else None,
            "resumed_chunks": self.resumed_chunks,
            "stage_seconds": self.stage_seconds,
            **({"report": self.report} if self.report is not None else {}),
        }


def _save_npz(path: Path, **arrays) -> None:
    def write(f):
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        f.write(buf.getvalue())

    atomic_write(path, write)


def _load_npz(path: Path) -> Optional[dict]:
    try:
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError):  # a damaged cache file is recomputed
        return None


class _Progress:
    def __init__(self, enabled: bool, name: str):
        self.enabled, self.name = enabled, name

    def bar(self, stage: str, total: int, initial: int = 0):
        from tqdm import tqdm

        return tqdm(
            total=total,
            initial=initial,
            unit="frame",
            file=sys.stderr,
            dynamic_ncols=True,
            desc=f"{self.name}: {stage}",
            disable=not self.enabled,
            leave=False,
        )


def _frames_of_chunks(info: VideoInfo, todo: Sequence[int], chunk: int, n: int):
    """The frames of the chunks still to do, in one streaming read of the clip: per chunk
    ``c`` of ``todo`` (ascending) ``(c, frames)`` with ``frames`` yielding ``(f, frame)``
    for ``f`` in ``c*chunk .. min(n, (c+1)*chunk) - 1``; the frames of chunks already done
    are decoded and skipped, and what a caller leaves of a chunk is skipped too."""
    if not todo:
        return
    pos = todo[0] * chunk
    frames = read_frames(info, pos, n)
    try:
        for c in todo:
            lo, hi = c * chunk, min(n, (c + 1) * chunk)
            for _ in range(pos, lo):  # frames of chunks already done
                next(frames)
            block = _take(frames, lo, hi)
            yield c, block
            for _ in block:  # what the caller left
                pass
            pos = hi
    finally:
        frames.close()


def _take(frames, lo: int, hi: int) -> Iterator[Tuple[int, np.ndarray]]:
    for f in range(lo, hi):
        yield f, next(frames)


def _chunks_done(n: int, chunk: int, todo: Sequence[int]) -> int:
    """Frames in the chunks not in ``todo`` (a progress bar's start)."""
    return n - sum(min(chunk, n - c * chunk) for c in todo)


# -- pass 1: faces ------------------------------------------------------------------------
def analyse(info: VideoInfo, n: int, job: VideoJob, cache: Path, prog) -> Tuple[List[FrameFaces], int]:
    """Faces found in frames ``0..n-1`` (every ``job.detect_every``-th frame detected, the
    landmarks carried in between), one ``faces_NNNNN.npz`` per chunk under ``cache``:
    ``(faces per frame, chunks reused from the cache)``. Needs no model (:func:`track_clip`)."""
    from ..face.landmarks import detect_faces, landmarks_in_boxes

    chunks = range(math.ceil(n / job.chunk))
    found: Dict[int, dict] = {}
    for c in chunks:
        z = _load_npz(cache / f"faces_{c:05d}.npz")
        if z is not None:
            found[c] = z
    resumed = len(found)
    todo = [c for c in chunks if c not in found]
    with prog.bar("find faces", n, initial=_chunks_done(n, job.chunk, todo)) as bar:
        with closing(_frames_of_chunks(info, todo, job.chunk, n)) as pending:
            for c, frames in pending:
                lo = c * job.chunk
                counts, boxes, scores, lms = [], [], [], []
                prev = None
                for f, frame in frames:
                    img = Image.fromarray(frame)
                    if (f - lo) % job.detect_every == 0 or prev is None or not len(prev[0]):
                        dets = detect_faces(img, all_faces=True)
                        b = np.array([d.box for d in dets], np.float64).reshape(-1, 4)
                        s = np.array([d.score for d in dets], np.float64)
                        lm = np.array([d.landmarks for d in dets], np.float64).reshape(-1, 68, 2)
                    else:  # carry: landmarks inside last frame's boxes, moved with the face
                        pb, ps, plm = prev
                        lm = np.array(landmarks_in_boxes(img, [tuple(x) for x in pb])).reshape(-1, 68, 2)
                        b = pb + np.tile(lm.mean(1) - plm.mean(1), 2)
                        s = ps
                    prev = (b, s, lm)
                    counts.append(len(b))
                    boxes.append(b)
                    scores.append(s)
                    lms.append(lm)
                    bar.update(1)
                z = {
                    "counts": np.array(counts, np.int64),
                    "boxes": np.concatenate(boxes),
                    "scores": np.concatenate(scores),
                    "landmarks": np.concatenate(lms),
                }
                _save_npz(cache / f"faces_{c:05d}.npz", **z)
                found[c] = z
    out: List[FrameFaces] = []
    for c in chunks:
        z = found[c]
        at = 0
        for k in z["counts"]:
            out.append(FrameFaces(z["boxes"][at : at + k], z["scores"][at : at + k], z["landmarks"][at : at + k]))
            at += k
    return out, resumed


class VideoAger:
    """Ages the faces of a clip with an :class:`~sam_age.pipeline.AgePipeline`'s model.
    ``weights``: the file the pipeline's model was loaded from, when known: its
    :func:`~sam_age.checkpoints.load.weights_identity` keys the resume cache (without it, the
    model's own: the same function on the model in memory)."""

    def __init__(self, pipeline, weights=None):
        self.pipeline = pipeline
        self.weights = weights
        self._fingerprint = None
        self._resumed = 0
        self._report = None

    @property
    def fingerprint(self) -> str:
        if self._fingerprint is None:
            self._fingerprint = weights_identity(self.weights if self.weights is not None else self.pipeline.model)
        return self._fingerprint

    # -- public -----------------------------------------------------------------------------
    def run(
        self,
        video,
        output_dir,
        job: VideoJob,
        *,
        overwrite: bool = False,
        progress: bool = False,
        keep_cache: bool = False,
        name: Optional[str] = None,
        mark: Optional[Mark] = DEFAULT_MARK,
    ) -> VideoResult:
        """``mark``: how the outputs say they were edited by AI (:mod:`sam_age.marks`; the
        clip is its C2PA ingredient; None: unmarked)."""
        start = time.perf_counter()
        job = job.check()
        self.pipeline.check_size(job.size)
        video = Path(video)
        info = probe_video(video)
        out_dir = Path(output_dir)
        stem = name or video.stem
        targets = [out_dir / n for n in output_names(stem, job)]
        if not overwrite:
            for t in targets:
                if t.exists():
                    raise exists_error(t, video)
        else:  # --overwrite replaces only what sam-age wrote (issue 22)
            theirs = not_own_file(out_dir, [t.name for t in targets])
            if theirs is not None:
                raise InputError(
                    f"output {shown(theirs)} was not written by sam-age: left alone, even with "
                    "--overwrite (move it away or choose another --output)",
                    video,
                )
        n = info.frames if job.max_frames is None else min(info.frames, job.max_frames)
        st = video.stat()
        key = hashlib.sha256(
            json.dumps(
                {
                    "v": CACHE_VERSION,
                    "input": str(video.resolve()),
                    "size": st.st_size,
                    "mtime": st.st_mtime_ns,
                    "model": self.fingerprint,
                    "dtype": str(self.pipeline.dtype),
                    "frames": n,
                    "job": {k: v for k, v in asdict(job).items() if k != "max_frames"},
                },
                sort_keys=True,
                default=str,
            ).encode()
        ).hexdigest()[:12]
        cache = out_dir / CACHE_DIR / f"{stem}-{key}"
        cache.mkdir(parents=True, exist_ok=True)
        prog = _Progress(progress, stem)
        self._resumed = 0
        self._code_stats: Dict[int, list] = {}
        try:
            t0 = time.perf_counter()
            faces, resumed = analyse(info, n, job, cache, prog)
            self._resumed += resumed
            t1 = time.perf_counter()
            tracker = Tracker(max_gap=job.max_gap, min_frames=job.min_track)
            for f, ff in enumerate(faces):
                tracker.update(f, ff)
            tracks = tracker.finish(n)
            chosen = select_tracks(tracks, job.face, job.largest)
            if not tracks:
                raise NoFaceError(f"no face found in any of the {n} frames", video)
            if not chosen:
                raise InputError(
                    f"no track {job.face} in this clip (it has tracks 1..{len(tracks)}; see --json)", video
                )
            smoothed = {t.id: gaussian_smooth(t.landmarks, job.smooth_landmarks) for t in chosen}
            steadiness = self._steadiness(tracks, job)
            t2 = time.perf_counter()
            quads = self._encode(info, n, job, chosen, smoothed, cache, prog)
            t3 = time.perf_counter()
            self._report = None
            if getattr(self.pipeline, "report", False):  # --report: measured while rendering
                from .report import VideoReport

                self._report = VideoReport(self.pipeline, chosen, len(targets), [t.name for t in targets])
            if mark is not None:
                mark = mark.but(source=COMPOSITE, ingredient=str(video))
            files, notes = self._render(info, n, job, chosen, quads, smoothed, cache, targets, prog, mark)
            stages = {"find_faces": t1 - t0, "track": t2 - t1, "encode": t3 - t2, "render": time.perf_counter() - t3}
        except BaseException as e:
            if isinstance(e, (InputError, UsageError)) and not isinstance(e, KeyboardInterrupt):
                shutil.rmtree(cache, ignore_errors=True)  # nothing half-written stays
                _remove_empty(cache.parent)
            raise
        if not keep_cache:
            shutil.rmtree(cache, ignore_errors=True)
            _remove_empty(cache.parent)
        for tid, (raw, smooth, count) in self._code_stats.items():
            if count:
                steadiness.setdefault(tid, {})["code_rms_second_difference"] = {
                    "raw": round(math.sqrt(raw / count), 6),
                    "smoothed": round(math.sqrt(smooth / count), 6),
                }
        notes = info.notes() + notes
        if n < info.frames:
            notes.append(f"first {n} of {info.frames} frames only (--max-frames)")
        return VideoResult(
            str(video),
            info,
            files,
            tracks,
            [t.id for t in chosen],
            quads,
            steadiness,
            notes,
            n,
            time.perf_counter() - start,
            self._resumed,
            {k: round(v, 3) for k, v in stages.items()},
            None if self._report is None else self._report.to_json(chosen),
        )

    @staticmethod
    def _steadiness(tracks: Sequence[Track], job: VideoJob) -> Dict[int, dict]:
        from ..face.align import face_quad

        out = {}
        for t in tracks:
            raw = np.stack([face_quad(lm) for lm in t.landmarks])
            smooth = np.stack([face_quad(lm) for lm in gaussian_smooth(t.landmarks, job.smooth_landmarks)])
            a, b = rms_second_difference(raw), rms_second_difference(smooth)
            out[t.id] = {
                "quad_rms_second_difference_px": {
                    "raw": None if math.isnan(a) else round(a, 4),
                    "smoothed": None if math.isnan(b) else round(b, 4),
                }
            }
        return out

    # -- pass 2: codes ----------------------------------------------------------------------
    def _ages_at(self, job: VideoJob, frame: int, n: int) -> List[float]:
        if job.ramp is None:
            return list(job.ages)
        a0, a1 = job.ramp
        return [a0 + (a1 - a0) * frame / max(n - 1, 1)]

    def _codes(self, crops: List[Image.Image], ages: List[List[float]]) -> np.ndarray:
        """Aligned crops x their ages -> W+ codes ``[K, A, n_styles, 512]`` float32: the
        pretrained encoder once per crop (through the pipeline's encoding cache), the age
        encoder once per crop and age (:func:`sam_age.engine.age_encoded_per_face`)."""
        faces = to_batch(crops)
        with torch.no_grad():
            base = self.pipeline.encode(faces)
        _, codes = age_encoded_per_face(
            self.pipeline.model, faces, base, ages, batch_size=self.pipeline.batch_size, generate=False
        )
        return codes.cpu().numpy()

    def _encode(self, info, n, job, tracks, smoothed, cache: Path, prog) -> Dict[int, np.ndarray]:
        """Align every tracked face with its smoothed landmarks and encode it; codes per
        chunk in ``codes_NNNNN.npz``. Returns the paste quads per track."""
        from ..face.align import align_face

        chunks = range(math.ceil(n / job.chunk))
        quads = {t.id: np.full((len(t.landmarks), 4, 2), np.nan, np.float32) for t in tracks}
        done = {}
        for c in chunks:
            z = _load_npz(cache / f"codes_{c:05d}.npz")
            if z is not None:
                done[c] = z
        self._resumed += len(done)
        for z in done.values():
            for t in tracks:
                if f"q{t.id}" in z:
                    f0 = int(z[f"f{t.id}"])
                    quads[t.id][f0 - t.first : f0 - t.first + len(z[f"q{t.id}"])] = z[f"q{t.id}"]
        todo = [c for c in chunks if c not in done]
        with (
            prog.bar("encode", n, initial=_chunks_done(n, job.chunk, todo)) as bar,
            closing(_frames_of_chunks(info, todo, job.chunk, n)) as pending,
        ):
            for c, frames in pending:
                crops, ages, owners = [], [], []
                for f, frame in frames:
                    img = None
                    for t in tracks:
                        if t.first <= f <= t.last:
                            img = img or Image.fromarray(frame)
                            aligned = align_face(img, smoothed[t.id][f - t.first], INPUT_SIZE)
                            quads[t.id][f - t.first] = aligned.quad
                            crops.append(aligned.image)
                            ages.append(self._ages_at(job, f, n))
                            owners.append((t.id, f))
                    bar.update(1)
                z = {}
                if crops:
                    codes = self._codes(crops, ages)
                    for t in tracks:
                        idx = [i for i, (tid, _) in enumerate(owners) if tid == t.id]
                        if idx:
                            f0 = owners[idx[0]][1]
                            z[f"t{t.id}"] = codes[idx]
                            z[f"f{t.id}"] = np.int64(f0)
                            z[f"q{t.id}"] = quads[t.id][f0 - t.first : f0 - t.first + len(idx)]
                _save_npz(cache / f"codes_{c:05d}.npz", **z, done=np.int64(1))
        return quads

    # -- pass 3: faces back into frames -------------------------------------------------------
    def _track_codes(self, cache: Path, c: int, n_chunks: int, t: Track, job: VideoJob, lo: int, hi: int):
        """Smoothed codes ``[hi-lo, A, S, 512]`` of track ``t`` for frames ``lo..hi-1`` (within
        the track), from chunks c-1..c+1 (the Gaussian's look-ahead fits in one chunk)."""
        parts, starts = [], []
        for k in (c - 1, c, c + 1):
            if 0 <= k < n_chunks:
                z = _load_npz(cache / f"codes_{k:05d}.npz")
                if z is None:
                    raise RuntimeError(f"cache chunk {k} is missing")
                if f"t{t.id}" in z:
                    parts.append(z[f"t{t.id}"])
                    starts.append(int(z[f"f{t.id}"]))
        codes = np.concatenate(parts)
        w0 = starts[0]
        w1 = w0 + len(codes)
        smooth = gaussian_smooth(
            codes, job.smooth_codes, axis=0, reflect_start=w0 == t.first, reflect_end=w1 == t.last + 1
        )
        # code jitter, raw vs smoothed: second differences at frames lo..hi-1 (each frame once)
        a, b = max(lo - w0, 1), min(hi - w0, len(codes) - 1)
        if b > a:
            stats = self._code_stats.setdefault(t.id, [0.0, 0.0, 0])
            for k, x in enumerate((codes, smooth)):
                d2 = x[a + 1 : b + 1].astype(np.float64) - 2 * x[a:b] + x[a - 1 : b - 1]
                stats[k] += float((d2**2).sum())
            stats[2] += (b - a) * int(np.prod(codes.shape[1:]))
        return smooth[lo - w0 : hi - w0]

    def _render(
        self,
        info: VideoInfo,
        n: int,
        job: VideoJob,
        tracks: Sequence[Track],
        quads: Dict[int, np.ndarray],
        smoothed: Dict[int, np.ndarray],
        cache: Path,
        targets: List[Path],
        prog,
        mark: Optional[Mark] = DEFAULT_MARK,
    ):
        from ..face.paste import paste_face

        n_chunks = math.ceil(n / job.chunk)
        n_out = len(targets)
        seg = lambda o, c: cache / f"seg{o}_{c:05d}.mp4"  # noqa: E731
        done = [c for c in range(n_chunks) if all(seg(o, c).exists() for o in range(n_out))]
        self._resumed += len(done)
        todo = [c for c in range(n_chunks) if c not in done]
        width = info.padded_size[0] * (2 if job.side_by_side else 1)
        height = info.padded_size[1]
        # the best-scoring tracks paste last (they win where crops overlap)
        order = sorted(tracks, key=lambda t: float(t.scores[t.observed].mean()))
        with (
            prog.bar("render", n, initial=_chunks_done(n, job.chunk, todo)) as bar,
            closing(_frames_of_chunks(info, todo, job.chunk, n)) as pending,
        ):
            for c, frames in pending:
                lo, hi = c * job.chunk, min(n, (c + 1) * job.chunk)
                faces = {}  # (track id, frame) -> [A] PIL images
                for t in tracks:
                    a, b = max(lo, t.first), min(hi, t.last + 1)
                    if a >= b:
                        continue
                    codes = self._track_codes(cache, c, n_chunks, t, job, a, b)  # [m, A, S, 512]
                    m, na = codes.shape[:2]
                    flat = torch.from_numpy(np.ascontiguousarray(codes.reshape(m * na, *codes.shape[2:])))
                    imgs = self.pipeline.generate(flat, size=job.size, randomize_noise=False)
                    for i in range(m):
                        faces[(t.id, a + i)] = imgs[i * na : (i + 1) * na]
                writers = [SegmentWriter(seg(o, c), width, height, info.fps, crf=job.crf) for o in range(n_out)]
                try:
                    for f, frame in frames:
                        photo = Image.fromarray(frame)
                        rep = self._report
                        if rep is not None:
                            present = {t.id: quads[t.id][f - t.first] for t in tracks if (t.id, f) in faces}
                            rep.frame(f, "input", frame, present)
                            for t in tracks:
                                if (t.id, f) in faces and rep.wants(t.id, f):
                                    rep.measure(
                                        t.id,
                                        photo,
                                        smoothed[t.id][f - t.first],
                                        faces[(t.id, f)],
                                        self._ages_at(job, f, n),
                                    )
                        for o, w in enumerate(writers):
                            out = photo
                            for t in order:
                                if (t.id, f) in faces:
                                    # face mask from the smoothed landmarks (it moves with
                                    # them), colours matched to the untouched frame
                                    out = paste_face(
                                        out,
                                        faces[(t.id, f)][o],
                                        quads[t.id][f - t.first],
                                        landmarks=smoothed[t.id][f - t.first],
                                        reference=photo,
                                    )
                            if rep is not None:
                                rep.frame(f, o, np.asarray(out.convert("RGB")), present)
                            arr = pad_even(np.asarray(out.convert("RGB")))
                            if job.side_by_side:
                                arr = np.concatenate([pad_even(frame), arr], axis=1)
                            w.write(arr)
                        bar.update(1)
                    for w in writers:
                        w.close()
                except BaseException:
                    for w in writers:
                        w.abort()
                    raise
        notes: List[str] = []
        out_dir = targets[0].parent
        out_dir.mkdir(parents=True, exist_ok=True)
        for o, target in enumerate(targets):
            durations = [min(job.chunk, n - c * job.chunk) / info.fps for c in range(n_chunks)]
            age = f"{job.ramp[0]:g}->{job.ramp[1]:g}" if job.ramp is not None else f"{job.ages[o]:g}"
            notes = (
                concat_and_mux(
                    [seg(o, c) for c in range(n_chunks)],
                    info.path,
                    target,
                    has_audio=bool(info.audio),
                    shortest=n < info.frames,
                    durations=[float(d) for d in durations],
                    mark=mark and mark.but(age=age),
                )
                or notes
            )
            note_own(out_dir, [target.name])  # (so that --overwrite may replace it later)
        return targets, notes


def track_clip(video, job: Optional[VideoJob] = None) -> Tuple[VideoInfo, List[Track]]:
    """Faces found and tracked in ``video`` (no model needed): ``(info, tracks)`` with each
    track's raw (bridged, unsmoothed) landmarks; ``gaussian_smooth(track.landmarks, sigma)``
    gives what the ager aligns with."""
    import tempfile

    job = (job or VideoJob(ages=[0.0])).check()
    info = probe_video(video)
    n = info.frames if job.max_frames is None else min(info.frames, job.max_frames)
    with tempfile.TemporaryDirectory(prefix="sam-age-track-") as tmp:
        faces, _ = analyse(info, n, job, Path(tmp), _Progress(False, ""))
    tracker = Tracker(max_gap=job.max_gap, min_frames=job.min_track)
    for f, ff in enumerate(faces):
        tracker.update(f, ff)
    return info, tracker.finish(n)


def _remove_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass
