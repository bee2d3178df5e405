"""Structural checks of the deployment files, since no Docker engine or cluster runs here (the schema
validations are in test_schemas.py).

docker-compose.yml, deploy/docker/Dockerfile, deploy/k8s/, the OTel collector, Prometheus and Grafana are
checked against the code they describe: the services enumerated from services/ (each deployed, nothing
deployed that does not exist), MESH_* names against each process's own settings class, command modules
against the repository, topics and partitions against mesh.events.TopicRegistry, metric names against
mesh/telemetry.
"""

from __future__ import annotations

import importlib
import importlib.util
import itertools
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]
from prometheus_client import Counter, Gauge, Histogram
from pydantic import BaseModel

from mesh.config import MeshSettings
from mesh.events import TopicRegistry
from mesh.telemetry import _metrics, _names

ROOT = Path(__file__).resolve().parents[3]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
MESH_IMAGE = "sunday-ml/mesh"
# Every service that exists: a package under services/ with a __main__ (what `python -m services.X` runs).
CAPABILITIES = tuple(sorted(p.parent.name for p in (ROOT / "services").glob("*/__main__.py")))
BOOTSTRAP = "deploy/docker/bootstrap.py"
PROMQL_BUILTINS = frozenset({"up"})
Obj = dict[str, Any]


# ----------------------------------------------------------------------------------------- helpers
def load_yaml(path: Path) -> list[Any]:
    with path.open() as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def module_landed(module: str) -> bool:
    path = ROOT / Path(*module.split("."))
    return (path / "__main__.py").is_file() or path.with_suffix(".py").is_file()


def check_module(module: str) -> str | None:
    """None if runnable (a module of the repository, or the bootstrap script), else an error message."""
    if module_landed(module) or (module == BOOTSTRAP and (ROOT / module).is_file()):
        return None
    return f"module {module!r} is not in the repository (typo, or a service that has not landed?)"


def python_module(command: Any) -> str | None:
    """`python -m X ...` -> X; `python deploy/docker/bootstrap.py ...` -> that path."""
    if isinstance(command, str):
        command = command.split()
    if isinstance(command, list) and len(command) >= 3 and command[0].startswith("python") and command[1] == "-m":
        return str(command[2])
    if isinstance(command, list) and len(command) >= 2 and command[0].startswith("python") and \
            command[1].endswith(".py"):
        return str(command[1])
    return None


def env_names(model: type[BaseModel], prefix: str = "MESH_") -> set[str]:
    """Every environment variable pydantic-settings reads for ``model`` (nested with ``__``)."""
    names: set[str] = set()
    for name, field in model.model_fields.items():
        key = prefix + (field.alias or name).upper()
        names.add(key)
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            names |= env_names(field.annotation, key + "__")
    return names


_SETTINGS: dict[str, type[BaseModel]] = {}


def settings_for(module: str) -> type[BaseModel]:
    """The settings class a process reads: a service's own MeshSettings subclass in its __main__ (imported once;
    a service's names such as MESH_NLP__VECTOR_URI are checked against it), GatewaySettings, else MeshSettings."""
    if module not in _SETTINGS:
        found: type[BaseModel] = MeshSettings
        if module == "gateway":
            from gateway.settings import GatewaySettings

            found = GatewaySettings
        elif module.startswith("services.") and module.count(".") == 1:
            main = importlib.import_module(f"{module}.__main__")
            own = [v for v in vars(main).values() if isinstance(v, type) and issubclass(v, MeshSettings)
                   and v.__module__ == main.__name__]
            assert len(own) <= 1, f"{module}: several settings classes {own}"
            found = own[0] if own else MeshSettings
        _SETTINGS[module] = found
    return _SETTINGS[module]


def mesh_vars(env: Any) -> dict[str, str]:
    if isinstance(env, list):  # compose list form KEY=VALUE
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in (env or {}).items() if k.startswith("MESH_")}


def invalid_names(names: set[str], module: str) -> set[str]:
    return names - env_names(settings_for(module))


def topic_script_lines(script: str) -> dict[str, tuple[int, int]]:
    found = re.findall(r"^\s*create\s+(\S+)\s+(\d+)\s+(\d+)\s*$", script, re.M)
    assert len(found) == len({t for t, _, _ in found}), "a topic is created twice"
    return {t: (int(p), int(r)) for t, p, r in found}


def registry_topics() -> dict[str, tuple[int, int]]:
    return {s.name: (s.partitions, s.retention_ms) for s in TopicRegistry()}


def allowed_metrics() -> set[str]:
    """Declared names with the suffixes prometheus_client exposes for each metric type."""
    declared = {v for k, v in vars(_names).items() if k.startswith("METRIC_")}
    kinds = {m.name: m.type for c in vars(_metrics).values() if isinstance(c, Counter | Gauge | Histogram)
             for m in c.describe()}
    assert declared <= kinds.keys(), f"declared but not registered: {declared - kinds.keys()}"
    suffixes = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}
    return {n + s for n in declared for s in suffixes[kinds[n]]}


_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
             "offset", "inf", "nan"}


