"""Install a signed content-pack bundle (``update-content-pack``) into the data dir.

The bundle's own Ed25519 signature is checked with the fleet key; its files are laid over
a copy of the content the bear runs, the result must load for every age band, and only
then does it replace ``<data_dir>/content`` (the dialogue reads it from there when it
exists). A bundle not newer than the installed one is refused.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from agent.safety.errors import PackRefusedError
from config.errors import ProtocolError, TeddyError
from sync.protocol import ContentBundle

if TYPE_CHECKING:
    from agent.safety import SafetyFilter

logger = logging.getLogger(__name__)

CONTENT_DIR_NAME = "content"
"""Folder of the installed content pack inside the data dir."""
VERSION_FILE = "VERSION"
"""File holding the installed bundle's version."""


class ContentUpdateError(TeddyError, ValueError):
    """A content bundle was refused."""


def installed_dir(data_dir: Path) -> Path:
    """Where an installed content pack lives."""
    return Path(data_dir) / CONTENT_DIR_NAME


def installed_version(data_dir: Path) -> int:
    """The installed bundle's version; 0 when the bear runs its built-in content."""
    path = installed_dir(data_dir) / VERSION_FILE
    return int(path.read_text().strip()) if path.exists() else 0


def install_bundle(bundle: ContentBundle, fleet_key: bytes, data_dir: Path,
                   safety: SafetyFilter | None = None) -> dict:
    """Verify, validate, safety-gate and install ``bundle``; returns what was installed.

    Every line the new pack can make the bear say goes through ``check_output`` (``safety``,
    default: the bear's filter); one failure refuses the whole bundle, naming the line.
    """
    from agent.dialogue.content import AGE_BANDS, CONTENT_DIR, load_pack
    from agent.dialogue.extras import check_pack as check_extras

    try:
        bundle.verify(fleet_key)
    except ProtocolError as exc:
        raise ContentUpdateError(f"content bundle refused: {exc}") from None
    current = installed_version(data_dir)
    if bundle.version <= current:
        raise ContentUpdateError(f"content bundle version {bundle.version} is not newer than "
                                 f"the installed version {current}")
    unknown = sorted(set(bundle.files) - {p.name for p in CONTENT_DIR.glob("*.json")})
    if unknown:
        raise ContentUpdateError(f"content bundle names unknown files {', '.join(unknown)}")
    target = installed_dir(data_dir)
    staging = target.with_name(CONTENT_DIR_NAME + ".new")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(target if target.exists() else CONTENT_DIR, staging)
    try:
        for name, text in bundle.files.items():
            json.loads(text)
            (staging / name).write_text(text, encoding="utf-8")
        (staging / VERSION_FILE).write_text(f"{bundle.version}\n")
        for band in AGE_BANDS:
            load_pack.__wrapped__(band, staging)
        check_extras(staging)
    except (ValueError, KeyError, TypeError, TeddyError) as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise ContentUpdateError(f"content bundle version {bundle.version} does not load: "
                                 f"{str(exc).splitlines()[0]}") from None
    _gate(staging, bundle.version, safety)
    _swap(staging, target)
    logger.info("content pack version %d installed (%d files)", bundle.version,
                len(bundle.files))
    return {"version": bundle.version, "files": sorted(bundle.files)}


def _gate(staging: Path, version: int, safety: SafetyFilter | None) -> None:
    from agent.safety import default_filter
    from agent.safety.gate import gate_pack

    try:
        gate_pack(staging, safety if safety is not None else default_filter())
    except PackRefusedError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise ContentUpdateError(f"content bundle version {version}: {exc}") from None


def _swap(staging: Path, target: Path) -> None:
    old = target.with_name(CONTENT_DIR_NAME + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    staging.rename(target)
    shutil.rmtree(old, ignore_errors=True)
