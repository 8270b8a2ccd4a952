"""The GitHub Actions example (docs/examples/github-actions-certify.yml) does what it says:
its run steps, executed as a runner would (bash -eo pipefail, the workflow's, job's and step's
env, `if: always()`), with the reference endpoint standing in for the model and a script
standing in for the deploy. Actions (`uses:`) and the install step (modelcert is already
installed here) are the only steps not run."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.certification import certificates as certs
from tests.support import ROOT
from tests.support.reference import running_reference

WORKFLOW = ROOT / "docs/examples/github-actions-certify.yml"
BIN = Path(sys.executable).parent
EXPRESSION = re.compile(r"\$\{\{\s*(vars|secrets)\.(\w+)\s*\}\}")
DEPLOY_STAND_IN = '#!/usr/bin/env bash\nset -eu\necho "deployed $1" > deployed.txt\n'


@dataclass
class Job:
    outcomes: dict[str, str] = field(default_factory=dict)  # step name: success|failure|skipped
    logs: dict[str, str] = field(default_factory=dict)

    @property
    def succeeded(self) -> bool:
        return "failure" not in self.outcomes.values()


def workflow() -> dict[str, Any]:
    return yaml.safe_load(WORKFLOW.read_text())


def step_name(step: dict[str, Any]) -> str:
    return str(step.get("name") or step.get("id") or step.get("uses"))


def substitute(value: str, context: dict[str, dict[str, str]]) -> str:
    def lookup(match: re.Match[str]) -> str:
        return context[match.group(1)][match.group(2)]

    result = EXPRESSION.sub(lookup, value)
    assert "${{" not in result, f"an expression this test does not know: {value}"
    return result


def run_job(workspace: Path, context: dict[str, dict[str, str]]) -> Job:
    """The job's steps in order; a failed step skips the later ones unless `if: always()`."""
    spec = workflow()
    (job,) = spec["jobs"].values()
    runner_temp = workspace.parent / "runner-temp"
    runner_temp.mkdir(exist_ok=True)
    base = {
        "PATH": f"{BIN}:/usr/bin:/bin",
        "HOME": str(workspace.parent),
        "LANG": "C.UTF-8",
        "CI": "true",
        "GITHUB_ACTIONS": "true",
        "GITHUB_WORKSPACE": str(workspace),
        "RUNNER_TEMP": str(runner_temp),
        "GITHUB_STEP_SUMMARY": str(workspace.parent / "step-summary.md"),
    }
    env = base | {k: substitute(str(v), context) for k, v in spec.get("env", {}).items()}
    env |= {k: substitute(str(v), context) for k, v in job.get("env", {}).items()}
    result = Job()
    for step in job["steps"]:
        name = step_name(step)
        condition = step.get("if")
        assert condition in (None, "always()"), f"{name}: a condition this test does not know"
        if "uses" in step or step.get("id") == "install":
            result.outcomes[name] = "not run here"
            continue
        if not result.succeeded and condition != "always()":
            result.outcomes[name] = "skipped"
            continue
        step_env = env | {k: substitute(str(v), context) for k, v in step.get("env", {}).items()}
        script = runner_temp / "step.sh"
        script.write_text(step["run"])
        done = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
            cwd=workspace,
            env=step_env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        result.outcomes[name] = "success" if done.returncode == 0 else "failure"
        result.logs[name] = f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return result


@pytest.fixture(scope="module")
def reference() -> Iterator[str]:
    with running_reference() as (root, _):
        yield root


@pytest.fixture()
def repository(tmp_path: Path) -> tuple[Path, str]:
    """A checkout of the deploying repository: trusted keys committed, a deploy script; and
    the signing seed its secret holds."""
    workspace = tmp_path / "workspace"
    (workspace / ".modelcert").mkdir(parents=True)
    (workspace / "scripts").mkdir()
    seed = certs.generate_seed()
    public = certs.public_key_b64(certs.load_private_key(seed))
    (workspace / ".modelcert/keys.json").write_text(json.dumps(certs.keys_document([public])))
    deploy = workspace / "scripts/deploy"
    deploy.write_text(DEPLOY_STAND_IN)
    deploy.chmod(0o755)
    return workspace, seed


def context(base_url: str, seed: str) -> dict[str, dict[str, str]]:
    return {
        "vars": {
            "MODEL_BASE_URL": base_url,
            "MODEL": "reference-model",
            "MODELCERT_PACKAGE": "unused here",
        },
        "secrets": {"MODEL_API_KEY": "reference-key", "MODELCERT_SIGNING_KEY": seed},
    }


def test_the_workflow_is_what_the_docs_say() -> None:
    spec = workflow()
    (job,) = spec["jobs"].values()
    runs = {step_name(s): s.get("run", "") for s in job["steps"]}
    certify = runs["Certify the endpoint"]
    assert "modelcert certify --json" in certify and "> certification.json" in certify
    deploy = runs["Deploy, only a certified model"]
    assert re.search(r"modelcert verify certification/certificate\.json .*\s+&& ", deploy, re.S)
    assert spec["permissions"] == {"contents": "read"}
    always = {step_name(s) for s in job["steps"] if s.get("if") == "always()"}
    assert "Summary" in always and "Deploy, only a certified model" not in always


def test_a_certified_endpoint_is_deployed(reference: str, repository: tuple[Path, str]) -> None:
    workspace, seed = repository
    job = run_job(workspace, context(f"{reference}/v1", seed))
    assert job.succeeded, job.logs
    assert job.outcomes["Deploy, only a certified model"] == "success"
    assert (workspace / "deployed.txt").read_text() == "deployed reference-model\n"
    result = json.loads((workspace / "certification.json").read_text())
    assert result["verdict"] == "certified" and result["exit_code"] == 0
    summary = (workspace.parent / "step-summary.md").read_text()
    assert "## reference-model: certified" in summary and "| connectivity | yes | passed" in summary
    assert not (workspace.parent / "runner-temp/signing-key").stat().st_mode & 0o077
    assert (
        (workspace / "certification/report.html").read_text().lower().startswith("<!doctype html>")
    )


def test_a_model_that_is_not_certified_fails_the_job(
    reference: str, repository: tuple[Path, str]
) -> None:
    workspace, seed = repository
    job = run_job(workspace, context(f"{reference}/m/wrong/v1", seed))
    assert job.outcomes["Certify the endpoint"] == "failure"
    assert job.logs["Certify the endpoint"].startswith("exit 1\n")
    assert job.outcomes["Summary"] == "success"  # the results still show
    assert job.outcomes["Deploy, only a certified model"] == "skipped"
    assert not (workspace / "deployed.txt").exists()
    result = json.loads((workspace / "certification.json").read_text())
    assert result["verdict"] == "not_certified" and not result["certified"]
    assert "not_certified" in (workspace.parent / "step-summary.md").read_text()


def test_a_certificate_from_an_untrusted_key_is_not_deployed(
    reference: str, repository: tuple[Path, str]
) -> None:
    workspace, _ = repository
    job = run_job(workspace, context(f"{reference}/v1", certs.generate_seed()))
    assert job.outcomes["Certify the endpoint"] == "success"
    assert job.outcomes["Deploy, only a certified model"] == "failure"
    assert "unknown_key" in job.logs["Deploy, only a certified model"]
    assert not (workspace / "deployed.txt").exists()
    assert os.path.exists(workspace / "certification/certificate.json")
