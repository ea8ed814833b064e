"""Logs leave the machine: systemd-journal-upload ships the services' JSON journal entries
to a central systemd-journal-remote, as docs/runbook.md ("Ship the logs") sets them up.

No journald runs here, so the cloud host's journal is made from real ``teddy-cloud`` log
lines with systemd-journal-remote's own export-format reader (the fields journald would
add: unit, identifier, priority). Then the real uploader sends it over HTTP to a real
collector on a free port; the collector's journal holds every entry, in order, the JSON intact,
and a second upload run (from the saved cursor) sends nothing new: at most the one entry at
the saved cursor again (systemd 252's uploader re-reads its cursor entry on restart; the
runbook says so)."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from support.brokers import free_port, wait_for_port
from support.processes import run_cli

REMOTE = Path("/lib/systemd/systemd-journal-remote")
UPLOAD = Path("/lib/systemd/systemd-journal-upload")
PRIORITY = {"DEBUG": 7, "INFO": 6, "WARNING": 4, "ERROR": 3, "CRITICAL": 2}

pytestmark = pytest.mark.skipif(
    not (REMOTE.exists() and UPLOAD.exists() and shutil.which("journalctl")),
    reason="apt-get install systemd-journal-remote (scripts/setup --test)")


def _journal_from(lines: list[str], unit: str, path: Path) -> None:
    """Write ``lines`` (the service's stderr) as journald would keep them."""
    now = int(time.time() * 1_000_000)
    export = "".join(
        f"__REALTIME_TIMESTAMP={now + n}\n__MONOTONIC_TIMESTAMP={n}\n"
        f"MESSAGE={line}\nSYSLOG_IDENTIFIER=teddy-cloud\n_SYSTEMD_UNIT={unit}\n"
        f"PRIORITY={PRIORITY[json.loads(line)['level']]}\n\n"
        for n, line in enumerate(lines))
    subprocess.run([str(REMOTE), f"--output={path}", "-"], input=export, text=True,
                   check=True, capture_output=True, timeout=30)


def _upload(port: int, local: Path, state: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(UPLOAD), f"--url=http://127.0.0.1:{port}", f"--directory={local}",
                           "--follow=no", f"--save-state={state}"],
                          capture_output=True, text=True, timeout=30)


