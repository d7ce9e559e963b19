"""Fast forms chosen by measurement on the machine they run on, the choices cached.

A fast form (a conv with pre-packed oneDNN weights, a generator ``impl``, bfloat16) wins
on the CPUs it was measured on and can lose badly elsewhere: packed convs ran 5-20x
*slower* than ``F.conv2d`` on AVX2-only CPUs (a weight reorder on every call). So "auto"
means: at first use, time each fast form against the plain one on the shapes it runs
(a few calls, interleaved, best of each), keep the faster, and never keep a form that
measures slower than the plain one (:func:`choose`; a fast form must beat the plain one by
``margin``). The choice is kept in ``autotune.json`` (in the weights cache folder: the
caller passes the path, see ``engine.make_tuner``) under a key of what the timing depends
on (:func:`machine`: CPU model and flags, torch version, thread count and the ISA caps
``ONEDNN_MAX_CPU_ISA`` / ``ATEN_CPU_CAPABILITY``), so later runs pay nothing.

``SAM_AGE_AUTOTUNE`` (:func:`mode_from_env`): ``on`` (default) measure once and cache;
``off`` measure nothing and take the rule-based form (``rule``, what each caller states);
``retune`` measure again this run and replace the cached choices. Delete the file to
forget everything. A :class:`Tuner` is an explicit object the caller hands to the models;
nothing here is global state. ``tests/test_autotune.py`` holds the decision logic to
injected timings (no test depends on real timing).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from pathlib import Path
from typing import Callable, Dict, Mapping, Optional, Sequence, Tuple

import torch

from .fileio import write_text

ENV = "SAM_AGE_AUTOTUNE"
MODES = ("on", "off", "retune")
FILENAME = "autotune.json"
FORMAT = 1
MARGIN = 0.05  # a fast form is kept only when at least 5% faster than the plain one
ISA_ENV = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY")


def mode_from_env(env: Optional[Mapping[str, str]] = None) -> str:
    """``SAM_AGE_AUTOTUNE`` as one of :data:`MODES` (``0/off/false/no`` -> off, ``retune``,
    anything else -> on)."""
    value = (os.environ if env is None else env).get(ENV, "").strip().lower()
    if value in ("0", "off", "false", "no"):
        return "off"
    if value in ("retune", "re-tune", "again"):
        return "retune"
    return "on"


def _cpu(cpuinfo: str = "/proc/cpuinfo") -> Tuple[str, str]:
    model, flags = platform.processor() or platform.machine(), ""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return model, flags
    for line in text.splitlines():
        if line.startswith("model name") and ":" in line:
            model = line.split(":", 1)[1].strip()
        elif line.startswith(("flags", "Features")) and ":" in line and not flags:
            flags = " ".join(sorted(line.split(":", 1)[1].split()))
    return model, flags


def machine(env: Optional[Mapping[str, str]] = None, cpuinfo: str = "/proc/cpuinfo") -> Dict[str, str]:
    """What a timing depends on besides the code: the cache key's fields."""
    env = os.environ if env is None else env
    model, flags = _cpu(cpuinfo)
    out = {
        "cpu": model,
        "flags": hashlib.sha1(flags.encode()).hexdigest()[:16],
        "torch": torch.__version__,
        "threads": str(torch.get_num_threads()),
    }
    for name in ISA_ENV:
        out[name] = env.get(name, "")
    return out


def machine_key(m: Mapping[str, str]) -> str:
    return hashlib.sha1(json.dumps(dict(m), sort_keys=True).encode()).hexdigest()[:20]


def choose(times: Mapping[str, Sequence[float]], plain: str, margin: float = MARGIN) -> str:
    """The form to keep from measured times (seconds per call, any number each): the
    fastest form by its best time, if it beats ``plain``'s best by ``margin``; else
    ``plain``. A form with no times never wins."""
    best = {f: min(t) for f, t in times.items() if len(t)}
    if plain not in best:
        raise ValueError(f"no times for the plain form {plain!r}")
    fast = min(best, key=best.get)
    return fast if fast != plain and best[fast] < best[plain] * (1 - margin) else plain


