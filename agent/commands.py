"""The bear's side of fleet commands: verify, then run, then say what happened.

A command runs only if it is signed by the fleet key this bear received at pairing,
names this bear, has not expired (nor been issued from the future, beyond the clock
skew allowed), and its id has never been accepted before (ids are kept in a file until
the command would have expired anyway). Anything else is refused, and the
:class:`CommandResult` says why. Desired config (``down/config``) is signed too.

Which commands exist and what arguments they take is :data:`sync.protocol.commands.COMMANDS`;
each has its handler here (:data:`HANDLERS`, filled by :func:`handles`), and importing this
module fails if one has none. Whatever happens while a command is handled, the cloud gets a
:class:`CommandResult`: a handler that crashes answers ``failed``, never silence.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.factory_reset import last_reset
from agent.remote_config import ConfigApplier
from config.errors import ProtocolError, TeddyError
from config.settings import Settings
from sync.protocol import (
    Command,
    CommandResult,
    ConfigDesired,
    ConfigReported,
)
from sync.protocol.commands import (
    CommandArgs,
    CommandRegistryError,
    CommandStatus,
    ConfigArgs,
    ContentArgs,
    DeleteArgs,
    NoArgs,
    UnpairArgs,
    UpdateArgs,
    VolumeArgs,
    parse_command_args,
    peek_command,
    require_handlers,
)

if TYPE_CHECKING:
    from sync.client import MqttLink
    from sync.commands_link import CommandsLink
    from sync.receipts import PendingUplink

logger = logging.getLogger(__name__)

SEEN_FILE = "commands-seen.jsonl"
"""File in the data dir keeping accepted command ids and the last config version."""
MAX_CLOCK_SKEW_S = 300.0
"""Seconds a command may appear to be issued in the future (clocks differ)."""
MAX_LIFETIME_S = 7 * 24 * 3600.0
"""Longest validity a command may claim, seconds."""


class CommandRejected(TeddyError, PermissionError):
    """A command was refused before it ran (the message is the reason sent back)."""


class SeenCommands:
    """Ids of accepted commands (until they expire) and the last applied config version.

    An append-only JSON-lines file, fsynced per line (constant cost per command); expired
    ids are dropped when the file is compacted at load.
    """

    COMPACT_AFTER = 1000
    """Lines past which loading rewrites the file without expired ids."""

    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        """The JSON-lines file they are kept in."""
        self._clock = clock
        self._lock = threading.Lock()
        self._ids: dict[str, float] = {}
        self.config_version = 0
        """Highest desired-config version applied."""
        lines = self._load()
        if lines > self.COMPACT_AFTER:
            self._compact()

    def _load(self) -> int:
        if not self.path.exists():
            return 0
        count = 0
        for line in self.path.read_text().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # a torn last line after power loss
            count += 1
            if "id" in entry:
                self._ids[entry["id"]] = float(entry["expires_at"])
            elif "config_version" in entry:
                self.config_version = int(entry["config_version"])
        return count

    def seen(self, command_id: str) -> bool:
        """Whether ``command_id`` was accepted before."""
        with self._lock:
            return command_id in self._ids

    def remember(self, command_id: str, expires_at: float) -> None:
        """Record an accepted id durably (before the command runs: at most once)."""
        with self._lock:  # on disk first: an id that could not be kept is not taken as run
            self._append({"id": command_id, "expires_at": expires_at})
            self._ids[command_id] = expires_at

    def set_config_version(self, version: int) -> None:
        """Record the applied desired-config version durably."""
        with self._lock:
            self.config_version = version
            self._append({"config_version": version})

    def _append(self, entry: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with self.path.open("a") as handle:
            handle.write(json.dumps(entry) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def _compact(self) -> None:
        now = self._clock()
        self._ids = {i: e for i, e in self._ids.items() if e + MAX_CLOCK_SKEW_S > now}
        lines = [json.dumps({"config_version": self.config_version})]
        lines += [json.dumps({"id": i, "expires_at": e}) for i, e in self._ids.items()]
        tmp = self.path.with_name(self.path.name + ".tmp")
        with tmp.open("w") as handle:
            handle.write("\n".join(lines) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)


@dataclass
class CommandOutcome:
    """What a handler returns: data for the result, and what to do once it is sent."""

    data: dict[str, Any] = field(default_factory=dict)
    """The result's data."""
    after: Callable[[], None] | None = None
    """Run after the result is published (restart, drop the credentials)."""


