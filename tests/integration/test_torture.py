"""The shared SIP torture corpus (../shared/torture) against a running server: every case must pass."""

from __future__ import annotations

import csv
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .harness import PbxServer

pytestmark = pytest.mark.integration


def test_torture_corpus_all_pass(pbx_server: PbxServer, shared_dir: Path) -> None:
    runner = shared_dir / "torture" / "run_corpus.py"
    table = shared_dir / "torture" / "expected.tsv"
    if not runner.is_file() or not table.is_file():
        pytest.fail(f"torture corpus missing: expected {runner} and {table}", pytrace=False)
    with table.open() as f:
        cases = len(list(csv.DictReader(f, delimiter="\t")))
    assert cases >= 30, f"expected.tsv lists only {cases} cases"
    expected_rows = cases + 1  # every case, then alive-after

    proc = subprocess.run(
        [sys.executable, str(runner), "--host", pbx_server.host, "--port", str(pbx_server.port)],
        capture_output=True,
        text=True,
        timeout=180,
        stdin=subprocess.DEVNULL,
    )
    out = proc.stdout
    rows = [line for line in out.splitlines() if line.startswith(("ok  ", "FAIL"))]
    failed = [line for line in rows if line.startswith("FAIL")]
    summary = re.search(r"^(\d+) passed, (\d+) failed$", out, re.MULTILINE)
    report = f"run_corpus.py exit {proc.returncode}\n{out}\nstderr:\n{proc.stderr}"
    assert not failed, "torture cases failed:\n" + "\n".join(failed) + "\n\n" + report
    assert len(rows) == expected_rows, f"expected {expected_rows} result rows, got {len(rows)}\n{report}"
    assert rows[-1].startswith("ok") and "alive-after" in rows[-1], report
    assert summary is not None and summary.groups() == (str(expected_rows), "0"), report
    assert proc.returncode == 0, report
