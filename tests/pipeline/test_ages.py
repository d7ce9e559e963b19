"""The one age parser (``--ages``, ``ages=``, the web's box): its rules and its messages."""

from __future__ import annotations

import pytest

from sam_age.ages import MAX_AGES, RelativeAge, age_label, clamp_note, format_age, parse_ages, resolve_ages
from sam_age.errors import UsageError
from sam_age.pipeline import parse_ages as pipeline_parse_ages


def rel(*offsets):
    return [RelativeAge(float(o)) for o in offsets]


@pytest.mark.parametrize(
    "value, expected",
    [
        ("0:100:10", [float(a) for a in range(0, 101, 10)]),  # STOP included: 11 ages
        ("0,10, 20", [0.0, 10.0, 20.0]),
        ("5,0:20:10,20", [5.0, 0.0, 10.0, 20.0]),  # repeats kept once, first-seen order
        ("30:10:-10", [30.0, 20.0, 10.0]),
        ("0:25:10", [0.0, 10.0, 20.0]),  # STOP included only when a step lands on it
        ("7:7:5", [7.0]),
        ("0:1:0.25", [0.0, 0.25, 0.5, 0.75, 1.0]),
        ("30.21,30.24", [30.21, 30.24]),
        (30, [30.0]),  # the Python API: a number
        (42.5, [42.5]),
        ("0:100:50", [0.0, 50.0, 100.0]),  # a string is the CLI's text
        ([10, "40:60:10", 70], [10.0, 40.0, 50.0, 60.0, 70.0]),
        ("+20", rel(20)),
        ("-10,+10", rel(-10, 10)),
        ("+0", rel(0)),
        ("-10:+30:20", rel(-10, 10, 30)),
        ("+30:-10:-20", rel(30, 10, -10)),
        (["+20", 30, RelativeAge(5)], [RelativeAge(20.0), 30.0, RelativeAge(5.0)]),
        ("20,+20", [20.0, RelativeAge(20.0)]),  # absolute 20 and 20 years older differ
    ],
)
def test_accepted_forms(value, expected):
    assert parse_ages(value, relative=True) == expected
    assert pipeline_parse_ages is parse_ages  # one parser, re-exported where it always was


@pytest.mark.parametrize(
    "value, message",
    [
        ("abc", "cannot read 'abc'"),
        ("1e3", "cannot read"),
        ("nan", "cannot read"),
        ("", "at least one age"),
        (" , ", "at least one age"),
        ("150", "outside 0..100"),
        ("0:100", "needs a step"),  # no silent step 1 (101 ages)
        ("0:100:0", "step of 0"),
        ("10:0:5", "empty: it counts up from 10 but 0 is below; did you mean 10:0:-5?"),
        ("0:10:-5", "empty: it counts down from 0 but 10 is above; did you mean 0:10:5?"),
        ("-5:5:5", "one end has a sign and the other not"),
        ("0:100:1:2", "START:STOP:STEP"),
        ("0:100:0.01", f"makes 10001 ages; at most {MAX_AGES}"),
        ("0:120:10", "outside 0..100"),
        ("+150", "more than 100 years"),
        (-10, "negative; ages are 0..100 (for 10 years younger than the estimate pass the string '-10')"),
        (float("inf"), "not an age"),
        (True, "cannot read"),
        (None, "cannot read"),
    ],
)
def test_refused_with_a_clear_message(value, message):
    with pytest.raises(UsageError) as e:
        parse_ages(value, "--ages", relative=True)
    assert message in str(e.value) and str(e.value).startswith("--ages: ")
    assert "\n" not in str(e.value)


def test_relative_ages_only_where_an_estimate_exists():
    with pytest.raises(UsageError, match=r"relative ages \(\+20, -10\) are not available here"):
        parse_ages("30,+20,-10", "--ages")  # e.g. evaluate: targets are absolute
    assert parse_ages("30") == [30.0]


def test_labels_are_unique_and_never_rounded_up():
    ages = parse_ages("30.21,30.24,99.99,100,0.5,0,7", relative=True)
    labels = [age_label(a) for a in ages]
    assert labels == ["030.21", "030.24", "099.99", "100", "000.5", "000", "007"]
    fine = parse_ages("0:1:0.001")
    assert len({age_label(a) for a in fine}) == len(fine) == 1001
    assert [age_label(a) for a in rel(20, -10, 2.5, 0)] == ["+20", "-10", "+2.5", "+0"]
    assert [format_age(a) for a in (30.0, 42.5, RelativeAge(-2.5))] == ["30", "42.5", "-2.5"]


def test_resolving_relative_ages_clamps_and_says_so():
    asked = parse_ages("+20,-10,30,-50,+80", relative=True)
    got = resolve_ages(asked, 37.44)
    assert [r.age for r in got] == [57.4, 27.4, 30.0, 0.0, 100.0]
    assert [r.clamped for r in got] == [False, False, False, True, True]
    assert got[3].asked == pytest.approx(-12.6) and got[4].asked == pytest.approx(117.4)
    note = clamp_note(37.44, got)
    assert note == (
        "estimated age 37.4: -50 -> -12.6 clamped to 0, +80 -> 117.4 clamped to 100 (SAM ages within 0..100)"
    )
    assert clamp_note(37.44, got[:3]) is None
    with pytest.raises(UsageError, match="estimated age"):
        resolve_ages(asked, None)
    assert [r.age for r in resolve_ages([10.0, 20.0], None)] == [10.0, 20.0]
