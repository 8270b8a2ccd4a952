"""Static checks of the deployment files: no Docker engine and no network needed."""

import sys
from pathlib import Path

import pytest

# Import `deploy_helpers` whatever pytest's import mode and package layout.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from deploy_helpers import OVERLAYS, kubectl, render_overlay  # noqa: E402


@pytest.fixture(params=OVERLAYS)
def rendered(request: pytest.FixtureRequest):
    """`kubectl kustomize deploy/k8s/overlays/<overlay>` as a tuple of documents."""
    if kubectl() is None:
        pytest.skip("kubectl is not installed: cannot render the kustomize overlays")
    return render_overlay(request.param)