@dataclass
class BearControls:
    """What commands act on; the runtime passes its own parts, tests pass real ones too."""

    settings: Settings
    """The bear's live settings."""
    store: Callable[[], Any] = lambda: None
    """Returns the open :class:`ConversationStore`, or None while nothing is kept."""
    health: Callable[[], dict[str, Any]] | None = None
    """Returns a health snapshot; None: :func:`default_health`."""
    restart: Callable[[], None] | None = None
    """Restarts the bear (the runtime exits and systemd starts it again)."""
    unpaired: Callable[[], None] | None = None
    """Told after the bear dropped its credentials (the runtime goes back to unpaired)."""
    is_busy: Callable[[], bool] = lambda: False
    """Whether a child is mid-conversation (updates wait until it is not)."""
    announce: Callable[[str], object] | None = None
    """Stops what the bear is saying and says a line (a parent paused it); None: silent."""


Handler = Callable[["CommandProcessor", Any], CommandOutcome]
"""Runs one command with its parsed arguments."""

HANDLERS: dict[str, Handler] = {}
"""Command name to its handler, one per command of :data:`sync.protocol.commands.COMMANDS`."""


def handles(name: str) -> Callable[[Handler], Handler]:
    """Register the decorated method as the handler of command ``name``."""

    def register(handler: Handler) -> Handler:
        if name in HANDLERS:
            raise CommandRegistryError(f"two handlers for command {name!r} — keep one")
        HANDLERS[name] = handler
        return handler

    return register


