"""The settings of bear and cloud: one pydantic-settings model with a section per area.

Sources, strongest first:

1. keyword arguments (tests, and the CLI's own flags);
2. environment variables ``TEDDY_<SECTION>__<KEY>`` (``TEDDY_MQTT__PORT=1884``);
3. the TOML file named by ``--config`` or ``TEDDY_CONFIG``;
4. the defaults below: the embedded bear (local data dir, no broker needed to talk).

Every section forbids unknown keys, so a typo is an error naming the key, not a silent
default.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from config.errors import ConfigError

DEVICE_ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{2,63}$")
"""A device id is one MQTT topic level: lowercase letters, digits and dashes, 3-64 long."""
SERVICE_ACCOUNT_PATTERN = re.compile(r"^svc\.[a-z0-9][a-z0-9-]{1,59}$")
"""A cloud service's broker account (``svc.ingest``, ``svc.fleet``): the dot keeps it apart
from every device id, so no bear can ever be given a service's name or a service a bear's."""


def default_data_dir() -> Path:
    """Where the bear keeps its store and key when no config says otherwise."""
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "share"
    return base / "teddy"


class Section(BaseModel):
    """Base of every settings section: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# Section modules subclass Section, so they are imported after it (a top import would cycle).
from config.backup import BackupSettings  # noqa: E402
from config.fleet import FleetSettings, PairingSettings  # noqa: E402
from config.health import HealthSettings  # noqa: E402
from config.notify import NotifySettings  # noqa: E402
from config.pins import PinsSettings  # noqa: E402
from config.play import PlaySettings  # noqa: E402
from config.portal import PortalSettings  # noqa: E402
from config.safety import SafetySettings  # noqa: E402
from config.update import UpdateSettings  # noqa: E402
from config.voice import AudioSettings, VoiceSettings  # noqa: E402


class DeviceSettings(Section):
    """Who this bear is."""

    id: str | None = None
    """Device id (one topic level). None: made once on first run and kept in the data dir."""

    @field_validator("id")
    @classmethod
    def _check_id(cls, value: str | None) -> str | None:
        if value is not None and not DEVICE_ID_PATTERN.match(value):
            raise ValueError(
                f"device id {value!r} must be 3-64 lowercase letters, digits or dashes"
            )
        return value


class StoreSettings(Section):
    """The encrypted conversation store on the bear."""

    data_dir: Path = Field(default_factory=default_data_dir)
    """Directory of the store, the key file and the device identity."""
    db_name: str = "teddy.db"
    """File name of the SQLite database inside ``data_dir``."""
    key_file: Path | None = None
    """Key-encryption key file (mode 0600). None: ``<data_dir>/teddy.key``."""
    synchronous: Literal["FULL", "NORMAL"] = "FULL"
    """SQLite ``synchronous`` in WAL mode. FULL: a committed turn survives power loss."""
    retention_days: int = Field(default=30, ge=1, le=3650)
    """Days a conversation is kept before it is crypto-shredded."""
    keep_unsynced_past_retention: bool = False
    """Keep conversations whose turns still wait for the cloud past retention (with an alert)."""
    key_provider: str | None = None
    """``"package.module:factory"`` returning a KeyProvider (TPM, OTP key); None: the key file."""

    @property
    def db_path(self) -> Path:
        """Full path of the SQLite database."""
        return self.data_dir / self.db_name

    @property
    def key_path(self) -> Path:
        """Full path of the key-encryption key file."""
        return self.key_file if self.key_file is not None else self.data_dir / "teddy.key"


class TlsSettings(Section):
    """TLS for the MQTT connection; all None means plain TCP (development only)."""

    ca_file: Path | None = None
    """CA bundle that signed the broker's certificate."""
    cert_file: Path | None = None
    """This client's certificate (mutual TLS)."""
    key_file: Path | None = None
    """This client's private key (mutual TLS)."""

    @property
    def enabled(self) -> bool:
        """Whether TLS is configured at all."""
        return self.ca_file is not None


_STDIN_PASSWORD: list[str] = []
"""The password read from standard input (``password_file = "-"``), once per process."""


def _stdin_password() -> str:
    """The first line of standard input, read once (settings may be loaded again)."""
    import sys

    if not _STDIN_PASSWORD:
        _STDIN_PASSWORD.append(sys.stdin.readline().rstrip("\r\n"))
    return _STDIN_PASSWORD[0]