def promql_metrics(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers that are not functions, keywords or labels."""
    e = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)
    e = re.sub(r"\{[^}]*\}", "", e)
    e = re.sub(r"\[[^\]]*\]", "", e)
    e = _GROUPING.sub("", e)
    names = set()
    for m in re.finditer(r"(?<![\w.$])[A-Za-z_:][\w:]*", e):
        if not e[m.end():].lstrip().startswith("(") and m.group().lower() not in _KEYWORDS:
            names.add(m.group())
    return names


# ----------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def compose() -> Obj:
    docs = load_yaml(ROOT / "docker-compose.yml")
    assert len(docs) == 1
    return docs[0]  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def k8s() -> list[Obj]:
    objs = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            objs += [{**d, "_file": path.name} for d in load_yaml(path)]
    return objs


def of_kind(objs: list[Obj], *kinds: str) -> list[Obj]:
    return [o for o in objs if o["kind"] in kinds]


def pod_spec(obj: Obj) -> Obj:
    spec = obj["spec"]["jobTemplate"]["spec"] if obj["kind"] == "CronJob" else obj["spec"]
    return spec["template"]["spec"]  # type: ignore[no-any-return]


def containers(obj: Obj) -> Iterator[Obj]:
    spec = pod_spec(obj)
    yield from spec.get("initContainers", [])
    yield from spec["containers"]


def by_name(objs: list[Obj], kind: str) -> dict[str, Obj]:
    return {o["metadata"]["name"]: o for o in of_kind(objs, kind)}


# ----------------------------------------------------------------------------------------- parsing
@pytest.mark.parametrize("path", sorted(
    [*DEPLOY.rglob("*.yaml"), *DEPLOY.rglob("*.yml"), *DEPLOY.rglob("*.json"), ROOT / "docker-compose.yml"]),
    ids=lambda p: str(p.relative_to(ROOT)))
def test_every_file_parses(path: Path) -> None:
    docs = [json.loads(path.read_text())] if path.suffix == ".json" else load_yaml(path)
    if path.parent.name == "k8s-gpu" and path.name.startswith("gpu-"):  # JSON 6902 patches: lists of ops
        assert docs and all(isinstance(op, dict) and {"op", "path"} <= op.keys() for op in docs[0])
        return
    assert docs and all(isinstance(d, dict) for d in docs)


def test_promql_extractor_catches_typos() -> None:
    assert promql_metrics('rate(mesh_events_handeld_total{topic=~"$t"}[5m])') == {"mesh_events_handeld_total"}
    assert promql_metrics("histogram_quantile(0.99, sum by (le) (rate(x_bucket[5m]))) > 1e-9") == {"x_bucket"}
    assert "mesh_events_handeld_total" not in allowed_metrics()
    assert "mesh_consumer_lag_total" not in allowed_metrics()  # a gauge has no _total
    assert {"mesh_handler_seconds_bucket", "mesh_events_dead_lettered_total"} <= allowed_metrics()


def test_module_check_rejects_typos_and_missing_services() -> None:
    for typo in ("services.assignmnt", "gatewy", "services.timelime.server", "services.forecasting",
                 "deploy/docker/bootstrp.py"):
        assert check_module(typo) is not None, typo
    for ok in ("services.assignment", "gateway", "mesh.features", BOOTSTRAP):
        assert check_module(ok) is None, ok
    assert python_module(["python", "-m", "gateway", "worker"]) == "gateway"
    assert python_module(["python", BOOTSTRAP]) == BOOTSTRAP


def test_services_are_enumerated_from_the_repository() -> None:
    assert {"assignment", "timeline"} <= set(CAPABILITIES)
    assert all(module_landed(f"services.{c}") for c in CAPABILITIES)


def test_settings_lookup_finds_a_services_own_names() -> None:
    if "nlp" in CAPABILITIES:
        assert "MESH_NLP__VECTOR_URI" in env_names(settings_for("services.nlp"))
        assert "MESH_NLP__VECTOR_URI" not in env_names(settings_for("services.assignment"))


def test_env_names_follow_mesh_config() -> None:
    names = env_names(MeshSettings)
    assert {"MESH_KAFKA__BOOTSTRAP_SERVERS", "MESH_TELEMETRY__METRICS_PORT", "MESH_REDIS__URL"} <= names
    assert "MESH_KAFKA__BOOTSTRAP_SERVER" not in names


# ----------------------------------------------------------------------------------------- compose
def test_compose_services_have_an_image_and_known_dependencies(compose: Obj) -> None:
    services = compose["services"]
    for name, svc in services.items():
        assert "image" in svc or "build" in svc, name
        deps = svc.get("depends_on", {})
        for dep in deps:
            assert dep in services, f"{name} depends on undefined {dep}"
            cond = deps[dep].get("condition") if isinstance(deps, dict) else None
            if cond == "service_healthy":
                assert "healthcheck" in services[dep], f"{name} waits for {dep} to be healthy; it has no healthcheck"
        if "build" in svc:
            assert (ROOT / svc["build"]["context"] / svc["build"]["dockerfile"]).is_file()


def test_compose_commands_and_env(compose: Obj) -> None:
    for name, svc in compose["services"].items():
        env = mesh_vars(svc.get("environment"))
        if not svc.get("image", "").startswith(MESH_IMAGE):
            assert not env, f"{name} is not a mesh process but sets {sorted(env)}"
            continue
        module = python_module(svc.get("command"))
        assert module, f"{name} runs the mesh image without `python -m <module>`"
        assert check_module(module) is None, f"{name}: {check_module(module)}"
        assert not invalid_names(set(env), module), f"{name}: unknown settings {invalid_names(set(env), module)}"
        assert env.get("MESH_TELEMETRY__SERVICE_NAME") == name
        if "healthcheck" in svc and name == "gateway":
            assert re.search(r"127\.0\.0\.1:8080/(healthz|readyz)", " ".join(svc["healthcheck"]["test"]))


def deployed_services(modules: set[str | None]) -> set[str]:
    return {m.split(".")[1] for m in modules if m and m.startswith("services.") and m.count(".") == 1}


def test_compose_runs_every_service_that_exists_and_no_other(compose: Obj) -> None:
    commands = [s.get("command") for s in compose["services"].values()]
    assert deployed_services({python_module(c) for c in commands}) == set(CAPABILITIES)
    for process in (["python", "-m", "gateway", "serve"], ["python", "-m", "gateway", "worker"],
                    ["python", "-m", "mesh.features", "consume"], ["python", BOOTSTRAP]):
        assert process in commands, process


def test_compose_start_order(compose: Obj) -> None:
    """Every mesh process waits for the topics, Redis, the MLflow server and the bootstrap job; nlp for Milvus."""
    services = compose["services"]
    for name, svc in services.items():
        if not svc.get("image", "").startswith(MESH_IMAGE) or name == "bootstrap":
            continue
        deps = svc["depends_on"]
        assert deps["kafka-topics"]["condition"] == "service_completed_successfully", name
        assert deps["bootstrap"]["condition"] == "service_completed_successfully", name
        assert deps["mlflow"]["condition"] == deps["redis"]["condition"] == "service_healthy", name
        assert "healthcheck" in svc, f"{name} has no healthcheck"
        env = mesh_vars(svc["environment"])
        assert env["MESH_MODELS__TRACKING_URI"] == "http://mlflow:5000" == svc["environment"]["MLFLOW_TRACKING_URI"]
    if "nlp" in services:
        assert services["nlp"]["depends_on"]["milvus"]["condition"] == "service_healthy"
        assert services["nlp"]["environment"]["MESH_NLP__VECTOR_URI"] == "http://milvus:19530"
    assert services["bootstrap"]["depends_on"]["mlflow"]["condition"] == "service_healthy"
    assert services["gateway"]["environment"]["MESH_WEBHOOKS__WORKER_ENABLED"] == "false"


def test_bootstrap_trains_every_service() -> None:
    spec = importlib.util.spec_from_file_location("mesh_bootstrap", ROOT / BOOTSTRAP)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert set(module.TRAININGS) == set(CAPABILITIES)
    for service, cmd in module.TRAININGS.items():
        assert module_landed(cmd[2]), (service, cmd)
        assert cmd[2].startswith(f"services.{service}."), (service, cmd)


def test_compose_mounts_exist(compose: Obj) -> None:
    for name, svc in compose["services"].items():
        for vol in svc.get("volumes", []):
            source = vol.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in compose.get("volumes", {}), f"{name} uses undeclared volume {source}"


def test_compose_creates_exactly_the_registry_topics(compose: Obj) -> None:
    script = "\n".join(compose["services"]["kafka-topics"]["command"])
    assert topic_script_lines(script) == registry_topics()
    kafka_env = compose["services"]["kafka"]["environment"]
    assert kafka_env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"


def test_compose_endpoints_point_at_services(compose: Obj) -> None:
    services = compose["services"]
    collector = load_yaml(DEPLOY / "otel" / "collector.yaml")[0]
    otlp_port = collector["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"].rsplit(":", 1)[1]
    for name, svc in services.items():
        env = mesh_vars(svc.get("environment"))
        if "MESH_TELEMETRY__OTLP_ENDPOINT" in env:
            host_port = env["MESH_TELEMETRY__OTLP_ENDPOINT"].split("//", 1)[1]
            assert host_port == f"otel-collector:{otlp_port}", name
        if "MESH_KAFKA__BOOTSTRAP_SERVERS" in env:
            assert env["MESH_KAFKA__BOOTSTRAP_SERVERS"].split(":")[0] in services
        for key, target in env.items():
            if key.startswith("MESH_BACKENDS__") and key not in ("MESH_BACKENDS__TIMEOUT_S",
                                                                 "MESH_BACKENDS__RETRY_AFTER_S"):
                host = target.split(":")[0]
                assert host == key.removeprefix("MESH_BACKENDS__").lower() and host in services, key
            if key in ("MESH_MODELS__TRACKING_URI", "MESH_NLP__VECTOR_URI"):
                assert target.split("//")[1].split(":")[0] in services, (name, key)
            if key in ("MESH_NLP_TARGET", "MESH_AUTOMATION__NLP_ADDRESS"):
                assert target == "nlp:50051" and "nlp" in services, (name, key)


def test_prometheus_scrapes_every_mesh_process(compose: Obj) -> None:
    prom = load_yaml(DEPLOY / "prometheus" / "prometheus.yml")[0]
    targets = {t for job in prom["scrape_configs"] for sc in job.get("static_configs", []) for t in sc["targets"]}
    wanted = set()
    for name, svc in compose["services"].items():
        port = mesh_vars(svc.get("environment")).get("MESH_TELEMETRY__METRICS_PORT")
        if port and port != "0":
            wanted.add(f"{name}:{port}")
    assert {f"{c}:9464" for c in CAPABILITIES} | {"features:9464", "gateway-worker:9464"} <= wanted
    assert wanted <= targets, f"not scraped: {wanted - targets}"
    stray = {t for t in targets - wanted if not t.startswith("localhost:")}
    assert not stray, f"scraped but not defined: {stray}"
    mounted = {v.split(":")[1] for v in compose["services"]["prometheus"]["volumes"]}
    assert set(prom["rule_files"]) <= mounted


# ----------------------------------------------------------------------------------------- dockerfile
def test_dockerfile_builds_from_the_lock_as_non_root() -> None:
    text = (DEPLOY / "docker" / "Dockerfile").read_text()
    assert "uv pip sync" in text and "requirements.lock" in text and "grpc_tools.protoc" in text
    args = dict(re.findall(r"^ARG\s+(\w+)=(\S+)", text, re.M))
    assert args["LOCK"] == "requirements.lock"  # the GPU build passes deploy/docker/requirements-gpu.lock
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and re.fullmatch(r"[1-9]\d*(:\d+)?", users[-1]), "runtime user must be numeric and non-root"
    env = set(re.findall(r"\b(MESH_[A-Z0-9_]+)=", text))
    assert env and not env - env_names(MeshSettings), env - env_names(MeshSettings)
    ignore = (DEPLOY / "docker" / "Dockerfile.dockerignore").read_text()
    sources = [re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], s)
               for s in re.findall(r"^COPY\s+(?!--from)(\S+)", text, re.M)]
    assert {"simulator", BOOTSTRAP, "mesh", "services", "gateway"} <= set(sources)  # serve, ingest, train
    for src in [*sources, "deploy/docker/requirements-gpu.lock"]:
        assert (ROOT / src).exists(), src
        assert f"!{src.rstrip('/')}" in ignore.replace("/\n", "\n"), f"{src} is excluded from the build context"


# ----------------------------------------------------------------------------------------- kubernetes
API_VERSIONS = {"Namespace": "v1", "ConfigMap": "v1", "Secret": "v1", "Service": "v1",
                "PersistentVolumeClaim": "v1", "Deployment": "apps/v1", "StatefulSet": "apps/v1",
                "Job": "batch/v1", "CronJob": "batch/v1", "HorizontalPodAutoscaler": "autoscaling/v2",
                "PodDisruptionBudget": "policy/v1", "NetworkPolicy": "networking.k8s.io/v1",
                "ServiceAccount": "v1", "Role": "rbac.authorization.k8s.io/v1",
                "RoleBinding": "rbac.authorization.k8s.io/v1"}
WORKLOADS = ("Deployment", "StatefulSet", "Job", "CronJob")


def test_k8s_objects_are_well_formed(k8s: list[Obj]) -> None:
    seen = set()
    for o in k8s:
        assert o.get("apiVersion") == API_VERSIONS.get(o.get("kind", "")), f"{o['_file']}: {o.get('kind')}"
        name = o.get("metadata", {}).get("name")
        assert name and re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name), f"{o['_file']}: name {name!r}"
        assert (o["kind"], name) not in seen, f"duplicate {o['kind']}/{name}"
        seen.add((o["kind"], name))
        if o["kind"] != "Namespace":
            assert o["metadata"].get("namespace") == "sunday-ml", name


def test_kustomization_lists_every_file() -> None:
    kust = load_yaml(K8S / "kustomization.yaml")[0]
    assert set(kust["resources"]) == {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}


def test_selectors_match_templates(k8s: list[Obj]) -> None:
    for o in of_kind(k8s, "Deployment", "StatefulSet"):
        labels = o["spec"]["template"]["metadata"]["labels"]
        assert o["spec"]["selector"]["matchLabels"].items() <= labels.items(), o["metadata"]["name"]


def selected_workloads(svc: Obj, k8s: list[Obj]) -> list[Obj]:
    sel = svc["spec"]["selector"].items()
    return [o for o in of_kind(k8s, "Deployment", "StatefulSet")
            if sel <= o["spec"]["template"]["metadata"]["labels"].items()]


def container_ports(workload: Obj) -> dict[str | int, int]:
    ports: dict[str | int, int] = {}
    for c in containers(workload):
        for p in c.get("ports", []):
            ports[p["containerPort"]] = p["containerPort"]
            if "name" in p:
                ports[p["name"]] = p["containerPort"]
    return ports


def test_services_select_workloads_with_their_ports(k8s: list[Obj]) -> None:
    for svc in of_kind(k8s, "Service"):
        workloads = selected_workloads(svc, k8s)
        assert workloads, f"Service {svc['metadata']['name']} selects no pods"
        for w in workloads:
            for p in svc["spec"]["ports"]:
                assert p.get("targetPort", p["port"]) in container_ports(w), (svc["metadata"]["name"], p)


def test_statefulsets_and_volumes_refer_to_defined_objects(k8s: list[Obj]) -> None:
    services, claims, maps = by_name(k8s, "Service"), by_name(k8s, "PersistentVolumeClaim"), by_name(k8s, "ConfigMap")
    for o in of_kind(k8s, "StatefulSet"):
        assert services[o["spec"]["serviceName"]]["spec"]["selector"].items() <= \
            o["spec"]["template"]["metadata"]["labels"].items()
    for o in of_kind(k8s, *WORKLOADS):
        volumes = {v["name"]: v for v in pod_spec(o).get("volumes", [])}
        templates = {t["metadata"]["name"] for t in o["spec"].get("volumeClaimTemplates", [])}
        for v in volumes.values():
            if "persistentVolumeClaim" in v:
                assert v["persistentVolumeClaim"]["claimName"] in claims
            if "configMap" in v:
                assert v["configMap"]["name"] in maps
        for c in containers(o):
            for m in c.get("volumeMounts", []):
                assert m["name"] in volumes or m["name"] in templates, (o["metadata"]["name"], m["name"])


def _aof(args: list[str]) -> bool:
    """redis-server arguments that turn the append-only file on, fsynced every second."""
    pairs = set(itertools.pairwise(args))
    return ("--appendonly", "yes") in pairs and ("--appendfsync", "everysec") in pairs


def test_redis_keeps_its_state_across_restarts(compose: Obj, k8s: list[Obj]) -> None:
    """Kafka is the source of truth and Redis its cache, but a restart must not wipe every service's state."""
    redis = compose["services"]["redis"]
    assert _aof(redis["command"]) and any(v.endswith(":/data") for v in redis["volumes"])
    (statefulset,) = [o for o in of_kind(k8s, "StatefulSet") if o["metadata"]["name"] == "redis"]
    (container,) = containers(statefulset)
    assert _aof(container["args"]) and "/data" in container["args"]
    assert {t["metadata"]["name"] for t in statefulset["spec"]["volumeClaimTemplates"]} >= \
        {m["name"] for m in container["volumeMounts"] if m["mountPath"] == "/data"}
    stack = (DEPLOY / "local" / "stack.sh").read_text()
    start = stack[stack.index("start_redis() {"):]
    assert re.search(r"--appendonly yes --appendfsync everysec", start[:start.index("\n}")])
    assert '--dir "$STACK_DIR/redis"' in start


def probe_port(probe: Obj) -> Any:
    for kind in ("grpc", "httpGet", "tcpSocket"):
        if kind in probe:
            return probe[kind]["port"]
    return None


def test_containers_have_resources_probes_and_security(k8s: list[Obj]) -> None:
    for o in of_kind(k8s, *WORKLOADS):
        name = o["metadata"]["name"]
        pod_sc = pod_spec(o).get("securityContext", {})
        assert pod_sc.get("runAsNonRoot") is True, name
        assert isinstance(pod_sc.get("runAsUser"), int) and pod_sc["runAsUser"] > 0, name
        ports = container_ports(o)
        for c in containers(o):
            for part in ("requests", "limits"):
                assert {"cpu", "memory"} <= c.get("resources", {}).get(part, {}).keys(), (name, c["name"], part)
            assert c.get("securityContext", {}).get("allowPrivilegeEscalation") is False, (name, c["name"])
            assert c.get("securityContext", {}).get("capabilities", {}).get("drop") == ["ALL"], (name, c["name"])
            if o["kind"] in ("Job", "CronJob"):
                continue
            for probe in ("readinessProbe", "livenessProbe"):
                assert probe in c, (name, c["name"], probe)
            for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
                if probe in c and probe_port(c[probe]) is not None:
                    assert probe_port(c[probe]) in ports, (name, probe)


def test_capability_deployments_serve_grpc_and_metrics(k8s: list[Obj]) -> None:
    deployments, services = by_name(k8s, "Deployment"), by_name(k8s, "Service")
    for cap in CAPABILITIES:
        (c,) = deployments[cap]["spec"]["template"]["spec"]["containers"]
        assert python_module(c["command"]) == f"services.{cap}"
        assert container_ports(deployments[cap]).get("grpc") == 50051
        assert container_ports(deployments[cap]).get("metrics") == 9464
        for probe in ("readinessProbe", "livenessProbe"):
            assert c[probe]["grpc"]["port"] == 50051, (cap, probe)
        assert {(p["port"], p["targetPort"]) for p in services[cap]["spec"]["ports"]} == \
            {(50051, "grpc"), (9464, "metrics")}
        annotations = deployments[cap]["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/port"] == "9464"


def test_gateway_http_probes_and_hpa(k8s: list[Obj]) -> None:
    deployments = by_name(k8s, "Deployment")
    (c,) = deployments["gateway"]["spec"]["template"]["spec"]["containers"]
    assert c["command"] == ["python", "-m", "gateway", "serve"]
    assert {"name": "MESH_WEBHOOKS__WORKER_ENABLED", "value": "false"} in c["env"]
    (w,) = deployments["gateway-worker"]["spec"]["template"]["spec"]["containers"]
    assert w["command"] == ["python", "-m", "gateway", "worker"]
    assert container_ports(deployments["gateway"])["http"] == 8080
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] in ("/healthz", "/readyz")
    health = ROOT / "gateway" / "routes" / "health.py"
    if health.is_file():  # the probed routes exist once the gateway has landed
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            assert f'.get("{c[probe]["httpGet"]["path"]}"' in health.read_text(), probe


