"""Broker accounts behind one interface, :class:`BrokerAuth`: the only way Teddy code makes,
re-keys or removes a bear's or a cloud service's broker login.

The backend is chosen by ``fleet.broker_auth``; today that is :class:`DynsecAuth`, Mosquitto's
dynamic-security plugin driven over its ``$CONTROL/dynamic-security/v1`` topic with the
administrator account (passwords travel inside the TLS/loopback MQTT connection, never on a
command line; changes are live, no reload). Another broker's authorization (EMQX, HiveMQ)
plugs in as one more class with the same five methods.

What every account may do (checked by the broker at CONNECT, SUBSCRIBE and PUBLISH):

- a bear ``<id>`` (a :data:`~config.settings.DEVICE_ID_PATTERN` id) connects only with client
  id ``teddy-<id>``, publishes only to the protocol's own ``teddy/v1/<id>/up/<name>`` topics
  (:func:`device_up_topics`: what it can retain is one message on each) and subscribes only under
  ``teddy/v1/<id>/down/`` (``$share/...``, ``+``/``#`` across bears and other bears' topics
  are refused in the SUBACK);
- a service ``svc.<name>`` has one role: ``ingest`` (the shared subscription of every bear's
  ``up/``, write every ``down/``; one account per process, bound to its own name as client
  id) or ``fleet`` (write ``down/cmd``, ``down/config``, ``down/claim``; read
  ``up/cmd-result``, ``up/config``, ``up/claim``). Fleet operations open connections
  concurrently (``fleet serve``, approvals, the CLI) and Mosquitto 2.0 binds an account to
  one exact client id, so a fleet account is a pool of ``fleet_slots.POOL_SIZE`` accounts, each
  bound to its own name (:mod:`sync.cloud.fleet_slots`): none can take a bear's client id;
  or ``edge`` (an edge broker's bridge
  on the core, logged in by its TLS client certificate: write every ``up/``, read every
  ``down/``).

With ``fleet.edge_brokers``, :func:`broker_auth` is a :class:`BrokerSet`: every bear account
is made on each edge (the bears connect there) before the core, the same role on each.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import SecretStr

from config.errors import CloudError, SyncError
from config.settings import DEVICE_ID_PATTERN, SERVICE_ACCOUNT_PATTERN, MqttSettings, Settings
from sync.cloud.fleet_slots import pool_names
from sync.protocol import TOPIC_ROOT

if TYPE_CHECKING:
    from sync.client import Inbound

logger = logging.getLogger(__name__)

CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
"""Where dynamic-security commands go; answers come on ``<this>/response``."""
DEVICE_ROLE_PREFIX = "teddy-device-"
"""A bear's own role is this prefix plus its device id."""
SERVICE_ROLE_PREFIX = "teddy-service-"
"""A service role is this prefix plus ``ingest`` or ``fleet``."""
COMMAND_TIMEOUT_S = 10.0
"""Seconds to wait for the broker to answer one batch of commands."""


class BrokerAuth(Protocol):
    """Accounts of one broker. A context manager; :meth:`close` is idempotent."""

    def set_device(self, device_id: str, password: str) -> None:
        """Create or replace bear ``device_id``'s account, bound to client id ``teddy-<id>``."""

    def remove_device(self, device_id: str) -> bool:
        """Remove the bear's account; returns whether there was one."""

    def has_device(self, device_id: str) -> bool:
        """Whether the bear has an account."""

    def has_service(self, name: str) -> bool:
        """Whether service account ``name`` exists."""

    def set_service(self, name: str, role: str, password: str) -> None:
        """Create or replace service account ``svc.<name>`` with role ``ingest`` or ``fleet``."""

    def close(self) -> None:
        """Let go of the broker connection."""

    def __enter__(self) -> BrokerAuth:
        """The backend itself."""

    def __exit__(self, *exc: object) -> None:
        """:meth:`close`."""


def device_client_id(device_id: str) -> str:
    """The only MQTT client id bear ``device_id`` may connect with."""
    return f"teddy-{device_id}"


