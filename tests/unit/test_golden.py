"""Golden translation cases: tests/golden/<case>/input.yaml → expected.yaml.

Each case's expected file is exactly what ``rauta translate <case>/input.yaml`` prints.
``pytest tests/unit/test_golden.py --update-goldens`` (or ``make goldens``) rewrites them;
review the diff before committing. Without the flag any difference fails the test.
"""

from pathlib import Path

import pytest
from click.testing import CliRunner

from rauta.cli import dump_yaml, main, translate_files

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
CASES = sorted(p.name for p in GOLDEN.iterdir() if (p / "input.yaml").exists())


def test_there_are_at_least_25_golden_cases():
    assert len(CASES) >= 25, CASES


@pytest.mark.parametrize("case", CASES)
def test_golden_case(case, request):
    input_path = GOLDEN / case / "input.yaml"
    expected_path = GOLDEN / case / "expected.yaml"
    actual = dump_yaml(translate_files([str(input_path)]))
    if request.config.getoption("--update-goldens"):
        expected_path.write_text(actual)
        return
    assert expected_path.exists(), f"run pytest --update-goldens to create {expected_path}"
    assert actual == expected_path.read_text(), f"golden {case} differs; see git diff after --update-goldens"


@pytest.mark.parametrize("case", CASES[:3])
def test_cli_prints_the_golden_output(case):
    result = CliRunner().invoke(main, ["translate", str(GOLDEN / case / "input.yaml")])
    assert result.exit_code == 0, result.output
    assert result.output == (GOLDEN / case / "expected.yaml").read_text()
