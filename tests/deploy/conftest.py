"""Static checks of the deployment files: no Docker engine and no network needed."""

import pytest

from tests.support.deploy import OVERLAYS, kubectl, render_overlay


@pytest.fixture(params=OVERLAYS)
def rendered(request: pytest.FixtureRequest):
    """`kubectl kustomize deploy/k8s/overlays/<overlay>` as a tuple of documents."""
    if kubectl() is None:
        pytest.skip("kubectl is not installed: cannot render the kustomize overlays")
    return render_overlay(request.param)