class CommandProcessor:
    """Verifies and runs commands and desired configs for one bear."""

    def __init__(self, controls: BearControls, device_id: str, fleet_key: bytes,
                 clock: Callable[[], float] = time.time) -> None:
        self.controls = controls
        """What the commands act on."""
        self.device_id = device_id
        """This bear."""
        self.fleet_key = fleet_key
        """Raw Ed25519 public key every command must be signed with."""
        self.config = ConfigApplier(controls.settings)
        """Applies set-config and desired config."""
        if controls.announce is not None:
            self.config.on_change(self._on_pause)
        self._clock = clock
        self.seen = SeenCommands(Path(controls.settings.store.data_dir) / SEEN_FILE, clock)
        """Accepted command ids and the applied config version."""

    def _on_pause(self, key: str, value: Any) -> None:
        """A parent paused the bear: it stops talking now and says so kindly."""
        from agent.play import PAUSE_REPLY

        if key == "play.paused" and value is True and self.controls.announce is not None:
            self.controls.announce(PAUSE_REPLY)

    # --- commands ------------------------------------------------------------------------

    def handle(self, payload: bytes) -> tuple[CommandResult, Callable[[], None] | None]:
        """Verify and run one ``down/cmd`` payload; the result and any after-action.

        Never raises: whatever goes wrong, the result says so (the cloud is never left
        without an answer)."""
        command_id, name = peek_command(payload)
        try:
            command, args = self.verify(payload)
        except CommandRejected as exc:
            logger.warning("rejected command %s (%s): %s", command_id, name, exc)
            return self._result(command_id, name, "rejected", str(exc)), None
        except Exception as exc:  # e.g. the seen-ids file cannot be written: it did not run
            logger.exception("could not accept command %s (%s)", command_id, name)
            return self._result(command_id, name, "failed", "not run, the bear could not "
                                f"accept it: {type(exc).__name__}: {exc}"), None
        return self._run(command, args)

    def _run(self, command: Command,
             args: CommandArgs) -> tuple[CommandResult, Callable[[], None] | None]:
        handler = HANDLERS.get(command.name)
        try:
            if handler is None:  # require_handlers makes this unreachable; never a KeyError
                raise CommandFailed(f"this bear has no handler for {command.name!r}")
            outcome = handler(self, args)
        except TeddyError as exc:
            logger.warning("command %s (%s) failed: %s", command.id, command.name, exc)
            return self._result(command.id, command.name, "failed", str(exc)), None
        except Exception as exc:
            logger.exception("command %s (%s) crashed", command.id, command.name)
            return self._result(command.id, command.name, "failed",
                                f"{type(exc).__name__}: {exc}"), None
        logger.info("command %s (%s) done", command.id, command.name)
        return self._result(command.id, command.name, "done", "", outcome.data), outcome.after

    def verify(self, payload: bytes) -> tuple[Command, CommandArgs]:
        """The command and its parsed arguments, if it may run (its id is then recorded as
        run); :class:`CommandRejected` with the reason otherwise (nothing recorded)."""
        try:
            command = Command.from_payload(payload)
        except ProtocolError as exc:
            raise CommandRejected(f"malformed command: {exc}") from None
        if not command.signature:
            raise CommandRejected("unsigned command — only commands signed by the fleet key run")
        try:
            command.verify(self.fleet_key)
        except ProtocolError:
            raise CommandRejected("signature does not verify with this bear's fleet key "
                                  "(foreign-signed or altered)") from None
        self._check_fresh(command)
        if self.seen.seen(command.id):
            raise CommandRejected(f"replayed command: id {command.id} already ran")
        try:
            args = parse_command_args(command.name, command.args)
        except ProtocolError as exc:
            raise CommandRejected(str(exc)) from None
        self.seen.remember(command.id, command.expires_at)
        return command, args

    def _check_fresh(self, command: Command) -> None:
        now = self._clock()
        if command.device_id != self.device_id:
            raise CommandRejected(f"command is for device {command.device_id!r}, "
                                  f"not {self.device_id!r}")
        if now > command.expires_at:
            raise CommandRejected(f"expired command: it expired {now - command.expires_at:.0f} s "
                                  "ago")
        if command.issued_at > now + MAX_CLOCK_SKEW_S:
            raise CommandRejected("command issued in the future — check the bear's clock")
        if command.expires_at - command.issued_at > MAX_LIFETIME_S:
            raise CommandRejected("command claims a validity longer than 7 days")
        reset = last_reset(self.controls.settings)
        if reset is not None and command.issued_at < reset[0]:
            raise CommandRejected("command issued before this bear's last factory reset "
                                  f"({command.issued_at - reset[0]:.0f} s) — issue it again")

    def _result(self, command_id: str, name: str, status: CommandStatus, reason: str,
                data: dict[str, Any] | None = None) -> CommandResult:
        return CommandResult(id=command_id, device_id=self.device_id, name=name[:64],
                             status=status, reason=reason[:1000], data=data or {},
                             finished_at=self._clock())

    # --- handlers ------------------------------------------------------------------------

    @handles("ping")
    def _ping(self, args: NoArgs) -> CommandOutcome:
        return CommandOutcome({"pong": True, "time": self._clock()})

    @handles("health")
    def _health(self, args: NoArgs) -> CommandOutcome:
        sample = (self.controls.health or default_health(self.controls.settings))()
        return CommandOutcome({"sample": sample})

    @handles("set-volume")
    def _set_volume(self, args: VolumeArgs) -> CommandOutcome:
        outcome = self.config.apply({"voice.tts_volume": args.volume})
        return CommandOutcome({"volume": self.controls.settings.voice.tts_volume,
                               "applied": outcome.applied})

    @handles("set-config")
    def _set_config(self, args: ConfigArgs) -> CommandOutcome:
        outcome = self.config.apply(args.values)
        if not outcome.ok:
            raise ConfigRefused("config refused: " + "; ".join(outcome.rejected.values()))
        return CommandOutcome({"applied": outcome.applied,
                               "pending_restart": outcome.pending_restart})

    @handles("delete-data")
    def _delete_data(self, args: DeleteArgs) -> CommandOutcome:
        store = self.controls.store()
        if store is None:
            return CommandOutcome({"conversations_deleted": 0, "turns_deleted": 0,
                                   "conversations_left": 0, "kept": False})
        if args.conversation_ids is not None:
            return self._delete_conversations(store, args.conversation_ids)
        report = store.delete_child(args.child_id) if args.child_id else store.delete_all()
        left = len(store.conversations(args.child_id))
        return CommandOutcome({"conversations_deleted": report.conversations,
                               "turns_deleted": report.turns, "unsynced_deleted": report.unsynced,
                               "key_rotated": report.key_rotated, "conversations_left": left,
                               "kept": True})

    def _delete_conversations(self, store: Any, ids: list[str]) -> CommandOutcome:
        known = {c.id for c in store.conversations()}
        deleted = turns = 0
        for conversation_id in ids:
            if conversation_id in known:
                report = store.delete_conversation(conversation_id)
                deleted, turns = deleted + report.conversations, turns + report.turns
        left = len({c.id for c in store.conversations()} & set(ids))
        return CommandOutcome({"conversations_deleted": deleted, "turns_deleted": turns,
                               "conversations_left": left, "kept": True})

    @handles("export-summary")
    def _export_summary(self, args: NoArgs) -> CommandOutcome:
        store = self.controls.store()
        if store is None:
            return CommandOutcome({"kept": False, "consent": None})
        consent = store.consent()
        stats = store.stats()
        return CommandOutcome({
            "kept": True,
            "consent": None if consent is None else {
                "scopes": [s.value for s in consent.scopes], "source": consent.source,
                "granted_at": consent.granted_at},
            "conversations": stats["conversations"], "turns": stats["turns"],
            "unsynced": stats["unsynced"], "oldest_turn_at": stats["oldest_turn_at"],
            "retention_days": stats["retention_days"],
        })

    @handles("restart")
    def _restart(self, args: NoArgs) -> CommandOutcome:
        if self.controls.restart is None:
            raise CommandFailed("this bear cannot restart itself here (no supervisor)")
        return CommandOutcome({"restarting": True}, after=self.controls.restart)

    @handles("unpair")
    def _unpair(self, args: UnpairArgs) -> CommandOutcome:
        from agent.credentials import CredentialVault

        store = self.controls.store()
        deleted = 0
        if store is not None:
            before = len(store.conversations())
            store.revoke_consent(delete=args.delete)
            deleted = before - len(store.conversations())

        def drop_credentials() -> None:
            CredentialVault(self.controls.settings.store).shred()
            if self.controls.unpaired is not None:
                self.controls.unpaired()

        return CommandOutcome({"unpaired": True, "conversations_deleted": deleted},
                              after=drop_credentials)

    @handles("update-content-pack")
    def _update_content_pack(self, args: ContentArgs) -> CommandOutcome:
        from agent.content_update import install_bundle

        return CommandOutcome(install_bundle(args.bundle, self.fleet_key,
                                             Path(self.controls.settings.store.data_dir)))

    @handles("update")
    def _update(self, args: UpdateArgs) -> CommandOutcome:
        from agent.update import UpdateDeferred, Updater, UpdateRefused

        try:
            with Updater(self.controls.settings, is_busy=self.controls.is_busy) as updater:
                result = updater.apply(args.release_url)
        except UpdateDeferred as exc:
            return CommandOutcome({"outcome": "deferred", "reason": str(exc),
                                   "version": args.version})
        except UpdateRefused as exc:
            return CommandOutcome({"outcome": "refused", "reason": str(exc),
                                   "version": args.version})
        return CommandOutcome({"outcome": result.outcome, "reason": result.reason,
                               "running": result.running, "version": result.version})

    # --- desired config ------------------------------------------------------------------

    def handle_config(self, payload: bytes) -> ConfigReported | None:
        """Verify and apply a ``down/config`` payload; the report, or None to stay silent
        (an empty retained message: the desired config was cleared)."""
        if not payload:
            return None
        try:
            desired = ConfigDesired.from_payload(payload)
            desired.verify(self.fleet_key)
        except ProtocolError as exc:
            logger.warning("refused a desired config: %s", exc)
            return self._report(0, rejected={"(config)": str(exc)})
        if desired.device_id != self.device_id:
            return self._report(desired.version, rejected={
                "(config)": f"desired config is for device {desired.device_id!r}"})
        if desired.version < self.seen.config_version:
            return self._report(desired.version, rejected={
                "(config)": f"version {desired.version} is older than the applied version "
                            f"{self.seen.config_version} (replayed)"})
        outcome = self.config.apply(desired.values)
        if outcome.ok:
            self.seen.set_config_version(desired.version)
        return self._report(desired.version, outcome.applied, outcome.pending_restart,
                            outcome.rejected)

    def _report(self, version: int, applied: dict | None = None, pending: dict | None = None,
                rejected: dict | None = None) -> ConfigReported:
        return ConfigReported(device_id=self.device_id, version=version,
                              applied=applied or {}, pending_restart=pending or {},
                              rejected=rejected or {}, reported_at=self._clock())


