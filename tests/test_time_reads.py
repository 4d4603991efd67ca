"""Every time read goes through ``engine/clock.py`` (ARCHITECTURE rule 6: time is injected).

An AST scan of every module of ``engine/``: none but ``engine.clock`` may import the ``time`` module (any
``import time`` or ``from time import ...``) or touch ``datetime.now`` / ``utcnow`` / ``today`` (called or
passed on as a callable, through any alias of the ``datetime`` module or of its ``datetime`` and ``date``
classes). Everything else takes a ``Clock`` (``now()`` monotonic, ``wall()`` wall time) or is handed the
time as an argument, so a ``FakeClock`` drives it in tests. ``from datetime import time`` (the time-of-day
class) is no clock and is allowed.

The import-linter contracts forbid ``time`` only in the pure cores; this scan covers the shells too, and
the ``datetime`` calls that no import contract can see.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Final

REPO_ROOT: Final = Path(__file__).resolve().parents[1]
ENGINE: Final = REPO_ROOT / "engine"

ALLOWED: Final = frozenset({"engine.clock"})
"""Modules that must read time: ``engine.clock`` is the one place that does (SystemClock, LoopClock)."""

KNOWN_TIME_READS: Final[frozenset[str]] = frozenset()
"""Direct time reads still to be removed: none left (issue 11, point 4 emptied it). Not a licence: a module
that reads time itself takes a ``Clock`` instead of an entry here; the test fails while an entry here no
longer offends, so the set only shrinks."""

CLOCK_METHODS: Final = frozenset({"now", "utcnow", "today"})
DATETIME_CLASSES: Final = frozenset({"datetime", "date"})


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def time_reads(tree: ast.Module) -> list[str]:
    """``line: what`` for each direct time read in ``tree``."""
    found: list[str] = []
    datetime_modules: set[str] = set()  # names bound to the datetime module
    datetime_classes: set[str] = set()  # names bound to datetime.datetime or datetime.date
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "time" or alias.name.startswith("time."):
                    found.append(f"{node.lineno}: import {alias.name}")
                elif alias.name == "datetime":
                    datetime_modules.add(alias.asname or alias.name)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            if node.module == "time":
                found.append(f"{node.lineno}: from time import {', '.join(a.name for a in node.names)}")
            elif node.module == "datetime":
                datetime_classes.update(a.asname or a.name for a in node.names if a.name in DATETIME_CLASSES)
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Attribute) and node.attr in CLOCK_METHODS):
            continue
        owner = node.value
        if (isinstance(owner, ast.Name) and owner.id in datetime_classes) or (
            isinstance(owner, ast.Attribute)
            and owner.attr in DATETIME_CLASSES
            and isinstance(owner.value, ast.Name)
            and owner.value.id in datetime_modules
        ):
            found.append(f"{node.lineno}: {ast.unparse(node)}")
    return sorted(found, key=lambda entry: int(entry.split(":", 1)[0]))


def offenders() -> dict[str, list[str]]:
    result: dict[str, list[str]] = {}
    for path in sorted(ENGINE.rglob("*.py")):
        name = module_name(path)
        if name in ALLOWED:
            continue
        reads = time_reads(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
        if reads:
            result[name] = reads
    return result


def test_only_engine_clock_reads_time() -> None:
    found = offenders()
    new = {name: reads for name, reads in found.items() if name not in KNOWN_TIME_READS}
    assert not new, "read time directly instead of through an engine.clock Clock:\n" + "\n".join(
        f"  {name}: {'; '.join(reads)}" for name, reads in sorted(new.items())
    )


def test_known_time_reads_are_still_there() -> None:
    """An entry of KNOWN_TIME_READS that no longer reads time must go, so the exception set only shrinks."""
    fixed = sorted(KNOWN_TIME_READS - set(offenders()))
    assert not fixed, f"no longer read time directly, remove from KNOWN_TIME_READS: {', '.join(fixed)}"


def test_the_scan_finds_every_form() -> None:
    """The scanner itself: each way of reading time is caught, the time-of-day class is not."""
    caught = {
        "import time": 1,
        "import time as t": 1,
        "from time import monotonic": 1,
        "import datetime\ndatetime.datetime.now()": 1,
        "import datetime as dt\nx = dt.date.today": 1,
        "from datetime import datetime\ndatetime.now(None)": 1,
        "from datetime import datetime as D\nD.utcnow()": 1,
        "from datetime import date, datetime, time, timedelta\nx = time(9, 0)": 0,
        "import datetime\ndatetime.datetime.fromtimestamp(0)": 0,
        "clock.now()": 0,
    }
    for source, count in caught.items():
        assert len(time_reads(ast.parse(source))) == count, source
