"""Every command in compose and Kubernetes is a real `modelcert` subcommand."""

from __future__ import annotations

import importlib

import pytest

from tests.support.deploy import MODELCERT_SUBCOMMANDS, compose, modelcert_services, pod_spec


def _cli_commands() -> dict[str, set[str]]:
    """Subcommands and options: the click group once app/cli/main.py has one, else the constant."""
    try:
        cli = importlib.import_module("app.cli")
    except ImportError:
        return MODELCERT_SUBCOMMANDS
    group = getattr(cli, "main", None)
    commands = getattr(group, "commands", None)
    if not isinstance(commands, dict):
        return MODELCERT_SUBCOMMANDS
    return {
        name: {opt for param in cmd.params for opt in getattr(param, "opts", [])}
        for name, cmd in commands.items()
    }


def assert_modelcert_command(argv: list[str], where: str) -> None:
    assert isinstance(argv, list), f"{where}: command must be a list (exec form), got {argv!r}"
    assert argv[0] == "modelcert", f"{where}: {argv} does not run modelcert"
    commands = _cli_commands()
    assert len(argv) > 1 and argv[1] in commands, f"{where}: unknown subcommand in {argv}"
    options = {arg.split("=", 1)[0] for arg in argv[2:] if arg.startswith("--")}
    unknown = options - commands[argv[1]]
    assert not unknown, f"{where}: `modelcert {argv[1]}` has no option {sorted(unknown)}"


def test_constant_covers_the_documented_subcommands():
    assert {"api", "worker", "beat", "flower", "migrate", "reference-endpoint", "tokens"} <= set(
        MODELCERT_SUBCOMMANDS
    )


def test_compose_commands_are_modelcert_subcommands():
    services = modelcert_services()
    assert services, "no service runs a modelcert image"
    for name, svc in services.items():
        assert "command" in svc, f"compose service {name} must say which subcommand it runs"
        assert_modelcert_command(svc["command"], f"compose service {name}")


def test_compose_runs_each_process_once():
    by_command = {svc["command"][1]: name for name, svc in modelcert_services().items()}
    for sub in ("migrate", "api", "worker", "beat", "flower", "reference-endpoint"):
        assert sub in by_command, f"compose has no service running `modelcert {sub}`"
    assert compose()["services"]["reference-endpoint"].get("profiles") == ["demo"]


def test_kubernetes_commands_are_modelcert_subcommands(rendered):
    seen = set()
    for doc in rendered:
        if doc["kind"] not in {"Deployment", "Job", "StatefulSet", "DaemonSet"}:
            continue
        for container in pod_spec(doc)["containers"] + pod_spec(doc).get("initContainers", []):
            where = f"{doc['kind']}/{doc['metadata']['name']}:{container['name']}"
            argv = container.get("command", []) + container.get("args", [])
            assert argv, f"{where}: say the command explicitly"
            assert_modelcert_command(argv, where)
            seen.add(argv[1])
    assert {"api", "worker", "beat", "flower", "migrate"} <= seen


@pytest.mark.parametrize(
    "argv, ok",
    [
        (["modelcert", "worker", "--queues", "a,b"], True),
        (["modelcert", "nosuch"], False),
        (["modelcert", "api", "--bogus"], False),
        ("modelcert api", False),
    ],
)
def test_command_check_rejects_what_it_should(argv, ok):
    if ok:
        assert_modelcert_command(argv, "example")
    else:
        with pytest.raises(AssertionError):
            assert_modelcert_command(argv, "example")
