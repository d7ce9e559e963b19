"""The Gradio web demo: upload a portrait (or take the bundled sample), see it at other ages.

    from sam_age import AgePipeline
    from sam_age.web import build_app, launch
    launch(build_app(AgePipeline.from_pretrained("sam_ffhq_aging")), port=7860)

Everything the page shows comes from :class:`~sam_age.pipeline.AgePipeline` (the same
calls as ``sam-age age``); this module only turns its results into page content.
:class:`WebDemo` holds the handlers as plain methods so they can be tested without a
server; :func:`build_app` wires them to a ``gr.Blocks`` page.

The strip and the animation carry each tile's / frame's age in a band at its bottom
(:func:`sam_age.render.draw_label`, as ``sam-age age``; ``labels=False``: bare); the
galleries' images, one file per age, stay bare.

A bad upload (not an image, no face, a decompression bomb, too big) becomes a readable
message in the page, never a stack trace, and the server goes on serving.

Bounds (``sam-age serve``, issue 22): at most ``max_faces`` faces per photo and
``max_pixels`` per upload (read from the header, before decoding); the model is taken
through ``model_slot`` (the server's one queue, :class:`sam_age.api.ModelQueue`: a full
queue says "busy, try again" at once); the files a request writes live in a job folder
that is removed once Gradio has copied them into its cache (an event's ``.then``), and
Gradio's cache itself is emptied of old files (``delete_cache``).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Tuple

from PIL import Image

from .ages import RelativeAge, parse_ages
from .defaults import DEFAULT_MAX_FACES, DEFAULT_MAX_PIXELS, DEFAULT_MAX_QUEUE, DEFAULT_MAX_UPLOAD_MB
from .errors import ImageReadError, InputError, SamAgeError, UsageError, VideoReadError
from .images import read_image
from .marks import COMPOSITE, GENERATED, Mark
from .marks import DEFAULT as DEFAULT_MARK
from .pipeline import sample_path
from .render import label_frames, make_grid, mp4_available, save_gif, save_image, save_mp4, strip_labels
from .video import VideoAger, VideoJob

# No usage statistics from a demo that may run on a private machine.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

log = logging.getLogger(__name__)

DEFAULT_AGES = "0, 20, 40, 60, 80, 100"
MAX_AGES = 21  # one strip of 0:100:5 at most: keeps one request from hogging the server
MAX_FACES_SHOWN = 4  # galleries on the page; more faces still appear in the strip
ANIMATION_FPS = 12
VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v")
MAX_VIDEO_SECONDS = 10.0  # the Video tab is for short clips: `sam-age video` for longer ones
GRADIO_CACHE_CLEANUP = (60, 600)  # every minute, Gradio's copies older than 10 minutes go


@dataclass
class Outputs:
    """What one "Age" run shows; ``message`` is Markdown (an error or a short report)."""

    message: str
    ok: bool = False
    strip: Optional[Image.Image] = None  # one row per face
    faces: List[List[Tuple[Image.Image, str]]] = field(default_factory=list)  # per face: (image, caption)
    gif: Optional[str] = None
    mp4: Optional[str] = None
    pasted: Optional[Image.Image] = None  # the photo at the oldest age asked
    pasted_age: Optional[str] = None  # its age, for its mark
    face_ages: List[List[str]] = field(default_factory=list)  # per face: each image's age, for its mark


def parse_ages_text(text: str) -> list:
    """The page's age box: ``0, 30, 60``, ``0:100:10`` or relative ``+10, +20`` (the CLI's
    syntax: a leading sign means years from the estimated age)."""
    if not str(text or "").strip():
        raise UsageError("type at least one age, e.g. 0, 30, 60 or 0:100:20 or +20")
    ages = parse_ages(str(text), relative=True)
    if len(ages) > MAX_AGES:
        raise UsageError(f"at most {MAX_AGES} ages at a time (got {len(ages)})")
    return ages


def error_message(exc: BaseException, upload: Optional[str] = None) -> str:
    """One readable line (Markdown) for the page. A bad photo is named by its original file
    name (Gradio keeps an upload as ``<temp>/<hash>/<name>``), never by its temp path."""
    if isinstance(exc, InputError):
        where = exc.path or (str(upload) if upload else None)
        text = f"{Path(where).name}: {exc.reason}" if where else exc.reason
        if isinstance(exc, VideoReadError) or Path(str(where or "")).suffix.lower() in VIDEO_SUFFIXES:
            return f"**Could not use this video.** {text}"
        return f"**Could not use this photo.** {text}"
    if isinstance(exc, SamAgeError):
        return f"**Cannot run.** {exc.reason}"
    return f"**Something went wrong.** Unexpected error ({type(exc).__name__}: {exc})"


class WebDemo:
    """The page's handlers, with one pipeline loaded once and shared by every visitor."""

    def __init__(
        self,
        pipeline,
        workdir: Optional[Path] = None,
        max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
        frames_per_age: int = 4,
        max_video_seconds: float = MAX_VIDEO_SECONDS,
        model_slot=None,
        max_faces: int = DEFAULT_MAX_FACES,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        mark: Optional[Mark] = DEFAULT_MARK,
        labels: bool = True,
    ):
        self.pipeline = pipeline
        self.labels = bool(labels)  # ages on the strip's tiles and the animation's frames (render.draw_label)
        self.mark = mark  # how every download says it was edited by AI (None: unmarked; sam_age.marks)
        self.max_faces = max(1, int(max_faces))
        self.max_pixels = int(max_pixels)
        self._jobs: dict = {}  # job folder -> the time its handler returned (see clean_jobs)
        self.max_video_seconds = float(max_video_seconds)
        self.frames_per_age = frames_per_age
        self.max_upload_bytes = int(max_upload_mb * 1024 * 1024)
        # Gradio serves what handlers return from the system temp folder; keep ours there.
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="sam-age-web-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()  # one model, one job at a time (the queue also says so)
        if model_slot is not None:  # the server's queue: the same model as its API
            self._lock = _Slot(model_slot)

    # -- inputs ----------------------------------------------------------------------------
    def sample(self) -> str:
        """A copy of the sample portrait where Gradio may serve it from."""
        src = sample_path()
        dst = self.workdir / src.name
        if not dst.exists():
            shutil.copyfile(src, dst)
        return str(dst)

    def _check_upload(self, upload, what: str = "") -> str:
        if upload is None or str(upload) == "":
            if what:
                raise UsageError(f"upload {what} first")
            raise UsageError("upload a photo first (or press “Use the sample portrait”)")
        path = Path(str(upload))
        if path.exists() and path.stat().st_size > self.max_upload_bytes:
            raise ImageReadError(
                f"file too large ({path.stat().st_size / 2**20:.2g} MB; "
                f"the limit is {self.max_upload_bytes / 2**20:.2g} MB)",
                path,
            )
        if path.suffix.lower() not in VIDEO_SUFFIXES:
            _check_pixels(path, self.max_pixels)
        return str(path)

    def preview(self, upload) -> Tuple[Optional[Image.Image], str]:
        """Show the uploaded photo, or say at once why it cannot be used."""
        if upload is None:
            return None, ""
        try:
            photo = read_image(self._check_upload(upload))
        except SamAgeError as e:
            return None, error_message(e, upload)
        photo.thumbnail((512, 512))
        return photo, f"Loaded **{Path(str(upload)).name}**. Pick ages and press **Age**."

    # -- running ---------------------------------------------------------------------------
    def quick(self, upload, age: float) -> Tuple[Optional[Image.Image], str]:
        """One age, the best face only: the slider's fast answer."""
        try:
            path = self._check_upload(upload)
            with self._lock:
                result = self.pipeline(path, [float(age)])
        except Exception as e:  # the page must always get an answer; the server goes on
            return None, self._report(e, upload)
        return result.faces[0].images[0], f"Age {float(age):g}: done."

    def quick_relative(self, upload, years: float) -> Tuple[Optional[Image.Image], str]:
        """The best face ``years`` from its estimated age (DEX), clamped to 0..100."""
        try:
            path = self._check_upload(upload)
            request = RelativeAge(float(years))
            with self._lock:
                result = self.pipeline(path, [request])
        except Exception as e:
            return None, self._report(e, upload)
        return result.faces[0].images[0], f"{request} years: done. {_estimate_text(result)}"

    def age(
        self,
        upload,
        ages_text: str,
        all_faces: bool = False,
        paste_back: bool = True,
        animate: bool = False,
        report: bool = False,
    ) -> Outputs:
        """The strip, a gallery per face, the animation and the pasted-back photo;
        ``report``: each image's caption also says what it reached (:mod:`sam_age.report`:
        "looks 68 for 70 asked; identity 0.62")."""
        start = time.perf_counter()
        try:
            path = self._check_upload(upload)
            ages = parse_ages_text(ages_text)
            with self._lock:
                photo, found = self.pipeline.prepare(path, all_faces=all_faces)
                result = self.pipeline.age_prepared(
                    photo, found[: self.max_faces], ages, paste_back=paste_back, report=bool(report)
                )
                out = self._outputs(result, animate, path)
        except Exception as e:
            return Outputs(self._report(e, upload))
        n = len(result.faces)
        out.message = (
            f"Done: {n} face{'s' if n != 1 else ''} x {len(ages)} ages in {time.perf_counter() - start:.1f} s."
        )
        if len(found) > n:
            out.message += f" ({len(found)} faces found; this server ages the best {n}.)"
        if result.estimated_age is not None:
            out.message += " " + _estimate_text(result)
        return out

    def _outputs(self, result, animate: bool, upload=None) -> Outputs:
        # one row per face, drawn once into one image; the galleries keep the bare images
        rows = [(f.aligned, f.images) for f in result.faces]
        strip = make_grid(rows, [strip_labels(f.ages) for f in result.faces] if self.labels else None)
        faces = [
            [
                (im, _caption(k, a, r) + ("" if f.report is None else f"; {f.report[j].caption}"))
                for j, (im, a, r) in enumerate(zip(f.images, f.ages, f.requested or f.ages))
            ]
            for k, f in enumerate(result.faces)
        ]
        out = Outputs(
            "",
            ok=True,
            strip=strip,
            faces=faces,
            face_ages=[
                [
                    f"{a:g}" if not isinstance(r, RelativeAge) else f"{r} ({a:g})"
                    for a, r in zip(f.ages, f.requested or f.ages)
                ]
                for f in result.faces
            ],
        )
        if result.pasted:
            oldest = max(range(len(result.ages)), key=lambda i: result.ages[i])
            out.pasted = result.pasted[oldest]
        if result.pasted:
            out.pasted_age = f"{result.ages[oldest]:g}"
        if animate and len(result.ages) > 1:
            out.gif, out.mp4 = self._animation(result.faces[0], upload)
        return out

    def _animation(self, face, upload=None) -> Tuple[str, Optional[str]]:
        frames = self.pipeline.animate(face, frames_per_age=self.frames_per_age)
        if self.labels:
            frames = label_frames(frames, face.ages, self.frames_per_age)
        job = self.workdir / uuid.uuid4().hex[:12]
        job.mkdir()
        self._jobs[job] = None
        mark = self.marked(GENERATED, ",".join(f"{a:g}" for a in face.ages), upload)
        gif = save_gif(frames, job / "aging.gif", fps=ANIMATION_FPS, mark=mark)
        mp4 = save_mp4(frames, job / "aging.mp4", fps=ANIMATION_FPS, mark=mark) if mp4_available() else None
        return str(gif), (str(mp4) if mp4 else None)

    # -- what the page serves: marked files ------------------------------------------------
    SERVED_KEPT = 64  # files written for the page kept on disk (Gradio copies each into its cache)

    def marked(self, source: str, age: Optional[str], upload=None) -> Optional[Mark]:
        """This demo's mark for one output (None when the server runs with --no-mark)."""
        if self.mark is None:
            return None
        ingredient = str(upload) if upload and Path(str(upload)).is_file() else None
        return self.mark.but(source=source, age=age, ingredient=ingredient)

    def served(
        self, img: Optional[Image.Image], source: str = GENERATED, age: Optional[str] = None, upload=None
    ) -> Optional[str]:
        """``img`` as a marked PNG file the page serves as is (Gradio re-encodes a PIL image
        without its metadata; a file path it passes on byte for byte). The oldest files go
        when more than :attr:`SERVED_KEPT` are on disk."""
        if img is None:
            return None
        folder = self.workdir / "served"
        folder.mkdir(exist_ok=True)
        path = save_image(img, folder / f"{uuid.uuid4().hex[:16]}.png", mark=self.marked(source, age, upload))
        old = sorted(folder.glob("*.png"), key=lambda p: p.stat().st_mtime)[: -self.SERVED_KEPT]
        for p in old:
            p.unlink(missing_ok=True)
        return str(path)

    def served_outputs(self, out: "Outputs", upload=None) -> Tuple[Optional[str], list, Optional[str]]:
        """``(strip, galleries, pasted)`` of :meth:`age`'s answer as marked files."""
        faces = [
            [(self.served(im, GENERATED, age, upload), caption) for (im, caption), age in zip(f, ages)]
            for f, ages in zip(out.faces, out.face_ages)
        ]
        ages = ",".join(out.face_ages[0]) if out.face_ages else None
        return (
            self.served(out.strip, GENERATED, ages or None, upload),
            faces,
            self.served(out.pasted, COMPOSITE, out.pasted_age, upload),
        )

    # -- video -------------------------------------------------------------------------------
    def video(self, upload, age: float, side_by_side: bool = False) -> Tuple[Optional[str], str]:
        """Age every person in a short clip (at most ``max_video_seconds``) to ``age``:
        ``(path of the aged MP4, message)``; the clip's sound is kept."""
        start = time.perf_counter()
        try:
            path = self._check_upload(upload, what="a video clip")
            from .video.io import probe_limited  # counted frames, capped decode, timeout

            probe_limited(path, self.max_video_seconds)
            job = self.workdir / uuid.uuid4().hex[:12]
            self._jobs[job] = None
            with self._lock:
                result = VideoAger(self.pipeline).run(
                    path,
                    job,
                    VideoJob(ages=[float(age)], side_by_side=bool(side_by_side)),
                    name=Path(str(upload)).stem or "clip",
                    mark=self.mark,
                )
        except Exception as e:
            return None, self._report(e, upload)
        n = len(result.aged)
        notes = "".join(f" ({note})" for note in result.notes)
        return str(result.files[0]), (
            f"Done: {n} {'person' if n == 1 else 'people'} aged to "
            f"{float(age):g} over {result.frames} frames in "
            f"{time.perf_counter() - start:.1f} s.{notes}"
        )

    # -- disk: per-request job folders ---------------------------------------------------------
    def job_of(self, path: Optional[str]) -> Optional[str]:
        """The job folder holding ``path`` (a result this demo wrote), else None."""
        if not path:
            return None
        for job in list(self._jobs):
            if Path(str(path)).is_relative_to(job):
                return str(job)
        return None

    def clean_jobs(self, *jobs) -> None:
        """Remove the given job folders (Gradio has copied their files into its cache by
        the time an event's ``.then`` runs); with none given, every job folder (shutdown)."""
        todo = [Path(j) for j in jobs if j] if jobs else list(self._jobs)
        for job in todo:
            if job in self._jobs:
                shutil.rmtree(job, ignore_errors=True)
                self._jobs.pop(job, None)

    def _report(self, exc: BaseException, upload) -> str:
        message = error_message(exc, upload)
        if isinstance(exc, SamAgeError):
            log.info("web request failed: %s", exc)
        else:  # a bug: keep the traceback in the server log, show one line in the page
            log.exception("web request failed")
        _warn(message)
        return message