CONSUMER_GROUPS = {**{c: c for c in CAPABILITIES}, "gateway-worker": "gateway.webhooks"}


def test_hpas_scale_consumers_up_to_their_partitions(k8s: list[Obj]) -> None:
    """One HPA per service, the gateway and its worker; a consumer beyond the partition count of its widest
    input topic idles in its group, so that count bounds maxReplicas."""
    deployments, registry = by_name(k8s, "Deployment"), TopicRegistry()
    hpas = {h["spec"]["scaleTargetRef"]["name"]: h for h in of_kind(k8s, "HorizontalPodAutoscaler")}
    assert set(hpas) == {*CAPABILITIES, "gateway", "gateway-worker"}
    for name, h in hpas.items():
        target = deployments[name]
        assert h["spec"]["scaleTargetRef"]["kind"] == "Deployment"
        assert 1 <= h["spec"]["minReplicas"] <= h["spec"]["maxReplicas"]
        assert all("cpu" in ct["resources"]["requests"] for ct in containers(target))  # utilisation needs it
        if name in CONSUMER_GROUPS:
            widest = max(t.partitions for t in registry.consumed_by(CONSUMER_GROUPS[name]))
            assert h["spec"]["maxReplicas"] <= widest, (name, widest)


def test_pdbs_and_network_policies_select_workloads(k8s: list[Obj]) -> None:
    workloads = {o["metadata"]["name"]: o for o in of_kind(k8s, "Deployment", "StatefulSet")}
    pdbs = {p["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"]: p
            for p in of_kind(k8s, "PodDisruptionBudget")}
    assert {*CAPABILITIES, "gateway", "gateway-worker"} <= set(pdbs)
    for name, pdb in pdbs.items():
        assert workloads[name]["spec"]["replicas"] > pdb["spec"]["minAvailable"], name  # else drains block
    policies = of_kind(k8s, "NetworkPolicy")
    assert any(p["spec"]["podSelector"] == {} and p["spec"]["ingress"] == [] for p in policies), "no default deny"
    selected = {p["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/name"]: p for p in policies
                if p["spec"]["podSelector"]}
    assert {*CAPABILITIES, "gateway", "kafka", "redis", "mlflow", "milvus"} <= set(selected)
    for name, p in selected.items():
        assert name in workloads, f"NetworkPolicy {name} selects nothing"
        for rule in p["spec"]["ingress"]:
            for peer in rule.get("from", []):
                app = peer.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/name")
                assert app is None or app in workloads, (name, app)
    for cap in CAPABILITIES:  # gRPC from the gateway; nothing from outside the namespace but /metrics
        grpc = [r for r in selected[cap]["spec"]["ingress"] if {"protocol": "TCP", "port": 50051} in r["ports"]]
        assert grpc and all(peer.get("podSelector") for r in grpc for peer in r["from"]), cap
        callers = {peer["podSelector"]["matchLabels"]["app.kubernetes.io/name"] for r in grpc for peer in r["from"]}
        assert "gateway" in callers, cap
    if "nlp" in CAPABILITIES:  # the service-to-service calls that exist (services.nlp.client)
        assert {"timeline", "automation"} & set(CAPABILITIES) <= {
            peer["podSelector"]["matchLabels"]["app.kubernetes.io/name"]
            for r in selected["nlp"]["spec"]["ingress"] for peer in r.get("from", []) if "podSelector" in peer}


