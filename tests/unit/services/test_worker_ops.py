"""Pure pieces of worker operations: backoff, signatures, limits config, time limits."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from app.config import Settings
from app.services.ratelimit import endpoint_key
from app.services.run import backoff_seconds
from app.services.webhooks import retry_delay, retry_window, sign


def test_backoff_cap_grows_with_attempts_and_honours_retry_after() -> None:
    for attempt in range(1, 6):
        cap = min(300.0, 5.0 * 2 ** (attempt - 1))
        delays = [backoff_seconds(attempt) for _ in range(300)]
        assert all(0 <= d <= cap for d in delays)
        assert max(delays) > cap / 2  # full jitter spreads over the whole window
    assert all(backoff_seconds(1, retry_after=42) >= 42 for _ in range(50))


def test_webhook_signature_is_hmac_of_timestamp_and_body() -> None:
    header = sign("whsec_x", 1700000000, b'{"a":1}')
    t, v1 = (part.split("=", 1)[1] for part in header.split(","))
    assert t == "1700000000"
    assert v1 == hmac.new(b"whsec_x", b'1700000000.{"a":1}', hashlib.sha256).hexdigest()


def test_webhook_backoff_window_is_exponential_and_capped() -> None:
    settings = Settings(webhook_backoff_seconds=2)
    assert [retry_window(settings, n) for n in (1, 2, 3, 4)] == [2, 4, 8, 16]
    assert retry_window(settings, 30) == 3600


@pytest.mark.parametrize("attempt", [1, 4, 30])
def test_webhook_retries_get_full_jitter(attempt: int) -> None:
    """Deliveries that failed together (a receiver down for everyone) do not retry in step:
    for one attempt the delays differ and spread over the whole window [0, window]."""
    settings = Settings(webhook_backoff_seconds=2)
    window = retry_window(settings, attempt)
    delays = [retry_delay(settings, attempt) for _ in range(400)]
    assert all(0 <= d <= window for d in delays)
    assert len(set(delays)) == len(delays)
    # Uniform over the window: every quarter is hit (a quarter stays empty with probability
    # 4 × 0.75^400, about 1e-49) and the mean is near the middle (its standard deviation is
    # window / sqrt(12 × 400) ≈ 0.014 × window; the bound is seven of them).
    assert {min(3, int(4 * d / window)) for d in delays} == {0, 1, 2, 3}
    assert abs(sum(delays) / len(delays) / window - 0.5) < 0.1


def test_endpoint_key_is_host_and_region() -> None:
    a = endpoint_key("https://api.example.com/v1", "eu-west-1")
    assert a == endpoint_key("https://api.example.com/other", "eu-west-1")
    assert a != endpoint_key("https://api.example.com/v1", "us-east-1")
    assert a != endpoint_key("https://api.example.org/v1", "eu-west-1")


@pytest.mark.parametrize("timeout", [10, 60, 300, 3600])
def test_visibility_timeout_is_above_the_hard_limit(timeout: int) -> None:
    s = Settings(certification_timeout=timeout)
    assert s.certification_timeout < s.hard_time_limit < s.visibility_timeout


def test_make_celery_refuses_a_visibility_timeout_at_or_below_the_hard_limit() -> None:
    from worker.celery_factory import make_celery

    class Broken(Settings):
        @property
        def visibility_timeout(self) -> int:
            return self.hard_time_limit

    with pytest.raises(SystemExit, match="visibility timeout"):
        make_celery(Broken(redis_url="redis://127.0.0.1:6379/0"))
    app = make_celery(Settings(redis_url="redis://127.0.0.1:6379/0", certification_timeout=10))
    options = app.conf.broker_transport_options
    assert options["visibility_timeout"] > app.conf.task_time_limit > app.conf.task_soft_time_limit
    assert app.conf.worker_max_tasks_per_child == 1000
    assert app.conf.worker_max_memory_per_child == 400_000
    assert app.conf.task_routes["modelcert.deliver_webhook"] == {
        "queue": "certification.maintenance"
    }
    assert app.conf.task_routes["modelcert.sweep"] == {"queue": "certification.maintenance"}


def test_a_queue_is_one_redis_list_per_priority_step() -> None:
    from app.queue.names import priority_lists

    # kombu's names (CELERY-FACTS): the queue itself for step 0, `queue:N` for the others.
    assert priority_lists("certifications") == [
        "certifications",
        "certifications:3",
        "certifications:6",
        "certifications:9",
    ]


@pytest.mark.parametrize(
    "files, limit",
    [
        ({"memory.max": "1610612736\n"}, 1610612736),  # cgroup v2, a 1536 MiB limit
        ({"memory.max": "max\n"}, None),
        ({"memory/memory.limit_in_bytes": "805306368\n"}, 805306368),  # cgroup v1
        ({"memory/memory.limit_in_bytes": "9223372036854771712\n"}, None),  # v1 "unlimited"
        ({}, None),
    ],
)
def test_container_memory_limit_reads_the_cgroup(tmp_path, files, limit) -> None:  # type: ignore[no-untyped-def]
    from worker.probes import container_memory_limit

    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert container_memory_limit(tmp_path) == limit
