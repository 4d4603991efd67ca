"""SIP identifiers are cryptographically random (RFC 3261 §19.3): no module of ``engine/`` draws them from the
``random`` module.

An AST scan of every module of ``engine/``: a run-time import of ``random`` (``import random``, ``from random
import ...``; an import under ``if TYPE_CHECKING:`` only names a type) is allowed only in the modules of
``RANDOM_ALLOWED``, and there only for the attributes listed with their reason. Tags, branches and SDP session
ids come from ``SipEndpoint``'s byte source (``secrets.token_bytes`` by default), and the Call-IDs that the
call layer and MWI build from tags or ``uuid4`` (``os.urandom``) with them; tests/sip/test_endpoint.py checks
their format, length and uniqueness.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Final

REPO_ROOT: Final = Path(__file__).resolve().parents[1]
ENGINE: Final = REPO_ROOT / "engine"

RANDOM_ALLOWED: Final[dict[str, frozenset[str]]] = {
    # RFC 3550 §5.1: the SSRC and the initial sequence number and timestamp are random, not secret (SRTP,
    # not unpredictability, protects media); a seeded random.Random keeps the RTP tests repeatable.
    "engine.media.io": frozenset({"Random"}),
    "engine.media.session": frozenset({"Random"}),
    # The digest nonces' random part (engine.sip.auth takes a random.Random): SystemRandom is os.urandom.
    "engine.server": frozenset({"SystemRandom"}),
    # A call queue's "random" ring strategy picks the next agent: no identifier; seeded in the tests.
    "engine.call.queue": frozenset({"Random"}),
}
"""Modules that may use the ``random`` module at run time, and what of it. Not for SIP identifiers."""


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_nodes(tree: ast.Module) -> list[ast.AST]:
    """Every node of ``tree`` but those under a module-level ``if TYPE_CHECKING:``."""
    skipped: set[int] = set()
    for stmt in tree.body:
        if isinstance(stmt, ast.If) and _is_type_checking(stmt.test):
            for inner in stmt.body:
                skipped.update(id(n) for n in ast.walk(inner))
    return [n for n in ast.walk(tree) if id(n) not in skipped]


def random_uses(tree: ast.Module) -> set[str]:
    """The names of the ``random`` module that ``tree`` uses at run time (``*`` for the module itself when
    it is bound but its use cannot be told)."""
    nodes = _runtime_nodes(tree)
    aliases: set[str] = set()
    used: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "random":
                    aliases.add(alias.asname or "random")
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module == "random":
            used.update(a.name for a in node.names)
    attribute_owners: set[int] = set()
    for node in nodes:
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
            used.add(node.attr)
            attribute_owners.add(id(node.value))
    for node in nodes:
        if isinstance(node, ast.Name) and node.id in aliases and id(node) not in attribute_owners:
            used.add("*")  # the module passed on as a value: anything could be drawn from it
    return used


def offenders() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in sorted(ENGINE.rglob("*.py")):
        name = module_name(path)
        uses = random_uses(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
        extra = uses - RANDOM_ALLOWED.get(name, frozenset())
        if extra:
            found[name] = extra
    return found


def test_no_engine_module_draws_from_the_random_module() -> None:
    found = offenders()
    assert not found, "uses the random module (SIP identifiers come from secrets/os.urandom):\n" + "\n".join(
        f"  {name}: random.{', random.'.join(sorted(uses))}" for name, uses in sorted(found.items())
    )


def test_the_sip_core_does_not_use_the_random_module_at_run_time() -> None:
    for path in sorted((ENGINE / "sip").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        assert not random_uses(tree), f"{module_name(path)} uses the random module"


def test_the_allowed_modules_still_need_it() -> None:
    """An entry of RANDOM_ALLOWED whose module no longer uses ``random`` must go, so the set only shrinks."""
    for name, allowed in RANDOM_ALLOWED.items():
        path = REPO_ROOT / Path(*name.split(".")).with_suffix(".py")
        uses = random_uses(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
        assert uses & allowed, f"{name} no longer uses random.{', random.'.join(sorted(allowed))}"


def test_the_scan_finds_every_form() -> None:
    cases = {
        "import random\nrandom.getrandbits(64)": {"getrandbits"},
        "import random as r\nx = r.Random(1)": {"Random"},
        "from random import choice, randrange": {"choice", "randrange"},
        "import random\nf(random)": {"*"},
        "if TYPE_CHECKING:\n    import random\ndef f(r: random.Random): ...": set(),
        "import secrets\nsecrets.token_hex(8)": set(),
        "import os\nos.urandom(8)": set(),
    }
    for source, uses in cases.items():
        assert random_uses(ast.parse(source)) == uses, source
