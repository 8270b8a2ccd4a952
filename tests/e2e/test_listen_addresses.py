"""A development stack listens on loopback only (issue #22): the API, the worker's probes and
Flower, started as `make run` starts them, take connections from this machine alone; a
deployment opts in to every interface with MODELCERT_LISTEN_HOST (tests/deploy check that
the images, compose and Kubernetes do). Real processes; their listening sockets are read
from the kernel."""

from __future__ import annotations

import uuid

import psutil
import pytest

from app.devtools.harness import BIN, Proc, free_port, settings_env, wait_http

LOOPBACK = {"127.0.0.1", "::1"}


def listening(proc: Proc) -> set[tuple[str, int]]:
    """(address, port) of every socket the process tree listens on."""
    found = set()
    for process in proc.tree():
        try:
            for conn in process.net_connections(kind="inet"):
                if conn.status == psutil.CONN_LISTEN:
                    found.add((conn.laddr.ip, conn.laddr.port))
        except psutil.Error:
            continue
    return found


def test_the_worker_probes_listen_on_loopback(worker, settings) -> None:  # type: ignore[no-untyped-def]
    sockets = listening(worker)
    assert ("127.0.0.1", settings.worker_health_port) in sockets
    assert {ip for ip, _ in sockets} <= LOOPBACK, sockets


@pytest.mark.parametrize("host", [None, "0.0.0.0"])
def test_api_and_flower_listen_where_told_loopback_by_default(settings, tmp_path, host) -> None:  # type: ignore[no-untyped-def]
    """`None`: the environment `make run` gives its children (no MODELCERT_LISTEN_HOST)."""
    api_port, flower_port = free_port(), free_port()
    env = settings_env(
        settings,
        API_PORT=str(api_port),
        API_WORKERS="1",
        FLOWER_PORT=str(flower_port),
        FLOWER_BASIC_AUTH=f"operator:pw-{uuid.uuid4().hex[:12]}",
    )
    env.pop("MODELCERT_LISTEN_HOST", None)
    if host is not None:
        env["MODELCERT_LISTEN_HOST"] = host
    api = Proc([str(BIN / "modelcert"), "api"], env, tmp_path / "api.log").start()
    flower = Proc([str(BIN / "modelcert"), "flower"], env, tmp_path / "flower.log").start()
    try:
        wait_http(f"http://127.0.0.1:{api_port}/live", 60, proc=api.popen)
        wait_http(f"http://127.0.0.1:{flower_port}/healthcheck", 60, proc=flower.popen)
        for proc, port in ((api, api_port), (flower, flower_port)):
            addresses = {ip for ip, p in listening(proc) if p == port}
            if host is None:
                assert addresses and addresses <= LOOPBACK, (proc.argv, addresses)
            else:
                assert addresses == {host}, (proc.argv, addresses)
    finally:
        api.stop()
        flower.stop()
