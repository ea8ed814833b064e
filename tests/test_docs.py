"""The docs say what the code does: generated parts are current, hand-written parts are checked."""

from __future__ import annotations

import argparse
import importlib.machinery
import importlib.util
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from agent.store.consent import Scope
from config.settings import StoreSettings
from sync import protocol

REPO = Path(__file__).resolve().parent.parent
GEN_DOCS = REPO / "scripts" / "gen-docs"
START, END = "<!-- config-reference:start -->", "<!-- config-reference:end -->"


def gen_docs(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(GEN_DOCS), *args], capture_output=True,
                          text=True, timeout=60, cwd=REPO)


def gen_docs_here(*args: str, capsys: pytest.CaptureFixture) -> tuple[int, str]:
    """scripts/gen-docs run in this process (faster than a new interpreter each time)."""
    loader = importlib.machinery.SourceFileLoader("gen_docs", str(GEN_DOCS))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(loader.name, loader))
    loader.exec_module(module)
    code = module.main(list(args))
    return code, capsys.readouterr().err


def test_generated_docs_are_up_to_date() -> None:
    """Regenerates docs/configuration.md and docs/protocol.md and diffs them."""
    result = gen_docs("--check")
    assert result.returncode == 0, result.stderr + "\nrun scripts/gen-docs and commit the result"


def test_check_catches_stale_docs_and_a_rewrite_touches_only_the_generated_part(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    readme, doc = tmp_path / "configuration.md", tmp_path / "protocol.md"
    shutil.copy(REPO / "docs" / "configuration.md", readme)
    head = readme.read_text().partition(START)[0]
    readme.write_text(head + f"{START}\nold reference\n{END}\n\nafter the markers\n")
    doc.write_text("# stale\n")
    args = ("--reference", str(readme), "--protocol", str(doc))
    code, errors = gen_docs_here("--check", *args, capsys=capsys)
    assert code == 1
    assert str(readme) in errors and str(doc) in errors
    assert gen_docs_here(*args, capsys=capsys)[0] == 0
    assert gen_docs_here("--check", *args, capsys=capsys)[0] == 0
    text = readme.read_text()
    assert text.startswith(head) and text.endswith(f"{END}\n\nafter the markers\n")
    assert "old reference" not in text


def test_the_reference_names_every_settings_key_with_its_environment_variable() -> None:
    from config.settings import Settings

    doc = (REPO / "docs" / "configuration.md").read_text()
    reference = doc.partition(START)[2].partition(END)[0]
    for section in Settings.model_fields:
        assert f"### `[{section}]`" in reference or f"### `[{section}." in reference, section
    assert "| `retention_days` | int | `30` |" in reference
    assert "`TEDDY_MQTT__TLS__CA_FILE`" in reference
    assert "postgresql://" not in reference  # secrets are never printed, not even defaults


def test_the_protocol_doc_has_every_message_and_topic() -> None:
    text = (REPO / "docs" / "protocol.md").read_text()
    messages = [name for name in protocol.__all__
                if isinstance(getattr(protocol, name), type)
                and issubclass(getattr(protocol, name), protocol.Message)
                and name != "Message"]
    assert len(messages) >= 5
    for name in messages:
        assert f"#### {name}\n" in text, name
    for topic in ("up/turns", "down/ack", "up/status"):
        assert f"`teddy/v1/<device_id>/{topic}`" in text


# --- docs/privacy.md, for parents, checked against the code ------------------------------


def privacy() -> str:
    return (REPO / "docs" / "privacy.md").read_text()


def test_privacy_names_the_retention_default_of_the_config() -> None:
    default = StoreSettings.model_fields["retention_days"].default
    stated = {int(days) for days in re.findall(r"\*\*(?:[^*]*?: )?(\d+) days\*\*", privacy())}
    assert stated == {default}, f"privacy.md says {stated} days, config says {default}"
    limits = {type(m).__name__: m for m in StoreSettings.model_fields["retention_days"].metadata}
    assert f"from {limits['Ge'].ge} day up to {limits['Le'].le // 365} years" in privacy()


def test_privacy_names_exactly_the_consent_scopes_of_the_code() -> None:
    table = privacy().partition("## What you can allow")[2].partition("\n## ")[0]
    stated = re.findall(r"^\| `([a-z]+)` \|", table, re.MULTILINE)
    assert sorted(stated) == sorted(scope.value for scope in Scope)


def test_privacy_promises_a_scrambled_card_only_where_the_key_is_sealed_to_the_board(
        tmp_path) -> None:
    """The card-thief promise is made only for the configuration that keeps it: each OTP hook
    the doc names builds a board-sealed provider; the file key (the default, and what
    install-pi and the example config leave) is said to be readable from the card."""
    from agent.store.keys import FileKeyProvider, provider_from_settings
    from agent.store.otp import OtpKeyProvider

    section = privacy().partition("## What is kept, when you allow it")[2].partition("\n## ")[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")][1:]  # no header
    sealed = [row for row in rows if "scrambled" in row]
    assert len(sealed) == 1 and "only with the secret inside that bear's chip" in sealed[0]
    assert "scrambled" not in section.replace(sealed[0], "")  # promised nowhere else
    hooks = re.findall(r'"(agent\.store\.otp:\w+)"', sealed[0])
    assert sorted(hooks) == ["agent.store.otp:customer_otp", "agent.store.otp:private_key"]
    for hook in hooks:
        provider = provider_from_settings(StoreSettings(data_dir=tmp_path, key_provider=hook))
        assert isinstance(provider, OtpKeyProvider), hook
    file_row = next(row for row in rows if "`teddy.key`" in row)
    assert "the default" in file_row and "can read what is kept" in file_row
    assert StoreSettings.model_fields["key_provider"].default is None
    assert type(provider_from_settings(StoreSettings(data_dir=tmp_path))) is FileKeyProvider
    install_pi = (REPO / "scripts" / "install-pi").read_text()
    example = tomllib.loads((REPO / "config" / "examples" / "teddy.toml").read_text())
    assert "key_provider" not in install_pi and "key_provider" not in example.get("store", {})
    assert "`scripts/install-pi` alone leaves it so" in file_row


# --- docs/operations.md: every command it tells an operator to run exists ----------------


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


@pytest.mark.parametrize("program", ["teddy", "teddy-cloud"])
def test_operations_commands_exist(program: str) -> None:
    from agent.cli import build_parser as bear_parser
    from sync.cloud.cli import build_parser as cloud_parser

    parser = bear_parser() if program == "teddy" else cloud_parser()
    text = "\n".join((REPO / "docs" / name).read_text() for name in ("operations.md", "runbook.md"))
    used = re.findall(  # a command, not "sudo -u teddy" nor a path like /opt/teddy
        rf"(?<![\w/-])(?<!-u ){re.escape(program)} ([a-z][a-z-]*)(?: ([a-z][a-z-]*))?", text)
    assert used
    for command, action in used:
        assert command in subcommands(parser), f"docs: {program} {command}"
        nested = subcommands(subcommands(parser)[command])
        if nested and action:
            assert action in nested, f"docs/operations.md: {program} {command} {action}"


def test_operations_names_every_unit_and_script() -> None:
    text = (REPO / "docs" / "operations.md").read_text()
    for unit in (REPO / "systemd").glob("*.service"):
        assert unit.name.replace("@.service", "@") in text, unit.name
    for script in ("install-pi", "provision-device"):
        assert f"scripts/{script}" in text
