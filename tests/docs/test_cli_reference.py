"""docs/reference/cli.md is generated from the parsers (docs/gen_cli.py): it must be current,
and it must describe every command and flag the parsers have."""

import argparse
import importlib.util
import subprocess
import sys

from ..helpers.paths import REPO


def _gen():
    spec = importlib.util.spec_from_file_location("gen_cli", REPO / "docs" / "gen_cli.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_committed_cli_reference_is_current():
    proc = subprocess.run(
        [sys.executable, str(REPO / "docs" / "gen_cli.py"), "--check"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr + "\nrun: python docs/gen_cli.py"


def test_check_fails_on_a_stale_page(tmp_path, monkeypatch):
    gen = _gen()
    page = tmp_path / "cli.md"
    page.write_text(gen.render().replace("--paste-back", "--paste-bak"), encoding="utf-8")
    monkeypatch.setattr(gen, "OUT", page)
    assert gen.main(["--check"]) == 1
    page.write_text(gen.render(), encoding="utf-8")
    assert gen.main(["--check"]) == 0


def test_every_command_and_flag_is_on_the_page():
    from sam_age.cli.main import build_parser

    text = _gen().render()

    def walk(parser, path):
        for a in parser._actions:
            if isinstance(a, argparse._SubParsersAction):
                for name, sub in a.choices.items():
                    assert f"# `{' '.join(path + [name])}`" in text
                    walk(sub, path + [name])
            elif a.help is not argparse.SUPPRESS and not isinstance(a, (argparse._HelpAction, argparse._VersionAction)):
                for flag in a.option_strings:
                    assert f"`{flag}`" in text, (path, flag)

    walk(build_parser(), ["sam-age"])
