"""The package is the product: the wheel built from this checkout carries every file the
code reads (the parent app's pages, stylesheet and privacy notice; safety and dialogue
data; migrations), and every cloud service and the bear start from it.

The wheel is installed into a clean venv (its own interpreter and site-packages, not the
checkout's editable install); its third-party dependencies are borrowed read-only from the
test venv through a ``.pth`` line, as ``update.base_site_packages`` does for development
releases (a full install from the index takes over 80 s here). Every import is checked to
come from the installed wheel, and the programs run from a directory outside the checkout.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from support.brokers import free_port, wait_for_port
from support.fleet import cloud_env
from support.paths import ROOT
from support.portal import csrf_of, link_from, portal_env, portal_settings
from support.processes import wait_for_log

PACKAGES = ("agent", "sync", "config", "hardware", "fleetsim")
BASE_SITE_PACKAGES = Path(sysconfig.get_paths()["purelib"])


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``pip wheel --no-deps --no-build-isolation`` of a copy of this checkout."""
    root = tmp_path_factory.mktemp("wheel")
    tree = root / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for part in (*PACKAGES, "docs"):
        shutil.copytree(ROOT / part, tree / part, ignore=ignore)  # links followed
    for part in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / part, tree / part)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "--no-build-isolation", "--disable-pip-version-check", "-w",
                    str(root / "dist"), str(tree)], check=True, timeout=180,
                   capture_output=True)
    (built,) = (root / "dist").glob("teddy-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel: Path) -> Path:
    """A clean venv with the wheel installed (dependencies borrowed, see the docstring)."""
    venv = wheel.parent.parent / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=60)
    site = Path(subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()"
         "['purelib'])"], capture_output=True, text=True, check=True).stdout.strip())
    (site / "_teddy_base_site.pth").write_text(f"{BASE_SITE_PACKAGES}\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"),
                    "install", "-q", "--no-deps", "--no-index", "--disable-pip-version-check",
                    str(wheel)], check=True, timeout=120, capture_output=True)
    return venv


def test_the_wheel_carries_every_file_the_packages_hold(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = []
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                relative = path.relative_to(ROOT).as_posix()
                if relative not in names:
                    missing.append(relative)
    assert not missing, f"not in the wheel: {missing}"
    notice = zipfile.ZipFile(wheel).read("sync/cloud/portal/privacy.md")
    assert notice == (ROOT / "docs" / "privacy.md").read_bytes()  # one text, docs/ its source


def test_the_bear_runs_from_the_wheel(venv: Path, env: dict[str, str], tmp_path: Path) -> None:
    where = _run(venv, "python", "-c", "import agent, sync.cloud.portal, config; print("
                 "agent.__file__, sync.cloud.portal.__file__, config.__file__)", env=env)
    assert all(Path(p).is_relative_to(venv) for p in where.split()), where
    assert "chat" in _run(venv, "teddy", "--help", env=env)
    answer = _run(venv, "teddy", "chat", env=env, stdin="hello teddy\n")
    assert answer.strip(), "teddy chat answered nothing"


def test_the_onnxruntime_backend_builds_its_graph_from_the_wheel(wheel: Path, venv: Path,
                                                                  env: dict[str, str]) -> None:
    """Issue 20: onnxruntime and onnx are the bear's dependencies, and the graph's child
    process (``python -m agent.semantic.onnx_graph``) runs from the installed package."""
    metadata = next(n for n in zipfile.ZipFile(wheel).namelist() if n.endswith("METADATA"))
    requires = zipfile.ZipFile(wheel).read(metadata).decode()
    assert re.search(r"^Requires-Dist: onnxruntime\b", requires, re.M), requires
    assert re.search(r"^Requires-Dist: onnx\b", requires, re.M), requires
    out = _run(venv, "python", "-c", "import sys, agent.semantic.onnx_graph as g; "
               "from agent.semantic import load_embedder; from config.settings import "
               "load_settings; e = load_embedder(load_settings()); "
               "print(e.backend, g.__file__, 'onnx' in sys.modules, e.encode(['hi']).shape[1])",
               env=env | {"TEDDY_SAFETY__SEMANTIC_BACKEND": "onnxruntime"})
    backend, where, onnx_imported, dimension = out.split()
    assert (backend, onnx_imported, dimension) == ("onnxruntime", "False", "384"), out
    assert Path(where).is_relative_to(venv), where


def test_each_cloud_service_starts_from_the_wheel(venv: Path, env: dict[str, str], database,
                                                  secure_broker, smtp, tmp_path: Path) -> None:
    port = free_port()
    portal = portal_settings(database.dsn, smtp[0], tmp_path, f"http://127.0.0.1:{port}",
                             secure_cookies=False, port=port)
    del portal["store"]
    fleet = {**cloud_env(env, secure_broker, tmp_path), **portal_env(portal)}
    ingest = {**cloud_env(env, secure_broker, tmp_path, "svc.ingest"), **portal_env(portal)}
    _run(venv, "teddy-cloud", "portal", "keygen", env=fleet)
    with _started(venv, tmp_path / "ingest.log", "ingest", env=ingest) as log:
        wait_for_log(log, "ingesting", 30)
    with _started(venv, tmp_path / "notify.log", "notify", "run", env=fleet) as log:
        wait_for_log(log, "notifying through 1 channels", 30)
    with _started(venv, tmp_path / "fleet.log", "fleet", "serve", env=fleet) as log:
        wait_for_log(log, "serving the parent app's requests", 30)
    with _started(venv, tmp_path / "portal.log", "portal", "serve", env=fleet):
        wait_for_port(port, 30)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            signin = client.get("/signin")
            assert signin.status_code == 200 and "Content-Security-Policy" in signin.headers
            assert client.get("/static/app.css").status_code == 200
            csrf = csrf_of(signin.text)
            email = "wheel@example.org"
            assert client.post("/signin", data={"email": email, "csrf": csrf}
                               ).status_code == 200
            path = "/" + link_from(smtp[1], email).split("/", 3)[3]
            csrf = csrf_of(client.get(path).text)
            assert client.post(path, data={"csrf": csrf}).status_code == 303  # -> /bears
            pair = client.get("/pair")
    version = re.search(r"Notice version: (\S+)", (ROOT / "docs" / "privacy.md").read_text())
    assert pair.status_code == 200 and version and version.group(1) in pair.text, pair.text


def _run(venv: Path, program: str, *args: str, env: dict[str, str],
         stdin: str | None = None) -> str:
    result = subprocess.run([str(venv / "bin" / program), *args], input=stdin, env=env,
                            capture_output=True, text=True, timeout=120, cwd=venv)
    assert result.returncode == 0, f"{program} {args}: {result.stdout}\n{result.stderr}"
    return result.stdout


@contextmanager
def _started(venv: Path, log: Path, *args: str, env: dict[str, str]) -> Iterator[Path]:
    """``teddy-cloud ARGS`` from the venv, running while the block runs."""
    with log.open("ab") as out:
        process = subprocess.Popen([str(venv / "bin" / "teddy-cloud"), "--log-level", "INFO",
                                    *args], env=env, stdout=out, stderr=subprocess.STDOUT,
                                   cwd=venv)
        try:
            yield log
            assert process.poll() is None, log.read_text()
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
