"""Target ages: the one parser for ``--ages`` (every command), ``ages=`` (the Python API)
and the web demo's age box, and the relative ages ("+20 years") resolved against an
estimate. No torch here: the CLI parses ``--ages`` before anything heavy is imported.

The rules (also in docs/guides/ages.md and in ``sam-age age --help``):

* ``30``, ``42.5``: an **absolute** age in years, 0..100 (SAM's training range), written
  without a sign. Absolute ages are never negative, so a sign is free to mean:
* ``+20``, ``-10``, ``+0``: a **relative** age, years from the face's age as DEX estimates
  it (the age predictor of the training recipe). The result is clamped to 0..100 and the
  clamping is reported. Offsets lie in -100..+100.
* ``START:STOP:STEP``: a range, STOP included when the steps land on it; STEP is required,
  not 0, and points from START to STOP (``10:0:-5`` counts down; ``10:0:5`` is an empty
  range and an error). Both ends unsigned: absolute (``0:100:10``); both ends signed:
  relative (``-10:+30:10``). STEP's sign only gives the direction.
* ``,`` separates items; spaces are ignored. Repeated ages (equal after rounding to 1e-6
  years) are kept once, in first-seen order. At most :data:`MAX_AGES` ages.
* Python: a number is an absolute age (a negative number is refused: write ``"-10"`` for
  ten years younger), a string follows the text rules, a :class:`RelativeAge` is itself,
  and a list may mix all of these.

Each age gets a file label that is unique for distinct ages (:func:`age_label`): the
integer part zero-padded to three digits and the exact decimals (``030``, ``030.21``,
``099.99``; never rounded up to ``100.0``); relative ages keep their sign (``+20``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from numbers import Real
from typing import Iterable, List, Optional, Sequence, Tuple, Union

from .errors import UsageError

MIN_AGE, MAX_AGE = 0.0, 100.0
MAX_OFFSET = 100.0
MAX_AGES = 1001  # 0:100:0.1; more is a typo, not a request
DECIMALS = 6  # ages are rounded to a millionth of a year; labels are exact at that precision

_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)$")
SYNTAX = "e.g. 30 | 0,30,60 | 0:100:10 | +20 | -10,+10 | -10:+30:10"


@dataclass(frozen=True)
class RelativeAge:
    """``offset`` years from the face's estimated age ("+20" -> ``RelativeAge(20.0)``)."""

    offset: float

    def __str__(self) -> str:
        return _signed(self.offset)

    def resolve(self, estimate: float) -> "ResolvedAge":
        asked = round(float(estimate) + self.offset, 1)
        age = min(MAX_AGE, max(MIN_AGE, asked))
        return ResolvedAge(age, self, asked if age != asked else None)


Age = Union[float, RelativeAge]


@dataclass(frozen=True)
class ResolvedAge:
    """An age to generate: ``age`` in 0..100, from ``request``; ``asked`` is the
    unclamped age when a relative request fell outside 0..100 (else None)."""

    age: float
    request: Age
    asked: Optional[float] = None

    @property
    def clamped(self) -> bool:
        return self.asked is not None


def is_relative(age) -> bool:
    return isinstance(age, RelativeAge)


def _plain(value: float) -> str:
    """The shortest exact decimal text at :data:`DECIMALS` precision (30, 30.21, 99.99)."""
    text = f"{value:.{DECIMALS}f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def _signed(value: float) -> str:
    return ("-" if value < 0 else "+") + _plain(abs(value))


def format_age(age: Age) -> str:
    """For messages and captions: ``30``, ``42.5``, ``+20``, ``-10``."""
    return str(age) if is_relative(age) else _plain(float(age))


def age_label(age: Age) -> str:
    """For file names (``age_<label>.png``): ``030``, ``030.21``, ``099.99``, ``100``,
    ``+20``, ``-2.5``. Distinct ages (after rounding to 1e-6) get distinct labels."""
    if is_relative(age):
        return str(age)
    whole, _, frac = _plain(float(age)).partition(".")
    return whole.zfill(3) + ("." + frac if frac else "")


def _number(text: str, item: str, what: str) -> Tuple[float, bool]:
    """``text`` -> (value, signed). Plain decimals only (no exponents, nan or inf)."""
    if not _NUMBER.match(text):
        raise UsageError(f"{what}: cannot read {item!r} ({SYNTAX})")
    value = float(text)
    if not math.isfinite(value):  # ("9" * 400 is inf: no age, and no range end)
        raise UsageError(f"{what}: {item!r}: {_brief(text)} is too large to be an age")
    return value, text[0] in "+-"


def _brief(text: str) -> str:
    return text if len(text) <= 20 else text[:17] + "..."


def _check_absolute(value: float, item: str, what: str) -> float:
    if not MIN_AGE <= value <= MAX_AGE:
        raise UsageError(
            f"{what}: {item!r} is outside 0..100 (SAM was trained on that range; "
            "for years from the estimated age write +N or -N)"
        )
    return round(value, DECIMALS)


def _check_offset(value: float, item: str, what: str) -> RelativeAge:
    if abs(value) > MAX_OFFSET:
        raise UsageError(f"{what}: {item!r} is more than 100 years from any age")
    return RelativeAge(round(value, DECIMALS) + 0.0)  # + 0.0: no "-0"


