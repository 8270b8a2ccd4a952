"""Settings from the environment (DESIGN §9): validated once at start, then passed down."""

from __future__ import annotations

import base64
import json
import re
import sys
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

DATA_DIR_DEFAULT = ".modelcert"
STACK_FILE = "stack.json"


def _range(text: str) -> dict[str, Any]:
    return {"json_schema_extra": {"range": text}}


def _normalise_database_url(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    parts = urlsplit(value)
    scheme = parts.scheme
    if scheme in ("postgres", "postgresql"):
        value = "postgresql+psycopg" + value[len(scheme) :]
    elif scheme != "postgresql+psycopg":
        raise ValueError("not a postgresql URL")
    parts = urlsplit(value)
    if not parts.path.strip("/"):
        raise ValueError("names no database")
    if not parts.hostname and "host=" not in parts.query:
        raise ValueError("names no host")
    return value


def _check_redis_url(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("redis", "rediss"):
        raise ValueError("not a redis URL")
    if not parts.hostname:
        raise ValueError("names no host")
    try:
        parts.port  # noqa: B018 - raises on a non-numeric port
    except ValueError as exc:
        raise ValueError("has a bad port") from exc
    return value


def _check_signing_keys(value: SecretStr | None) -> SecretStr | None:
    """Comma-separated base64 32-byte Ed25519 seeds, newest first. Only the worker signs, so
    only the worker requires them in production (Settings.require_signing_key)."""
    if value is None or not value.get_secret_value().strip():
        return None
    for seed in value.get_secret_value().split(","):
        try:
            raw = base64.b64decode(seed.strip(), validate=True)
        except ValueError:
            raise ValueError("a key is not base64") from None
        if len(raw) != 32:
            raise ValueError("a key is not a 32-byte seed")
    return value


def _check_basic_auth(value: SecretStr | None) -> SecretStr | None:
    if value is None:
        return None
    user, sep, password = value.get_secret_value().partition(":")
    if not sep or not user or not password:
        raise ValueError("must be user:password")
    return value


def _check_fernet_keys(value: SecretStr | None) -> SecretStr | None:
    """One or more comma-separated Fernet keys (newest first); never echoed."""
    if value is None or not value.get_secret_value().strip():
        return None
    import base64
    import binascii

    for key in value.get_secret_value().split(","):
        try:
            raw = base64.urlsafe_b64decode(key.strip().encode())
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) != 32:
            raise ValueError(
                "each comma-separated key must be a Fernet key (32 url-safe base64-encoded bytes)"
            )
    return value


def _check_listen_host(value: str) -> str:
    import ipaddress

    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ValueError("not an IP address") from None
    return value


def _check_rate_limit(value: str) -> str:
    from limits import parse_many

    try:
        if not parse_many(value):
            raise ValueError
    except ValueError:
        raise ValueError("not a rate limit like '600/minute' or '10/second;600/hour'") from None
    return value


# Queues (issue #22). A queue is a Redis key: one named like the transport's own keys
# (`unacked`, `unacked_index`, `unacked_mutex`, `_kombu.binding.*`) stopped every worker on that
# Redis. So queue names come from the operator only, and each is CERTIFICATION_QUEUE_NAME or
# `<CERTIFICATION_QUEUE_NAME>.<name>`, with a prefix that cannot be one of those keys.
KOMBU_KEYS = frozenset({"unacked", "unacked_index", "unacked_mutex"})
RESERVED_QUEUE_NAMES = frozenset({"maintenance", "malformed"})  # <prefix>.maintenance, .malformed
_REGION = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")  # as the API's region names
_QUEUE_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")


def _check_queue_prefix(value: str) -> str:
    if value in KOMBU_KEYS:
        raise ValueError("is a key the broker's transport keeps for itself")
    return value


def parse_region_queues(value: str) -> dict[str, str]:
    """`eu-west-1=eu,us-east-1=us` -> {region: queue name}; ValueError names the bad item."""
    mapping: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in value.split(","))):
        region, sep, name = (part.strip() for part in item.partition("="))
        if not sep or not _REGION.fullmatch(region):
            raise ValueError(f"{item!r} is not region=name with a region like eu-west-1")
        if not _QUEUE_NAME.fullmatch(name):
            raise ValueError(f"queue name {name!r} is not 1-63 of a-z, 0-9, '-', '_'")
        if name in RESERVED_QUEUE_NAMES:
            raise ValueError(f"queue name {name!r} is reserved")
        if region in mapping:
            raise ValueError(f"region {region!r} is listed twice")
        mapping[region] = name
    return mapping


