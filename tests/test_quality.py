"""Quality gates inside the suite (the uvloop practice): ruff, mypy --strict on engine/, import-linter.

Each runs as a subprocess from the repository root and fails the test with its output on a nonzero exit.
A missing tool fails too (it is part of the `test` extras), it never skips.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def tool(script: str, module: str | None) -> list[str]:
    """The console script beside this interpreter, else on PATH, else ``python -m module``."""
    beside = Path(sys.executable).with_name(script)
    if beside.exists():
        return [str(beside)]
    found = shutil.which(script)
    if found:
        return [found]
    if module is not None:
        return [sys.executable, "-m", module]
    pytest.fail(f"`{script}` is not installed: pip install -e '.[test]'", pytrace=False)


GATES = {
    "ruff": (("ruff", "ruff"), ["check", "."]),
    "mypy": (("mypy", "mypy"), ["--strict", "engine"]),
    "import-linter": (("lint-imports", None), []),
}


@pytest.mark.parametrize("gate", sorted(GATES))
def test_quality_gate(gate: str) -> None:
    (script, module), args = GATES[gate]
    cmd = [*tool(script, module), *args]
    try:
        proc = subprocess.run(
            cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"`{' '.join(cmd)}` did not finish within 600 s", pytrace=False)
    if proc.returncode != 0:
        pytest.fail(
            f"`{' '.join(cmd)}` exited {proc.returncode}\n{proc.stdout[-20000:]}\n{proc.stderr[-5000:]}",
            pytrace=False,
        )
