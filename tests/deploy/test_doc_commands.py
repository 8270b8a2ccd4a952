"""Every command in docs/ is run by a test or a CI script, or listed with the reason it cannot
run here (doc_commands.RULES). This module checks the list and runs the commands that need no
service; tests/e2e/test_doc_commands_live.py runs those that need a live stack."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support.deploy import ROOT, kubectl, needs_tool
from tests.support.doc_commands import (
    KINDS,
    RULES,
    RUNS,
    Command,
    _block_commands,
    commands_of,
    doc_commands,
    kind_of,
    rule_for,
    script,
)


def test_every_doc_command_is_classified():
    commands = doc_commands()
    assert len(commands) > 40, "the extraction finds the docs' commands"
    unclassified = []
    for command in commands:
        try:
            rule_for(command)
        except LookupError as exc:
            unclassified.append(str(exc))
    assert not unclassified, "\n".join(unclassified)


def test_rules_say_how_or_why_not():
    for rule in RULES:
        assert rule.kind in KINDS, rule
        assert rule.reason, rule
        assert rule.dry is None or rule.kind == "cluster", rule
        if rule.kind == "elsewhere":
            named = re.findall(r"[\w./-]+\.(?:py|sh)|\.ci/\w+", rule.reason)
            assert named and all((ROOT / path).exists() for path in named), rule


def test_most_commands_run():
    runs = [c for c in doc_commands() if kind_of(c) in RUNS]
    assert len(runs) >= 0.8 * len(doc_commands()), [str(c) for c in doc_commands() if c not in runs]


def test_the_extraction_joins_what_bash_joins():
    body = "\n".join(
        [
            "# a comment",
            "echo one   # trailing comment",
            "curl -X POST x \\",
            "  -d '{",
            '  "a": 1',
            "}'",
            "cat > f <<'EOF'",
            "text",
            "EOF",
            "for d in a b; do",
            "  echo $d",
            "done",
            "",
        ]
    )
    commands = _block_commands("x.md", body, 10)
    assert [c.line for c in commands] == [11, 12, 16, 19]
    assert [len(c.text.splitlines()) for c in commands] == [1, 4, 3, 3]


def test_no_command_changes_directory():
    """`cd somewhere && …` moves every command after it (issue #27: `kubectl apply -k
    deploy/…` failed after `cd deploy/k8s/overlays/prod && kustomize edit …`)."""
    for command in doc_commands():
        assert not re.search(r"(^|[;&|]\s*)cd\s", command.text), command


def _workdir(tmp_path: Path) -> Path:
    """A copy of what the local commands read and write, so they never touch the checkout:
    they run from the repository's root as a reader does."""
    work = tmp_path / "repo"
    work.mkdir()
    shutil.copytree(ROOT / "deploy", work / "deploy")
    (work / "scripts").mkdir()
    shutil.copy2(ROOT / "scripts" / "gen-monitoring", work / "scripts" / "gen-monitoring")
    shutil.copy2(ROOT / ".env.example", work / ".env.example")
    (work / ".venv").symlink_to(ROOT / ".venv")
    (work / "docs").symlink_to(ROOT / "docs")  # read only: the example suites
    return work


def _local_script(doc: str) -> list[Command]:
    """The doc's local commands, and the dry forms of its cluster commands, in order."""
    out = []
    for command in doc_commands():
        if command.doc != doc:
            continue
        rule = rule_for(command)
        if rule.kind == "local":
            out.append(command)
        elif rule.dry is not None:
            match = rule.matches(command)
            assert match
            out.append(Command(command.doc, command.line, rule.dry(match)))
    return out


def _run(doc: str, work: Path) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": f"{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}",
        "HOME": str(work),
        "EDITOR": "true",  # `$EDITOR .env`: a reader edits it; nothing to edit here
    }
    return subprocess.run(
        ["bash", "-c", script(_local_script(doc))],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


LOCAL_DOCS = sorted({c.doc for c in commands_of("local")})


@pytest.mark.parametrize("doc", LOCAL_DOCS)
@needs_tool("promtool", "prometheus")
def test_local_commands_run(doc, tmp_path):
    if kubectl() is None:
        pytest.skip("kubectl is not installed: cannot render the kustomize overlays")
    work = _workdir(tmp_path)
    result = _run(doc, work)
    assert result.returncode == 0, result.stdout + result.stderr
    if doc == "operations.md":
        # The release overlay points both images at the registry, and regenerating the
        # monitoring objects changed nothing.
        rendered = subprocess.run(
            [kubectl() or "kubectl", "kustomize", str(work / "release")],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
        images = {
            c["image"]
            for d in yaml.safe_load_all(rendered)
            if d and d["kind"] == "Deployment"
            for c in d["spec"]["template"]["spec"]["containers"]
            + d["spec"]["template"]["spec"].get("initContainers", [])
        }
        assert images == {"REGISTRY/modelcert-api:TAG", "REGISTRY/modelcert-worker:TAG"}
        generated = ROOT / "deploy/k8s/components/monitoring"
        for path in generated.glob("*.yaml"):
            assert (work / path.relative_to(ROOT)).read_text() == path.read_text(), path.name
    if doc == "getting-started.md":
        assert (work / ".env").read_text() == (ROOT / ".env.example").read_text()


def test_live_commands_are_the_e2e_tests():
    assert commands_of("live"), "tests/e2e/test_doc_commands_live.py runs them"
    assert (ROOT / "tests/e2e/test_doc_commands_live.py").exists()
