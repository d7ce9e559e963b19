"""The hand-written reference pages name everything the code has: every exit code and error
class of sam_age.errors, every environment variable the package reads."""

import inspect
import re

from sam_age import errors

from ..helpers.paths import REPO

DOCS = REPO / "docs" / "reference"


def test_exit_codes_page_lists_every_code_and_error():
    text = (DOCS / "exit-codes.md").read_text(encoding="utf-8")
    for name, value in vars(errors).items():
        if name.startswith("EXIT_"):
            assert f"| {value} | `{name}` |" in text, name
        elif inspect.isclass(value) and issubclass(value, errors.SamAgeError):
            assert f"| `{name}` | {value.exit_code} |" in text, name


def test_environment_page_lists_every_variable_read():
    text = (DOCS / "environment.md").read_text(encoding="utf-8")
    found = set()
    for path in (REPO / "src" / "sam_age").rglob("*.py"):
        src = path.read_text(encoding="utf-8")
        found |= set(re.findall(r"environ(?:\.get|\.setdefault)?\(\s*\"([A-Z][A-Z0-9_]+)\"", src))
        found |= set(re.findall(r"environ\[\"([A-Z][A-Z0-9_]+)\"\]", src))
        found |= set(re.findall(r"_env_int\(\"([A-Z][A-Z0-9_]+)\"", src))
    assert found >= {"SAM_AGE_HOME", "SAM_AGE_OFFLINE", "RANK"}
    missing = sorted(v for v in found if f"`{v}" not in text)
    assert not missing, missing
