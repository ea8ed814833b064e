"""Downloading a release over HTTP(S): size limits, resume with Range, hash checks."""

from __future__ import annotations

import hashlib
import http.client
import logging
import urllib.error
import urllib.request
from pathlib import Path

from agent.update.errors import DownloadError, UpdateError, UpdateRefused
from sync.protocol.release import ReleaseFile

logger = logging.getLogger(__name__)

CHUNK_BYTES = 64 * 1024
"""Bytes read from the socket at a time."""
SMALL_FILE_LIMIT = 1024 * 1024
"""Largest manifest or signature accepted, bytes."""


def fetch_small(url: str, timeout: float, limit: int = SMALL_FILE_LIMIT) -> bytes:
    """The whole body at ``url``, refused when over ``limit`` bytes."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body = response.read(limit + 1)
    except urllib.error.HTTPError as exc:
        raise DownloadError(f"{url} answered HTTP {exc.code} — is the release published?") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", exc)
        raise DownloadError(f"cannot fetch {url}: {reason} — check the release URL") from None
    if len(body) > limit:
        raise UpdateRefused(f"{url} is over the {limit}-byte limit — not a Teddy release file")
    return body


def download_file(url: str, item: ReleaseFile, target: Path, attempts: int,
                  timeout: float) -> None:
    """Fetch ``item`` to ``target``, resuming a partial file; verify size and SHA-256.

    A wrong hash deletes the partial file (a fresh try starts from zero).
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, attempts + 1):
        have = target.stat().st_size if target.exists() else 0
        if have > item.size:
            target.unlink()
            have = 0
        if have == item.size:
            break
        try:
            _fetch_range(url, target, have, item.size, timeout)
        except UpdateError:
            raise
        except (OSError, http.client.HTTPException) as exc:
            logger.info("download of %s interrupted (try %d/%d): %s", item.path, attempt,
                        attempts, exc)
    have = target.stat().st_size if target.exists() else 0
    if have != item.size:
        raise DownloadError(
            f"download of {item.path} stopped at {have} of {item.size} bytes after {attempts} "
            "tries — the server sends a truncated file; republish the release"
        )
    digest = sha256_file(target)
    if digest != item.sha256:
        target.unlink()
        raise UpdateRefused(
            f"{item.path} has SHA-256 {digest[:16]}…, the signed manifest says "
            f"{item.sha256[:16]}… — the file was altered; nothing was installed"
        )


def _fetch_range(url: str, target: Path, start: int, size: int, timeout: float) -> None:
    """Append bytes ``start..`` of ``url`` to ``target``; never more than ``size`` in all."""
    request = urllib.request.Request(url)
    if start:
        request.add_header("Range", f"bytes={start}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416:  # nothing past what we have: the server's file is short
            return
        raise DownloadError(f"{url} answered HTTP {exc.code} — is the release published?") \
            from None
    with response:
        mode = "ab"
        if start and response.status != 206:  # server ignored Range: start over
            mode, start = "wb", 0
        with target.open(mode) as handle:
            written = start
            while chunk := response.read(CHUNK_BYTES):
                written += len(chunk)
                if written > size:
                    raise UpdateRefused(
                        f"{url} sends more than the {size} bytes the manifest says — refused"
                    )
                handle.write(chunk)


def sha256_file(path: Path) -> str:
    """Lower-case hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1024 * 1024):
            digest.update(block)
    return digest.hexdigest()
