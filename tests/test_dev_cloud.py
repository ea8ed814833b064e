"""``scripts/dev`` as a newcomer runs it: one command, then the printed URL, the printed
sign-in link, pairing by the code the terminal bear prints, a line typed into the bear read
back as a transcript, and Ctrl-C leaving nothing running."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
from support.paths import ROOT
from support.portal import csrf_of
from support.waiting import wait_until

URL = re.compile(r"^parent app: (http://127\.0\.0\.1:\d+)")
DATABASE = re.compile(r"^database (teddy_dev_[0-9a-f]+):")
CODE = re.compile(r"^bear: My pairing code is ([\d, ]+)\.")


class Terminal:
    """What the newcomer sees: every printed line, kept and waited for."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.process = process
        self.lines: list[str] = []
        self._new: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))
            self._new.put(line)

    def wait_for(self, pattern: re.Pattern[str] | str, timeout: float = 90.0) -> re.Match[str]:
        """The first printed line matching ``pattern`` (from the start)."""
        wanted = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            for line in self.lines[seen:]:
                if found := wanted.search(line):
                    return found
            seen = len(self.lines)
            try:
                self._new.get(timeout=0.2)
            except queue.Empty:
                if self.process.poll() is not None:
                    break
        raise AssertionError(f"no line like {wanted.pattern!r}; printed:\n" +
                             "\n".join(self.lines))

    def type(self, line: str) -> None:
        """Type a line into the terminal (it goes to the bear)."""
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()


def children_of(pid: int) -> set[int]:
    """Every descendant process of ``pid`` (from /proc)."""
    found: set[int] = set()
    todo = [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                kids = {int(k) for k in (task / "children").read_text().split()}
            except OSError:
                continue
            todo += sorted(kids - found)
            found |= kids
    return found


def alive(pid: int) -> bool:
    """Whether ``pid`` is a running (not zombie) process."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


ADMIN_DSN = os.environ.get("TEDDY_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")


def start_dev() -> Terminal:
    """``scripts/dev`` in a terminal of its own (stdin and stdout ours)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEDDY_")}
    env["TEDDY_DEV_PG_DSN"] = ADMIN_DSN
    process = subprocess.Popen([str(ROOT / "scripts" / "dev"), "--port", "0"], env=env,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, bufsize=1,
                               start_new_session=True)
    return Terminal(process)


def database_exists(name: str) -> bool:
    """Whether the machine's PostgreSQL still has database ``name``."""
    import psycopg

    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                            (name,)).fetchone() is not None


def test_sigterm_stops_every_process_and_drops_the_database():
    terminal = start_dev()
    process = terminal.process
    children: set[int] = set()
    database = ""
    try:
        database = terminal.wait_for(DATABASE).group(1)
        terminal.wait_for(URL)
        children = children_of(process.pid)
        assert len(children) >= 5 and database_exists(database), children
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0, "\n".join(terminal.lines)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert not [pid for pid in children if alive(pid)]
    assert not database_exists(database)


def test_a_newcomer_runs_the_whole_cloud_with_one_command(tmp_path: Path):
    terminal = start_dev()
    process = terminal.process
    children: set[int] = set()
    try:
        base = terminal.wait_for(URL).group(1)
        code = re.sub(r"\D", "", terminal.wait_for(CODE).group(1))
        assert len(code) == 12  # three groups of four (custody: a million bears, no collisions)
        email = "newcomer@example.org"
        with httpx.Client(base_url=base, timeout=20) as web:
            page = web.get("/signin")
            assert web.post("/signin", data={"email": email,
                                             "csrf": csrf_of(page.text)}).status_code == 200
            link = terminal.wait_for(rf"^mail: sign-in link for {re.escape(email)}: "
                                     r"(\S+)").group(1)
            assert link.startswith(base + "/signin/"), link  # portal.base_url follows the port
            confirm = web.get(link)
            assert web.post(link, data={"csrf": csrf_of(confirm.text)}).status_code == 303

            pair = web.get("/pair")
            version = re.search(r'name="notice_version" value="([^"]+)"', pair.text).group(1)
            answer = web.post("/pair", data={
                "csrf": csrf_of(pair.text), "notice_version": version, "read_notice": "yes",
                "scope": ["keep", "sync"], "child_name": "Noa", "code": code})
            assert answer.status_code == 303, answer.text
            bear_url = answer.headers["location"]
            assert bear_url.endswith("?paired=1")
            assert "Paired!" in web.get(bear_url).text
            terminal.wait_for(r"^bear: Paired!")

            terminal.type("tell me about dinosaurs")
            terminal.wait_for(r"^bear: (?!My pairing|Paired)")
            conversations = bear_url.split("?")[0] + "/conversations"

            def synced() -> str | None:
                listing = web.get(conversations).text
                return listing if re.search(r"/conversations/[0-9a-f]+", listing) else None

            listing = wait_until(synced, 60, "the typed line synced to the app")
            path = re.search(r'href="(/bears/[^"]+/conversations/[0-9a-f]+)"', listing).group(1)
            assert "tell me about dinosaurs" in web.get(path).text

            terminal.type("someone hurt me and told me to keep it a secret")  # notify mails
            terminal.wait_for(rf"^mail: to {re.escape(email)}: .*may need you", 60)
            assert "No wellbeing alerts" not in web.get("/alerts").text  # one is listed
        children = children_of(process.pid)
        assert len(children) >= 5, children  # broker, ingest, notify, portal, bear
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)  # Ctrl-C
    try:
        assert process.wait(60) == 0, "\n".join(terminal.lines)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert "stopped: every process ended, database dropped" in terminal.lines[-1]
    left = [pid for pid in children if alive(pid)]
    assert not left, f"still running after Ctrl-C: {left}"
