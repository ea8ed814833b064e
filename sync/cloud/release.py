"""Building, signing and publishing releases (the cloud's half of over-the-air updates).

``build_release`` copies the working tree, stamps the version, runs ``pip wheel``, hashes
every wheel into a manifest and signs it with the fleet's Ed25519 release key.
``publish_release`` copies a release into the store under the SHA-256 of its manifest
(content-addressed: a URL always means the same bytes) and records it in PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib.util
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from config.errors import CloudError, ConfigError, KeyFileError
from sync.protocol.release import (
    MANIFEST_NAME,
    SIGNATURE_NAME,
    VERSION_PATTERN,
    ReleaseFile,
    ReleaseManifest,
    key_id,
    public_key_raw,
    sign_manifest,
)

logger = logging.getLogger(__name__)

SOURCE_PARTS = ("pyproject.toml", "README.md", "agent", "sync", "hardware", "config")
"""What of the working tree goes into the project wheel's build."""
WHEEL_TIMEOUT_S = 1800.0
"""Longest ``pip wheel`` may take, seconds."""


class ReleaseError(CloudError):
    """A release cannot be built or published."""


def generate_key(path: Path) -> str:
    """Write a new Ed25519 release private key (PEM, mode 0600); return the public key
    (base64 of 32 raw bytes) for ``update.public_key`` on the bears."""
    import base64

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyFileError(f"release key {path} exists — refusing to overwrite the fleet's "
                           "key; choose another path") from None
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    return base64.b64encode(public_key_raw(key.public_key())).decode()


def load_signing_key(path: Path | None):
    """The Ed25519 private key in the PEM file ``path`` (must be mode 0600)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    if path is None:
        raise ConfigError("update.signing_key_file is not set — create one with teddy-cloud "
                          "release keygen and set TEDDY_UPDATE__SIGNING_KEY_FILE")
    try:
        mode = path.stat().st_mode & 0o777
        data = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"release key {path} cannot be read ({exc.strerror}) — fix "
                           "update.signing_key_file") from None
    if mode & 0o077:
        raise KeyFileError(f"release key {path} has mode {mode:04o} — run: chmod 600 {path}")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except ValueError:
        key = None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"release key {path} is not an Ed25519 PEM private key — make one "
                           "with teddy-cloud release keygen")
    return key


def build_release(source: Path, out_dir: Path, version: str, signing_key,
                  floor: str | None = None, with_deps: bool = False,
                  patch: Callable[[Path], None] | None = None) -> ReleaseManifest:
    """Build a signed release of the tree at ``source`` into ``out_dir`` (made empty).

    ``floor`` (default: ``version``) is the minimum previous version bears accept after
    this one. ``with_deps`` adds every dependency wheel (a complete, offline-installable
    release; needs the package index). ``patch`` may alter the copied tree before the
    build (used to make deliberately broken releases in tests).
    """
    if not VERSION_PATTERN.match(version):
        raise ReleaseError(f"version {version!r} is not like 1.2.0 — pass --version X.Y.Z")
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise ReleaseError(f"{out_dir} is not empty — choose a new output directory")
    wheels = out_dir / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="teddy-release-") as scratch:
        tree = Path(scratch) / "src"
        copy_source(Path(source), tree)
        stamp_version(tree, version)
        if patch is not None:
            patch(tree)
        build_wheels(tree, wheels, with_deps)
    return write_manifest(out_dir, version, floor or version, signing_key, with_deps)


def copy_source(source: Path, tree: Path) -> None:
    """Copy the parts of the working tree a wheel is built from (no caches, no venv)."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", ".venv")
    tree.mkdir(parents=True)
    for part in SOURCE_PARTS:
        path = source / part
        if path.is_dir():
            shutil.copytree(path, tree / part, ignore=ignore)
        elif path.exists():
            shutil.copy2(path, tree / part)
        elif part == "pyproject.toml":
            raise ReleaseError(f"{source} has no pyproject.toml — pass the project's root")


def stamp_version(tree: Path, version: str) -> None:
    """Set ``version`` in the copy's pyproject.toml and ``agent.__version__``."""
    pyproject = tree / "pyproject.toml"
    text, count = re.subn(r'(?m)^version\s*=\s*"[^"]*"', f'version = "{version}"',
                          pyproject.read_text(), count=1)
    if count != 1:
        raise ReleaseError("pyproject.toml has no [project] version line to stamp")
    pyproject.write_text(text)
    init = tree / "agent" / "__init__.py"
    init.write_text(re.sub(r'(?m)^__version__\s*=\s*"[^"]*"', f'__version__ = "{version}"',
                           init.read_text()))


