"""The README claims nothing that does not exist (issue 11, "first run and docs"): every
``rauta`` command and option it shows is one the command line has, every ``make`` target
it names is in the Makefile, every ``rauta_`` metric it names is defined in ``rauta/``,
every repository path it names exists, and it states which HTTP versions are spoken
(HTTP/1.1-only while there is no HTTP/2, HTTP/2 once ``rauta/proxy/h2.py`` exists).

Read statically from README.md, the Makefile and the source tree (the click command is
inspected, nothing is run).
"""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from rauta.cli import main

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"


def readme() -> str:
    if not README.exists():
        pytest.skip("no README.md in this tree")
    return README.read_text(encoding="utf-8")


def _commands() -> dict[str, click.Command]:
    assert isinstance(main, click.Group)
    return dict(main.commands)


def _options(cmd: click.Command) -> set[str]:
    return {o for p in cmd.params if isinstance(p, click.Option) for o in p.opts}


_NOT_YET = re.compile(r"\bnot (yet|checked)\b|\bthere is no\b|\bfuture\b|\bplanned\b")


def _invocations(text: str) -> list[tuple[str, str]]:
    """(subcommand, rest of the line) for each ``rauta <sub> ...`` in code blocks/spans.
    Inline spans in a paragraph that says the thing is not there yet are not claims."""
    spans = re.findall(r"```.*?```", text, re.S)
    for para in re.sub(r"```.*?```", "", text, flags=re.S).split("\n\n"):
        if not _NOT_YET.search(para.replace("\n", " ")):
            spans += re.findall(r"`([^`\n]+)`", para)
    out: list[tuple[str, str]] = []
    for span in spans:
        lines = span.splitlines()
        for i, line in enumerate(lines):
            line = line.split(" #")[0]  # a shell comment is prose
            for m in re.finditer(r"^\s*(?:\$ )?rauta ([a-z][a-z-]*)\b(.*)", line):
                rest = m.group(2)
                j = i + 1  # continuation lines of a usage block (indented options)
                while j < len(lines) and re.match(r"^\s+\[?--", lines[j]):
                    rest += " " + lines[j]
                    j += 1
                out.append((m.group(1), rest))
    return out


def test_every_rauta_command_and_option_the_readme_shows_exists() -> None:
    text = readme()
    commands = _commands()
    missing: list[str] = []
    for sub, rest in _invocations(text):
        if sub not in commands:
            missing.append(f"rauta {sub}")
            continue
        for opt in re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", rest):
            if opt not in _options(commands[sub]) and opt != "--help":
                missing.append(f"rauta {sub} {opt}")
    assert sorted(set(missing)) == [], "the README shows what the CLI lacks"


def test_every_make_target_the_readme_names_exists() -> None:
    text = readme()
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    targets = set(re.findall(r"^([A-Za-z][\w.-]*)\s*:(?!=)", makefile, re.M))
    named = set(re.findall(r"`make ([a-z][\w-]*)", text))
    named |= set(re.findall(r"^make ([a-z][\w-]*)", text, re.M))
    assert named, "the README names its make targets"
    assert sorted(named - targets) == []


def test_every_metric_the_readme_names_is_defined() -> None:
    text = readme()
    source = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "rauta").rglob("*.py"))
    names = set(re.findall(r"\b(rauta_[a-z][a-z0-9_]*[a-z0-9])\b", text))
    missing = []
    for name in sorted(names):
        base = re.sub(r"_(total|bucket|count|sum|created)$", "", name)
        if name not in source and base not in source:
            missing.append(name)
    assert missing == [], "metrics the README names that rauta does not define"


def test_every_repository_path_the_readme_names_exists() -> None:
    text = readme()
    missing = []
    for span in re.findall(r"`([^`\n]+)`", text):
        for word in span.split():
            word = word.strip("(),;:")
            top = word.split("/")[0]
            if "/" not in word or "<" in word or "*" in word or "$" in word or ":" in word:
                continue
            if not (ROOT / top).exists() or top in ("", ".", ".."):
                continue  # not a path of this repository (a URL part, an API group, ...)
            if not (ROOT / word.rstrip("/")).exists():
                missing.append(word)
    assert sorted(set(missing)) == [], "paths the README names that do not exist"


def test_the_readme_states_the_http_versions_spoken() -> None:
    text = readme()
    has_h2 = (ROOT / "rauta" / "proxy" / "h2.py").exists()
    one_only = re.search(r"HTTP/1\.1[- ]only|only HTTP/1\.1|HTTP/1\.x only", text)
    if has_h2:
        assert "HTTP/2" in text, "HTTP/2 exists; the README must say where it is spoken"
        flat = text.replace("\n", " ")
        sentence = re.search(r"\bHTTPS listeners?\b[^.]*HTTP/2[^.]*ALPN", flat)
        assert sentence, "the README says HTTPS listeners speak HTTP/2 (ALPN h2)"
        if one_only:  # allowed only where it names the plain-HTTP listeners
            ctx = text[max(0, one_only.start() - 120):one_only.end() + 40]
            assert "HTTP listener" in ctx or "h2c" in ctx, ctx
    else:
        assert one_only, "without HTTP/2 the README states HTTP/1.1 only"
