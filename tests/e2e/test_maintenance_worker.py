"""A worker that consumes only the maintenance queue (deploy/k8s's modelcert-maintenance, which
runs beside certification workers scaled to zero) reports what the alerts compare: the depth of
every configured queue, and the queues it is a ready consumer of."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.support.api import certify, create_target
from tests.support.workers import queue_worker

IDLE_REGION = "idle"  # its queue (tests/conftest.py) has no consumer


def test_a_maintenance_worker_reports_every_queue_and_consumes_only_its_own(
    client, auth, reference_url, settings, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    target = create_target(client, auth, None, endpoints={IDLE_REGION: f"{reference_url}/v1"})
    certify(client, auth, target, region=IDLE_REGION)
    idle_queue = settings.region_queues[IDLE_REGION]
    maintenance = settings.maintenance_queue_name
    proc, port = queue_worker(settings, tmp_path / "maintenance.log", maintenance)
    try:
        base = f"http://127.0.0.1:{port}"
        health = httpx.get(f"{base}/health").json()
        assert health["queues"] == [maintenance]
        assert set(health["queue_depth"]) == {*settings.job_queues, maintenance}
        assert health["queue_depth"][idle_queue] >= 1
        families = {
            f.name: f for f in text_string_to_metric_families(httpx.get(f"{base}/metrics").text)
        }
        ready = {
            s.labels["queue"]: s.value for s in families["modelcert_worker_queue_ready"].samples
        }
        assert ready == {maintenance: 1}
        depth = {s.labels["queue"]: s.value for s in families["modelcert_queue_depth"].samples}
        assert depth[idle_queue] >= 1 and settings.certification_queue_name in depth
    finally:
        proc.stop()
