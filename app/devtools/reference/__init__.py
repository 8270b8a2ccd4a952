"""The reference endpoint: a small OpenAI-compatible model server with selectable behaviour."""

# Every behaviour the reference endpoint has (server.py), as `--mode` or by URL /m/<mode>/v1.
MODES = (
    "good",
    "wrong",
    "slow",
    "flaky",
    "ratelimit",
    "broken",
    "auth",
    "parrot",
    "refuse-all",
    "comply-all",
    "serial",
    "any-model",
    "no-embeddings",
    "judge",
    "judge-lenient",
    "degraded",
)
