"""Task names are explicit constants: the API publishes by name and never imports worker code."""

RUN_CERTIFICATION = "modelcert.run_certification"
SWEEP = "modelcert.sweep"
RECERTIFY = "modelcert.recertify"
DELIVER_WEBHOOK = "modelcert.deliver_webhook"


# Redis priority steps (CELERY-FACTS: lower number runs first, bucketed down to a step).
PRIORITY_STEPS = [0, 3, 6, 9]
PRIORITY_VALUES = {"high": 0, "normal": 3, "low": 6}


def priority_lists(queue: str) -> list[str]:
    """The Redis lists kombu keeps for `queue`, one per priority step (CELERY-FACTS): the
    queue's own name for step 0, `queue:N` for the others."""
    return [f"{queue}:{step}" if step else queue for step in PRIORITY_STEPS]