def _parse_range(item: str, what: str) -> List[Age]:
    bits = item.split(":")
    if len(bits) > 3:
        raise UsageError(f"{what}: cannot read {item!r}: a range is START:STOP:STEP ({SYNTAX})")
    numbers = [_number(b, item, what) for b in bits]
    if len(bits) == 2:
        raise UsageError(f"{what}: the range {item!r} needs a step: START:STOP:STEP (e.g. {item}:10)")
    (start, s1), (stop, s2), (step, _) = numbers
    if s1 != s2:
        raise UsageError(
            f"{what}: in {item!r} one end has a sign and the other not: a range is "
            "absolute (10:50:10) or relative to the estimated age (-10:+30:10)"
        )
    if step == 0:
        raise UsageError(f"{what}: the range {item!r} has a step of 0")
    if (stop - start) * step < 0:
        right = f"{bits[0]}:{bits[1]}:{_plain(-step) if step < 0 else '-' + _plain(step)}"
        raise UsageError(
            f"{what}: the range {item!r} is empty: it counts "
            f"{'up' if step > 0 else 'down'} from {bits[0]} but {bits[1]} is "
            f"{'below' if step > 0 else 'above'}; did you mean {right}?"
        )
    n = int(math.floor((stop - start) / step + 1e-9)) + 1
    if n > MAX_AGES:
        raise UsageError(f"{what}: the range {item!r} makes {n} ages; at most {MAX_AGES}")
    values = [round(start + i * step, DECIMALS) for i in range(n)]
    check = _check_offset if s1 else _check_absolute
    for end, text in ((start, bits[0]), (values[-1], _plain(values[-1]))):
        check(end, text, what)
    return [RelativeAge(v + 0.0) for v in values] if s1 else values


def _parse_text(text: str, what: str) -> List[Age]:
    out: List[Age] = []
    for item in str(text).replace(" ", "").replace("\t", "").split(","):
        if not item:
            continue
        if ":" in item:
            out += _parse_range(item, what)
            continue
        value, signed = _number(item, item, what)
        out.append(_check_offset(value, item, what) if signed else _check_absolute(value, item, what))
    return out


def _parse_one(value, what: str) -> List[Age]:
    if isinstance(value, RelativeAge):
        off = value.offset
        if not isinstance(off, Real) or isinstance(off, bool) or not math.isfinite(float(off)):
            raise UsageError(f"{what}: RelativeAge({off!r}) is not a number of years")
        return [_check_offset(float(off), _signed(float(off)), what)]
    if isinstance(value, str):
        return _parse_text(value, what)
    if isinstance(value, Real) and not isinstance(value, bool):
        v = float(value)
        if not math.isfinite(v):
            raise UsageError(f"{what}: {value!r} is not an age")
        if v < 0:
            raise UsageError(
                f"{what}: {value!r} is negative; ages are 0..100 "
                f"(for {_plain(-v)} years younger than the estimate pass the string "
                f"'{_plain(v)}')"
            )
        return [_check_absolute(v, _plain(v), what)]
    raise UsageError(f"{what}: cannot read {value!r} ({SYNTAX})")


def _items(value, what: str) -> List[Age]:
    if isinstance(value, (str, Real, RelativeAge)):
        return _parse_one(value, what)
    if isinstance(value, (bytes, bytearray, memoryview, dict)):  # (bytes would iterate as small ints)
        raise UsageError(f"{what}: cannot read {value!r} ({SYNTAX})")
    try:
        parts = list(value)
    except TypeError:
        raise UsageError(f"{what}: cannot read {value!r} ({SYNTAX})") from None
    return [a for part in parts for a in _parse_one(part, what)]


def _no_relative(ages: Sequence[Age], what: str) -> None:
    if any(is_relative(a) for a in ages):
        rel = ", ".join(str(a) for a in ages if is_relative(a))
        raise UsageError(f"{what}: relative ages ({rel}) are not available here; give ages 0..100")


def parse_ages(
    value: Union[str, Real, RelativeAge, Iterable], what: str = "ages", *, relative: bool = False
) -> List[Age]:
    """``value`` (text, a number, a :class:`RelativeAge` or a list of these) -> the ages
    asked, in order, without repeats: floats (absolute) and :class:`RelativeAge` items.

    ``relative=False`` (callers that cannot estimate ages) refuses ``+N``/``-N``.
    ``what`` names the source in messages (``--ages``). Raises :class:`UsageError`."""
    seen, ages = set(), []
    for a in _items(value, what):
        key = (is_relative(a), a.offset if is_relative(a) else a)
        if key not in seen:
            seen.add(key)
            ages.append(a)
    if not ages:
        raise UsageError(f"{what}: give at least one age ({SYNTAX})")
    if len(ages) > MAX_AGES:
        raise UsageError(f"{what}: {len(ages)} ages; at most {MAX_AGES}")
    if not relative:
        _no_relative(ages, what)
    return ages


def absolute_ages(ages, what: str = "ages") -> List[float]:
    """Absolute ages only, in order and with repeats kept (the engine's input: two
    relative ages may resolve to the same age, and each still gets its image)."""
    items = _items(ages, what)
    if not items:
        raise UsageError(f"{what}: give at least one age ({SYNTAX})")
    _no_relative(items, what)
    return [float(a) for a in items]


def resolve_ages(ages: Sequence[Age], estimate: Optional[float]) -> List[ResolvedAge]:
    """The ages to generate for one face whose estimated age is ``estimate`` (needed
    only when some age is relative)."""
    out = []
    for a in ages:
        if is_relative(a):
            if estimate is None:
                raise UsageError(f"the relative age {a} needs the face's estimated age")
            out.append(a.resolve(estimate))
        else:
            out.append(ResolvedAge(float(a), float(a)))
    return out


def clamp_note(estimate: float, resolved: Sequence[ResolvedAge]) -> Optional[str]:
    """One line saying which relative ages were clamped to 0..100, or None."""
    clamped = [r for r in resolved if r.clamped]
    if not clamped:
        return None
    parts = ", ".join(f"{r.request} -> {_plain(r.asked)} clamped to {_plain(r.age)}" for r in clamped)
    return f"estimated age {estimate:.1f}: {parts} (SAM ages within 0..100)"
