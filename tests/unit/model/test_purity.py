"""rauta/model must stay pure: no I/O, clock, randomness or concurrency imports, no open()."""

import ast
from pathlib import Path

import pytest

MODEL = Path(__file__).resolve().parents[3] / "rauta" / "model"
FORBIDDEN = {"asyncio", "aiohttp", "kubernetes_asyncio", "kubernetes", "socket", "time",
             "random", "threading", "subprocess", "os", "io", "pathlib", "shutil", "datetime",
             "uvloop", "httptools", "secrets", "multiprocessing", "selectors", "urllib.request"}
FORBIDDEN_CALLS = {"open", "input", "print", "exec", "eval", "__import__"}
MODULES = sorted(MODEL.glob("*.py"))


def _imports(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module, node.lineno


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_model_module_imports_nothing_impure(path):
    tree = ast.parse(path.read_text())
    bad = [(name, line) for name, line in _imports(tree)
           if name in FORBIDDEN or name.split(".")[0] in FORBIDDEN]
    assert not bad, f"{path.name} imports impure modules: {bad}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_model_module_calls_no_io_builtins(path):
    tree = ast.parse(path.read_text())
    bad = [(node.func.id, node.lineno) for node in ast.walk(tree)
           if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
           and node.func.id in FORBIDDEN_CALLS]
    assert not bad, f"{path.name} calls I/O builtins: {bad}"


def test_purity_check_catches_a_forbidden_import(tmp_path):
    """The checker itself must be able to fail."""
    tree = ast.parse("import time\nfrom asyncio import sleep\n")
    names = {n for n, _ in _imports(tree)}
    assert names & FORBIDDEN == {"time", "asyncio"}


def test_model_modules_have_docstrings():
    for path in MODULES:
        assert ast.get_docstring(ast.parse(path.read_text())), f"{path.name} lacks a docstring"
