"""Containers listen on every interface, explicitly: outside a container the processes
default to loopback (MODELCERT_LISTEN_HOST=127.0.0.1), which a container's published port, a
Service or a kubelet probe could not reach."""

from __future__ import annotations

import re

import pytest
from pydantic import ValidationError

from tests.support.deploy import ROOT, config_map, modelcert_services, settings_default

LISTENING = {"api", "worker", "flower"}  # subcommands that serve HTTP from settings


def test_the_default_is_loopback():
    from app.config import Settings, describe_validation_error

    assert settings_default("MODELCERT_LISTEN_HOST") == "127.0.0.1"
    assert Settings(modelcert_listen_host="::").modelcert_listen_host == "::"
    with pytest.raises(ValidationError) as info:
        Settings(modelcert_listen_host="localhost")
    assert describe_validation_error(info.value).startswith(
        "config error: MODELCERT_LISTEN_HOST='localhost' is invalid (not an IP address)"
    )


def test_images_listen_on_every_interface():
    for name in ("Dockerfile.api", "Dockerfile.worker"):
        text = (ROOT / name).read_text()
        assert re.search(r"\bMODELCERT_LISTEN_HOST=0\.0\.0\.0\b", text), name


def test_compose_services_listen_on_every_interface():
    serving = {
        name: svc for name, svc in modelcert_services().items() if svc["command"][1] in LISTENING
    }
    assert {svc["command"][1] for svc in serving.values()} == LISTENING
    for name, svc in serving.items():
        assert svc["environment"]["MODELCERT_LISTEN_HOST"] == "0.0.0.0", name


def test_kubernetes_pods_listen_on_every_interface(rendered):
    assert config_map(rendered)["MODELCERT_LISTEN_HOST"] == "0.0.0.0"
