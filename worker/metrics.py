"""Every metric is defined here (prometheus_client multiprocess mode across prefork children)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from app.certification.providers.base import RETRYABLE_CAUSES

CERTIFICATIONS = Counter(
    "modelcert_certifications_total",
    "Certifications that ended, by status and verdict.",
    ["status", "verdict"],
)
DURATION = Histogram(
    "modelcert_certification_duration_seconds",
    "Wall time of one certification attempt.",
    ["status"],
    buckets=(1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
)
ACTIVE = Gauge(
    "modelcert_active_certifications", "Certifications running now.", multiprocess_mode="livesum"
)
RETRIES = Counter("modelcert_retries_total", "Retries by cause (sample and job level).", ["cause"])
for _cause in sorted(RETRYABLE_CAUSES):  # known label values start at 0, so rate() works at once
    RETRIES.labels(_cause)
DEAD_LETTERS = Counter("modelcert_dead_letters_total", "Jobs moved to the dead-letter table.")
# Counted in the worker's main process (worker/malformed.py); its log line names the queue.
MALFORMED_MESSAGES = Counter(
    "modelcert_malformed_messages_total",
    "Broker messages the worker could not decode, moved to the dead-letter list, by reason.",
    ["reason"],
)
for _reason in ("not_json", "not_an_envelope", "not_a_task"):
    MALFORMED_MESSAGES.labels(_reason)
ENDPOINT_REQUESTS = Counter(
    "modelcert_endpoint_requests_total", "Requests to model endpoints.", ["provider", "outcome"]
)
ENDPOINT_LATENCY = Histogram(
    "modelcert_endpoint_latency_seconds",
    "Latency of requests to model endpoints.",
    ["provider"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
)
# Set by the probe server in the worker's main process.
QUEUE_DEPTH = Gauge(
    "modelcert_queue_depth",
    "Messages waiting in a queue (all priority lists).",
    ["queue"],
    multiprocess_mode="livemostrecent",
)
OLDEST_QUEUED_AGE = Gauge(
    "modelcert_oldest_queued_job_age_seconds",
    "Age of the oldest job not yet started.",
    multiprocess_mode="livemostrecent",
)
WORKER_READY = Gauge(
    "modelcert_worker_ready", "1 when /ready answers 200.", multiprocess_mode="livemostrecent"
)
# Summed by queue, the ready consumers of each queue: the alerts compare it with the queue's
# depth, whatever the deployment's shape (one fleet for every queue, or a maintenance worker
# that always runs beside certification workers scaled to zero).
WORKER_QUEUE_READY = Gauge(
    "modelcert_worker_queue_ready",
    "1 for each queue this worker consumes while /ready answers 200.",
    ["queue"],
    multiprocess_mode="livemostrecent",
)
WORKER_RSS = Gauge(
    "modelcert_worker_rss_bytes",
    "Resident memory of the worker and its children.",
    multiprocess_mode="livemostrecent",
)
# The container's memory limit (cgroup), so the memory alert holds whatever limit a deployment
# sets; absent when the worker runs without one.
WORKER_MEMORY_LIMIT = Gauge(
    "modelcert_worker_memory_limit_bytes",
    "Memory limit of the worker's container (cgroup); absent when unlimited.",
    multiprocess_mode="livemostrecent",
)
WORKER_RESTARTS = Counter(
    "modelcert_worker_restarts_total", "Pool children replaced (recycled or crashed)."
)
WEBHOOK_DELIVERIES = Counter(
    "modelcert_webhook_deliveries_total", "Webhook delivery attempts by outcome.", ["outcome"]
)
for _outcome in ("delivered", "retry", "failed", "gone"):  # webhooks.DeliveryOutcome.status
    WEBHOOK_DELIVERIES.labels(_outcome)
