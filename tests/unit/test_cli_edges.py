"""The command line's rough edges (issue 11): every option has help, option values are
checked (``--admin``, ``--hash-on``), start-up failures are one line, ``translate``
warns about unknown fields and skipped kinds (``--strict`` errors), names both files of
a duplicate, and says how to render the packaged example with placeholders."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import click
import pytest
import yaml
from click.testing import CliRunner

from rauta.cli import main

from .test_cli import QUICK

pytestmark = pytest.mark.timeout(60)

EXAMPLE = Path(__file__).resolve().parents[2] / "rauta" / "examples" / "quickstart.yaml"
ROOT = Path(__file__).resolve().parents[2]


def _file(tmp_path: Path, text: str, name: str = "in.yaml") -> str:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return str(p)


def _commands(group: click.Group, prefix: str = "rauta") -> list[tuple[str, click.Command]]:
    out: list[tuple[str, click.Command]] = [(prefix, group)]
    for name, cmd in sorted(group.commands.items()):
        if isinstance(cmd, click.Group):
            out.extend(_commands(cmd, f"{prefix} {name}"))
        else:
            out.append((f"{prefix} {name}", cmd))
    return out


def test_every_option_and_command_has_help_text() -> None:
    missing = []
    for path, cmd in _commands(main):
        if not (cmd.help or "").strip():
            missing.append(path)
        for param in cmd.params:
            if isinstance(param, click.Option) and not (param.help or "").strip():
                missing.append(f"{path} {param.opts[-1]}")
    assert missing == [], f"options without help text: {missing}"


@pytest.mark.parametrize("command", [["serve"], ["controller"]])
@pytest.mark.parametrize("value", ["foo", "127.0.0.1:", "host:99999", "127.0.0.1:x"])
def test_a_bad_admin_address_is_a_usage_error(tmp_path: Path, command: list[str],
                                              value: str) -> None:
    args = [*command, "--admin", value]
    if command == ["serve"]:
        args += ["--config", _file(tmp_path, QUICK)]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 2, res.output
    assert "--admin" in res.stderr and "Traceback" not in res.output


@pytest.mark.parametrize("value", ["", "ip", "header:", "header:bad name", "Flow"])
def test_a_bad_hash_on_is_a_usage_error(tmp_path: Path, value: str) -> None:
    res = CliRunner().invoke(main, ["serve", "--config", _file(tmp_path, QUICK),
                                    "--hash-on", value])
    assert res.exit_code == 2 and "--hash-on" in res.stderr, res.output


def test_an_uncreatable_quickstart_dir_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    res = CliRunner().invoke(main, ["quickstart", "--dir", str(blocker / "sub")])
    assert res.exit_code == 1, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rauta: ") and "sub" in lines[0], lines
    assert res.exception is None or isinstance(res.exception, SystemExit)


def test_quickstart_render_only_writes_a_translatable_example(tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["quickstart", "--dir", str(tmp_path), "--render-only",
                                    "--port", "18080"])
    assert res.exit_code == 0, res.output
    rendered = tmp_path / "quickstart.yaml"
    assert res.stdout.strip() == str(rendered) and "${port:" not in rendered.read_text()
    out = CliRunner().invoke(main, ["translate", str(rendered)])
    assert out.exit_code == 0, out.output
    assert yaml.safe_load(out.stdout)["config"]["ports"][0]["port"] == 18080


def test_translate_of_the_packaged_example_says_how_to_render_it() -> None:
    res = CliRunner().invoke(main, ["translate", str(EXAMPLE)])
    assert res.exit_code == 2
    assert "--render-only" in res.stderr and "placeholders" in res.stderr
    assert "Traceback" not in res.output


def test_translate_warns_about_unknown_fields_and_strict_refuses(tmp_path: Path) -> None:
    text = QUICK.replace("  - backendRefs: [{name: web, port: 80}]",
                         "  - backendRefs: [{name: web, port: 80}]\n    filter: []")
    f = _file(tmp_path, text)
    res = CliRunner().invoke(main, ["translate", f])
    assert res.exit_code == 0
    assert ('rauta: warning: ' in res.stderr
            and 'HTTPRoute default/web: unknown field "spec.rules[0].filter"' in res.stderr)
    strict = CliRunner().invoke(main, ["translate", "--strict", f])
    assert strict.exit_code == 2 and "spec.rules[0].filter" in strict.stderr
    assert len(strict.stderr.strip().splitlines()) == 1


def test_translate_skips_unsupported_kinds_with_one_warning(tmp_path: Path) -> None:
    extra = ("---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n"
             "---\napiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\n"
             "metadata: {name: g}\n---\napiVersion: apps/v1\nkind: Deployment\n"
             "metadata: {name: d2}\n")
    res = CliRunner().invoke(main, ["translate", _file(tmp_path, QUICK + extra)])
    assert res.exit_code == 0, res.output
    warned = [line for line in res.stderr.splitlines() if "warning" in line]
    assert len(warned) == 1 and "Deployment, GRPCRoute" in warned[0], warned
    assert yaml.safe_load(res.stdout)["config"]["ports"]  # the rest was kept


def test_translate_names_both_files_of_a_duplicate(tmp_path: Path) -> None:
    _file(tmp_path, QUICK, "a.yaml")
    _file(tmp_path, QUICK, "b.yaml")
    res = CliRunner().invoke(main, ["translate", str(tmp_path)])
    assert res.exit_code == 2 and "a.yaml" in res.stderr and "b.yaml" in res.stderr


def _serve(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "rauta.cli", "serve", *args], env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_a_taken_admin_port_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        res = _serve("--config", _file(tmp_path, QUICK), "--admin", f"127.0.0.1:{port}")
    assert res.returncode == 1, res.stderr
    assert "Traceback" not in res.stderr, res.stderr
    (line,) = [ln for ln in res.stderr.splitlines() if ln.startswith("rauta: ")]
    assert f"127.0.0.1:{port}" in line and "--admin" in line
