"""Every shell command in docs/*.md, and what runs it.

Each command (continuation lines, quoted strings spanning lines, heredocs and loops joined, as
bash reads them) matches one RULE, which says how it is run: here with no service (`local`,
tests/deploy/test_doc_commands.py), against a live API, worker, Postgres and Redis (`live`,
tests/e2e/test_doc_commands_live.py), by another test or CI script (`elsewhere`), or not at all,
with the reason: it needs a Kubernetes cluster (`cluster`), a Docker engine (`docker`) or a
person at a web browser (`browser`), or runs until stopped (`forever`). A cluster command may
name what of it does run here (`dry`: the overlay `kubectl apply -k` would send is rendered).
A new command in the docs fails test_every_doc_command_is_classified until a rule says how it
runs.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
SHELL_LANGS = {"sh", "bash", "shell", "console"}
FENCE = re.compile(
    r"^(?P<indent>[ \t]*)```(?P<lang>[\w-]*)[^\n]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$",
    re.M | re.S,
)
HEREDOC = re.compile(r"<<-?\s*(['\"]?)(\w+)\1")
KINDS = {"local", "live", "elsewhere", "cluster", "docker", "browser", "forever"}
RUNS = {"local", "live"}


@dataclass(frozen=True)
class Command:
    doc: str  # file name under docs/
    line: int  # where the command starts in it
    text: str  # as bash reads it (newlines kept)

    def __str__(self) -> str:
        return f"docs/{self.doc}:{self.line}: {self.text.splitlines()[0]}"


@dataclass(frozen=True)
class Rule:
    pattern: str  # re.search over the command's text
    kind: str
    reason: str
    dry: Callable[[re.Match[str]], str] | None = None  # for `cluster`: what runs here instead

    def matches(self, command: Command) -> re.Match[str] | None:
        return re.search(self.pattern, command.text, re.S)


RULES: tuple[Rule, ...] = (
    # --- needs a Kubernetes cluster ---------------------------------------------------------
    Rule(
        r"^kubectl -n \S+ create secret",
        "cluster",
        "creates the Secrets in a cluster; deploy/k8s/base/secret.example.yaml, which "
        "tests/deploy/test_signing_key.py reads, shows their keys",
    ),
    Rule(
        r"^kubectl apply -k (\S+)",
        "cluster",
        "applies to a cluster; here the overlay it applies is rendered",
        dry=lambda m: f"kubectl kustomize {m.group(1)} > /dev/null",
    ),
    Rule(r"^for d in .*kubectl -n \S+ rollout status", "cluster", "waits for a cluster's rollouts"),
    Rule(r"^kubectl -n \S+ delete pod", "cluster", "deletes a pod in a cluster"),
    # --- needs a Docker engine --------------------------------------------------------------
    Rule(
        r"^docker compose ",
        "docker",
        "needs a Docker engine; tests/deploy/test_compose.py checks compose.yaml statically",
    ),
    Rule(
        r"^scripts/build-images",
        "docker",
        "BuildKit needs a Docker engine; tests/deploy/test_dockerfiles.py checks the "
        "Dockerfiles and docker-bake.hcl",
    ),
    # --- runs until stopped, or elsewhere ----------------------------------------------------
    Rule(
        r"^make run\b",
        "forever",
        "starts the development stack and runs until Ctrl-C; the e2e tests start the same "
        "processes (tests/conftest.py, tests/e2e/test_listen_addresses.py)",
    ),
    Rule(r"^make test\b", "elsewhere", "CI runs it: .ci/run (tests/deploy/test_ci.py)"),
    Rule(
        r"^(uv pip compile pyproject\.toml|cp requirements\.lock requirements-runtime\.lock$)",
        "elsewhere",
        "rewrites the locks from the package index; tests/unit/test_locks.py checks the two "
        "locks agree and name what pyproject.toml does",
    ),
    Rule(
        r"^openapi-python-client generate ",
        "elsewhere",
        "tests/e2e/test_generated_client.py generates a client with this config from a live "
        "API's /openapi.json and runs the README's flow through it",
    ),
    Rule(
        r"^(open|xdg-open) ",
        "browser",
        "opens a page in the reader's browser; the report pages' own tests drive them in Chromium",
    ),
    # --- run here, no service ----------------------------------------------------------------
    Rule(r"^kubectl kustomize ", "local", "renders an overlay"),
    Rule(r"^mkdir -p release && cat > release/kustomization\.yaml", "local", "writes an overlay"),
    Rule(r"^promtool ", "local", "checks and unit-tests the alert rules"),
    Rule(r"^(\.venv/bin/)?modelcert suites validate ", "local", "validates a suite file"),
    Rule(
        r"^\.venv/bin/python scripts/gen-monitoring", "local", "regenerates the monitoring objects"
    ),
    Rule(r"^cp \.env\.example \.env", "local", "copies the example environment (EDITOR=true)"),
    Rule(r"^python -c 'from cryptography\.fernet", "local", "prints a new Fernet key"),
    # --- run against a live stack ------------------------------------------------------------
    Rule(r"^(export )?(API|TOKEN|AUTH)=", "live", "sets the variables the other commands use"),
    Rule(r"\bcurl ", "live", "calls the live API"),
    Rule(
        r"^(\.venv/bin/)?modelcert (tokens|verify|certify|report) ",
        "live",
        "runs the CLI on the live stack and the reference endpoint",
    ),
    Rule(
        r"^MODELCERT_SECRET_KEY=\S+ modelcert secrets rotate",
        "live",
        "re-encrypts a fresh database's secrets",
    ),
    Rule(r"^scripts/test-worker\b", "live", "proves the path on the live stack"),
    Rule(r"^redis-cli -u ", "live", "reads and empties a Redis list"),
)


def _complete(text: str) -> bool:
    """Whether bash would stop reading here: no continuation, heredoc or open construct."""
    if text.rstrip("\n").endswith("\\"):
        return False
    for match in HEREDOC.finditer(text):
        rest = text[match.end() :].split("\n")[1:]
        if match.group(2) not in (line.strip() for line in rest):
            return False
    return _bash_accepts(text)


@cache
def _bash_accepts(text: str) -> bool:
    return (
        subprocess.run(["bash", "-n", "-c", text], capture_output=True, timeout=30).returncode == 0
    )


def _block_commands(doc: str, body: str, first_line: int) -> list[Command]:
    out: list[Command] = []
    pending: list[str] = []
    start = first_line
    for offset, line in enumerate(body.splitlines()):
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if not pending:
            start = first_line + offset
        pending.append(line)
        text = "\n".join(pending)
        if _complete(text):
            out.append(Command(doc, start, text))
            pending = []
    assert not pending, f"docs/{doc}:{start}: a command does not end: {pending}"
    return out


@cache
def doc_commands() -> tuple[Command, ...]:
    commands: list[Command] = []
    for path in sorted(DOCS.glob("*.md")):
        text = path.read_text()
        for fence in FENCE.finditer(text):
            if fence.group("lang") not in SHELL_LANGS:
                continue
            indent = len(fence.group("indent"))
            body = "\n".join(line[indent:] for line in fence.group("body").splitlines())
            first = text[: fence.start("body")].count("\n") + 1
            commands += _block_commands(path.name, body, first)
    return tuple(commands)


def rule_for(command: Command) -> Rule:
    found = [rule for rule in RULES if rule.matches(command)]
    if not found:
        raise LookupError(
            f"{command}\n  is not classified: add a rule to RULES in tests/support/doc_commands.py "
            "saying how it runs (local, live) or why it cannot run here"
        )
    return found[0]


def kind_of(command: Command) -> str | None:
    try:
        return rule_for(command).kind
    except LookupError:
        return None  # test_every_doc_command_is_classified names it


def commands_of(kind: str, doc: str | None = None) -> list[Command]:
    return [c for c in doc_commands() if kind_of(c) == kind and (doc is None or c.doc == doc)]


def script(commands: list[Command], prelude: str = "") -> str:
    """One bash script running `commands` in order in one shell (variables carry over), each
    checked: `a && b` fails when `a` does, which `set -e` alone would let pass."""
    parts = ["set -u", prelude]
    for i, command in enumerate(commands):
        parts.append(f"echo '::: {command.doc}:{command.line}' >&2")
        parts.append(f"{{\n{command.text}\n}} || {{ echo '::: FAILED ({i})' >&2; exit 1; }}")
    return "\n".join(parts) + "\n"