def test_retraining_cronjob_per_service(k8s: list[Obj]) -> None:
    crons = {c["metadata"]["name"]: c for c in of_kind(k8s, "CronJob")}
    assert set(crons) == {f"retrain-{c}" for c in CAPABILITIES}
    for cap in CAPABILITIES:
        cron = crons[f"retrain-{cap}"]
        assert cron["spec"]["concurrencyPolicy"] == "Forbid"
        (c,) = containers(cron)
        module = python_module(c["command"])
        assert module and module.startswith(f"services.{cap}.") and module_landed(module), (cap, module)
        if cap != "nlp":
            assert c["command"][-2:] == ["--source", "eventlog"], cap


def test_k8s_deploys_every_service_that_exists_and_no_other(k8s: list[Obj]) -> None:
    modules = {python_module(c.get("command")) for o in of_kind(k8s, "Deployment") for c in containers(o)}
    assert deployed_services(modules) == set(CAPABILITIES)
    assert {"gateway", "mesh.features"} <= modules
    (job,) = [j for j in of_kind(k8s, "Job") if j["metadata"]["name"] == "bootstrap"]
    assert python_module(next(containers(job))["command"]) == BOOTSTRAP


def test_k8s_commands_exist(k8s: list[Obj]) -> None:
    for o in of_kind(k8s, *WORKLOADS):
        for c in containers(o):
            if c["image"].startswith(MESH_IMAGE):
                module = python_module(c.get("command"))
                assert module, f"{o['metadata']['name']} runs the mesh image without `python -m <module>`"
                assert check_module(module) is None, check_module(module)


