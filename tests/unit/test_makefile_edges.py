"""The first-run rough edge of issue 11, read statically from the Makefile: the cold
``make quickstart`` installs only what the demo needs (no dev extras) and shows pip's
progress (no ``-q``), while ``make test`` still gets the dev extras.

The Makefile is parsed here with a small reader of its own (variables, rules, recipes;
``$(VAR)`` expanded), not by running make: nothing is installed by this test.
"""

from __future__ import annotations

import re
from pathlib import Path

MAKEFILE = Path(__file__).resolve().parents[2] / "Makefile"
_VAR = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s*(?::=|\?=|=)\s*(.*)$")
_RULE = re.compile(r"^([^\s:=#][^:=]*?)\s*:(?!=)\s*(.*)$")


def parse(text: str) -> tuple[dict[str, str], dict[str, tuple[list[str], list[str]]]]:
    """(variables, rules): each rule's prerequisites and recipe lines, unexpanded."""
    variables: dict[str, str] = {}
    rules: dict[str, tuple[list[str], list[str]]] = {}
    lines = text.replace("\\\n", " ").splitlines()
    current: list[str] | None = None
    for line in lines:
        if line.startswith("\t"):
            if current is not None:
                current.append(line.strip())
            continue
        current = None
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if m := _VAR.match(line):
            variables.setdefault(m.group(1), m.group(2).strip())
        elif m := _RULE.match(line):
            recipe: list[str] = []
            for target in m.group(1).split():
                rules[target] = (m.group(2).split("#")[0].split(), recipe)
            current = recipe
    return variables, rules


def expand(value: str, variables: dict[str, str], depth: int = 0) -> str:
    assert depth < 10, value
    out = re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                 lambda m: variables.get(m.group(1), m.group(0)), value)
    return out if out == value else expand(out, variables, depth + 1)


def closure(target: str, variables: dict[str, str],
            rules: dict[str, tuple[list[str], list[str]]]) -> list[str]:
    """Every recipe line (expanded) make may run for ``target``, prerequisites first."""
    seen: set[str] = set()
    out: list[str] = []

    def walk(name: str) -> None:
        name = expand(name, variables)
        if name in seen:
            return
        seen.add(name)
        rule = next((r for t, r in rules.items() if expand(t, variables) == name), None)
        if rule is None:
            return
        for pre in rule[0]:
            walk(pre)
        out.extend(expand(line, variables) for line in rule[1])

    walk(target)
    return out


def pip_installs(lines: list[str]) -> list[str]:
    return [ln for ln in lines if re.search(r"\bpip install\b", ln)]


def makefile() -> tuple[dict[str, str], dict[str, tuple[list[str], list[str]]]]:
    return parse(MAKEFILE.read_text())


def test_quickstart_installs_no_dev_extras_and_is_not_quiet() -> None:
    variables, rules = makefile()
    assert "quickstart" in rules
    installs = pip_installs(closure("quickstart", variables, rules))
    assert installs, "make quickstart installs rauta somewhere"
    for line in installs:
        assert "[dev]" not in line, f"quickstart installs the dev extras: {line}"
        assert not re.search(r"(^|\s)(-q+|--quiet)(\s|$)", line), f"a quiet install: {line}"
    assert any(re.search(r"-e\s+['\"]?\.['\"]?(\s|$)", ln) for ln in installs), installs


def test_quickstart_says_what_it_installs_before_pip_runs() -> None:
    variables, rules = makefile()
    lines = closure("quickstart", variables, rules)
    first_pip = next(i for i, ln in enumerate(lines) if "pip install" in ln)
    said = [ln for ln in lines[:first_pip] if ln.lstrip("@").startswith("echo")]
    assert any("install" in ln for ln in said), lines[:first_pip]


def test_make_test_still_installs_the_dev_extras() -> None:
    variables, rules = makefile()
    installs = pip_installs(closure("test", variables, rules))
    assert any("[dev]" in line for line in installs), installs


def test_the_dev_install_satisfies_the_quickstart_stamp() -> None:
    """After ``make test`` the demo does not install again (the dev set includes it)."""
    variables, rules = makefile()
    (qs_stamp,) = [expand(p, variables) for p in rules["quickstart"][0]]
    dev = [ln for t, (_, recipe) in rules.items()
           for ln in (expand(x, variables) for x in recipe) if "[dev]" in ln]
    assert dev
    dev_target = next(t for t, (_, recipe) in rules.items()
                      if any("[dev]" in x for x in recipe))
    touches = [expand(x, variables) for x in rules[dev_target][1] if x.startswith("touch")]
    assert any(qs_stamp in t.split() for t in touches), (qs_stamp, touches)
