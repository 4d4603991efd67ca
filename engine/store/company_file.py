"""Company files: loading the YAML format of ``config/example-company.yaml`` and finding that example.

The loader is YAML 1.1 (PyYAML, libyaml when available) made less surprising for phone systems: digit
strings with a leading zero (``0201``) and clock-like values (``18:00``) stay strings instead of becoming
octal or base-60 integers, dates (``2025-12-24``) stay strings so the document is JSON data, and only
``true``/``false`` are booleans (``country: NO`` stays Norway).

The example ships inside the package (``engine/store/example-company.yaml``) so that ``pbx serve`` finds it
in a non-editable install too; ``tests/store`` checks that it is identical to ``config/example-company.yaml``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

import yaml

from engine.model import ModelError, parse_company_document

EXAMPLE_FILE: Final = "example-company.yaml"

_BaseLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _CompanyLoader(_BaseLoader):  # type: ignore[misc]
    """SafeLoader with the phone-friendly scalar rules above."""


def _construct_int(loader: Any, node: Any) -> object:
    text = str(node.value)
    if ":" in text or (len(text) > 1 and text[0] == "0" and text.isdigit()):
        return text
    return yaml.SafeLoader.construct_yaml_int(loader, node)


def _construct_bool(loader: Any, node: Any) -> object:
    text = str(node.value)
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    return text


_CompanyLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)


def _construct_str(loader: Any, node: Any) -> object:
    return str(node.value)


_CompanyLoader.add_constructor("tag:yaml.org,2002:bool", _construct_bool)
_CompanyLoader.add_constructor("tag:yaml.org,2002:timestamp", _construct_str)


def default_company_file() -> Path:
    """The example company shipped with the engine."""
    return Path(__file__).resolve().with_name(EXAMPLE_FILE)


def parse_company_yaml(text: str, source: str = "<string>") -> dict[str, Any]:
    """Load and validate a company document from YAML text.

    Raises:
        ModelError: invalid YAML (field ``""``) or invalid content (field path into the document).
    """
    try:
        doc = yaml.load(text, Loader=_CompanyLoader)
    except yaml.YAMLError as exc:
        raise ModelError("", f"{source}: not valid YAML: {exc}") from None
    if not isinstance(doc, dict):
        raise ModelError("", f"{source}: a company file is a YAML mapping (company:, users:, ...)")
    parse_company_document(doc)
    return doc


def load_company_file(path: Path | str) -> dict[str, Any]:
    """Read a company file and check its shape and content; returns the document for
    ``Store.import_company``.

    Raises:
        OSError: the file cannot be read.
        ModelError: the file is not a valid company document.
    """
    file = Path(path)
    return parse_company_yaml(file.read_text(encoding="utf-8"), str(file))