def measure(
    fns: Mapping[str, Callable[[], object]],
    reps: int = 3,
    clock: Callable[[], float] = time.perf_counter,
    warmup: bool = True,
) -> Tuple[Dict[str, list], Dict[str, object]]:
    """Each callable ``reps`` times, interleaved and in alternating order (a b, b a, ...:
    load on a shared machine hits both alike), after one untimed warm-up round when
    ``warmup``. Returns ``(times, last output of each)``."""
    times: Dict[str, list] = {f: [] for f in fns}
    outs: Dict[str, object] = {}
    for r in range(reps + int(warmup)):
        order = list(fns) if r % 2 == 0 else list(fns)[::-1]
        for f in order:
            t0 = clock()
            outs[f] = fns[f]()
            t1 = clock()
            if r >= int(warmup):
                times[f].append(t1 - t0)
    return times, outs


class Tuner:
    """The measured choices of one machine, read from and written to ``path`` (None: kept
    in memory only). ``mode``: see :func:`mode_from_env`. ``pick`` is the one entry."""

    def __init__(
        self,
        path: Optional[Path] = None,
        mode: str = "on",
        reps: int = 3,
        clock: Callable[[], float] = time.perf_counter,
        env: Optional[Mapping[str, str]] = None,
    ):
        if mode not in MODES:
            raise ValueError(f"autotune mode must be one of {MODES}, got {mode!r}")
        self.path = None if path is None else Path(path)
        self.mode, self.reps, self.clock = mode, int(reps), clock
        self.machine = machine(env)
        self.key = machine_key(self.machine)
        self.choices: Dict[str, dict] = {}  # this machine's: name -> {"form", "ms"}
        self.used: Dict[str, str] = {}  # what this process used, name -> form
        if mode == "on":
            self.choices = dict(self._load().get("machines", {}).get(self.key, {}).get("choices", {}))

    def _load(self) -> dict:
        if self.path is None:
            return {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}  # missing or unreadable: measured again, rewritten
        return data if isinstance(data, dict) and data.get("format") == FORMAT else {}

    def _save(self) -> None:
        if self.path is None:
            return
        data = self._load()
        data["format"] = FORMAT
        machines = data.setdefault("machines", {})
        machines[self.key] = {"machine": self.machine, "choices": self.choices}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_text(self.path, json.dumps(data, indent=1, sort_keys=True))
        except OSError:
            pass  # a read-only cache: the choice holds for this process

    def pick(
        self,
        name: str,
        fns: Mapping[str, Callable[[], object]],
        plain: str,
        rule: str,
        reps: Optional[int] = None,
        warmup: bool = True,
    ) -> Tuple[str, object]:
        """The form for ``name`` (a shape's or a network's key) among ``fns`` (form ->
        callable that runs it once and returns its output): the cached choice, else the
        measured one (then cached), or ``rule`` when the mode is off. Returns ``(form,
        output)`` where ``output`` is the chosen form's last output when it was measured
        now (None otherwise), so the timed calls are not wasted."""
        out = None
        if self.mode == "off":
            form = rule
        elif name in self.choices and self.choices[name].get("form") in fns:
            form = self.choices[name]["form"]
        else:
            times, outs = measure(fns, self.reps if reps is None else reps, self.clock, warmup)
            form = choose(times, plain)
            out = outs.get(form)
            self.choices[name] = {"form": form, "ms": {f: round(1e3 * min(t), 3) for f, t in times.items() if t}}
            self._save()
        self.used[name] = form
        return form, out

    def summary(self, prefix: str) -> Optional[str]:
        """What this process used for the names starting with ``prefix``: one form, or
        ``"packed 12, plain 3"`` when it differs by shape; None when none was used yet."""
        forms = [f for n, f in self.used.items() if n.startswith(prefix)]
        if not forms:
            return None
        counts: Dict[str, int] = {}
        for f in forms:
            counts[f] = counts.get(f, 0) + 1
        if len(counts) == 1:
            return forms[0]
        return ", ".join(f"{f} {c}" for f, c in sorted(counts.items(), key=lambda kv: -kv[1]))


def isa_cap(env: Optional[Mapping[str, str]] = None) -> str:
    """The ``ONEDNN_MAX_CPU_ISA`` cap in effect (upper case; "" when none)."""
    env = os.environ if env is None else env
    return (env.get("ONEDNN_MAX_CPU_ISA") or env.get("DNNL_MAX_CPU_ISA") or "").strip().upper()