class MqttSettings(Section):
    """How to reach the broker."""

    host: str = "127.0.0.1"
    """Broker host name or address."""
    port: int = Field(default=1883, ge=1, le=65535)
    """Broker TCP port."""
    username: str | None = None
    """Broker user name; None connects anonymously (refused by a production broker)."""
    password: SecretStr | None = None
    """Broker password; never logged."""
    password_file: Path | None = None
    """File holding the broker password (a systemd credential: ``%d/mqtt-password``); read
    at load when ``password`` is unset. Trailing newline ignored. ``-``: the first line of
    standard input (root hands a root-only credential to a command run as another user)."""

    @model_validator(mode="after")
    def _read_password_file(self) -> MqttSettings:
        if self.password is None and self.password_file is not None:
            try:
                text = (_stdin_password() if str(self.password_file) == "-"
                        else self.password_file.read_text().rstrip("\r\n"))
            except OSError as exc:
                raise ValueError(f"mqtt.password_file {self.password_file} cannot be read "
                                 f"({exc.strerror}) — fix the path or the credential") from None
            object.__setattr__(self, "password", SecretStr(text))
        return self
    keepalive: int = Field(default=30, ge=5, le=3600)
    """MQTT keep-alive, seconds."""
    connect_timeout: float = Field(default=10.0, gt=0, le=300)
    """Seconds to wait for CONNACK before giving up."""
    tls: TlsSettings = Field(default_factory=TlsSettings)
    """TLS settings."""


class SyncSettings(Section):
    """The bear's store-and-forward link to the cloud."""

    batch_size: int = Field(default=100, ge=1, le=1000)
    """Most turns in one ``up/turns`` message."""
    max_inflight: int = Field(default=4, ge=1, le=64)
    """Batches published but not yet acked by the cloud."""
    ack_timeout: float = Field(default=10.0, gt=0, le=600)
    """Seconds to wait for the cloud's ack before resending a batch (same batch id)."""
    once_timeout: float = Field(default=60.0, gt=0, le=3600)
    """``teddy sync --once``: seconds to wait for the outbox to drain before failing."""
    batch_max_age: float = Field(default=2.0, gt=0, le=3600)
    """``teddy sync`` (continuous): seconds the oldest waiting turn may wait for a full batch."""
    outbox_budget_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    """Bytes of unsynced turns the bear may hold; past it an alert is raised (nothing dropped)."""
    backoff_min: float = Field(default=0.5, gt=0, le=600)
    """Reconnect backoff: first ceiling of the full-jitter delay, seconds."""
    backoff_max: float = Field(default=60.0, gt=0, le=3600)
    """Reconnect backoff: largest ceiling of the full-jitter delay, seconds."""


class CloudSettings(Section):
    """The cloud side: PostgreSQL and the ingestor."""

    pg_dsn: SecretStr = SecretStr("postgresql://postgres@127.0.0.1:5432/teddy")
    """libpq connection string of the system of record."""
    share_group: str = "ingest"
    """MQTT v5 shared-subscription group every ingest process joins."""
    client_id: str | None = None
    """MQTT client id of this ingest process; None: the account's own name for a ``svc.``
    account (the broker binds ingest accounts to it), else made from host and pid."""
    pool_size: int = Field(default=4, ge=1, le=64)
    """Most PostgreSQL connections in the ingestor's pool."""
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    """Port of the Prometheus ``/metrics`` endpoint (0: any free port); None: no endpoint."""
    metrics_host: str = "127.0.0.1"
    """Address the ``/metrics`` endpoint binds (it has no authentication: keep it on loopback
    or a private network; ``0.0.0.0`` only behind a firewall)."""
    alert_lane: bool = True
    """Take ``up/alerts`` on a connection, queue and thread of their own (client id and, for
    a service account, login ``<name>-alerts``), so no bear's burst delays another's alert."""
    max_messages_per_transaction: int = Field(default=200, ge=1, le=10000)
    """Most MQTT messages the ingestor commits in one transaction."""
    max_bytes_per_transaction: int = Field(default=512 * 1024, ge=1024, le=256 * 1024 * 1024)
    """Most payload bytes the ingestor commits in one transaction (one message always goes):
    how long another bear's turns can wait behind one bear's burst."""
    max_clock_ahead_s: float = Field(default=86400.0, ge=0, le=30 * 86400)
    """Ingest refuses a message dated more than this many seconds after its own clock."""
    max_message_age_days: float = Field(default=3660.0, ge=1, le=36500)
    """Ingest refuses a message dated more than this many days ago (a bear keeps at most
    ``store.retention_days`` = 3650, plus a margin)."""
    dead_letter_keep_days: float = Field(default=7.0, gt=0, le=3650)
    """Days a dead letter is kept before ingest deletes it."""
    dead_letter_keep_bytes: int = Field(default=4096, ge=0, le=256 * 1024)
    """Bytes of a refused payload kept in its dead letter (its full size is kept too)."""
    dead_letters_per_device: int = Field(default=1000, ge=0)
    """Most dead letters kept per device (more are counted in metrics, not kept)."""
    dead_letters_total: int = Field(default=100_000, ge=0)
    """Most dead letters kept in all."""
    dead_letters_per_device_per_s: float = Field(default=2.0, ge=0)
    """Dead letters kept per device per second (bursts of 5 s worth); the rest are counted."""
    bear_turns_per_s: float = Field(default=1000.0, gt=0)
    """Turns a second one bear may send; more are refused (``down/receipt``) until later."""
    bear_turns_burst: float = Field(default=60_000.0, ge=1)
    """Turns one bear may send at once after being quiet (a bear back online catching up
    on weeks of conversations)."""
    bear_bytes_per_s: float = Field(default=2 * 1024 * 1024.0, gt=0)
    """Payload bytes a second one bear may send on ``up/``; more are refused until later."""
    bear_bytes_burst: float = Field(default=64 * 1024 * 1024.0, ge=1024)
    """Payload bytes one bear may send at once after being quiet."""
    instance: int | None = Field(default=None, ge=0, le=999)
    """Instance number of this ingest process (``teddy-cloud-ingest@N`` sets it from ``%i``):
    its metrics endpoint listens on ``metrics_port + instance``, so instances side by side
    never collide. None: ``metrics_port`` as it is."""


