"""Task names are explicit constants: the API publishes by name and never imports worker code."""

RUN_CERTIFICATION = "modelcert.run_certification"
SWEEP = "modelcert.sweep"
RECERTIFY = "modelcert.recertify"
DELIVER_WEBHOOK = "modelcert.deliver_webhook"


# Redis priority steps (CELERY-FACTS: lower number runs first, bucketed down to a step).
PRIORITY_STEPS = [0, 3, 6, 9]
PRIORITY_VALUES = {"high": 0, "normal": 3, "low": 6}
