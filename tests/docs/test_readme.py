"""The README stays short and true: its test command is the one CI runs, its relative links point
at files that exist, both languages carry the same commands, and it links only to real upstream
addresses outside the repository."""

import re

from ..helpers.paths import REPO

READMES = ("README.md", "README.zh-CN.md")


def _text(name):
    return (REPO / name).read_text(encoding="utf-8")


def test_readme_test_command_is_what_ci_runs():
    ci = [
        line
        for line in (REPO / ".ci" / "run").read_text().splitlines()
        if "pytest" in line and not line.lstrip().startswith("#")
    ]
    assert ci == [".venv/bin/python -m pytest -q"]
    for name in READMES:
        assert "\n.venv/bin/python -m pytest -q\n" in _text(name), name


def test_readme_links_exist_and_only_upstream_urls():
    allowed = ("https://arxiv.org/abs/2102.02754", "https://github.com/yuval-alaluf/SAM", "http://127.0.0.1:8000")
    for name in READMES:
        text = _text(name)
        for target in re.findall(r"\]\(([^)]+)\)", text):
            assert not target.startswith("http"), (name, target)
            assert (REPO / target.split("#")[0]).exists(), (name, target)
        for url in re.findall(r"https?://[A-Za-z0-9./:_#?=%-]+", text):
            assert url.rstrip(".,") in allowed, (name, url)


def test_both_languages_show_the_same_commands_and_numbers():
    def code(text):
        return sorted(set(re.findall(r"`(sam-age [^`]+)`", text)) | set(re.findall(r"\| (\d+\.\d+) \|", text)))

    en, zh = (_text(n) for n in READMES)
    assert code(en) == code(zh)
    assert re.findall(r"```(?:bash|python|bibtex)\n", en) == re.findall(r"```(?:bash|python|bibtex)\n", zh)
    assert len(en.splitlines()) < 200
