"""``scripts/build-deb`` builds the cloud's Debian package with dpkg-deb: its control file
(name, version, architecture, dependencies), the venv made by postinst from the wheelhouse it
carries (the project's wheel and every dependency), the units in /usr/lib/systemd/system,
``teddy-cloud`` on PATH, the config examples and what ``teddy-cloud setup`` reads; no
maintainer script assumes sudo."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
from support.paths import ROOT

pytestmark = pytest.mark.skipif(shutil.which("dpkg-deb") is None,
                                reason="dpkg-deb: apt-get install dpkg-dev")


@pytest.fixture(scope="module")
def cloud_deb(tmp_path_factory):
    out = tmp_path_factory.mktemp("debs")
    subprocess.run([sys.executable, str(ROOT / "scripts" / "build-deb"), "--only", "cloud",
                    "--out", str(out)], check=True, timeout=1200, capture_output=True)
    (deb,) = out.glob("teddy-cloud_*.deb")
    return deb


@pytest.fixture(scope="module")
def bear_deb(tmp_path_factory):
    out = tmp_path_factory.mktemp("debs")
    subprocess.run([sys.executable, str(ROOT / "scripts" / "build-deb"), "--only", "bear",
                    "--out", str(out)], check=True, timeout=1200, capture_output=True)
    (deb,) = out.glob("teddy_*.deb")
    return deb


def _deb(*args: str) -> str:
    return subprocess.run(["dpkg-deb", *args], check=True, capture_output=True,
                          text=True).stdout


def test_the_cloud_package_holds_the_venv_source_units_commands_and_examples(cloud_deb,
                                                                            tmp_path):
    arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True,
                          text=True).stdout.strip()
    assert cloud_deb.name == f"teddy-cloud_0.1.0_{arch}.deb"
    info = _deb("--info", str(cloud_deb))
    for field in ("Package: teddy-cloud", "Version: 0.1.0", f"Architecture: {arch}",
                  "pgbackrest", "mosquitto", "python3-venv"):
        assert field in info, info
    contents = _deb("--contents", str(cloud_deb))
    for path in ("./usr/lib/systemd/system/teddy-cloud-ingest@.service",
                 "./usr/lib/systemd/system/teddy-cloud-portal.service",
                 "./usr/share/teddy-cloud/config/examples/cloud-site.toml",
                 "./usr/share/teddy-cloud/config/examples/mosquitto.conf",
                 "./usr/share/teddy-cloud/systemd/teddy-cloud-fleet.service",
                 "./usr/share/teddy-cloud/wheels/teddy-0.1.0-py3-none-any.whl",
                 "./usr/bin/teddy-cloud -> /opt/teddy/venv/bin/teddy-cloud"):
        assert path in contents, path
    assert "/usr/share/teddy-cloud/wheels/psycopg" in contents  # dependencies, offline
    assert "teddy-agent.service" not in contents  # the bear's unit is the bear's package
    control = tmp_path / "control"
    subprocess.run(["dpkg-deb", "--control", str(cloud_deb), str(control)], check=True)
    postinst = (control / "postinst").read_text()
    assert "python3 -m venv /opt/teddy/venv" in postinst
    assert "--no-index" in postinst and "'teddy[cloud]'" in postinst
    for script in control.iterdir():
        assert "sudo" not in script.read_text(), script.name
    # the wheel in it carries what setup and the parent app read
    extracted = tmp_path / "root"
    subprocess.run(["dpkg-deb", "-x", str(cloud_deb), str(extracted)], check=True)
    import zipfile
    names = set(zipfile.ZipFile(extracted / "usr/share/teddy-cloud/wheels/"
                                "teddy-0.1.0-py3-none-any.whl").namelist())
    assert {"sync/cloud/setup.py", "sync/cloud/doctor.py",
            "sync/cloud/portal/privacy.md"} <= names


def test_the_bear_package_makes_its_user_and_holds_its_units(bear_deb, tmp_path):
    info = _deb("--info", str(bear_deb))
    assert "Package: teddy\n" in info and "espeak-ng" in info and "adduser" in info
    contents = _deb("--contents", str(bear_deb))
    for path in ("./usr/lib/systemd/system/teddy-agent.service",
                 "./usr/lib/systemd/system/teddy-alert@.service",
                 "./usr/share/teddy/config/examples/teddy.toml",
                 "./usr/share/teddy/wheels/vosk-",
                 "./usr/bin/teddy -> /opt/teddy/venv/bin/teddy"):
        assert path in contents, path
    assert "teddy-cloud-ingest" not in contents and "psycopg" not in contents
    control = tmp_path / "control"
    subprocess.run(["dpkg-deb", "--control", str(bear_deb), str(control)], check=True)
    postinst = (control / "postinst").read_text()
    assert "adduser --system --group --home /var/lib/teddy --no-create-home teddy" in postinst
    assert "install -d -m 0700 -o teddy -g teddy /var/lib/teddy" in postinst
    assert "'teddy'" in postinst and "sudo" not in postinst
    # the maintainer scripts are valid shell
    for script in ("postinst", "postrm"):
        subprocess.run(["sh", "-n", str(control / script)], check=True)
