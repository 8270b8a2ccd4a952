"""The API's contract: request and response models (pydantic), shared by the API and services.

Why a shared package and not views built in the API from service results: these models are
the API's contract *and* what a use case takes and gives (a TargetCreate in, a
CertificationView out). Building a second, API-side copy of each from service objects would
double every model for no reader's benefit. So both layers import this package, and it
imports neither of them (import-linter holds both rules, `make lint`): the API stays the only
one that knows HTTP, and services know no Flask.

- `resources`: targets, secrets, certifications, problems, probes;
- `results`: suites, check results, evidence lines, certificates, signing keys;
- `operations`: dead letters, webhooks.
"""
