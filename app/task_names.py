"""Task names are explicit constants: the API publishes by name and never imports worker code."""

RUN_CERTIFICATION = "modelcert.run_certification"
SWEEP = "modelcert.sweep"
RECERTIFY = "modelcert.recertify"
DELIVER_WEBHOOK = "modelcert.deliver_webhook"



def maintenance_queue(certification_queue: str) -> str:
    """Sweeps, re-certification and webhooks: one maintenance queue per certification queue,
    so two deployments (or two test runs) sharing a Redis never run each other's sweeps."""
    return f"{certification_queue}.maintenance"

# Redis priority steps (CELERY-FACTS: lower number runs first, bucketed down to a step).
PRIORITY_STEPS = [0, 3, 6, 9]
PRIORITY_VALUES = {"high": 0, "normal": 3, "low": 6}
