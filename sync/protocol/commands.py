"""``down/cmd`` signed commands, ``up/cmd-result``, and ``down/config``/``up/config``.

The cloud signs every command and every desired config with the fleet's Ed25519 key over
a canonical encoding (:func:`canonical_bytes`: the message without its signature, as
sorted compact JSON, behind a domain label). The bear checks the signature with the
fleet public key it received at pairing, the device id, the expiry and the command id
(never twice). A content-pack bundle inside ``update-content-pack`` is signed on its own.

:data:`COMMANDS` is the one registry of fleet commands: each name and the pydantic model
of its arguments. The cloud validates arguments with it before it signs
(``teddy-cloud fleet send``); the bear validates them again and dispatches to the handler it
registered for the same name (:mod:`agent.commands`), and refuses to start when a name has
no handler or a handler no name (:func:`require_handlers`).
"""

from __future__ import annotations

import base64
import inspect
import json
import typing
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from config.errors import ProtocolError, TeddyError
from sync.protocol.base import MAX_SAFE_INT, Message, Timestamp, load_json
from sync.protocol.topics import Route

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

CommandStatus = Literal["done", "rejected", "failed"]


class Signed(Message):
    """A message carrying an Ed25519 signature over its canonical encoding."""

    DOMAIN: ClassVar[bytes] = b"teddy/signed/v1\n"
    """Prefix of the signed bytes: a signature for one kind never verifies as another."""

    signature: str = Field(default="", max_length=200)
    """Base64 Ed25519 signature of :func:`canonical_bytes`; empty: unsigned."""

    def canonical_bytes(self) -> bytes:
        """What is signed: the domain label and the message minus its signature."""
        return canonical_bytes(self.DOMAIN, self.model_dump(mode="json", exclude={"signature"}))

    def signed_with(self, private_key: Ed25519PrivateKey) -> Self:
        """A copy carrying the signature of ``private_key``."""
        signature = base64.b64encode(private_key.sign(self.canonical_bytes())).decode()
        return self.model_copy(update={"signature": signature})

    def verify(self, public_key: bytes) -> None:
        """Raise :class:`ProtocolError` unless signed by the holder of ``public_key``."""
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        name = type(self).__name__
        if not self.signature:
            raise ProtocolError(f"{name} is unsigned")
        try:
            signature = base64.b64decode(self.signature, validate=True)
            Ed25519PublicKey.from_public_bytes(public_key).verify(signature,
                                                                  self.canonical_bytes())
        except (InvalidSignature, ValueError):
            raise ProtocolError(f"{name} signature does not verify with the fleet key "
                                "(signed by another key, or altered)") from None


def canonical_bytes(domain: bytes, data: dict[str, Any]) -> bytes:
    """``domain`` followed by ``data`` as sorted, compact, ASCII JSON."""
    return domain + json.dumps(data, sort_keys=True, separators=(",", ":"),
                               ensure_ascii=True, allow_nan=False).encode()


class Command(Signed):
    """``down/cmd``: one signed command for one bear, QoS 1."""

    ROUTE: ClassVar[Route] = Route("down", "cmd")

    MAX_BYTES: ClassVar[int] = 256 * 1024
    DOMAIN: ClassVar[bytes] = b"teddy/cmd/v1\n"

    v: Literal[1] = 1
    """Schema version."""
    id: str = Field(min_length=8, max_length=64, pattern=r"^[A-Za-z0-9-]+$")
    """Unique command id; a bear runs an id at most once."""
    device_id: str = Field(min_length=3, max_length=64)
    """The bear it is for (signed: a command for one bear is refused by another)."""
    name: str = Field(min_length=1, max_length=64)
    """One of :data:`COMMAND_NAMES` (an unknown name is refused by the bear, with a reason)."""
    args: dict[str, Any] = Field(default_factory=dict)
    """Arguments of the command."""
    issued_at: Timestamp
    """When the cloud issued it, Unix time in seconds."""
    expires_at: Timestamp
    """After this Unix time (seconds) the bear refuses it."""


