"""Golden translation cases: tests/golden/<case>/input.yaml → expected.yaml.

Each case's expected file is exactly what ``rauta translate [ARGS] <case>/input.yaml``
prints. ARGS come from the case's optional ``args`` file, one command-line argument per
line (e.g. ``--address-pool`` then ``127.0.1.0/24``); they are parsed by the CLI's own
``translate`` command (``click`` context, no process), so the test runs what the CLI runs.
``pytest tests/unit/test_golden.py --update-goldens`` (or ``make goldens``) rewrites them;
review the diff before committing. Without the flag any difference fails the test.
"""

from pathlib import Path

import pytest
from click.testing import CliRunner

from rauta.cli import dump_yaml, main, service_mode, translate_cmd, translate_files

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
CASES = sorted(p.name for p in GOLDEN.iterdir() if (p / "input.yaml").exists())


def test_there_are_at_least_25_golden_cases():
    assert len(CASES) >= 25, CASES


def case_args(case: str) -> list[str]:
    """Extra CLI arguments of a case (its ``args`` file, one per line), or none."""
    path = GOLDEN / case / "args"
    return [line.strip() for line in path.read_text().splitlines() if line.strip()] \
        if path.exists() else []


def translate_case(case: str) -> dict[str, object]:
    """``translate_files`` called with the options the CLI would parse from the case's args."""
    input_path = GOLDEN / case / "input.yaml"
    ctx = translate_cmd.make_context("translate", [*case_args(case), str(input_path)])
    opts = ctx.params
    return translate_files(list(opts["files"]), opts["controller_name"], opts["address_pool"],
                           gateway_services=service_mode(dict(opts)))


@pytest.mark.parametrize("case", CASES)
def test_golden_case(case, request):
    expected_path = GOLDEN / case / "expected.yaml"
    actual = dump_yaml(translate_case(case))
    if request.config.getoption("--update-goldens"):
        expected_path.write_text(actual)
        return
    assert expected_path.exists(), f"run pytest --update-goldens to create {expected_path}"
    assert actual == expected_path.read_text(), f"golden {case} differs; see git diff after --update-goldens"


ARG_CASES = [c for c in CASES if case_args(c)]


@pytest.mark.parametrize("case", CASES[:3] + ARG_CASES[:2])
def test_cli_prints_the_golden_output(case):
    result = CliRunner().invoke(main, ["translate", *case_args(case),
                                       str(GOLDEN / case / "input.yaml")])
    assert result.exit_code == 0, result.output
    assert result.output == (GOLDEN / case / "expected.yaml").read_text()
