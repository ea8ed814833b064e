"""Debian's nginx as the parent app's reverse proxy: started in the foreground on a free
port, with its own config and prefix in the test's directory."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

from support.brokers import free_port, wait_for_port

NGINX = Path("/usr/sbin/nginx")

CONFIG = """\
daemon off;
master_process off;
error_log {prefix}/error.log warn;
pid {prefix}/nginx.pid;
events {{ worker_connections 64; }}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://127.0.0.1:{upstream};
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
        }}
    }}
}}
"""
"""The proxy block of docs/parent-app.md, with the paths a test needs."""


@contextlib.contextmanager
def reverse_proxy(upstream: int, prefix: Path) -> Iterator[int]:
    """nginx forwarding to ``127.0.0.1:upstream``; yields the port it listens on."""
    prefix.mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = prefix / "nginx.conf"
    conf.write_text(CONFIG.format(prefix=prefix, port=port, upstream=upstream))
    log = (prefix / "nginx.out").open("ab")
    process = subprocess.Popen([str(NGINX), "-p", str(prefix), "-c", str(conf)],
                               stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, 10)
        yield port
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        log.close()