class _Slot:
    """``with``-able wrapper of a context-manager factory (the server's model turn)."""

    def __init__(self, factory):
        self.factory = factory
        self._held = threading.local()

    def __enter__(self):
        cm = self.factory()
        self._held.cm = cm
        return cm.__enter__()

    def __exit__(self, *exc):
        return self._held.cm.__exit__(*exc)


def _check_pixels(path: Path, max_pixels: int) -> None:
    """Refuse a photo over ``max_pixels`` from its header (the reader explains the rest)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # judged here
            with Image.open(path) as im:
                w, h = im.size
    except Exception:  # not an image, or over PIL's own limit: the reader says why
        return
    if w * h > max_pixels:
        raise ImageReadError(
            f"image too large ({w}x{h} pixels; this server takes up to {max_pixels / 1e6:g} megapixels)", path
        )


def _caption(k: int, age: float, request) -> str:
    """'face 1, age 70', or for a relative age 'face 1, age 57.4 (+20)'."""
    extra = f" ({request})" if isinstance(request, RelativeAge) else ""
    return f"face {k + 1}, age {age:g}{extra}"


def _estimate_text(result) -> str:
    """'Estimated age 37.4.' (every face's with several), plus what was clamped."""
    ests = [f.estimated_age for f in result.faces if f.estimated_age is not None]
    text = (
        f"Estimated age {ests[0]:.1f}."
        if len(ests) == 1
        else "Estimated ages " + ", ".join(f"{e:.1f}" for e in ests) + "."
    )
    notes = result.notes
    return text + (" " + "; ".join(n[0].upper() + n[1:] for n in notes) + "." if notes else "")


def _warn(message: str) -> None:
    """Also a toast in the page, when called inside a Gradio request."""
    try:
        import gradio as gr
        from gradio.context import LocalContext
    except ImportError:
        return
    if LocalContext.blocks.get(None) is not None:
        gr.Warning(message.replace("**", ""))


# ------------------------------------------------------------------------------ the page


def build_app(
    pipeline,
    *,
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
    workdir: Optional[Path] = None,
    frames_per_age: int = 4,
    title: str = "SAM age demo",
    max_video_seconds: float = MAX_VIDEO_SECONDS,
    model_slot=None,
    max_queue: int = DEFAULT_MAX_QUEUE,
    max_faces: int = DEFAULT_MAX_FACES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    mark: Optional[Mark] = DEFAULT_MARK,
    labels: bool = True,
):
    """The ``gr.Blocks`` page around ``pipeline`` (queued: one model job at a time, the
    other visitors wait their turn). Launch it with :func:`launch`. ``mark``: how every
    image, animation and clip the page serves says it was edited by AI (None: unmarked).
    ``labels``: each strip tile and animation frame shows its age (False: bare; the
    galleries' images, one per age, are always bare)."""
    import gradio as gr

    demo_handlers = WebDemo(
        pipeline,
        workdir=workdir,
        max_upload_mb=max_upload_mb,
        frames_per_age=frames_per_age,
        max_video_seconds=max_video_seconds,
        model_slot=model_slot,
        max_faces=max_faces,
        max_pixels=max_pixels,
        mark=mark,
        labels=labels,
    )

    with gr.Blocks(title=title, analytics_enabled=False, delete_cache=GRADIO_CACHE_CLEANUP) as demo:
        gr.Markdown(
            f"# {title}\nSee a face at other ages with SAM (*Only a Matter of Style*, "
            "Alaluf et al. 2021). Upload a portrait or take the sample, then age it. "
            f"<small>(model: {_model_note(pipeline)})</small>"
        )
        with gr.Tab("Photo", id="photo-tab", elem_id="photo-tab"):
            with gr.Row():
                with gr.Column(scale=1):
                    upload = gr.File(label=f"Photo (up to {max_upload_mb:g} MB)", type="filepath", elem_id="photo")
                    sample = gr.Button("Use the sample portrait", elem_id="sample", size="sm")
                    preview = gr.Image(label="Input", type="pil", interactive=False, elem_id="preview", height=256)
                    status = gr.Markdown("", elem_id="status")
                    with gr.Group():
                        with gr.Row():
                            age = gr.Slider(0, 100, value=60, step=1, label="Age for a quick result", elem_id="age")
                            years = gr.Slider(
                                -60, 60, value=20, step=1, label="+N years (from the estimated age)", elem_id="years"
                            )
                        with gr.Row():
                            quick = gr.Button("Quick result", elem_id="quick")
                            quick_rel = gr.Button("Quick result, +N years", elem_id="quick-relative")
                        quick_result = gr.Image(
                            label="Quick result", type="pil", interactive=False, elem_id="quick-result", height=256
                        )
                    with gr.Group():
                        ages = gr.Textbox(
                            DEFAULT_AGES,
                            label="Ages for the strip (0, 30, 60 or 0:100:20; +10, +20: years from the estimated age)",
                            elem_id="ages",
                        )
                        with gr.Row():
                            all_faces = gr.Checkbox(False, label="All faces", elem_id="all-faces")
                            paste_back = gr.Checkbox(True, label="Paste back", elem_id="paste-back")
                            animate = gr.Checkbox(False, label="Animation (slower)", elem_id="animate")
                            report = gr.Checkbox(
                                False,
                                label="Report: the age each image looks and its identity score (slower)",
                                elem_id="report",
                            )
                        run = gr.Button("Age", variant="primary", elem_id="run")
                with gr.Column(scale=2):
                    strip = gr.Image(
                        label="Strip: input, then every age", type="pil", interactive=False, elem_id="strip"
                    )
                    galleries = [
                        gr.Gallery(
                            label=f"Face {k + 1}",
                            columns=6,
                            fit_columns=False,
                            height=260,
                            visible=k == 0,
                            elem_id=f"face-{k + 1}",
                        )
                        for k in range(MAX_FACES_SHOWN)
                    ]
                    with gr.Row():
                        gif = gr.Image(
                            label="Animation (GIF)", type="filepath", interactive=False, elem_id="gif", height=300
                        )
                        mp4 = gr.Video(label="Animation (MP4)", interactive=False, elem_id="mp4", height=300)
                    pasted = gr.Image(
                        label="Pasted back into the photo (oldest age)",
                        type="pil",
                        interactive=False,
                        elem_id="pasted",
                        height=420,
                    )

        with gr.Tab("Video", id="video-tab", elem_id="video-tab"):
            gr.Markdown(
                f"Age everyone in a **short clip (up to {max_video_seconds:g} s, "
                f"{max_upload_mb:g} MB)**: faces are tracked, steadied and pasted back, the "
                "sound is kept. For longer clips use `sam-age video` on the command line.",
                elem_id="video-limit",
            )
            with gr.Row():
                with gr.Column(scale=1):
                    video_file = gr.File(
                        label=f"Video clip (up to {max_video_seconds:g} s)", type="filepath", elem_id="video-file"
                    )
                    video_age = gr.Slider(0, 100, value=70, step=1, label="Age", elem_id="video-age")
                    video_sbs = gr.Checkbox(False, label="Side by side (input | aged)", elem_id="video-sbs")
                    video_run = gr.Button("Age the clip", variant="primary", elem_id="video-run")
                    video_status = gr.Markdown("", elem_id="video-status")
                with gr.Column(scale=2):
                    video_out = gr.Video(label="Aged clip", interactive=False, elem_id="video-result")

        def on_age(upload_value, ages_value, all_value, paste_value, animate_value, report_value=False):
            out = demo_handlers.age(upload_value, ages_value, all_value, paste_value, animate_value, report_value)
            strip_file, faces, pasted_file = demo_handlers.served_outputs(out, upload_value)  # marked files
            updates = [
                gr.Gallery(value=faces[k] if k < len(faces) else None, visible=k == 0 or k < len(faces))
                for k in range(MAX_FACES_SHOWN)
            ]
            return [out.message, strip_file, *updates, out.gif, out.mp4, pasted_file, demo_handlers.job_of(out.gif)]

        def on_video(video_value, age_value, sbs_value):
            path, message = demo_handlers.video(video_value, age_value, sbs_value)
            return path, message, demo_handlers.job_of(path)

        job_state = gr.State(None)  # the request's job folder, removed by the event's .then

        def on_quick(upload_value, age_value):
            image, message = demo_handlers.quick(upload_value, age_value)
            return demo_handlers.served(image, GENERATED, f"{float(age_value):g}", upload_value), message

        def on_quick_relative(upload_value, years_value):
            image, message = demo_handlers.quick_relative(upload_value, years_value)
            return demo_handlers.served(image, GENERATED, str(RelativeAge(float(years_value))), upload_value), message

        # Every model call shares one concurrency slot: a single model, used by one job at a time.
        model_slot = dict(concurrency_id="model", concurrency_limit=1)
        sample.click(demo_handlers.sample, None, upload, api_name=False)
        upload.change(demo_handlers.preview, upload, [preview, status], api_name=False)
        quick.click(on_quick, [upload, age], [quick_result, status], api_name="quick", **model_slot)
        age.release(on_quick, [upload, age], [quick_result, status], api_name=False, **model_slot)
        quick_rel.click(
            on_quick_relative, [upload, years], [quick_result, status], api_name="quick_relative", **model_slot
        )
        years.release(on_quick_relative, [upload, years], [quick_result, status], api_name=False, **model_slot)
        run.click(
            on_age,
            [upload, ages, all_faces, paste_back, animate, report],
            [status, strip, *galleries, gif, mp4, pasted, job_state],
            api_name="age",
            **model_slot,
        ).then(demo_handlers.clean_jobs, job_state, None, api_name=False)
        video_run.click(
            on_video,
            [video_file, video_age, video_sbs],
            [video_out, video_status, job_state],
            api_name="video",
            **model_slot,
        ).then(demo_handlers.clean_jobs, job_state, None, api_name=False)

    demo.queue(default_concurrency_limit=1, max_size=max_queue)
    demo.sam_age = demo_handlers  # the handlers, for tests and for launch()
    demo.sam_age_max_upload_mb = max_upload_mb
    return demo


def _model_note(pipeline) -> str:
    try:
        return f"{pipeline.output_size} px generator on {pipeline.device}"
    except Exception:  # a stand-in pipeline in a test
        return type(pipeline).__name__


def launch(
    demo,
    host: str = "127.0.0.1",
    port: int = 7860,
    share: bool = False,
    max_upload_mb: Optional[float] = None,
    block: bool = True,
    quiet: bool = False,
):
    """Serve ``demo`` with Gradio's own server (its upload route as shipped), refusing
    uploads above ``max_upload_mb``. ``block=False`` returns at once (tests)."""
    mb = max_upload_mb if max_upload_mb is not None else getattr(demo, "sam_age_max_upload_mb", DEFAULT_MAX_UPLOAD_MB)
    return demo.launch(
        server_name=host,
        server_port=port,
        share=share,
        max_file_size=f"{mb:g}mb",
        prevent_thread_lock=not block,
        show_error=False,
        quiet=quiet,
        inbrowser=False,
        footer_links=["gradio"],
    )
