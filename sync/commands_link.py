"""The bear's command endpoint on its existing MQTT connection (no second connection).

:class:`CommandsLink` attaches to the bear's :class:`sync.client.MqttLink`: it subscribes
to ``down/cmd`` and ``down/config`` (the link subscribes again after every reconnect), beside
the link's other subscriptions (DeviceSync's acks, the receipts). Commands run one at a
time on a worker thread, never in paho's network thread; each result goes to
``up/cmd-result`` (QoS 1), each config report to ``up/config`` (QoS 1, retained), through
the link's :class:`~sync.receipts.PendingUplink`: both are sent again until the cloud's
``down/receipt`` says they are committed.

It knows the bear only through :class:`CommandHandler` (the bear wires in
:class:`agent.commands.CommandProcessor`, see :func:`agent.commands.open_command_endpoint`):
whatever the handler does, every command gets a ``cmd-result``, ``failed`` with the reason if
the handler itself broke.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Protocol

from sync.client import Inbound, MqttLink, Subscription
from sync.protocol import Command, CommandResult, ConfigDesired, ConfigReported, peek_command
from sync.receipts import PendingUplink

logger = logging.getLogger(__name__)

PUBLISH_WAIT_S = 5.0
"""Seconds to wait for the cloud's receipt of a result before running an after-action."""


class CommandHandler(Protocol):
    """What runs the commands and desired configs of one bear."""

    device_id: str
    """The bear whose ``down/cmd`` and ``down/config`` it takes."""

    def handle(self, payload: bytes) -> tuple[CommandResult, Callable[[], None] | None]:
        """Verify and run one ``down/cmd`` payload: its result, and what to do once the
        cloud has the result (restart, drop the credentials), if anything."""
        ...

    def handle_config(self, payload: bytes) -> ConfigReported | None:
        """Verify and apply one ``down/config`` payload: the report, or None to stay
        silent."""
        ...


class CommandsLink:
    """Feeds ``down/cmd`` and ``down/config`` to a :class:`CommandHandler`.

    A context manager; :meth:`close` stops the worker (idempotent).
    """

    def __init__(self, link: MqttLink, processor: CommandHandler,
                 pending: PendingUplink | None = None) -> None:
        self._link = link
        self._pending = pending or PendingUplink.of(link, processor.device_id)
        self._processor = processor
        self._device_id = processor.device_id
        self._jobs: queue.Queue[tuple[str, bytes] | None] = queue.Queue()
        self._worker = threading.Thread(target=self._work, name="teddy-commands", daemon=True)
        self._closed = False
        self._subscriptions: list[Subscription] = []
        self.handled = 0
        """Commands and configs handled so far."""

    def attach(self) -> CommandsLink:
        """Subscribe to ``down/cmd`` and ``down/config``; call before ``link.connect`` (or
        any time: the link subscribes at once when it is already up)."""
        self._worker.start()
        self._subscriptions = [
            self._link.subscribe_to(Command, self._on_command, device_id=self._device_id),
            self._link.subscribe_to(ConfigDesired, self._on_config, device_id=self._device_id),
        ]
        return self

    def _on_command(self, message: Inbound) -> None:
        self._jobs.put(("cmd", message.payload))

    def _on_config(self, message: Inbound) -> None:
        self._jobs.put(("config", message.payload))

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            kind, payload = job
            try:
                if kind == "cmd":
                    self._run_command(payload)
                else:
                    self._apply_config(payload)
            except Exception:
                logger.exception("handling a %s message failed", kind)
            self.handled += 1

    def _run_command(self, payload: bytes) -> None:
        try:
            result, after = self._processor.handle(payload)
        except Exception as exc:  # the handler broke: the cloud still hears of the command
            logger.exception("the command handler broke on a command")
            result, after = self._broken(payload, exc), None
        receipted = self._pending.send(result)
        if after is not None:
            receipted.wait(timeout=PUBLISH_WAIT_S)
            after()

    def _broken(self, payload: bytes, exc: Exception) -> CommandResult:
        command_id, name = peek_command(payload)
        return CommandResult(id=command_id, device_id=self._device_id, name=name,
                             status="failed", finished_at=time.time(),
                             reason=f"the bear's command handler broke: "
                                    f"{type(exc).__name__}: {exc}"[:1000])

    def _apply_config(self, payload: bytes) -> None:
        report = self._processor.handle_config(payload)
        if report is not None:
            self._pending.send(report, latest_only=True)

    def close(self) -> None:
        """Stop taking commands; idempotent."""
        if self._closed:
            return
        self._closed = True
        for subscription in self._subscriptions:  # the session keeps queuing commands
            self._link.drop(subscription)
        self._jobs.put(None)
        if self._worker.is_alive():
            self._worker.join(timeout=10)

    def __enter__(self) -> CommandsLink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
