"""A company's configuration between its file, the store and the dial-plan compiler.

Before an import (``pbx import``, the first start of ``pbx serve``): ``check_document_plans`` compiles the
document's dial plans (an import is refused on any error) and ``install_sound_clips`` converts the clips it
names into the data directory. While serving: ``compile_plan`` compiles the dial plans of a stored
configuration snapshot, the sound clips played from the data directory.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from engine.dialplan.compiler import CompileResult, compile_config
from engine.dialplan.plan import CompiledConfig
from engine.dialplan.schema import ConfigInputs
from engine.files import write_atomic
from engine.media.wav import WavError, convert_to_8k_mono16
from engine.model import DialPlan, Line, User, objects_by_kind, parse_company_document
from engine.model.errors import ModelError
from engine.store import StoredConfig, sound_clip_path

logger = logging.getLogger(__name__)


def compile_plan(stored: StoredConfig, data_dir: Path) -> CompiledConfig | None:
    """The compiled dial plans of a stored configuration (``Store.config_snapshot``), or None (logged) when
    they do not compile: lines still reach each other directly then, numbers routed to plans get 480."""
    objects = objects_by_kind(stored.routing_objects)
    for clip in objects.get("sound_clips", []):
        clip["file"] = str(sound_clip_path(data_dir, clip["name"]))  # played from the data directory
    result = compile_config(ConfigInputs(stored.company, stored.users, stored.lines, stored.numbers,
                                         stored.dial_plans, objects, line_features=stored.line_features))
    for issue in result.warnings:
        logger.warning("dial plans: %s", issue)
    for issue in result.errors:
        logger.error("dial plans: %s", issue)
    return result.config


def check_document_plans(doc: Mapping[str, Any]) -> CompileResult:
    """Compile the dial plans of a company document before it is imported (what ``pbx import`` and the
    first start refuse on): the document's users and lines stand in for the stored ones.

    Raises:
        ModelError: the document itself is invalid (the field named).
    """
    parsed = parse_company_document(doc)
    users = [User(i + 1, u.first_name, u.last_name, u.email) for i, u in enumerate(parsed.users)]
    lines = [Line(i + 1, i + 1, u.extension, u.line_name, u.external_caller_id, "", "", u.dial_permissions)
             for i, u in enumerate(parsed.users)]
    plans = [DialPlan(i + 1, p.name, p.graph) for i, p in enumerate(parsed.dial_plans)]
    return compile_config(ConfigInputs(parsed.company, users, lines, parsed.numbers, plans,
                                       objects_by_kind(parsed.objects)))


def install_sound_clips(doc: Mapping[str, Any], base_dir: Path, data_dir: Path) -> int:
    """Convert the sound clips a company document names (``file`` relative to the document) into the data
    directory (8 kHz 16-bit mono WAV, written atomically). Returns how many were installed.

    Raises:
        OSError: a clip file cannot be read or written.
        ModelError: a clip file is not a WAV file we can read (field ``sound_clips[i].file``).
    """
    count = 0
    for i, clip in enumerate(doc.get("sound_clips") or []):
        name, file = clip.get("name"), clip.get("file")
        if not isinstance(name, str) or not isinstance(file, str):
            continue
        try:
            data = convert_to_8k_mono16((base_dir / file).read_bytes())
        except WavError as exc:
            raise ModelError(f"sound_clips[{i}].file", f"{file}: {exc}") from None
        target = sound_clip_path(data_dir, name)
        target.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(target, data)
        count += 1
    return count
