"""Issue 21, item 7 (broker): a rotated-out bear password kept working on an edge missing
from ``fleet.edge_brokers``, and nothing noticed. Now ``teddy-cloud fleet edges check``
reports account drift between the core and the edges (an edge bridged to the core but not
configured, a bear missing or left over on an edge, a service account on an edge), and
provisioning refuses to change accounts while the brokers have drifted. Service accounts are
not on the edges at all, so their logins fail there. Real core and edge Mosquittos (the
shipped configs, bridges over mutual TLS)."""

from __future__ import annotations

import json
import secrets
import tomllib

import pytest
from support.brokers import connects
from support.edges import CLOUD_PASSWORD, CLOUD_USER, bear_accounts, make_edge_fleet
from support.processes import run_cli
from support.waiting import wait_until

from config.errors import CloudError
from sync.cloud.broker_accounts import broker_auth
from sync.cloud.provision import provision


@pytest.fixture
def two_edges(tmp_path):
    fleet = make_edge_fleet(tmp_path / "brokers", 2,
                            bear_accounts("drift-bear", 2, secrets.token_hex(8))).start()
    wait_until(lambda: fleet.core.log.read_text().count("New bridge connected") >= 2, 20,
               "two bridges")
    yield fleet
    fleet.kill()


def _check(fleet, env, edges) -> tuple[int, str]:
    cloud = dict(fleet.admin_env(env), TEDDY_FLEET__EDGE_BROKERS=json.dumps([e.url for e in edges]))
    done = run_cli("teddy-cloud", "fleet", "edges", "check", env=cloud, check=False)
    return done.returncode, done.stdout


def test_an_edge_missing_from_the_configuration_is_drift_and_provisioning_fails_closed(
        two_edges, env, tmp_path):
    code, out = _check(two_edges, env, two_edges.edges)
    assert code == 0 and out.startswith("in step"), out
    with broker_auth(two_edges.admin_settings()) as auth:
        provision(auth, "bear-drift-1", fragment_dir=tmp_path)
    old = tomllib.loads((tmp_path / "bear-drift-1.toml").read_text())["mqtt"]
    configured = two_edges.admin_settings().model_copy(deep=True)
    configured.fleet.edge_brokers = [two_edges.edges[0].url]  # edge 2 left out
    with pytest.raises(CloudError, match="drifted"), broker_auth(configured) as auth:
        provision(auth, "bear-drift-1", rotate=True, fragment_dir=tmp_path / "rotated")
    code, out = _check(two_edges, env, [two_edges.edges[0]])
    assert code == 1 and "2 edge bridge accounts" in out and "lists 1 edges" in out, out
    # nothing was changed: the bear's password still works everywhere, none half-rotated
    for edge in two_edges.edges:
        assert connects(edge.port, old["username"], old["password"], "teddy-bear-drift-1")


def test_a_bear_removed_on_the_core_but_left_on_an_edge_is_reported(two_edges, env, tmp_path):
    with broker_auth(two_edges.admin_settings()) as auth:
        provision(auth, "bear-drift-2", fragment_dir=tmp_path)
    with two_edges.core.auth_of_core() as core:
        assert core.remove_device("bear-drift-2")
    code, out = _check(two_edges, env, two_edges.edges)
    assert code == 1
    assert out.count("still has bear bear-drift-2's account") == 2, out


def test_service_and_admin_accounts_cannot_log_in_on_an_edge(two_edges, tmp_path):
    """Service accounts are not on the edges; the administrator has no password there (it
    logs in by its certificate on the edge's admin listener, which provisioning uses)."""
    edge = two_edges.edges[0]
    admin = two_edges.core.admin_password_file.read_text().strip()
    assert connects(two_edges.core.port, CLOUD_USER, CLOUD_PASSWORD, f"{CLOUD_USER}-x")
    assert connects(two_edges.core.port, "svc.admin", admin, "svc.admin-x")
    assert not connects(edge.port, CLOUD_USER, CLOUD_PASSWORD, f"{CLOUD_USER}-x")
    lane = f"{CLOUD_USER}-alerts"
    assert not connects(edge.port, lane, CLOUD_PASSWORD, lane)
    assert not connects(edge.port, "svc.admin", admin, "svc.admin-x")
    assert not connects(edge.port, "svc.admin", "", "svc.admin-x")
    with broker_auth(two_edges.admin_settings()) as auth:  # by certificate, on every edge
        assert provision(auth, "bear-drift-3", fragment_dir=tmp_path).created
