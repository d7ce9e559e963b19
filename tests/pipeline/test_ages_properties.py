"""Property-based (Hypothesis) tests of the one ages parser (issue 22): whatever it is given
(any text, numbers of every kind, lists mixing them), parse_ages returns ages or raises the
project's UsageError (exit 2, one line), never another exception; what it returns is
written back by format_age into text that parses to the same ages; distinct ages get
distinct file labels."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sam_age.ages import RelativeAge, age_label, format_age, is_relative, parse_ages
from sam_age.errors import UsageError

ALPHABET = "0123456789+-.:, \t" + "e_x/nNaI\u0663\xa0\n"  # the syntax, and what is near it
texts = st.one_of(st.text(), st.text(alphabet=ALPHABET, max_size=24))
numbers = st.one_of(
    st.floats(), st.integers(min_value=-(10**30), max_value=10**30), st.fractions(), st.booleans(), st.decimals()
)
odd = st.one_of(
    st.none(),
    st.binary(max_size=6),
    st.builds(RelativeAge, st.floats()),
    st.builds(RelativeAge, st.text(max_size=3)),
    st.dictionaries(st.text(max_size=2), st.integers()),
)
anything = st.one_of(texts, numbers, odd, st.lists(st.one_of(texts, numbers, odd), max_size=5))


def _parse(value, **kw):
    try:
        return parse_ages(value, "--ages", **kw)
    except UsageError as e:
        assert "\n" not in str(e).strip() or "\n" in repr(value)  # one line (unless the input had one)
        return None


@settings(max_examples=400, deadline=None)
@given(anything, st.booleans())
def test_never_an_exception_but_the_usage_error(value, relative):
    ages = _parse(value, relative=relative)
    if ages is None:
        return
    assert ages and len(ages) <= 1001
    for a in ages:
        if is_relative(a):
            assert relative and math.isfinite(a.offset) and -100 <= a.offset <= 100
        else:
            assert isinstance(a, float) and 0 <= a <= 100


@settings(max_examples=300, deadline=None)
@given(anything)
def test_what_it_returns_round_trips_through_text(value):
    ages = _parse(value, relative=True)
    if ages is None:
        return
    text = ",".join(format_age(a) for a in ages)
    assert parse_ages(text, relative=True) == ages
    labels = [age_label(a) for a in ages]
    assert len(set(labels)) == len(labels)  # one file per age


exact = st.one_of(
    st.integers(0, 100).map(float),
    st.integers(0, 100 * 10**6).map(lambda n: round(n / 10**6, 6)),
    st.integers(-100 * 10**6, 100 * 10**6).map(lambda n: RelativeAge(round(n / 10**6, 6) + 0.0)),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(exact, min_size=1, max_size=20))
def test_ages_written_by_format_age_read_back_exactly(ages):
    want = []
    for a in ages:  # parse_ages keeps the first of equal ages
        if a not in want:
            want.append(a)
    assert parse_ages(",".join(format_age(a) for a in ages), relative=True) == want
    assert parse_ages(list(ages), relative=True) == want


def test_cases_hypothesis_found():
    """Each was a crash (OverflowError, ValueError, TypeError) or a wrong answer on main."""
    for bad in (
        "0:" + "9" * 400 + ":1",
        "9" * 400 + ":0:-1",
        "1" * 400,
        RelativeAge(float("nan")),
        RelativeAge("x"),
        [RelativeAge(float("inf"))],
        b"30",
        [b"30"],
        "0:100:" + "0." + "0" * 400 + "1",
    ):
        with pytest.raises(UsageError):
            parse_ages(bad, relative=True)
    assert parse_ages(Fraction(61, 2)) == [30.5]