def test_milvus_config_is_the_shared_file(k8s: list[Obj]) -> None:
    cm = by_name(k8s, "ConfigMap")["milvus-etcd"]
    assert cm["data"]["embedEtcd.yaml"] == (DEPLOY / "milvus" / "embedEtcd.yaml").read_text()


def test_k8s_env_names_exist_in_settings(k8s: list[Obj]) -> None:
    maps = by_name(k8s, "ConfigMap")
    consumers: dict[str, set[str]] = {}
    for o in of_kind(k8s, *WORKLOADS):
        for c in containers(o):
            module = python_module(c.get("command"))
            env = {e["name"] for e in c.get("env", []) if e["name"].startswith("MESH_")}
            assert not env or module, f"{o['metadata']['name']} sets MESH_ names but is not a mesh process"
            for ref in c.get("envFrom", []):
                if "configMapRef" in ref:
                    assert ref["configMapRef"]["name"] in maps, ref
                    consumers.setdefault(ref["configMapRef"]["name"], set()).add(module or "")
            if module:
                assert not invalid_names(env, module), (o["metadata"]["name"], invalid_names(env, module))
    for name, cm in maps.items():
        env = set(mesh_vars(cm.get("data")))
        if not env:
            continue
        assert consumers.get(name), f"ConfigMap {name} is used by nobody"
        for module in consumers[name]:  # valid for every process that reads it
            assert module and not invalid_names(env, module), (name, module, invalid_names(env, module))


