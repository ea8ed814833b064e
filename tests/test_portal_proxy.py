"""Sign-in limits behind a real reverse proxy (Debian's nginx), with two client addresses
(127.0.0.2 and 127.0.0.3: the loopback range): each client has its own buckets, a flood
from one address neither locks a parent out nor spends another parent's budget, and a
forged ``X-Forwarded-For`` is only believed from a listed proxy."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from support.browser import running_portal
from support.nginx import NGINX, reverse_proxy
from support.portal import csrf_of, link_from, portal_env, portal_settings, settings_of

from sync.cloud.portal.clients import client_address, networks

pytestmark = pytest.mark.skipif(not NGINX.exists(), reason="scripts/setup --test installs nginx")

ATTACKER, OWNER, NEWCOMER = "127.0.0.2", "127.0.0.3", "127.0.0.4"
SPACING_S = 2.0


def _client(source: str, base: str) -> httpx.Client:
    return httpx.Client(base_url=base, timeout=10,
                        transport=httpx.HTTPTransport(local_address=source))


def _ask(client: httpx.Client, email: str, **headers: str) -> httpx.Response:
    csrf = csrf_of(client.get("/signin").text)
    return client.post("/signin", data={"email": email, "csrf": csrf}, headers=headers)


def _redeem(client: httpx.Client, sink, email: str) -> None:
    path = "/" + link_from(sink, email).split("/", 3)[3]
    csrf = csrf_of(client.get(path).text)
    assert client.post(path, data={"csrf": csrf}).status_code == 303


def _clients_recorded(database, settings, email: str) -> list[str]:
    """The client address of each sign-in link asked for ``email`` (found by its keyed hash,
    with the app's own cloud key: the address itself is sealed)."""
    from sync.cloud import emails, family_keys

    portal = {k: v for k, v in settings["portal"].items() if k != "trusted_proxies"}
    family_keys.install(settings_of({**settings, "portal": portal}), create=False)
    with database.connect() as conn:
        return [r[0] for r in conn.execute(
            "SELECT client FROM signin_links WHERE email_hash = %s ORDER BY created_at",
            (emails.lookup(conn, email),))]


def test_sign_in_limits_count_each_client_behind_nginx_and_never_lock_the_owner_out(
        database, env, smtp, tmp_path: Path):
    settings = portal_settings(database.dsn, smtp[0], tmp_path, "http://localhost",
                               links_per_client_per_hour=6, links_per_address_per_hour=3,
                               link_spacing_s=SPACING_S, secure_cookies=False,
                               trusted_proxies='["127.0.0.1"]')
    owner_email, other_email = "owner@example.org", "other@example.org"
    with running_portal({**env, **portal_env(settings)}, tmp_path / "portal.log") as direct, \
            reverse_proxy(int(direct.rsplit(":", 1)[1]), tmp_path / "nginx") as port:
        base = f"http://127.0.0.1:{port}"
        with _client(OWNER, base) as owner, _client(ATTACKER, base) as attacker, \
                _client(NEWCOMER, base) as newcomer:
            assert _ask(owner, owner_email).status_code == 200  # signed in last week
            _redeem(owner, smtp[1], owner_email)

            # the attacker asks for the owner's links, forging where it comes from
            answers = [_ask(attacker, owner_email, **{"X-Forwarded-For": f"10.9.9.{i}"})
                       for i in range(5)]
            # one bucket, forged or not: 3 links to the address in the hour, then slowed
            assert [a.status_code for a in answers] == [200, 200, 429, 429, 429]
            assert all("try again in" in a.text for a in answers[2:])
            assert set(_clients_recorded(database, settings, owner_email)[1:]) == {ATTACKER}

            # the owner, from their own address, is neither locked out nor slowed
            assert _ask(owner, owner_email).status_code == 200
            # a new address of the owner's is slowed for link_spacing_s, not for an hour
            first = _ask(newcomer, owner_email)
            assert first.status_code == 429 and "try again in" in first.text, first.text
            time.sleep(SPACING_S + 0.2)
            assert _ask(newcomer, owner_email).status_code == 200

            # the attacker spends its own address's budget, not everyone's
            spent = [_ask(attacker, f"x{i}@example.org").status_code for i in range(5)]
            assert spent == [200, 200, 200, 200, 429], spent  # 2 of its 6 went on the owner
            assert _ask(owner, other_email).status_code == 200
        # straight to the app (no proxy): a forged header from an unlisted peer is ignored
        with _client(ATTACKER, direct) as bypass:
            assert _ask(bypass, "third@example.org",
                        **{"X-Forwarded-For": "10.1.1.1"}).status_code == 429
    assert _clients_recorded(database, settings, other_email) == [OWNER]


def test_forwarded_for_is_read_only_from_listed_proxies_and_from_the_right():
    proxies = networks(["127.0.0.1", "10.0.0.0/8"])
    assert client_address("127.0.0.1", "198.51.100.7", proxies) == "198.51.100.7"
    assert client_address("203.0.113.9", "198.51.100.7", proxies) == "203.0.113.9"
    # a client's own forged entries sit left of what the proxy appended
    assert client_address("127.0.0.1", "1.2.3.4, 198.51.100.7", proxies) == "198.51.100.7"
    assert client_address("127.0.0.1", "198.51.100.7, 10.0.0.5", proxies) == "198.51.100.7"
    assert client_address("127.0.0.1", "not-an-address", proxies) == "127.0.0.1"
    assert client_address("127.0.0.1", None, ()) == "127.0.0.1"
    assert client_address(None, "198.51.100.7", proxies) == "unknown"


def test_a_trusted_proxy_entry_that_is_no_address_is_refused_with_the_fix():
    from pydantic import ValidationError

    from config.settings import Settings

    with pytest.raises(ValidationError, match="not an IP address or network"):
        Settings(portal={"trusted_proxies": ["proxy.example.org"]})
