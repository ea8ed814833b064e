"""Shared by the update, release and rollout tests: a release server and test releases.

Releases are built once per test session (``pip wheel`` of this repository, version
stamped) and cached under pytest's session temp dir, whichever test file asks first.
"""

from __future__ import annotations

import shutil
import sysconfig
import threading
from dataclasses import dataclass
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from support.paths import ROOT

BASE_SITE_PACKAGES = Path(sysconfig.get_paths()["purelib"])
"""The test venv's site-packages: development releases borrow their dependencies here."""


class RangeHandler(SimpleHTTPRequestHandler):
    """Serves files with ``Range: bytes=N-`` support; can cut a response once, halfway."""

    server: ReleaseServer.HttpServer

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib name
        """Quiet: requests are recorded in ``server.requests`` instead."""

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        """Send the file, the asked range of it, or 416 past its end."""
        path = Path(self.translate_path(self.path))
        wanted = self.headers.get("Range")
        self.server.requests.append((self.path, wanted))
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        start = int(wanted.removeprefix("bytes=").split("-")[0]) if wanted else 0
        if start >= len(data) and wanted:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(data)}")
            self.end_headers()
            return
        body = data[start:]
        self.send_response(206 if wanted else 200)
        if wanted:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.path in self.server.cut_once:
            self.server.cut_once.discard(self.path)
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


class ReleaseServer:
    """A stdlib HTTP server on 127.0.0.1 serving ``root``; a context manager."""

    class HttpServer(ThreadingHTTPServer):
        """Keeps what was asked, and which paths to cut short once."""

        daemon_threads = True
        requests: list[tuple[str, str | None]]
        cut_once: set[str]

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.httpd = self.HttpServer(("127.0.0.1", 0), partial(RangeHandler,
                                                               directory=str(self.root)))
        self.httpd.requests = []
        self.httpd.cut_once = set()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> ReleaseServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    @property
    def requests(self) -> list[tuple[str, str | None]]:
        """``(path, Range header)`` of every request so far."""
        return self.httpd.requests

    def cut_once(self, path: str) -> None:
        """Cut the next full response for ``path`` (URL path) halfway through."""
        self.httpd.cut_once.add(path)


def break_store(tree: Path) -> None:
    """Make a release that cannot open the conversation store."""
    path = tree / "agent" / "store" / "store.py"
    path.write_text(path.read_text() + (
        "\n\ndef _refuse_open(cls, *args, **kwargs):\n"
        "    raise StoreError('this release cannot open the store (deliberately broken)')\n"
        "\n\nConversationStore.open = classmethod(_refuse_open)\n"))


def crash_at_start(tree: Path) -> None:
    """Make a release whose appliance (``run``/``chat``) exits 3 at once; checks still pass."""
    path = tree / "agent" / "cli.py"
    path.write_text(path.read_text() + (
        "\n\n_checked_main = main\n\n\n"
        "def main(argv=None):\n"
        "    words = sys.argv[1:] if argv is None else list(argv)\n"
        "    if 'chat' in words or 'run' in words:\n"
        "        raise SystemExit(3)\n"
        "    return _checked_main(argv)\n"))


PATCHES = {"good": None, "broken-store": break_store, "crash": crash_at_start}


@dataclass
class ReleaseKit:
    """Test releases, signed with one key, published under ``store``."""

    base: Path
    """Session directory of builds and the store."""
    key: object
    """The Ed25519 private release key."""
    public_key: str
    """Its public key, base64 (``update.public_key``)."""

    @property
    def store(self) -> Path:
        """The content-addressed store (served by the tests' HTTP servers)."""
        return self.base / "store"

    def release(self, version: str, kind: str = "good", floor: str | None = None) -> str:
        """The store path (``<digest>/``) of a built, published release; built once."""
        from sync.cloud.release import build_release, publish_release

        marker = self.base / "published" / f"{version}-{kind}"
        if marker.exists():
            return marker.read_text()
        out = self.base / "builds" / f"{version}-{kind}"
        shutil.rmtree(out, ignore_errors=True)
        build_release(ROOT, out, version, self.key, floor=floor, patch=PATCHES[kind])
        url, _ = publish_release(out, self.store, "")
        path = url.strip("/") + "/"
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(path)
        return path


def release_kit(base: Path) -> ReleaseKit:
    """The session's kit in ``base`` (key made on first use)."""
    import base64

    from cryptography.hazmat.primitives import serialization

    from sync.cloud.release import generate_key, load_signing_key

    key_file = base / "release.pem"
    if not key_file.exists():
        base.mkdir(parents=True, exist_ok=True)
        generate_key(key_file)
    key = load_signing_key(key_file)
    public = key.public_key().public_bytes(serialization.Encoding.Raw,
                                           serialization.PublicFormat.Raw)
    return ReleaseKit(base, key, base64.b64encode(public).decode())