def check_device_id(device_id: str) -> str:
    """``device_id`` if it is a device id, else a :class:`CloudError` saying what it must be."""
    if not DEVICE_ID_PATTERN.match(device_id):
        raise CloudError(f"{device_id!r} is not a device id: 3-64 lowercase letters, digits or "
                         "dashes (service accounts are svc.<name>: use --service)")
    return device_id


def check_service_name(name: str) -> str:
    """``name`` if it is a service account name, else a :class:`CloudError`."""
    if not SERVICE_ACCOUNT_PATTERN.match(name):
        raise CloudError(f"{name!r} is not a service account name: it must be svc.<name> "
                         "(lowercase letters, digits, dashes), e.g. svc.ingest")
    return name


def device_up_topics() -> list[str]:
    """The ``up/<name>`` names the protocol has (one topic each per bear): all a bear may
    publish to, so all it can ever retain on the broker is one message per name."""
    from sync.protocol import routed_messages

    return sorted({cls.route().name for cls in routed_messages()
                   if cls.route().direction == "up"})


def device_acls(device_id: str) -> list[dict[str, Any]]:
    """The ACL list of bear ``device_id``'s own role: publish only to the protocol's own
    ``up/`` topics (not ``up/#``: a bear could otherwise retain a message on as many topics as
    it likes), subscribe only under its ``down/``."""
    root = f"{TOPIC_ROOT}/{device_id}"
    return [*(_acl("publishClientSend", f"{root}/up/{name}") for name in device_up_topics()),
            _acl("subscribePattern", f"{root}/down/#")]


INGEST_LANE_SUFFIX = "-alerts"
"""An ingest account ``svc.<name>`` comes with ``svc.<name>-alerts``: the second connection
of its alert lane (``sync/cloud/ingest.py``), bound to that name as client id."""
BOUND_SERVICE_ROLES = frozenset({"ingest", "fleet"})
"""Service roles whose accounts may connect only with their own name as client id."""

SERVICE_ACLS: dict[str, list[dict[str, Any]]] = {
    "ingest": [
        {"acltype": "subscribePattern", "topic": f"$share/ingest/{TOPIC_ROOT}/+/up/#",
         "allow": True},
        {"acltype": "publishClientSend", "topic": f"{TOPIC_ROOT}/+/down/#", "allow": True},
    ],
    "edge": [
        {"acltype": "publishClientSend", "topic": f"{TOPIC_ROOT}/+/up/#", "allow": True},
        {"acltype": "subscribePattern", "topic": f"{TOPIC_ROOT}/+/down/#", "allow": True},
        # its bridge's state and its bears' count (Mosquitto 2.0's dynamic security has no %c
        # to bind the topic to the edge's own name: edges are the operator's own machines)
        {"acltype": "publishClientSend", "topic": "teddy/edges/+/#", "allow": True},
    ],
    "monitor": [  # teddy-cloud broker-metrics: reads, never publishes
        {"acltype": "subscribePattern", "topic": "$SYS/broker/#", "allow": True},
        {"acltype": "subscribePattern", "topic": "teddy/edges/+/#", "allow": True},
    ],
    "fleet": [
        *({"acltype": "publishClientSend", "topic": f"{TOPIC_ROOT}/+/down/{name}", "allow": True}
          for name in ("cmd", "config", "claim")),
        *({"acltype": "subscribePattern", "topic": f"{TOPIC_ROOT}/+/up/{name}", "allow": True}
          for name in ("cmd-result", "config", "claim")),
    ],
}
"""What each service role may do."""


def _acl(kind: str, topic: str) -> dict[str, Any]:
    return {"acltype": kind, "topic": topic, "allow": True}


