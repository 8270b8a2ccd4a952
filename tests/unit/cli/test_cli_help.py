"""`modelcert` for pipelines (issue #27, item 7): a version, help for every option, and the
exit codes in the help of the commands that have their own."""

from __future__ import annotations

from importlib.metadata import version

import click
from click.testing import CliRunner

from app.cli import main


def commands(group: click.Group, path: tuple[str, ...] = ("modelcert",)):  # type: ignore[no-untyped-def]
    yield path, group
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from commands(command, (*path, name))
        else:
            yield (*path, name), command


def test_version() -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert result.output == f"modelcert {version('modelcert')}\n"


def test_every_command_and_option_has_help() -> None:
    missing = []
    for path, command in commands(main):
        if not command.help:
            missing.append(" ".join(path))
        for param in command.params:
            if isinstance(param, click.Option) and not param.help:
                missing.append(f"{' '.join(path)} {param.opts[0]}")
    assert not missing, f"no help text: {missing}"


def test_certify_and_verify_list_their_exit_codes() -> None:
    certify = CliRunner().invoke(main, ["certify", "--help"], terminal_width=100).output
    for line in (
        "0  certified (also certified_with_warnings)",
        "1  not certified",
        "3  inconclusive",
        "2  usage or configuration error",
    ):
        assert line in certify, certify
    assert "--json" in certify and "unwritable --out" in certify
    verify = CliRunner().invoke(main, ["verify", "--help"], terminal_width=100).output
    for code in ("0  authentic", "1  authentic and in force, but not certified", "2  usage", "4"):
        assert code in verify, verify