class CommandResult(Message):
    """``up/cmd-result``: what became of one command, QoS 1."""

    ROUTE: ClassVar[Route] = Route("up", "cmd-result", ingested=True)

    MAX_BYTES: ClassVar[int] = 256 * 1024

    v: Literal[1] = 1
    """Schema version."""
    id: str = Field(min_length=1, max_length=64)
    """The command's id (as received, even when the command was refused)."""
    device_id: str = Field(min_length=3, max_length=64)
    """The answering bear."""
    name: str = Field(default="", max_length=64)
    """The command's name, as received."""
    status: CommandStatus
    """``done``; ``rejected`` (not run: unsigned, expired, replayed, foreign, invalid);
    ``failed`` (ran and failed)."""
    reason: str = Field(default="", max_length=1000)
    """Why it was rejected or failed; one line, never a transcript."""
    data: dict[str, Any] = Field(default_factory=dict)
    """What the command returned (counts, health readings); never a transcript."""
    finished_at: Timestamp
    """Unix time, seconds."""

    @property
    def ok(self) -> bool:
        """Whether the command ran to the end."""
        return self.status == "done"


class ConfigDesired(Signed):
    """``down/config``: the config the fleet wants this bear to run, retained, signed."""

    ROUTE: ClassVar[Route] = Route("down", "config", retain=True)

    DOMAIN: ClassVar[bytes] = b"teddy/config/v1\n"

    v: Literal[1] = 1
    """Schema version."""
    device_id: str = Field(min_length=3, max_length=64)
    """The bear it is for."""
    version: int = Field(ge=1, le=MAX_SAFE_INT)
    """Increases with every change; a bear refuses a version older than one it applied."""
    values: dict[str, Any] = Field(default_factory=dict, max_length=200)
    """Dotted setting names (``voice.tts_volume``) and their wanted values."""
    issued_at: Timestamp
    """Unix time, seconds."""


class ConfigReported(Message):
    """``up/config``: what the bear made of a desired config, retained."""

    ROUTE: ClassVar[Route] = Route("up", "config", retain=True, ingested=True)

    v: Literal[1] = 1
    """Schema version."""
    device_id: str = Field(min_length=3, max_length=64)
    """The reporting bear."""
    version: int = Field(ge=0, le=MAX_SAFE_INT)
    """The desired version this answers (0: none received yet)."""
    applied: dict[str, Any] = Field(default_factory=dict)
    """Settings now in force (changed live)."""
    pending_restart: dict[str, Any] = Field(default_factory=dict)
    """Valid settings that take effect at the next restart."""
    rejected: dict[str, str] = Field(default_factory=dict)
    """Settings refused, each with its one-line reason (nothing of a refused config is applied)."""
    reported_at: Timestamp
    """Unix time, seconds."""


class ContentBundle(Signed):
    """A content-pack update (``update-content-pack``), signed on its own."""

    DOMAIN: ClassVar[bytes] = b"teddy/content/v1\n"

    v: Literal[1] = 1
    """Schema version."""
    version: int = Field(ge=1, le=MAX_SAFE_INT)
    """Content version; a bear refuses a version not newer than the one it runs."""
    files: dict[str, str] = Field(min_length=1, max_length=32)
    """File name (``jokes.json``...) to its full JSON text; files not named stay as they are."""


# --- the registry: every command and the model of its arguments -------------------------


class CommandArgs(BaseModel):
    """Arguments of a command; an argument not named by the model is refused."""

    model_config = ConfigDict(extra="forbid")
    WORK_S: ClassVar[float] = 0.0
    """Seconds the bear may work on this command before it can answer, on top of the round
    trip: ``fleet send --wait`` waits ``fleet.wait_s`` plus this."""


class NoArgs(CommandArgs):
    """Commands without arguments."""


class VolumeArgs(CommandArgs):
    """``set-volume``."""

    volume: float = Field(ge=0, le=1)
    """Speech volume, 0..1."""


class ConfigArgs(CommandArgs):
    """``set-config``."""

    values: dict[str, Any] = Field(min_length=1, max_length=200)
    """Dotted setting names and their values."""


class DeleteArgs(CommandArgs):
    """``delete-data``."""

    child_id: str | None = None
    """Delete only this child profile's conversations; None: everything kept."""
    conversation_ids: list[str] | None = Field(default=None, max_length=10000)
    """Delete only these conversations (the parent app's "delete this conversation/day")."""


