"""Build hook: compiles the hot pure-SIP modules with mypyc (issue 2: REGISTER/s of one engine process).

Everything else about the package is declared in pyproject.toml; this file only adds the extension modules.
The Python source stays the source of truth: mypyc compiles exactly these files (which are ``mypy --strict``
clean), and the tests run against whatever is installed (tests/sip/test_compiled.py says which, and fails
when the compiled modules are expected but missing or older than their source).

``PBX_PURE_PYTHON=1 pip install ...`` installs without compiling (a pure-Python install for debugging or
platforms without a C compiler); the test suite then expects the pure modules (set the same variable when
running it). Without that variable a compile error fails the install: there is no silent fallback.

Not compiled: ``events.py`` and ``errors.py`` (mypyc resolves their ``TYPE_CHECKING``-only attribute types
to other compiled modules' classes at run time, which crashed on import orders that load them first; they
are not on the hot path). ``dialog.py``, ``sdp.py`` and ``invite.py`` (every call) are: compiled, they took
about 9 % off the CPU of a whole call exchange in ``bench/calls_inproc.py`` (same run, 809 -> 741 µs).
"""

from __future__ import annotations

import os

from setuptools import setup  # type: ignore[import-untyped]

#: The modules of engine/sip compiled by mypyc, in dependency order.
COMPILED_SIP_MODULES = (
    "grammar",
    "uri",
    "headers",
    "message",
    "parser",
    "sanity",
    "transaction",
    "auth",
    "registrar",
    "guard",
    "endpoint",
    "dialog",
    "sdp",
    "invite",
)


def _ext_modules() -> list[object]:
    if os.environ.get("PBX_PURE_PYTHON") == "1":
        return []
    from mypyc.build import mypycify

    paths = [f"engine/sip/{name}.py" for name in COMPILED_SIP_MODULES]
    # opt_level 3 is mypyc's default; the C compiler flags come from the Python build (sysconfig).
    return list(mypycify(paths, opt_level="3"))


setup(ext_modules=_ext_modules())
