"""A simulated Raspberry Pi board for the OTP key provider: fake ``vcmailbox`` and
``rpi-otp-private-key`` executables that tests put first on PATH.

They behave like the real tools on a board whose OTP is kept in ``board.json`` beside the
``bin`` directory: ``vcmailbox`` answers the mailbox tags for customer OTP (read 0x00030021,
write 0x00038021) and the device private key (read 0x00030081, write 0x00038081) with the
same buffer layout as the firmware, OTP bits only ever go from 0 to 1, and a board whose
``/dev/vcio`` is closed to the user fails like the real tool. ``rpi-otp-private-key`` reads
(64 hex digits), checks (``-c``) and writes (``-w KEY -y``) the private key through the fake
``vcmailbox``, as the real script does through the real one.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from pathlib import Path

VCMAILBOX = r'''
import json, sys
from pathlib import Path

BOARD = Path(__file__).resolve().parent.parent / "board.json"
board = json.loads(BOARD.read_text())
if board.get("vcio") == "denied":
    print("Unable to open /dev/vcio: Permission denied", file=sys.stderr)
    sys.exit(1)
args = [int(a, 0) for a in sys.argv[1:]]
tag, size, _, start, count = args[:5]
values = args[5:]
area = {0x00030021: "customer", 0x00038021: "customer",
        0x00030081: "private", 0x00038081: "private"}.get(tag)
if area is None or start + count > 8:
    words = [size + 12, 0x80000001, tag, size, size] + [0] * (size // 4)
    print(" ".join(f"0x{w:08x}" for w in words))
    sys.exit(0)
rows = board.setdefault(area, [0] * 8)
if tag & 0x8000:  # a write: bits only go from 0 to 1
    for i, value in enumerate(values[:count]):
        if rows[start + i] & ~value:
            print("OTP write refused: a bit cannot go from 1 to 0", file=sys.stderr)
            sys.exit(1)
        rows[start + i] |= value
    BOARD.write_text(json.dumps(board))
words = [size + 12, 0x80000000, tag, size, 0x80000000 | size, start, count]
words += rows[start:start + count] + [0]
print(" ".join(f"0x{w:08x}" for w in words))
'''

PRIVATE_KEY_TOOL = r'''
import subprocess, sys

def read():
    out = subprocess.run(["vcmailbox", "0x00030081", "40", "40", "0", "8"] + ["0"] * 8,
                         capture_output=True, text=True)
    if out.returncode != 0:
        print("Failed to read the current key from OTP", file=sys.stderr)
        sys.exit(1)
    return "".join(w[2:] for w in out.stdout.split()[7:15])

args = sys.argv[1:]
if args[:1] == ["-c"]:
    sys.exit(0 if read().strip("0") else 1)
if args[:1] == ["-w"]:
    key = args[1].lower()
    if len(key) != 64:
        print("Invalid key parameter", file=sys.stderr)
        sys.exit(1)
    words = ["0x" + key[i:i + 8] for i in range(0, 64, 8)]
    done = subprocess.run(["vcmailbox", "0x00038081", "40", "40", "0", "8"] + words)
    sys.exit(done.returncode)
print(read())
'''


def fake_board(folder: Path, private: str | None = None, customer: list[int] | None = None,
               vcio: str = "open") -> Path:
    """A board in ``folder`` with these OTP contents; returns its ``bin`` directory (put it
    first on PATH). ``private`` is 64 hex digits; ``customer`` eight 32-bit rows."""
    folder.mkdir(parents=True, exist_ok=True)
    private_rows = [int(private[i:i + 8], 16) for i in range(0, 64, 8)] if private else [0] * 8
    (folder / "board.json").write_text(json.dumps(
        {"private": private_rows, "customer": customer or [0] * 8, "vcio": vcio}))
    bin_dir = folder / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, body in (("vcmailbox", VCMAILBOX), ("rpi-otp-private-key", PRIVATE_KEY_TOOL)):
        tool = bin_dir / name
        tool.write_text(f"#!{sys.executable}\n{body}")
        tool.chmod(0o755)
    return bin_dir


def random_rows() -> list[int]:
    """Eight random 32-bit customer OTP rows."""
    return [secrets.randbits(32) for _ in range(8)]


def on_path(env: dict[str, str], bin_dir: Path) -> dict[str, str]:
    """``env`` with ``bin_dir`` first on PATH."""
    return dict(env, PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', os.defpath)}")