class DynsecAuth:
    """:class:`BrokerAuth` on Mosquitto's dynamic-security plugin, as its administrator."""

    def __init__(self, mqtt: MqttSettings, admin_username: str, admin_password: str) -> None:
        self._mqtt = mqtt.model_copy(update={"username": admin_username,
                                             "password": SecretStr(admin_password),
                                             "password_file": None})
        self._link: Any = None
        self._answers: dict[str, dict[str, Any]] = {}
        self._answered = threading.Condition()

    def __enter__(self) -> DynsecAuth:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Disconnect from the broker; idempotent."""
        if self._link is not None:
            self._link.close()
            self._link = None

    def set_device(self, device_id: str, password: str) -> None:
        """Create or replace the bear's account and its own role (see the module docstring)."""
        check_device_id(device_id)
        role = DEVICE_ROLE_PREFIX + device_id
        self._ensure_role(role, device_acls(device_id))
        self._set_client(device_id, password, device_client_id(device_id), role)
        logger.info("broker account of bear %s set", device_id)

    def remove_device(self, device_id: str) -> bool:
        """Remove the bear's account (the broker disconnects it) and its role."""
        if not self.has_device(device_id):
            return False
        self._run({"command": "deleteClient", "username": device_id})
        self._run({"command": "deleteRole", "rolename": DEVICE_ROLE_PREFIX + device_id},
                  tolerate=("Role not found",))
        logger.info("broker account of bear %s removed", device_id)
        return True

    def has_device(self, device_id: str) -> bool:
        """Whether the bear has an account (an account of that name that is not a bear's,
        made by someone else, is not one)."""
        return DEVICE_ROLE_PREFIX + device_id in self._roles(check_device_id(device_id))

    def has_service(self, name: str) -> bool:
        """Whether the service account exists (with one of the service roles)."""
        return any(role.startswith(SERVICE_ROLE_PREFIX)
                   for role in self._roles(check_service_name(name)))

    def _roles(self, username: str) -> set[str]:
        client = self._client(username)
        return set() if client is None else {str(item.get("rolename"))
                                             for item in client.get("roles", [])}

    def set_service(self, name: str, role: str, password: str) -> None:
        """Create or replace a service account with role ``ingest`` or ``fleet``, bound to its
        own name as client id (a fleet account with its pool of ``fleet_slots.POOL_SIZE``, see
        :mod:`sync.cloud.fleet_slots`; an ingest account with its alert lane)."""
        check_service_name(name)
        if role not in SERVICE_ACLS:
            raise CloudError(f"unknown service role {role!r}: use one of {sorted(SERVICE_ACLS)}")
        self._ensure_role(SERVICE_ROLE_PREFIX + role, SERVICE_ACLS[role])
        self._set_client(name, password, name if role in BOUND_SERVICE_ROLES else None,
                         SERVICE_ROLE_PREFIX + role)
        if role == "ingest":  # its alert lane: same password, bound to its own client id
            lane = check_service_name(name + INGEST_LANE_SUFFIX)
            self._set_client(lane, password, lane, SERVICE_ROLE_PREFIX + role)
        if role == "fleet":  # its pool (sync/cloud/fleet_slots.py): each bound to its name
            for slot in pool_names(name)[1:]:
                check_service_name(slot)
                self._set_client(slot, password, slot, SERVICE_ROLE_PREFIX + role)
        logger.info("broker account of service %s (%s) set", name, role)

    def _ensure_role(self, role: str, acls: list[dict[str, Any]]) -> None:
        """Make ``role`` hold exactly ``acls`` (created, or its ACLs replaced)."""
        answer = self._run({"command": "getRole", "rolename": role}, tolerate=("Role not found",))
        if "error" in answer:
            self._run({"command": "createRole", "rolename": role, "acls": acls})
            return
        have = answer.get("data", {}).get("role", {}).get("acls", [])
        wanted = {(acl["acltype"], acl["topic"]) for acl in acls}
        for acl in have:
            if (acl["acltype"], acl["topic"]) not in wanted or not acl.get("allow"):
                self._run({"command": "removeRoleACL", "rolename": role,
                           "acltype": acl["acltype"], "topic": acl["topic"]})
        present = {(acl["acltype"], acl["topic"]) for acl in have if acl.get("allow")}
        for acl in acls:
            if (acl["acltype"], acl["topic"]) not in present:
                self._run({"command": "addRoleACL", "rolename": role, **acl})

    def _set_client(self, username: str, password: str, client_id: str | None,
                    role: str) -> None:
        existing = self._client(username)
        if existing is None:
            self._run({"command": "createClient", "username": username, "password": password,
                       "clientid": client_id or "", "roles": [{"rolename": role}]})
            return
        roles = {item.get("rolename") for item in existing.get("roles", [])}
        if roles and roles != {role}:
            raise CloudError(f"broker account {username!r} exists with roles {sorted(roles)}, "
                             f"not {role!r} — it is not Teddy's to replace; pick another name")
        self._run({"command": "modifyClient", "username": username, "password": password,
                   "clientid": client_id or "", "roles": [{"rolename": role}]})

    def list_accounts(self) -> dict[str, Any]:
        """Every login on this broker (``listClients``, verbose): ``username -> Account``."""
        from sync.cloud.edge_drift import accounts

        return accounts(self._run({"command": "listClients", "verbose": True}))

    def _client(self, username: str) -> dict[str, Any] | None:
        answer = self._run({"command": "getClient", "username": username},
                           tolerate=("Client not found",))
        return None if "error" in answer else answer.get("data", {}).get("client", {})

    def _run(self, command: dict[str, Any], tolerate: tuple[str, ...] = ()) -> dict[str, Any]:
        """Send one command and return the broker's answer to it; an error not in
        ``tolerate`` raises :class:`CloudError`."""
        link = self._connected()
        correlation = secrets.token_hex(8)
        with self._answered:
            link.publish_raw(CONTROL_TOPIC, json.dumps(
                {"commands": [{**command, "correlationData": correlation}]}), qos=1)
            if not self._answered.wait_for(lambda: correlation in self._answers,
                                           COMMAND_TIMEOUT_S):
                raise CloudError(f"the broker did not answer {command['command']} within "
                                 f"{COMMAND_TIMEOUT_S:g} s — is its dynamic-security plugin "
                                 "loaded (config/examples/mosquitto.conf)?")
            answer = self._answers.pop(correlation)
        error = answer.get("error")
        if error and error not in tolerate:
            raise CloudError(f"the broker refused {command['command']}: {error}")
        return answer

    def _connected(self) -> Any:
        if self._link is not None:
            return self._link
        from sync.client import MqttLink

        link = MqttLink(self._mqtt, client_id=f"{self._mqtt.username}-{secrets.token_hex(4)}")
        responses = link.subscribe(CONTROL_TOPIC + "/response", self._on_message, qos=1)
        try:
            link.connect()
        except SyncError as exc:
            if "refused the connection" not in str(exc):
                raise CloudError(str(exc)) from None
            raise CloudError(f"the broker refused its administrator {self._mqtt.username!r} — "
                             "check fleet.broker_admin_password_file and "
                             "fleet.broker_admin_username") from None
        if not responses.wait(COMMAND_TIMEOUT_S):
            link.close()
            raise CloudError("the broker did not confirm the administrator's subscription")
        self._link = link
        return link

    def _on_message(self, message: Inbound) -> None:
        try:
            responses = json.loads(message.payload).get("responses", [])
        except (ValueError, AttributeError):
            logger.warning("unreadable dynamic-security response ignored")
            return
        with self._answered:
            for response in responses:
                if isinstance(response, dict) and "correlationData" in response:
                    self._answers[str(response["correlationData"])] = response
            self._answered.notify_all()