def _remote_entries(remote: Path) -> list[dict]:
    out = subprocess.run(["journalctl", f"--directory={remote}", "-o", "json", "--no-pager"],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_the_journal_is_shipped_to_the_collector_with_its_json_intact(env, tmp_path):
    stderr = "".join(
        run_cli("teddy-cloud", "--log-level", "INFO", "fleet", "keygen",
                env=dict(env, TEDDY_FLEET__SIGNING_KEY_FILE=str(tmp_path / f"fleet{n}.key"))
                ).stderr for n in range(3))
    lines = [line for line in stderr.splitlines() if line.startswith("{")]
    assert len(lines) == 3, stderr
    local, remote = tmp_path / "local", tmp_path / "remote"
    local.mkdir()
    remote.mkdir()
    _journal_from(lines, "teddy-cloud-notify.service", local / "system.journal")
    port = free_port()
    collector = subprocess.Popen([str(REMOTE), f"--listen-http=127.0.0.1:{port}",
                                  f"--output={remote}/all.journal", "--split-mode=none"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for_port(port)
        first = _upload(port, local, tmp_path / "state")
        assert first.returncode == 0, first.stderr
        again = _upload(port, local, tmp_path / "state")
        assert again.returncode == 0, again.stderr
    finally:
        collector.terminate()
        collector.wait(10)
    shipped = [e for e in _remote_entries(remote)
               if e.get("_SYSTEMD_UNIT") == "teddy-cloud-notify.service"]
    messages = [e["MESSAGE"] for e in shipped]
    assert messages[:len(lines)] == lines  # every entry, in order
    assert messages[len(lines):] in ([], lines[-1:])  # the restart resent nothing older
    record = json.loads(shipped[0]["MESSAGE"])
    assert record["logger"] == "sync.cloud.fleet" and "signing key" in record["msg"]
    assert shipped[0]["PRIORITY"] == "6"


# --- mutual TLS, really enforced: nginx (journal-gateway-nginx.conf) in front ---------------

JOURNAL_EXAMPLES = Path(__file__).resolve().parent.parent / "config" / "examples" / "journal"
NGINX = Path("/usr/sbin/nginx")


def _openssl(folder: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True, timeout=60)


def _ca(folder: Path, name: str) -> None:
    _openssl(folder, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
             f"/CN={name}", "-keyout", f"{name}.key", "-out", f"{name}.pem")


def _issue(folder: Path, ca: str, name: str, subject: str, san: str | None = None) -> None:
    _openssl(folder, "req", "-newkey", "rsa:2048", "-nodes", "-subj", subject, "-keyout",
             f"{name}.key", "-out", f"{name}.csr")
    extra = []
    if san:
        (folder / f"{name}.cnf").write_text(f"subjectAltName={san}\n")
        extra = ["-extfile", f"{name}.cnf"]
    _openssl(folder, "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey",
             f"{ca}.key", "-CAcreateserial", "-days", "1", *extra, "-out", f"{name}.pem")


def _gateway_config(prefix: Path, certs: Path, port: int, upstream: int) -> str:
    """The shipped nginx site, this test's ports and files put in, inside a minimal nginx
    main config (foreground, files in ``prefix``)."""
    site = (JOURNAL_EXAMPLES / "journal-gateway-nginx.conf").read_text()
    swaps = {
        "listen 19532 ssl;": f"listen 127.0.0.1:{port} ssl;",
        "/etc/ssl/certs/journal-remote.pem": str(certs / "collector.pem"),
        "/etc/ssl/private/journal-remote.pem": str(certs / "collector.key"),
        "/etc/ssl/ca/trusted.pem": str(certs / "senders-ca.pem"),
        "proxy_pass http://127.0.0.1:19531;": f"proxy_pass http://127.0.0.1:{upstream};",
    }
    for old, new in swaps.items():
        assert old in site, f"journal-gateway-nginx.conf no longer has {old!r}: update the test"
        site = site.replace(old, new)
    temp = "\n".join(f"    {kind}_temp_path {prefix}/{kind};"
                     for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return (f"daemon off;\nmaster_process off;\nerror_log {prefix}/error.log warn;\n"
            f"pid {prefix}/nginx.pid;\nevents {{ worker_connections 64; }}\nhttp {{\n"
            f"    access_log {prefix}/access.log;\n{temp}\n{site}\n}}\n")


def _post_without_client_certificate(port: int, ca: Path, body: bytes) -> int:
    import http.client
    import ssl

    context = ssl.create_default_context(cafile=str(ca))
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=15)
    try:
        connection.request("POST", "/upload", body=body,
                           headers={"Content-Type": "application/vnd.fdo.journal"})
        return connection.getresponse().status
    finally:
        connection.close()


@pytest.mark.skipif(not NGINX.exists(), reason="apt-get install nginx (scripts/setup --test)")
def test_the_collector_takes_logs_only_from_a_listed_certificate(env, tmp_path):
    """Through the shipped nginx gateway to a real journal-remote: no client certificate is
    refused (400), a certificate of another CA is refused (400), a certificate of the
    senders' CA with an unlisted name is refused (403): journal-upload fails each time and
    nothing reaches the collector. The listed sender's upload arrives whole."""
    certs = tmp_path / "certs"
    certs.mkdir()
    _ca(certs, "senders-ca")
    _ca(certs, "other-ca")
    _issue(certs, "senders-ca", "collector", "/CN=localhost", "IP:127.0.0.1,DNS:localhost")
    _issue(certs, "senders-ca", "cloud1", "/CN=cloud1.example.com")  # listed in the site
    _issue(certs, "senders-ca", "intruder", "/CN=intruder.example.com")
    _issue(certs, "other-ca", "forged", "/CN=cloud1.example.com")  # right name, wrong CA
    lines = [json.dumps({"level": "INFO", "logger": "sync.cloud.ingest", "msg": f"line {n}"})
             for n in range(3)]
    local, remote, prefix = tmp_path / "local", tmp_path / "remote", tmp_path / "nginx"
    for folder in (local, remote, prefix):
        folder.mkdir()
    _journal_from(lines, "teddy-cloud-ingest@1.service", local / "system.journal")
    upstream, port = free_port(), free_port()
    (prefix / "nginx.conf").write_text(_gateway_config(prefix, certs, port, upstream))
    collector = subprocess.Popen([str(REMOTE), f"--listen-http=127.0.0.1:{upstream}",
                                  f"--output={remote}/all.journal", "--split-mode=none"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    gateway = subprocess.Popen([str(NGINX), "-p", str(prefix), "-c", str(prefix / "nginx.conf")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def upload(name: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(UPLOAD), f"--url=https://127.0.0.1:{port}", f"--directory={local}",
             "--follow=no", f"--save-state={tmp_path / f'state-{name}'}",
             f"--key={certs / f'{name}.key'}", f"--cert={certs / f'{name}.pem'}",
             f"--trust={certs / 'senders-ca.pem'}"], capture_output=True, text=True, timeout=30)

    try:
        wait_for_port(upstream)
        wait_for_port(port)
        export = (f"__REALTIME_TIMESTAMP={int(time.time() * 1e6)}\n__MONOTONIC_TIMESTAMP=1\n"
                  "MESSAGE=forged\n\n").encode()
        assert _post_without_client_certificate(port, certs / "senders-ca.pem", export) == 400
        refused = {name: upload(name) for name in ("forged", "intruder")}
        assert all(result.returncode != 0 for result in refused.values()), refused
        accepted = upload("cloud1")
        assert accepted.returncode == 0, accepted.stderr
    finally:
        gateway.terminate()
        collector.terminate()
        gateway.wait(10)
        collector.wait(10)
    access = (prefix / "access.log").read_text()
    assert '"POST /upload HTTP/1.1" 400' in access and '" 403 ' in access, access
    messages = [e["MESSAGE"] for e in _remote_entries(remote)]
    assert messages == lines  # the listed sender's, once: nothing of the refused got through
