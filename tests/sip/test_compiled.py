"""Which build of the hot SIP modules the suite runs against: mypyc-compiled (the default) or pure Python.

setup.py compiles the modules of ``COMPILED_SIP_MODULES`` with mypyc on ``pip install .`` and ``pip install
-e .``; a compile error fails the install. These tests make the other direction loud too: when the compiled
modules are expected (``PBX_PURE_PYTHON`` is not ``1``) but the interpreter imports the ``.py`` files, or an
extension is older than its source (an editable install not rebuilt after an edit: the extension would
shadow the edit), the suite fails instead of silently measuring or testing something else.
"""

from __future__ import annotations

import ast
import importlib
import importlib.machinery
import os
from pathlib import Path

import pytest

import engine

SIP_DIR = Path(engine.__file__).resolve().parent / "sip"
SETUP_PY = Path(__file__).resolve().parents[2] / "setup.py"  # the checkout these tests belong to
PURE = os.environ.get("PBX_PURE_PYTHON") == "1"


def _compiled_module_names() -> tuple[str, ...]:
    """``COMPILED_SIP_MODULES`` as setup.py declares it (read, not imported: setup.py runs setup())."""
    tree = ast.parse(SETUP_PY.read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "COMPILED_SIP_MODULES" for t in node.targets
        ):
            value = ast.literal_eval(node.value)
            if isinstance(value, tuple) and all(isinstance(v, str) for v in value):
                return value
    raise AssertionError(f"{SETUP_PY} declares no COMPILED_SIP_MODULES tuple")


def _is_extension(path: str | None) -> bool:
    return path is not None and path.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))


def test_setup_py_lists_the_hot_modules() -> None:
    names = _compiled_module_names()
    hot = {"parser", "message", "headers", "uri", "endpoint", "transaction", "auth", "registrar"}
    assert hot <= set(names)
    for name in names:
        assert (SIP_DIR / f"{name}.py").is_file(), f"setup.py compiles engine/sip/{name}.py, which is missing"


@pytest.mark.parametrize("name", _compiled_module_names())
def test_the_expected_build_is_in_use(name: str) -> None:
    module = importlib.import_module(f"engine.sip.{name}")
    path = getattr(module, "__file__", None)
    if PURE:
        assert not _is_extension(path), f"PBX_PURE_PYTHON=1 but engine.sip.{name} is compiled: {path}"
        return
    assert _is_extension(path), (
        f"engine.sip.{name} is pure Python ({path}) but the mypyc build is expected: reinstall with "
        f"`pip install -e .` (or set PBX_PURE_PYTHON=1 for a deliberately pure install)"
    )


@pytest.mark.parametrize("name", _compiled_module_names())
def test_no_extension_is_older_than_its_source(name: str) -> None:
    """An editable install builds the extensions next to the sources; editing a source afterwards leaves the
    old extension in use until ``pip install -e .`` runs again."""
    module = importlib.import_module(f"engine.sip.{name}")
    path = getattr(module, "__file__", None)
    source = SIP_DIR / f"{name}.py"
    if not _is_extension(path):
        assert PURE, f"engine.sip.{name} is not compiled"
        return
    assert path is not None
    compiled = Path(path)
    if not (SIP_DIR.parents[1] / "setup.py").is_file():
        return  # a regular (non-editable) install: sources and extensions come from the same wheel
    assert compiled.stat().st_mtime >= source.stat().st_mtime, (
        f"{compiled.name} is older than {source}: the edit is not in use; run `pip install -e .` again"
    )