class BrokerSet:
    """:class:`BrokerAuth` over a core broker and its edges: a bear's account is set on every
    edge first and on the core last, so a run that fails half-way (an edge down) left no
    account on the core and the same command, re-run, completes it. Services live on the
    core; whether an account exists is the core's answer."""

    def __init__(self, core: DynsecAuth, edges: dict[str, DynsecAuth]) -> None:
        self._core = core
        self._edges = edges
        self._checked = False

    def __enter__(self) -> BrokerSet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Disconnect from every broker; idempotent."""
        for auth in (*self._edges.values(), self._core):
            auth.close()

    def drift(self) -> list[str]:
        """Account drift between the core and the edges (see :mod:`sync.cloud.edge_drift`),
        one line per problem."""
        from sync.cloud.edge_drift import drift

        edges: dict[str, dict[str, Any]] = {}
        for url, auth in self._edges.items():
            self._on_edge(url, lambda edge, url=url: edges.__setitem__(url, edge.list_accounts()),
                          auth)
        return drift(self._core.list_accounts(), edges)

    def _require_in_step(self) -> None:
        """Fail closed: change no account while the core and the edges have drifted (checked
        once per :class:`BrokerSet`)."""
        if self._checked:
            return
        problems = self.drift()
        if problems:
            raise CloudError(f"the brokers have drifted ({len(problems)} problems; first: "
                             f"{problems[0]}) — run teddy-cloud fleet edges check, fix them, "
                             "and provision again")
        self._checked = True

    def set_device(self, device_id: str, password: str) -> None:
        """Set the bear's account on every edge, then on the core (refused while they have
        drifted)."""
        self._require_in_step()
        for url, auth in self._edges.items():
            self._on_edge(url, lambda edge: edge.set_device(device_id, password), auth)
        self._core.set_device(device_id, password)

    def remove_device(self, device_id: str) -> bool:
        """Remove the bear's account from the core, then from every edge that has it;
        returns whether the core had one (refused while they have drifted)."""
        self._require_in_step()
        had = self._core.remove_device(device_id)
        for url, auth in self._edges.items():
            self._on_edge(url, lambda edge: edge.remove_device(device_id), auth)
        return had

    def has_device(self, device_id: str) -> bool:
        """Whether the core has the bear's account."""
        return self._core.has_device(device_id)

    def has_service(self, name: str) -> bool:
        """Whether the core has service account ``name``."""
        return self._core.has_service(name)

    def set_service(self, name: str, role: str, password: str) -> None:
        """Create or replace a service account on the core (services never use an edge)."""
        self._core.set_service(name, role, password)

    @staticmethod
    def _on_edge(url: str, change: Any, auth: BrokerAuth) -> None:
        try:
            change(auth)
        except CloudError as exc:
            raise CloudError(f"edge broker {url}: {exc} — bring it back (or take it out of "
                             "fleet.edge_brokers) and run the same command again") from None