def test_k8s_endpoints_point_at_services(k8s: list[Obj]) -> None:
    services = by_name(k8s, "Service")
    env: dict[str, str] = {}
    for cm in of_kind(k8s, "ConfigMap"):
        env |= mesh_vars(cm.get("data"))
    def exposed(host_port: str) -> None:
        host, port = host_port.rsplit(":", 1)
        assert int(port) in {p["port"] for p in services[host]["spec"]["ports"]}, host_port
    exposed(env["MESH_KAFKA__BOOTSTRAP_SERVERS"])
    exposed(env["MESH_TELEMETRY__OTLP_ENDPOINT"].split("//", 1)[1])
    exposed(env["MESH_REDIS__URL"].split("//", 1)[1].split("/")[0])
    for cap in CAPABILITIES:
        exposed(env[f"MESH_BACKENDS__{cap.upper()}"])
    assert env["MESH_TELEMETRY__METRICS_PORT"] == "9464"
    exposed(env["MESH_MODELS__TRACKING_URI"].split("//", 1)[1])
    for o in of_kind(k8s, *WORKLOADS):
        for c in containers(o):
            for e in c.get("env", []):
                if e["name"] in ("MESH_NLP__VECTOR_URI",):
                    exposed(e["value"].split("//", 1)[1])
                if e["name"] in ("MESH_NLP_TARGET", "MESH_AUTOMATION__NLP_ADDRESS"):
                    exposed(e["value"])


def test_k8s_job_creates_exactly_the_registry_topics(k8s: list[Obj]) -> None:
    (job,) = [j for j in of_kind(k8s, "Job") if j["metadata"]["name"] == "kafka-topics"]
    (c,) = containers(job)
    assert topic_script_lines(c["command"][-1]) == registry_topics()
    kafka = by_name(k8s, "StatefulSet")["kafka"]
    env = {e["name"]: e.get("value") for e in next(containers(kafka))["env"]}
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft, no ZooKeeper


def test_k8s_collector_config_is_the_shared_file(k8s: list[Obj]) -> None:
    cm = by_name(k8s, "ConfigMap")["otel-collector"]
    assert cm["data"]["collector.yaml"] == (DEPLOY / "otel" / "collector.yaml").read_text()


