"""The Helm chart, rendered with Go's text/template + sprig (tests/helm/render.go, the engines Helm
uses) and checked with `kubernetes-validate --strict` and values.schema.json, for several values files."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from runmeter.collector import TokenAuth
from runmeter.config import load_settings
from runmeter.exporter import StoreURL

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "deploy" / "helm" / "runmeter"
VALUES = Path(__file__).parent / "helm"
KUBE_VERSION = "1.30.0"


@pytest.fixture(scope="session")
def render_bin() -> Path:
    out = ROOT / "build" / "helm-render"
    cache = ROOT / "build" / "gocache"
    env = {**os.environ, "GO111MODULE": "off", "GOPATH": f"/usr/share/gocode:{ROOT / 'build' / 'gopath'}", "GOCACHE": str(cache)}
    r = subprocess.run(["go", "build", "-o", str(out), "render.go"], cwd=VALUES, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"building the renderer failed (make test installs golang-go and sprig):\n{r.stderr}"
    return out


def render(render_bin: Path, *values: str, release: str = "rm", namespace: str = "obs") -> tuple[list[dict[str, Any]], str]:
    files = [str(VALUES / f"values-{v}.yaml") for v in values]
    r = subprocess.run([str(render_bin), str(CHART), release, namespace, *files], capture_output=True, text=True, timeout=60)
    if r.returncode:
        raise RuntimeError(r.stderr)
    docs, notes = [], ""
    for chunk in r.stdout.split("\n---\n"):
        if "# Source: runmeter/templates/NOTES.txt" in chunk:
            notes = chunk
        elif (doc := yaml.safe_load(chunk)) is not None:
            docs.append(doc)
    return docs, notes


def by_kind(docs: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def kube_validate(tmp_path: Path, docs: list[dict[str, Any]]) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "rendered.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    cli = Path(sys.executable).with_name("kubernetes-validate")
    return subprocess.run([str(cli), "--strict", "-k", KUBE_VERSION, str(path)], capture_output=True, text=True, timeout=120)


def merged_values(*names: str) -> dict[str, Any]:
    def merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
        for k, v in b.items():
            a[k] = merge(a[k], v) if isinstance(v, dict) and isinstance(a.get(k), dict) else v
        return a

    values = yaml.safe_load((CHART / "values.yaml").read_text())
    for n in names:
        values = merge(values, yaml.safe_load((VALUES / f"values-{n}.yaml").read_text()))
    return values


SCHEMA = json.loads((CHART / "values.schema.json").read_text())


@pytest.mark.parametrize("values", ["server", "production", "ephemeral"])
def test_every_rendered_manifest_is_valid_kubernetes(render_bin: Path, tmp_path: Path, values: str) -> None:
    jsonschema.validate(merged_values(values), SCHEMA)
    docs, notes = render(render_bin, values)
    result = kube_validate(tmp_path, docs)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "passed for resource" in result.stdout
    assert "rm-runmeter.obs.svc:4317" in notes


def test_the_validator_and_the_schema_can_fail(render_bin: Path, tmp_path: Path) -> None:
    docs, _ = render(render_bin, "server")
    broken = copy.deepcopy(docs)
    next(d for d in broken if d["kind"] == "Deployment")["spec"]["replicas"] = "abc"
    assert kube_validate(tmp_path, broken).returncode != 0
    for bad in ({"replicaCount": "abc"}, {"kind": "DaemonSet"}, {"auth": {"enabled": True, "tokens": []}},
                {"clickhouse": {"url": "http://user:pw@ch:8123/db"}}, {"config": {"collector": {"wal_dir": "/x"}}},
                {"tls": {"enabled": True}}):
        values = {**merged_values("server"), **bad}
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(values, SCHEMA)
    with pytest.raises(RuntimeError, match="clickhouse.url is required"):
        render(render_bin)  # the defaults alone: no store


def test_one_replica_on_a_server(render_bin: Path) -> None:
    docs, _ = render(render_bin, "server")
    objs = by_kind(docs)
    deploy = objs[("Deployment", "rm-runmeter")]
    pod = deploy["spec"]["template"]["spec"]
    collector = pod["containers"][0]
    assert deploy["spec"]["replicas"] == 1 and deploy["spec"]["strategy"]["type"] == "Recreate"
    assert collector["args"] == ["collector"]
    assert collector["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert collector["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert pod["initContainers"][0]["args"] == ["db", "migrate"]
    assert {v["name"]: v for v in pod["volumes"]}["data"]["persistentVolumeClaim"]["claimName"] == "rm-runmeter"
    assert ("PersistentVolumeClaim", "rm-runmeter") in objs
    ports = {p["name"]: p["port"] for p in objs[("Service", "rm-runmeter")]["spec"]["ports"]}
    assert ports == {"otlp-grpc": 4317, "otlp-http": 4318, "metrics": 8888}
    url = StoreURL.parse(objs[("Secret", "rm-runmeter-clickhouse")]["stringData"]["RUNMETER_CLICKHOUSE_URL"])
    assert (url.host, url.port, url.username, url.password, url.database) == ("clickhouse.db.svc", 8123, "default", "s3cret", "default")
    # The dashboards, as the sidecar wants them: one labelled ConfigMap each, the generated JSON inside.
    boards = {k[1]: d for k, d in objs.items() if k[0] == "ConfigMap" and "dashboard" in k[1]}
    assert len(boards) == len(list((ROOT / "deploy" / "grafana" / "dashboards").glob("*.json"))) == 4
    for d in boards.values():
        assert d["metadata"]["labels"]["grafana_dashboard"] == "1"
        (name, text), = d["data"].items()
        assert json.loads(text) == json.loads((ROOT / "deploy" / "grafana" / "dashboards" / name).read_text())


def test_production_statefulset_cluster_tokens_and_mtls(render_bin: Path, tmp_path: Path) -> None:
    docs, notes = render(render_bin, "production")
    objs = by_kind(docs)
    sts = objs[("StatefulSet", "rm-runmeter")]
    pod = sts["spec"]["template"]["spec"]
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    assert sts["spec"]["replicas"] == 3 and sts["spec"]["serviceName"] == "rm-runmeter-headless"
    assert sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "50Gi"
    assert "data" not in {v["name"] for v in pod["volumes"]}  # each replica its own claim
    assert objs[("Service", "rm-runmeter-headless")]["spec"]["clusterIP"] == "None"
    assert env["RUNMETER_CLICKHOUSE_URL"]["valueFrom"]["secretKeyRef"]["name"] == "clickhouse-credentials"
    assert env["RUNMETER_COLLECTOR_TLS_CLIENT_CA"]["value"] == "/etc/runmeter/tls/ca.crt"
    assert pod["initContainers"][0]["args"] == ["db", "migrate", "--cluster", "runmeter_cluster"]
    cron = objs[("CronJob", "rm-runmeter-migrate")]
    assert cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"] == ["db", "migrate", "--cluster", "runmeter_cluster"]
    assert ("Secret", "rm-runmeter-clickhouse") not in objs
    # The tokens file and runmeter.toml the pod mounts are what runmeter itself reads.
    tokens = tmp_path / "tokens.toml"
    tokens.write_text(objs[("Secret", "rm-runmeter-tokens")]["stringData"]["tokens.toml"])
    auth = TokenAuth.from_file(tokens)
    assert auth.authenticate("Bearer test").project == "checkout"  # sha256("test") is the value in the file
    assert auth.authenticate("Bearer a-long-platform-token-value").project is None
    config = tmp_path / "runmeter.toml"
    config.write_text(objs[("ConfigMap", "rm-runmeter")]["data"]["runmeter.toml"])
    assert tomllib.loads(config.read_text())["collector"]["wal_max_bytes"] == 4294967296
    settings = load_settings(config, env={})
    assert (settings.runs.quiet_s, settings.collector.wal_max_bytes, settings.collector.drain_timeout_s) == (60, 4 << 30, 45)
    assert settings.collector.worker_count() == 4
    # [limits] and [alerts] as arrays of tables, read back by runmeter itself.
    assert [(r.owner, r.project, r.max_usd, r.per, r.action) for r in settings.limits.spend] == [
        ("ana", None, 50, "day", "stop"), (None, "checkout", 2000, "month", "warn")]
    assert settings.limits.refresh_s == 10
    assert [(r.kind, r.threshold_s, r.at_pct) for r in settings.alerts.rules] == [
        ("loop", None, [80.0, 100.0]), ("long_run", 600, [80.0, 100.0]), ("spend_limit", None, [80.0, 100.0])]
    assert [(d.type, d.url, d.headers) for d in settings.alerts.to] == [
        ("alertmanager", "http://alertmanager.monitoring:9093", {}), ("webhook", "https://hooks.example.com/runmeter", {"Authorization": "Bearer abc"})]
    alerts_job = objs[("CronJob", "rm-runmeter-alerts")]
    assert alerts_job["spec"]["schedule"] == "*/5 * * * *"
    assert alerts_job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"] == ["alerts", "run", "--since", "10m"]
    assert sts["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > settings.collector.drain_timeout_s
    assert "loadbalancing exporter" in notes


def test_ephemeral_without_volume_or_dashboards(render_bin: Path) -> None:
    docs, _ = render(render_bin, "ephemeral")
    objs = by_kind(docs)
    assert sorted(k[0] for k in objs) == ["ConfigMap", "Deployment", "Secret", "Service"]
    pod = objs[("Deployment", "rm-runmeter")]["spec"]["template"]["spec"]
    assert {v["name"]: v for v in pod["volumes"]}["data"] == {"name": "data", "emptyDir": {}}
    assert {v["name"]: v for v in pod["volumes"]}["tokens"]["secret"]["secretName"] == "runmeter-tokens"
    url = StoreURL.parse(objs[("Secret", "rm-runmeter-clickhouse")]["stringData"]["RUNMETER_CLICKHOUSE_URL"])
    assert (url.secure, url.port, url.username, url.password, url.database) == (True, 8443, "ingest", "p@ss:w/rd", "runmeter")
    assert objs[("Service", "rm-runmeter")]["spec"]["type"] == "LoadBalancer"


def _env(docs: list[dict[str, Any]]) -> dict[str, Any]:
    pod = by_kind(docs)[("Deployment", "rm-runmeter")]["spec"]["template"]["spec"]
    return {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}


def test_tokens_are_required_unless_auth_is_turned_off_on_purpose(render_bin: Path, tmp_path: Path) -> None:
    """Secure by default: the pod listens on every address, so the chart will not render without tokens;
    turning auth off is an explicit value, and the collector is told it was meant."""
    (tmp_path / "values-store.yaml").write_text("clickhouse:\n  url: http://clickhouse.db.svc:8123/default\n")
    files = [str(tmp_path / "values-store.yaml")]
    r = subprocess.run([str(render_bin), str(CHART), "rm", "obs", *files], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "auth.tokens (or auth.existingSecret) is required" in r.stderr
    env = _env(render(render_bin, "server")[0])
    assert env["RUNMETER_COLLECTOR_TOKENS_FILE"] == "/etc/runmeter/tokens/tokens.toml"
    assert env["RUNMETER_COLLECTOR_HTTP_ENDPOINT"] == "0.0.0.0:4318" and "RUNMETER_COLLECTOR_ALLOW_UNAUTHENTICATED" not in env
    docs, _ = render(render_bin, "server", "open")
    env = _env(docs)
    assert env["RUNMETER_COLLECTOR_ALLOW_UNAUTHENTICATED"] == "true" and "RUNMETER_COLLECTOR_TOKENS_FILE" not in env
    assert kube_validate(tmp_path, docs).returncode == 0


@pytest.mark.parametrize("config", ["gateway-k8s.yaml", "gateway-static.yaml"])
def test_otelcol_gateway_routes_by_trace_id_to_runmeter(config: str) -> None:
    cfg = yaml.safe_load((ROOT / "deploy" / "otelcol" / config).read_text())
    pipeline = cfg["service"]["pipelines"]["traces"]
    for kind in ("receivers", "processors", "exporters"):
        assert set(pipeline[kind]) <= set(cfg[kind]), f"{config}: a {kind[:-1]} used but not defined"
    lb = cfg["exporters"]["loadbalancing/runmeter"]
    assert lb["routing_key"] == "traceID" and "otlp" in lb["protocol"]
    assert len(lb["resolver"]) == 1  # the exporter takes exactly one resolver
    assert any(e.startswith(("otlp/tempo", "otlp/jaeger")) for e in pipeline["exporters"])  # tracing backend kept


def test_the_k8s_gateway_resolves_the_charts_headless_service(render_bin: Path) -> None:
    cfg = yaml.safe_load((ROOT / "deploy" / "otelcol" / "gateway-k8s.yaml").read_text())
    resolver = cfg["exporters"]["loadbalancing/runmeter"]["resolver"]["k8s"]
    name, namespace = resolver["service"].split(".")
    docs, _ = render(render_bin, "production", release="runmeter", namespace=namespace)
    headless = by_kind(docs)[("Service", name)]
    assert headless["spec"]["clusterIP"] == "None"
    assert set(resolver["ports"]) <= {p["port"] for p in headless["spec"]["ports"]}