def _edge_auth(settings: Settings, url: str, password: str) -> DynsecAuth:
    """The administrator's :class:`DynsecAuth` on the edge at ``url``."""
    from config.fleet import edge_address

    host, port, tls = edge_address(url)
    ca_file = settings.fleet.edge_ca_file or settings.mqtt.tls.ca_file
    if tls and ca_file is None:
        raise CloudError(f"edge broker {url} is TLS but no CA is set — set fleet.edge_ca_file "
                         "to the CA that signed the edges' certificates")
    fleet = settings.fleet
    by_certificate = tls and fleet.edge_admin_cert_file is not None
    mqtt = settings.mqtt.model_copy(update={
        "host": host, "port": port,
        "tls": settings.mqtt.tls.model_copy(update={
            "ca_file": ca_file if tls else None,
            "cert_file": fleet.edge_admin_cert_file if by_certificate else None,
            "key_file": fleet.edge_admin_key_file if by_certificate else None})})
    # by certificate: the edge takes the account from its CN and holds no password for it
    return DynsecAuth(mqtt, fleet.broker_admin_username, "" if by_certificate else password)


def admin_password(settings: Settings) -> str | None:
    """The broker administrator's password from ``fleet``, or None when none is configured."""
    fleet = settings.fleet
    if fleet.broker_admin_password is not None:
        return fleet.broker_admin_password.get_secret_value()
    if fleet.broker_admin_password_file is None:
        return None
    try:
        return Path(fleet.broker_admin_password_file).read_text().strip()
    except OSError as exc:
        raise CloudError(f"fleet.broker_admin_password_file {fleet.broker_admin_password_file} "
                         f"cannot be read ({exc.strerror}) — fix the path or its mode") from None


def broker_auth(settings: Settings) -> BrokerAuth:
    """The :class:`BrokerAuth` of ``settings.fleet.broker_auth`` (connects on first use)."""
    password = admin_password(settings)
    if password is None:
        raise CloudError("no broker administrator is configured — set "
                         "TEDDY_FLEET__BROKER_ADMIN_PASSWORD_FILE (teddy-cloud broker-init "
                         "writes it)")
    core = DynsecAuth(settings.mqtt, settings.fleet.broker_admin_username, password)
    if not settings.fleet.edge_brokers:
        return core
    return BrokerSet(core, {url: _edge_auth(settings, url, password)
                            for url in settings.fleet.edge_brokers})