def test_k8s_observability_configs_are_the_shared_files(k8s: list[Obj]) -> None:
    """observability.yaml embeds the alert rules, Grafana provisioning and dashboards verbatim."""
    maps = by_name(k8s, "ConfigMap")
    assert maps["prometheus"]["data"]["alerts.yml"] == (DEPLOY / "prometheus" / "alerts.yml").read_text()
    for cm, folder, pattern in (("grafana-dashboards", "dashboards", "*.json"),
                                ("grafana-provisioning", "provisioning", "*.yaml")):
        files = {p.name: p.read_text() for p in (DEPLOY / "grafana" / folder).glob(pattern)}
        assert files and maps[cm]["data"] == files, f"{cm} differs from deploy/grafana/{folder}: copy the files"


def policy_admits(k8s: list[Obj], target: str, source: str, port: int) -> bool:
    """Whether the NetworkPolicies selecting pods ``target`` let pods ``source`` of the namespace in on ``port``."""
    for p in of_kind(k8s, "NetworkPolicy"):
        if p["spec"]["podSelector"].get("matchLabels", {}).get("app.kubernetes.io/name") != target:
            continue
        for rule in p["spec"]["ingress"]:
            peers = rule.get("from")
            ports = {q["port"] for q in rule.get("ports", [])}
            if (not rule.get("ports") or port in ports) and (peers is None or any(
                    peer.get("podSelector", {}).get("matchLabels") == {"app.kubernetes.io/name": source}
                    for peer in peers)):
                return True
    return False


def test_k8s_prometheus_scrapes_every_mesh_process(k8s: list[Obj]) -> None:
    """What compose's Prometheus scrapes by name, the in-cluster one finds by annotation, on a declared port its
    NetworkPolicy lets it reach; its pod discovery is allowed by RBAC; the alerts' jobs exist."""
    prom = yaml.safe_load(by_name(k8s, "ConfigMap")["prometheus"]["data"]["prometheus.yml"])
    (deployment,) = [o for o in of_kind(k8s, "Deployment") if o["metadata"]["name"] == "prometheus"]
    mounts = {m["mountPath"] for c in containers(deployment) for m in c["volumeMounts"]}
    assert all(str(Path(f).parent) in mounts for f in prom["rule_files"])
    (job,) = [j for j in prom["scrape_configs"] if j["job_name"] == "mesh"]
    assert job["kubernetes_sd_configs"] == [{"role": "pod", "namespaces": {"own_namespace": True}}]
    keep = [r for r in job["relabel_configs"] if r.get("action") == "keep"]
    assert keep == [{"source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_scrape"],
                     "regex": "true", "action": "keep"}]
    jobs = {j["job_name"] for j in prom["scrape_configs"]} | {"gateway", "milvus"}  # relabelled from `mesh`
    for rule in alert_rules():
        assert set(re.findall(r'job="([^"]+)"', rule["expr"])) <= jobs, rule["alert"]
    scraped = set()
    for o in of_kind(k8s, "Deployment", "StatefulSet"):
        annotations = o["spec"]["template"]["metadata"].get("annotations", {})
        if annotations.get("prometheus.io/scrape") != "true":
            continue
        name, port = o["metadata"]["name"], int(annotations["prometheus.io/port"])
        assert port in container_ports(o).values(), (name, port)  # the keepequal relabel needs a declared port
        assert policy_admits(k8s, name, "prometheus", port), f"NetworkPolicy keeps Prometheus from {name}:{port}"
        scraped.add(name)
    assert {*CAPABILITIES, "features", "gateway-worker", "gateway"} <= scraped
    (role,) = of_kind(k8s, "Role")
    assert {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]} in role["rules"]
    (binding,) = of_kind(k8s, "RoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert {"kind": "ServiceAccount", "name": pod_spec(deployment)["serviceAccountName"],
            "namespace": "sunday-ml"} in binding["subjects"]
    assert pod_spec(deployment)["serviceAccountName"] in by_name(k8s, "ServiceAccount")


def test_k8s_telemetry_paths_are_wired_and_admitted(k8s: list[Obj]) -> None:
    """Collector -> Jaeger OTLP, Grafana -> Prometheus and Jaeger: Services with those ports, policies that admit."""
    services = by_name(k8s, "Service")
    (collector,) = containers(by_name(k8s, "Deployment")["otel-collector"])
    endpoint = {e["name"]: e.get("value") for e in collector["env"]}["TRACES_OTLP_ENDPOINT"]
    host, port = endpoint.rsplit(":", 1)
    assert (host, int(port)) == ("jaeger", 4317) and 4317 in {p["port"] for p in services[host]["spec"]["ports"]}
    assert policy_admits(k8s, "jaeger", "otel-collector", 4317)
    assert not policy_admits(k8s, "jaeger", "gateway", 4317)
    sources = load_yaml(DEPLOY / "grafana" / "provisioning" / "datasources.yaml")[0]["datasources"]
    for source in sources:
        host, port = source["url"].split("//", 1)[1].rsplit(":", 1)
        assert int(port) in {p["port"] for p in services[host]["spec"]["ports"]}, source["url"]
        assert policy_admits(k8s, host, "grafana", int(port)), source["url"]
    (grafana,) = containers(by_name(k8s, "Deployment")["grafana"])
    provider = load_yaml(DEPLOY / "grafana" / "provisioning" / "dashboards.yaml")[0]["providers"][0]
    mounts = {m["mountPath"]: m["name"] for m in grafana["volumeMounts"]}
    volumes = {v["name"]: v for v in pod_spec(by_name(k8s, "Deployment")["grafana"])["volumes"]}
    assert volumes[mounts[provider["options"]["path"]]]["configMap"]["name"] == "grafana-dashboards"
    for kind in ("datasources", "dashboards"):
        volume = volumes[mounts[f"/etc/grafana/provisioning/{kind}"]]["configMap"]
        assert volume["name"] == "grafana-provisioning" and volume["items"][0]["key"] == f"{kind}.yaml"
    compose_images = {s["image"] for s in yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
                      .values() if "image" in s}
    for name in ("jaeger", "prometheus", "grafana", "otel-collector"):
        (c,) = containers(by_name(k8s, "Deployment")[name])
        assert c["image"] in compose_images, (name, c["image"])  # the same versions as compose