def _check_region_queues(value: str) -> str:
    parse_region_queues(value)
    return value


DatabaseUrl = Annotated[str | None, AfterValidator(_normalise_database_url)]
RedisUrl = Annotated[str | None, AfterValidator(_check_redis_url)]
BasicAuth = Annotated[SecretStr | None, AfterValidator(_check_basic_auth)]
FernetKeys = Annotated[SecretStr | None, AfterValidator(_check_fernet_keys)]
RateLimitText = Annotated[str, AfterValidator(_check_rate_limit)]
SigningKeys = Annotated[SecretStr | None, AfterValidator(_check_signing_keys)]
QueuePrefix = Annotated[str, AfterValidator(_check_queue_prefix)]
ListenHost = Annotated[str, AfterValidator(_check_listen_host)]
RegionQueues = Annotated[str, AfterValidator(_check_region_queues)]


class Settings(BaseSettings):
    """Every setting the processes read; names are the environment variables, no prefix."""

    model_config = SettingsConfigDict(frozen=True, extra="forbid", case_sensitive=False)

    database_url: DatabaseUrl = Field(None, **_range("a postgresql+psycopg:// URL"))
    redis_url: RedisUrl = Field(None, **_range("a redis:// URL"))
    certification_queue_name: QueuePrefix = Field(
        "certification",
        min_length=1,
        max_length=200,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$",
        **_range(
            "a name of letters, digits, '.', '_' or '-', starting with a letter or digit; "
            "not unacked, unacked_index or unacked_mutex"
        ),
    )
    certification_region_queues: RegionQueues = Field(
        "",
        max_length=4000,
        **_range(
            "comma-separated region=name pairs (name: 1-63 of a-z, 0-9, '-', '_'; not "
            "maintenance or malformed), e.g. eu-west-1=eu,eu-central-1=eu"
        ),
    )
    certification_concurrency: int = Field(3, ge=1, le=50, **_range("an integer from 1 to 50"))
    certification_timeout: int = Field(300, ge=10, le=3600, **_range("seconds from 10 to 3600"))
    certification_max_retries: int = Field(3, ge=0, le=10, **_range("an integer from 0 to 10"))
    certification_lease_seconds: int = Field(60, ge=5, le=600, **_range("seconds from 5 to 600"))
    certification_low_priority_aging: int = Field(
        600, ge=10, le=86400, **_range("seconds from 10 to 86400")
    )
    webhook_max_attempts: int = Field(8, ge=1, le=20, **_range("an integer from 1 to 20"))
    webhook_backoff_seconds: float = Field(
        10.0, ge=0.1, le=3600, **_range("seconds from 0.1 to 3600")
    )
    certification_validity_days: int = Field(30, ge=1, le=365, **_range("days from 1 to 365"))
    worker_health_port: int = Field(3002, ge=1, le=65535, **_range("a port from 1 to 65535"))
    worker_shutdown_grace: int = Field(30, ge=0, le=3600, **_range("seconds from 0 to 3600"))
    worker_max_tasks_per_child: int = Field(1000, ge=1, le=100000, **_range("1 to 100000"))
    worker_max_memory_per_child: int = Field(
        400_000, ge=50_000, le=16_000_000, **_range("KiB from 50000 to 16000000")
    )
    api_port: int = Field(8000, ge=1, le=65535, **_range("a port from 1 to 65535"))
    api_workers: int = Field(2, ge=1, le=64, **_range("an integer from 1 to 64"))
    api_threads: int = Field(4, ge=1, le=64, **_range("an integer from 1 to 64"))
    api_max_body_bytes: int = Field(
        1_048_576, ge=1024, le=104_857_600, **_range("bytes from 1024 to 104857600")
    )
    flower_port: int = Field(5555, ge=1, le=65535, **_range("a port from 1 to 65535"))
    # Loopback unless a deployment says otherwise: a development stack is for this machine
    # only (issue #22); containers set 0.0.0.0 explicitly.
    modelcert_listen_host: ListenHost = Field(
        "127.0.0.1",
        **_range("an IP address: 127.0.0.1 or ::1 (this machine), 0.0.0.0 or ::"),
    )
    flower_basic_auth: BasicAuth = Field(None, **_range("user:password"))
    broker_publish_timeout: float = Field(
        2.0, gt=0, le=30, **_range("seconds, more than 0 and at most 30")
    )
    sweeper_interval: int = Field(10, ge=1, le=3600, **_range("seconds from 1 to 3600"))
    modelcert_env: Literal["development", "production"] = Field(
        "development", **_range("development or production")
    )
    api_rate_limit: RateLimitText = Field(
        "600/minute",
        max_length=200,
        **_range("limits per token like '600/minute' or '20/second;600/minute'"),
    )
    modelcert_secret_key: FernetKeys = Field(
        None, **_range("one or more comma-separated Fernet keys, newest first")
    )
    modelcert_signing_key: SigningKeys = Field(
        default=None,
        **_range("base64 32-byte Ed25519 seeds, comma-separated, newest first"),
    )
    modelcert_allow_private_targets: bool = Field(False, **_range("true or false"))
    # The bench-* suites measure the job machinery and certify nothing a user should rely on
    # (an endpoint that only repeats its prompt passes them): off unless a deployment runs
    # the benchmarks.
    modelcert_benchmark_suites: bool = Field(False, **_range("true or false"))
    modelcert_data_dir: Path = Field(Path(DATA_DIR_DEFAULT), **_range("a directory"))
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", **_range("DEBUG, INFO, WARNING or ERROR")
    )
    log_format: Literal["auto", "json", "text"] = Field("auto", **_range("auto, json or text"))

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @property
    def hard_time_limit(self) -> int:
        """The child is killed this long after the soft limit fires."""
        return self.certification_timeout + max(30, self.certification_timeout // 10)

    @property
    def visibility_timeout(self) -> int:
        """Above the hard limit, so a live task is never redelivered (CELERY-FACTS)."""
        return self.hard_time_limit + 60

    @property
    def maintenance_queue_name(self) -> str:
        """Sweeps and webhook deliveries. Named after the certification queue so that two
        deployments (or test sessions) sharing one Redis never run each other's upkeep."""
        return f"{self.certification_queue_name}.maintenance"

    @property
    def region_queues(self) -> dict[str, str]:
        """Region -> the queue its certifications go to, `<CERTIFICATION_QUEUE_NAME>.<name>`;
        a region not listed uses CERTIFICATION_QUEUE_NAME."""
        prefix = self.certification_queue_name
        return {
            region: f"{prefix}.{name}"
            for region, name in parse_region_queues(self.certification_region_queues).items()
        }

    @property
    def job_queues(self) -> list[str]:
        """Every queue a certification may be published to."""
        return [self.certification_queue_name, *dict.fromkeys(self.region_queues.values())]

    @property
    def malformed_list_name(self) -> str:
        """The Redis list where the worker keeps messages it could not decode (issue #22)."""
        return f"{self.certification_queue_name}.malformed"

    @property
    def max_attempts(self) -> int:
        return self.certification_max_retries + 1

    def require_urls(self, broker: bool = True) -> Settings:
        """Fill DATABASE_URL/REDIS_URL from the stack `make run` started, or fail clearly.
        `broker`: whether the process talks to Redis at all (`modelcert migrate` does not)."""
        stack = read_stack_file(self.modelcert_data_dir)
        database_url = self.database_url or stack.get("database_url")
        redis_url = self.redis_url or stack.get("redis_url")
        needed = [("DATABASE_URL", database_url)] + ([("REDIS_URL", redis_url)] if broker else [])
        missing = [name for name, value in needed if not value]
        if missing:
            raise ConfigError(
                f"{', '.join(missing)} not set and no embedded stack is running "
                f"(set it, or start one with `make run`)"
            )
        return self.model_copy(update={"database_url": database_url, "redis_url": redis_url})

    def require_secret_key(self) -> Settings:
        """MODELCERT_SECRET_KEY, or in development one kept in MODELCERT_DATA_DIR/secret.key."""
        if self.modelcert_secret_key is not None:
            return self
        if self.modelcert_env == "production":
            raise ConfigError(
                "MODELCERT_SECRET_KEY is not set; production needs it "
                "(allowed: one or more comma-separated Fernet keys)"
            )
        return self.model_copy(
            update={"modelcert_secret_key": SecretStr(dev_secret_key(self.modelcert_data_dir))}
        )

    def require_signing_key(self) -> Settings:
        """The worker signs certificates: in production it needs MODELCERT_SIGNING_KEY, which
        no other process holds (issue #22: a Flower compromise meant forged certificates)."""
        if self.modelcert_env == "production" and self.modelcert_signing_key is None:
            raise ConfigError(
                "MODELCERT_SIGNING_KEY is not set; the worker signs certificates "
                "and production needs it (allowed: base64 32-byte Ed25519 seeds, "
                "comma-separated, newest first)"
            )
        return self


def dev_secret_key(data_dir: Path) -> str:
    """The development secret key: generated once, kept 0600 in `data_dir/secret.key`."""
    from cryptography.fernet import Fernet

    return keep_dev_secret(Path(data_dir), "secret.key", lambda: Fernet.generate_key().decode())


def keep_dev_secret(data_dir: Path, name: str, make: Any) -> str:
    """Read `data_dir/name`, or create it with `make()` (owner-only, never world-readable)."""
    from app.private_files import keep_private

    return keep_private(Path(data_dir) / name, lambda: str(make()))


class ConfigError(Exception):
    """A configuration problem to report as one line and exit 2."""


def read_stack_file(data_dir: Path) -> dict[str, Any]:
    path = Path(data_dir) / STACK_FILE
    try:
        stack = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return stack if isinstance(stack, dict) else {}


def describe_validation_error(exc: ValidationError) -> str:
    """One line per bad variable: name, value, allowed range."""
    lines = []
    fields = Settings.model_fields
    for error in exc.errors():
        name = str(error["loc"][0]) if error["loc"] else "?"
        field = fields.get(name)
        extra = field.json_schema_extra if field is not None else None
        allowed = extra.get("range") if isinstance(extra, dict) else None
        value = error.get("input")
        if (
            field is not None
            and field.annotation is not None
            and "SecretStr" in str(field.annotation)
        ):
            shown = "<hidden>"
        else:
            shown = repr(value if not isinstance(value, dict) else "")
        reason = error["msg"].removeprefix("Value error, ")
        lines.append(
            f"config error: {name.upper()}={shown} is invalid ({reason}); allowed: {allowed}"
        )
    return "\n".join(lines)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Entry points only: read and validate the environment, or exit 2 with one line."""
    try:
        return Settings()
    except ValidationError as exc:
        print(describe_validation_error(exc), file=sys.stderr)
        raise SystemExit(2) from None


def settings_for_process(broker: bool = True) -> Settings:
    """Settings with database and broker URLs resolved, or exit 2."""
    settings = get_settings()
    try:
        return settings.require_urls(broker).require_secret_key()
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