class DialogueSettings(Section):
    """What the bear says."""

    age_band: Literal["3-5", "6-8", "9-12"] = "6-8"
    """Age band of the child: changes wording and content."""
    child_name: str | None = Field(default=None, max_length=30)
    """The child's first name from the parent's profile (the parent app), said in the
    bear's kind lines (bedtime, pause); None: no name is said."""

    @field_validator("child_name")
    @classmethod
    def _first_name(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        name = " ".join(value.split())
        if not all(c.isalpha() or c in " -'’" for c in name) or not name[0].isalpha():
            raise ValueError("a first name uses letters only (spaces, - and ' too), e.g. Mia")
        return name


class LoggingSettings(Section):
    """Logging."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "WARNING"
    """Root log level. Transcripts, keys and passwords are never logged at INFO or above."""


class Settings(BaseSettings):
    """All of Teddy's settings. Build with :func:`load_settings`."""

    model_config = SettingsConfigDict(
        env_prefix="TEDDY_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    device: DeviceSettings = Field(default_factory=DeviceSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    mqtt: MqttSettings = Field(default_factory=MqttSettings)
    sync: SyncSettings = Field(default_factory=SyncSettings)
    cloud: CloudSettings = Field(default_factory=CloudSettings)
    dialogue: DialogueSettings = Field(default_factory=DialogueSettings)
    audio: AudioSettings = Field(default_factory=AudioSettings)
    voice: VoiceSettings = Field(default_factory=VoiceSettings)
    pins: PinsSettings = Field(default_factory=PinsSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    health: HealthSettings = Field(default_factory=HealthSettings)
    notify: NotifySettings = Field(default_factory=NotifySettings)
    update: UpdateSettings = Field(default_factory=UpdateSettings)
    pairing: PairingSettings = Field(default_factory=PairingSettings)
    fleet: FleetSettings = Field(default_factory=FleetSettings)
    backup: BackupSettings = Field(default_factory=BackupSettings)
    play: PlaySettings = Field(default_factory=PlaySettings)
    portal: PortalSettings = Field(default_factory=PortalSettings)
    safety: SafetySettings = Field(default_factory=SafetySettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Keyword arguments, then environment, then the TOML file."""
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))


def config_file_from(explicit: str | os.PathLike[str] | None) -> Path | None:
    """The TOML file to read: ``--config`` if given, else ``TEDDY_CONFIG``, else none."""
    chosen = explicit if explicit is not None else os.environ.get("TEDDY_CONFIG")
    return Path(chosen) if chosen else None


def _check_toml_readable(path: Path) -> None:
    try:
        with path.open("rb") as handle:
            tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(
            f"config file {path} does not exist — pass an existing file with --config "
            "or unset TEDDY_CONFIG"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


def format_validation_error(error: ValidationError) -> list[str]:
    """One line per invalid field: its dotted path, the bad value, and the reason."""
    lines = []
    for item in error.errors():
        path = ".".join(str(part) for part in item["loc"]) or "(root)"
        value = item.get("input")
        shown = "" if isinstance(value, dict) else f" (got {value!r})"
        lines.append(f"{path}: {item['msg']}{shown}")
    return lines


def load_settings(
    config_file: str | os.PathLike[str] | None = None, **overrides: Any
) -> Settings:
    """Load settings from overrides, environment and the TOML file.

    Raises :class:`ConfigError` naming every invalid field (path and reason).
    """
    path = config_file_from(config_file)
    if path is not None:
        _check_toml_readable(path)
    settings_cls = Settings
    if path is not None:

        class SettingsFromFile(Settings):
            model_config = SettingsConfigDict(toml_file=path)

        settings_cls = SettingsFromFile
    try:
        return settings_cls(**overrides)
    except ValidationError as exc:
        lines = format_validation_error(exc)
        source = f" (config file {path})" if path else ""
        raise ConfigError(f"invalid settings{source}: " + "; ".join(lines)) from exc