class UnpairArgs(CommandArgs):
    """``unpair``."""

    delete: bool = True
    """Also crypto-shred everything kept (the parent relationship ends)."""


class ContentArgs(CommandArgs):
    """``update-content-pack``."""

    WORK_S: ClassVar[float] = 300.0
    """Every line the pack can say goes through the safety filter before it is installed:
    thousands of lines, tens of seconds here, minutes on a Pi."""

    bundle: ContentBundle
    """The signed bundle."""


class UpdateArgs(CommandArgs):
    """``update``."""

    release_url: str = Field(min_length=1, max_length=2048)
    """Directory URL of the signed release (ends in ``/``)."""
    version: str = Field(min_length=1, max_length=64)
    """The release's version, as the rollout records it."""


COMMANDS: Mapping[str, type[CommandArgs]] = MappingProxyType({
    "ping": NoArgs, "health": NoArgs, "set-volume": VolumeArgs, "set-config": ConfigArgs,
    "delete-data": DeleteArgs, "export-summary": NoArgs, "restart": NoArgs,
    "unpair": UnpairArgs, "update-content-pack": ContentArgs, "update": UpdateArgs,
})
"""Every fleet command: its name and the model of its arguments (read-only)."""
COMMAND_NAMES = tuple(COMMANDS)
"""Every command a bear understands, in registry order."""


class CommandRegistryError(TeddyError, LookupError):
    """A side's handlers do not match :data:`COMMANDS` (raised at import, never at run time)."""


def parse_command_args(name: str, args: dict[str, Any]) -> CommandArgs:
    """``args`` validated by the model of command ``name``; :class:`ProtocolError` with a
    one-line reason for an unknown command or invalid arguments."""
    model = COMMANDS.get(name)
    if model is None:
        raise ProtocolError(f"unknown command {name!r} — known: {', '.join(COMMAND_NAMES)}")
    try:
        return model.model_validate(args)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(args)"
        raise ProtocolError(f"invalid arguments for {name}: {where}: {first['msg']}") from None


def require_handlers(handlers: Mapping[str, Any], owner: str) -> None:
    """Raise :class:`CommandRegistryError` unless ``handlers`` has exactly one handler per
    command of :data:`COMMANDS`, each taking that command's argument model (when its
    last parameter is annotated). ``owner`` names the handlers in the message."""
    missing = [n for n in COMMAND_NAMES if n not in handlers]
    unknown = sorted(n for n in handlers if n not in COMMANDS)
    if missing or unknown:
        raise CommandRegistryError(
            f"{owner} does not match sync.protocol.commands.COMMANDS: no handler for "
            f"{missing or 'none'}, handlers for unknown commands {unknown or 'none'} — "
            "register one handler per command, and each new command in COMMANDS")
    for name, handler in handlers.items():
        taken = _argument_model(handler)
        if taken is not None and taken is not COMMANDS[name]:
            raise CommandRegistryError(
                f"{owner}: the handler of {name} takes {taken.__name__}, but COMMANDS says "
                f"{COMMANDS[name].__name__} — make them agree")


def _argument_model(handler: Any) -> type | None:
    """The annotated type of ``handler``'s last parameter (its arguments), if any."""
    parameters = list(inspect.signature(handler).parameters)
    try:
        hints = typing.get_type_hints(handler)
    except NameError as exc:
        raise CommandRegistryError(f"the annotations of handler {handler.__qualname__} do not "
                                   f"resolve ({exc}) — import the argument models it names at "
                                   "module level") from None
    return hints.get(parameters[-1]) if parameters else None


def peek_command(payload: bytes) -> tuple[str, str]:
    """Id and name of a command payload, as far as they can be read (``"unknown"``, ``""``
    otherwise): what a refusal's :class:`CommandResult` carries."""
    try:
        data = load_json(payload, "Command", Command.MAX_BYTES, Command.MAX_DEPTH)
        if not isinstance(data, dict):
            return "unknown", ""
        return str(data.get("id", "unknown"))[:64] or "unknown", str(data.get("name", ""))[:64]
    except (ProtocolError, AttributeError):
        return "unknown", ""
