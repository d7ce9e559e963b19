"""What a run is doing before its first image: one short stderr line per stage, and the
stage timings for ``--json``.

Floor 6 (shells). On a busy small machine the first image can take minutes (reading the
photo, finding its faces, loading a 2.2 GB model, the first forward pass): a bar standing
at ``0/11`` says nothing of that. :class:`Stages` prints one line as each stage *starts*
(``sam-age age: loading the model /path/sam.pt (2.3 GB)``) and records how long each
took; after the first image it stays quiet (the progress bar takes over) and records
nothing more.

Invariants: the lines go where the progress bar goes (stderr, only when the bar is shown:
a terminal, no ``--quiet``/``--json``), so logs and ``--json`` output stay as they were;
the timings are kept either way (``as_json``). Calls from worker threads are safe (a lock);
a stage ends when the next one starts or at :meth:`first_image`.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

STAGE_TEXT = {  # stage -> the line's text (``{detail}`` filled in)
    "read": "reading {detail}",
    "faces": "finding faces in {detail}",
    "prepare": "reading photos and finding faces {detail}",
    "load": "loading the model {detail}",
    "first_pass": "first pass through the model {detail}",
}


class Stages:
    def __init__(self, command: str, write: Optional[Callable[[str], None]] = None):
        self.command = command
        self.write = write  # None: record only
        self.t0 = time.perf_counter()
        self.records: List[Dict[str, object]] = []
        self.notes: Dict[str, object] = {}
        self._current: Optional[Dict[str, object]] = None
        self._started = 0.0
        self._done = False
        self._lock = threading.Lock()
        self.first_image_seconds: Optional[float] = None

    def _close(self, now: float) -> None:
        if self._current is not None:
            self._current["seconds"] = round(now - self._started, 3)
            self.records.append(self._current)
            self._current = None

    def start(self, stage: str, detail: str = "") -> None:
        """Stage ``stage`` begins now (the previous one ends); one line when shown."""
        with self._lock:
            if self._done:
                return
            now = time.perf_counter()
            self._close(now)
            self._current = {"stage": stage, **({"detail": detail} if detail else {})}
            self._started = now
            text = STAGE_TEXT.get(stage, stage + " {detail}").format(detail=detail).strip()
        self._say(text)

    def note(self, key: str, value, line: Optional[str] = None) -> None:
        """A fact about the run (the compute path), in the JSON and as a line."""
        with self._lock:
            if self._done:
                return
            self.notes[key] = value
        if line:
            self._say(line)

    def _say(self, text: str) -> None:
        if self.write is not None:
            self.write(f"sam-age {self.command}: {text}")

    def first_image(self) -> None:
        """The first image is made: the last stage ends, nothing more is shown or kept."""
        with self._lock:
            if self._done:
                return
            now = time.perf_counter()
            self._close(now)
            self._done = True
            self.first_image_seconds = round(now - self.t0, 3)

    def as_json(self) -> Dict[str, object]:
        return {"stages": list(self.records), "first_image_seconds": self.first_image_seconds, **self.notes}


def compute_path(pipe, asked_dtype: str = "auto") -> Dict[str, object]:
    """``AgePipeline.compute_path`` where the pipeline has it (device, dtype, why, forms),
    else what can be read here: the device and dtype the model is on, and why."""
    found = getattr(pipe, "compute_path", None)
    if isinstance(found, dict) and found:
        return dict(found)
    dtype = str(getattr(pipe, "dtype", "")).replace("torch.", "")
    device = str(getattr(pipe, "device", ""))
    if asked_dtype in (None, "", "auto"):
        why = (
            "--dtype auto: float32, the exact path (this CPU has no native bfloat16)"
            if device.startswith("cpu") and dtype == "float32"
            else f"--dtype auto: the fast path on {device}"
        )
    else:
        why = f"--dtype {asked_dtype}"
    return {"device": device, "dtype": dtype, "why": why}


def compute_path_line(path: Dict[str, object]) -> str:
    forms = path.get("forms")
    extra = ""
    if isinstance(forms, dict) and forms:
        extra = "; " + ", ".join(f"{k}={v}" for k, v in forms.items())
    return f"compute path: {path.get('device')}, {path.get('dtype')} ({path.get('why')}{extra})"


def model_detail(path) -> str:
    from ..fileio import format_size

    p = Path(path)
    try:
        return f"{p} ({format_size(p.stat().st_size)})"
    except OSError:
        return str(p)