def build_wheels(tree: Path, wheels: Path, with_deps: bool) -> None:
    """``pip wheel`` the tree (and its dependencies when asked) into ``wheels``."""
    command = [sys.executable, "-m", "pip", "wheel", str(tree), "-w", str(wheels),
               "--quiet", "--disable-pip-version-check"]
    if not with_deps:
        command.append("--no-deps")
    if importlib.util.find_spec("wheel") and importlib.util.find_spec("setuptools"):
        try:  # faster, and works without the index, when the local setuptools can do it
            _pip_wheel([*command, "--no-build-isolation"])
            return
        except ReleaseError as exc:
            logger.info("build without isolation failed (%s); building isolated", exc)
    _pip_wheel(command)


def _pip_wheel(command: list[str]) -> None:
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=WHEEL_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise ReleaseError(f"pip wheel took over {WHEEL_TIMEOUT_S:.0f} s — try again") from None
    if result.returncode != 0:
        last = (result.stderr.strip() or "no output").splitlines()[-1]
        raise ReleaseError(f"pip wheel failed: {last}")


def write_manifest(out_dir: Path, version: str, floor: str, signing_key,
                   complete: bool) -> ReleaseManifest:
    """Hash every file under ``out_dir/wheels``, write and sign ``manifest.json``."""
    files = tuple(
        ReleaseFile(path=path.relative_to(out_dir).as_posix(), sha256=sha256_of(path),
                    size=path.stat().st_size)
        for path in sorted((out_dir / "wheels").iterdir()) if path.is_file()
    )
    manifest = ReleaseManifest(
        version=version, floor=floor, complete=complete, files=files,
        created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        key_id=key_id(public_key_raw(signing_key.public_key())),
    )
    payload = manifest.to_payload()
    (out_dir / MANIFEST_NAME).write_bytes(payload)
    (out_dir / SIGNATURE_NAME).write_bytes(sign_manifest(signing_key, payload))
    logger.info("built release %s: %d files, %d bytes", version, len(files), manifest.total_size)
    return manifest


def sha256_of(path: Path) -> str:
    """Lower-case hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1024 * 1024):
            digest.update(block)
    return digest.hexdigest()


def publish_release(release_dir: Path, store: Path, base_url: str) -> tuple[str, ReleaseManifest]:
    """Copy a built release to ``store/<sha256 of manifest>/``; its URL and manifest.

    Every file is checked against the manifest first, so a damaged build is never served.
    """
    release_dir = Path(release_dir)
    try:
        payload = (release_dir / MANIFEST_NAME).read_bytes()
    except FileNotFoundError:
        raise ReleaseError(f"{release_dir} has no {MANIFEST_NAME} — run teddy-cloud release "
                           "build first") from None
    manifest = ReleaseManifest.from_payload(payload)
    for item in manifest.files:
        path = release_dir / item.path
        if not path.is_file() or sha256_of(path) != item.sha256:
            raise ReleaseError(f"{path} does not match its manifest hash — rebuild the release")
    digest = hashlib.sha256(payload).hexdigest()
    target = Path(store) / digest
    if not target.exists():
        staging = Path(store) / f".{digest}.{os.getpid()}.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        for name in (MANIFEST_NAME, SIGNATURE_NAME):
            shutil.copy2(release_dir / name, staging / name)
        for item in manifest.files:
            (staging / item.path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(release_dir / item.path, staging / item.path)
        os.replace(staging, target)
    url = f"{base_url.rstrip('/')}/{digest}/"
    logger.info("published release %s at %s", manifest.version, url)
    return url, manifest


def record_release(conn, manifest: ReleaseManifest, url: str, digest: str) -> None:
    """Remember a published release in PostgreSQL (``releases``), keyed by version."""
    conn.execute(
        "INSERT INTO releases (version, url, manifest_sha256, floor, complete, total_bytes)"
        " VALUES (%s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (version) DO UPDATE SET url = EXCLUDED.url,"
        " manifest_sha256 = EXCLUDED.manifest_sha256, floor = EXCLUDED.floor,"
        " complete = EXCLUDED.complete, total_bytes = EXCLUDED.total_bytes,"
        " published_at = now()",
        (manifest.version, url, digest, manifest.floor, manifest.complete, manifest.total_size))


def release_url_for(conn, release: str) -> tuple[str, str]:
    """``(version, url)`` of ``release``: a published version, or a URL used as given."""
    if "://" in release:
        row = conn.execute("SELECT version FROM releases WHERE url = %s", (release,)).fetchone()
        if row is None:
            raise ReleaseError(f"{release} is not a published release — run teddy-cloud "
                               "release publish first")
        return row[0], release
    row = conn.execute("SELECT url FROM releases WHERE version = %s", (release,)).fetchone()
    if row is None:
        raise ReleaseError(f"release {release} is not published — run teddy-cloud release "
                           "publish DIR first")
    return release, row[0]