# ----------------------------------------------------------------------------------------- otel
def test_collector_pipelines_use_defined_components() -> None:
    col = load_yaml(DEPLOY / "otel" / "collector.yaml")[0]
    for ext in col["service"].get("extensions", []):
        assert ext in col["extensions"]
    for name, pipe in col["service"]["pipelines"].items():
        for part in ("receivers", "processors", "exporters"):
            for comp in pipe.get(part, []):
                assert comp in col[part], f"pipeline {name} uses undefined {comp}"
    traces = col["service"]["pipelines"]["traces"]
    assert "otlp" in traces["receivers"] and "batch" in traces["processors"]
    assert {e.split("/")[0] for e in traces["exporters"]} >= {"otlp", "debug"}


# ----------------------------------------------------------------------------------------- prometheus, grafana
def alert_rules() -> list[Obj]:
    return [r for g in load_yaml(DEPLOY / "prometheus" / "alerts.yml")[0]["groups"] for r in g["rules"]]


def test_alerts_use_declared_metrics() -> None:
    allowed = allowed_metrics() | PROMQL_BUILTINS
    for rule in alert_rules():
        assert {"alert", "expr", "for"} <= rule.keys() and rule["labels"]["severity"], rule
        assert "summary" in rule["annotations"]
        unknown = promql_metrics(rule["expr"]) - allowed
        assert not unknown, f"{rule['alert']}: undeclared metrics {unknown}"


class _UniqueKeyLoader(yaml.SafeLoader):  # type: ignore[misc]
    """PyYAML keeps the last of duplicate keys silently; a rule that lost its `- alert:` line merges into the
    previous one that way. This loader refuses duplicates."""

    def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
        keys = [k.value for k, _ in node.value if k.tag != "tag:yaml.org,2002:merge"]  # `<<:` merges
        dupes = {k for k in keys if keys.count(k) > 1}
        if dupes:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate keys {dupes}", node.start_mark)
        return super().construct_mapping(node, deep=deep)  # type: ignore[no-any-return]


@pytest.mark.parametrize("path", sorted([*DEPLOY.rglob("*.yaml"), *DEPLOY.rglob("*.yml"), ROOT / "docker-compose.yml"]),
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_no_duplicate_keys(path: Path) -> None:
    list(yaml.load_all(path.read_text(), Loader=_UniqueKeyLoader))


def test_alert_names_are_unique_and_cover_dead_letters() -> None:
    names = [r["alert"] for r in alert_rules()]
    assert len(names) == len(set(names))
    (dlq,) = [r for r in alert_rules() if "mesh_events_dead_lettered_total" in r["expr"]]
    assert dlq["alert"] == "MeshEventsDeadLettered"
    runbook = (DEPLOY / "README.md").read_text()
    for name in names:
        assert f"### {name}" in runbook, f"deploy/README.md has no runbook for {name}"


def test_alerts_cover_lag_dead_letters_and_p99() -> None:
    exprs = " ".join(r["expr"] for r in alert_rules())
    assert "mesh_consumer_lag" in exprs
    assert re.search(r"rate\(mesh_events_dead_lettered_total\[\w+\]\)\)\s*>\s*0\b", exprs)
    assert re.search(r"histogram_quantile\(0\.99,.*mesh_handler_seconds_bucket", exprs)


def dashboard() -> Obj:
    return json.loads((DEPLOY / "grafana" / "dashboards" / "mesh.json").read_text())  # type: ignore[no-any-return]


def test_dashboard_uses_declared_metrics_and_datasources() -> None:
    dash, allowed = dashboard(), allowed_metrics()
    sources = load_yaml(DEPLOY / "grafana" / "provisioning" / "datasources.yaml")[0]["datasources"]
    uids = {s["uid"] for s in sources}
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dash["panels"]:
        assert panel["datasource"]["uid"] in uids and panel["targets"], panel["title"]
        for t in panel["targets"]:
            unknown = promql_metrics(t["expr"]) - allowed
            assert not unknown, f"{panel['title']}: undeclared metrics {unknown}"
    for var in dash["templating"]["list"]:
        for query in (var["definition"], var["query"]["query"]):
            metric = re.fullmatch(r"label_values\((\w+),\s*\w+\)", query)
            assert metric and metric.group(1) in allowed, (var["name"], query)


def test_dashboard_covers_the_bus() -> None:
    exprs = [t["expr"] for p in dashboard()["panels"] for t in p["targets"]]
    joined = " ".join(exprs)
    for name in ("mesh_events_handled_total", "mesh_events_failed_total", "mesh_events_dead_lettered_total",
                 "mesh_consumer_lag"):
        assert any(name in e and "topic, group" in e for e in exprs), name
    for q in ("0.5", "0.99"):
        assert re.search(rf"histogram_quantile\({q},.*mesh_handler_seconds_bucket", joined), q


def test_grafana_provisioning_matches_compose_mounts(compose: Obj) -> None:
    provider = load_yaml(DEPLOY / "grafana" / "provisioning" / "dashboards.yaml")[0]["providers"][0]
    mounts = dict(v.removesuffix(":ro").split(":", 1) for v in compose["services"]["grafana"]["volumes"])
    assert mounts["./deploy/grafana/dashboards"] == provider["options"]["path"]
    for f in (DEPLOY / "grafana" / "provisioning").glob("*.yaml"):
        assert f"./{f.relative_to(ROOT)}" in mounts, f"{f.name} is not mounted into grafana"
    prom_url = load_yaml(DEPLOY / "grafana" / "provisioning" / "datasources.yaml")[0]["datasources"][0]["url"]
    assert prom_url.split("//")[1].split(":")[0] in compose["services"]