class ConfigRefused(TeddyError, ValueError):
    """A set-config named an invalid or forbidden setting; nothing was applied."""


class CommandFailed(TeddyError, RuntimeError):
    """A command ran but could not do what it was asked."""


def default_health(settings: Settings) -> Callable[[], dict[str, Any]]:
    """A health snapshot from the health sampler (or plain psutil if it is unavailable)."""

    def sample() -> dict[str, Any]:
        try:
            from agent.health.sampler import SystemSampler

            return SystemSampler(Path(settings.store.data_dir)).sample()
        except ImportError:
            import psutil

            return {"cpu_percent": psutil.cpu_percent(interval=None),
                    "memory_percent": psutil.virtual_memory().percent}

    return sample


def open_command_endpoint(link: MqttLink, controls: BearControls,
                          pending: PendingUplink | None = None) -> CommandsLink | None:
    """The command endpoint of a bear on its existing link; None when it has no fleet key.

    The fleet key is installed at manufacture, so a factory-provisioned bear takes commands
    before it is ever paired (older bears got it by pairing). Call before or after
    ``link.connect()``; close the returned endpoint before the link.
    """
    from agent.credentials import fleet_key
    from agent.identity import device_id
    from sync.commands_link import CommandsLink

    key = fleet_key(controls.settings)
    if key is None:
        logger.warning("no fleet key: this bear was not provisioned with one (provision-device "
                       "--from-cloud) and is not paired — fleet commands cannot reach it")
        return None
    processor = CommandProcessor(controls, device_id(controls.settings), key)
    return CommandsLink(link, processor, pending).attach()


require_handlers(HANDLERS, "agent.commands.HANDLERS")  # a command without a handler: no start
