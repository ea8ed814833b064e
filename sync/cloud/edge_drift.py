"""Account drift between the core broker and its edges (``teddy-cloud fleet edges check``).

Every bear's account lives on the core and on each edge of ``fleet.edge_brokers``
(:class:`~sync.cloud.broker_accounts.BrokerSet` keeps them in step). They drift when an edge
is missed: one left out of ``fleet.edge_brokers`` keeps a bear's old password (rotated out on
the core) or a removed bear's account, and that bear still logs in there. :func:`drift`
compares the accounts of the core and of every configured edge, and counts the edges bridged
to the core (their ``svc.edge-N`` accounts there) against the edges configured: one line per
problem. Provisioning runs the same check first and refuses to change anything while the
fleet has drifted (fail closed).

A password cannot be compared (the plugin keeps salted hashes and never shows them); an
account set on every configured edge before the core (as provisioning does) cannot differ
in it, which is why an edge missing from the configuration is the drift that matters.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from config.settings import DEVICE_ID_PATTERN, SERVICE_ACCOUNT_PATTERN

logger = logging.getLogger(__name__)

EDGE_ROLE = "teddy-service-edge"
"""The role of an edge's bridge account on the core."""


@dataclass(frozen=True)
class Account:
    """One broker login as the dynamic-security plugin lists it."""

    username: str
    """The login."""
    clientid: str
    """The client id it is bound to ('' if none)."""
    roles: frozenset[str]
    """Its roles."""


def accounts(answer: dict[str, Any]) -> dict[str, Account]:
    """``username -> Account`` from a ``listClients`` (verbose) answer."""
    found: dict[str, Account] = {}
    for client in answer.get("data", {}).get("clients", []):
        if not isinstance(client, dict) or "username" not in client:
            continue
        roles = frozenset(str(r.get("rolename")) for r in client.get("roles", [])
                          if isinstance(r, dict))
        found[str(client["username"])] = Account(str(client["username"]),
                                                 str(client.get("clientid") or ""), roles)
    return found


PASSWORD_FIELDS = ("password", "salt", "iterations")
"""A dynamic-security client's password, as the plugin keeps it."""


def edge_dynsec(core: dict[str, Any], admin: str = "svc.admin") -> dict[str, Any]:
    """An edge's dynamic-security file from the core's (``"Add an edge"`` in
    docs/operations.md): the same bears and roles, no service account, and the administrator
    without a password — it logs in by its certificate on the edge's admin listener only, so
    no service's or administrator's password works on the internet-facing edge."""
    clients = []
    for client in core.get("clients", []):
        name = str(client.get("username", "")) if isinstance(client, dict) else ""
        if name == admin:
            clients.append({k: v for k, v in client.items() if k not in PASSWORD_FIELDS})
        elif not SERVICE_ACCOUNT_PATTERN.match(name):
            clients.append(client)
    return {**core, "clients": clients}


def _bears(listed: dict[str, Account]) -> dict[str, Account]:
    return {name: a for name, a in listed.items() if DEVICE_ID_PATTERN.match(name)}


def drift(core: dict[str, Account], edges: dict[str, dict[str, Account]],
          admin: str = "svc.admin") -> list[str]:
    """Every difference that matters, one line each (empty: in step)."""
    problems: list[str] = []
    bridges = sorted(name for name, a in core.items() if EDGE_ROLE in a.roles)
    if len(bridges) > len(edges):
        problems.append(
            f"the core has {len(bridges)} edge bridge accounts ({', '.join(bridges)}) but "
            f"fleet.edge_brokers lists {len(edges)} edges: an edge missing from it is not kept "
            "in step (a rotated-out or removed bear still logs in there) — add it to "
            "fleet.edge_brokers, or remove its bridge account from the core")
    core_bears = _bears(core)
    for url, listed in sorted(edges.items()):
        edge_bears = _bears(listed)
        for name in sorted(set(core_bears) - set(edge_bears)):
            problems.append(f"edge {url} lacks bear {name}'s account (it cannot connect "
                            "there) — run teddy-cloud provision for it again")
        for name in sorted(set(edge_bears) - set(core_bears)):
            problems.append(f"edge {url} still has bear {name}'s account, which the core "
                            "does not (removed or never made there): it still logs in on that "
                            "edge — remove it there")
        for name in sorted(set(edge_bears) & set(core_bears)):
            if edge_bears[name] != core_bears[name]:
                problems.append(f"edge {url}: bear {name}'s client id or roles differ from "
                                "the core's — run teddy-cloud provision for it again")
        services = sorted(name for name in listed
                          if SERVICE_ACCOUNT_PATTERN.match(name) and name != admin)
        if services:
            problems.append(f"edge {url} has service accounts {', '.join(services)}: services "
                            "never use an edge, and there they face the internet — remove them")
    return problems
