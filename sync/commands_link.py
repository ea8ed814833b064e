"""The bear's command endpoint on its existing MQTT connection (no second connection).

:class:`CommandsLink` attaches to the bear's :class:`sync.client.MqttLink`: it subscribes
to ``down/cmd`` and ``down/config`` after every (re)connect and takes those topics with
paho's ``message_callback_add``, so the link's own ``on_message`` (DeviceSync's acks) is
untouched. Commands run one at a time on a worker thread, never in paho's network thread;
each result goes to ``up/cmd-result`` (QoS 1), each config report to ``up/config``
(QoS 1, retained), through the link's :class:`~sync.receipts.PendingUplink`: both are sent
again until the cloud's ``down/receipt`` says they are committed.

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
from typing import Any, Protocol

from sync.client import MqttLink
from sync.protocol import CommandResult, ConfigReported, down_topic, peek_command
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
        self.handled = 0
        """Commands and configs handled so far."""

    def attach(self) -> CommandsLink:
        """Install the topic callbacks and the subscribe hook; call before ``link.connect``
        (or any time: it subscribes at once when the link is already up)."""
        client = self._link.client
        client.message_callback_add(down_topic(self._device_id, "cmd"), self._on_command)
        client.message_callback_add(down_topic(self._device_id, "config"), self._on_config)
        self._link.after_connect(self._subscribe)
        self._worker.start()
        if self._link.connected:
            self._subscribe()
        return self

    def _subscribe(self) -> None:
        client = self._link.client
        client.subscribe(down_topic(self._device_id, "cmd"), qos=1)
        client.subscribe(down_topic(self._device_id, "config"), qos=1)

    def _on_command(self, client: Any, userdata: Any, message: Any) -> None:
        self._jobs.put(("cmd", bytes(message.payload)))

    def _on_config(self, client: Any, userdata: Any, message: Any) -> None:
        self._jobs.put(("config", bytes(message.payload)))

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
        receipted = self._pending.send("cmd-result", result)
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
            self._pending.send("config", report, retain=True, latest_only=True)

    def close(self) -> None:
        """Stop taking commands; idempotent."""
        if self._closed:
            return
        self._closed = True
        client = self._link.client
        client.message_callback_remove(down_topic(self._device_id, "cmd"))
        client.message_callback_remove(down_topic(self._device_id, "config"))
        self._jobs.put(None)
        if self._worker.is_alive():
            self._worker.join(timeout=10)

    def __enter__(self) -> CommandsLink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
