"""The deployment files against real schemas (no Docker engine or cluster runs here):

- every Kubernetes object of deploy/k8s/*.yaml, and the output of `kustomize build` of deploy/k8s and of the
  GPU overlay deploy/k8s-gpu, against the OpenAPI schemas of Kubernetes K8S_VERSION shipped by
  `kubernetes-validate` (strict: unknown fields fail). The build uses `kubectl kustomize` or `kustomize` when
  one is on PATH, else kustomize_build below (the features our kustomizations use; compared with the real
  binary wherever one is installed);
- docker-compose.yml against the Compose specification's JSON schema (the copy `check-jsonschema` vendors);
- the GPU image's requirements against the CPU ones (deploy/docker/gpu-lock.sh keeps them in step).
"""

from __future__ import annotations

import copy
import functools
import json
import re
import shutil
import subprocess
from importlib.metadata import distribution
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parents[3]
K8S, K8S_GPU = ROOT / "deploy" / "k8s", ROOT / "deploy" / "k8s-gpu"
K8S_VERSION = "1.32.0"  # the oldest version we support: gRPC probes (1.27+), CronJob timeZone-free, HPA v2
Obj = dict[str, Any]
CLUSTER_SCOPED = {"Namespace", "PersistentVolume", "ClusterRole", "ClusterRoleBinding", "StorageClass"}


def load_all(text: str) -> list[Obj]:
    return [d for d in yaml.safe_load_all(text) if d is not None]


def validate_k8s(obj: Obj) -> str | None:
    """None when ``obj`` is valid for K8S_VERSION, else the validator's message."""
    try:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as e:
        return f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}: {e.message}"
    return None


# ----------------------------------------------------------------------------------------- kustomize
def _pod_specs(obj: Obj) -> list[Obj]:
    spec = obj.get("spec", {})
    if obj["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return [spec["template"]["spec"]] if "template" in spec else []


def _json6902_add(obj: Obj, path: str, value: Any) -> None:
    *parents, last = [p.replace("~1", "/").replace("~0", "~") for p in path.lstrip("/").split("/")]
    node: Any = obj
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if isinstance(node, list):
        node.insert(len(node) if last == "-" else int(last), copy.deepcopy(value))
    else:
        node[last] = copy.deepcopy(value)


def kustomize_build(folder: Path) -> list[Obj]:
    """A small `kustomize build` for what deploy/k8s and deploy/k8s-gpu use: resources (files and folders),
    namespace, labels (metadata only), images (newName/newTag), patches (JSON 6902 `add`, target by kind and
    name regex). Anything else in a kustomization is refused rather than ignored."""
    kust = load_all((folder / "kustomization.yaml").read_text())[0]
    unknown = set(kust) - {"apiVersion", "kind", "namespace", "labels", "resources", "images", "patches"}
    assert not unknown, f"kustomize_build does not implement {unknown}: use kubectl kustomize"
    objs: list[Obj] = []
    for res in kust.get("resources", []):
        path = folder / res
        objs += kustomize_build(path) if path.is_dir() else load_all(path.read_text())
    for obj in objs:
        if "namespace" in kust and obj["kind"] not in CLUSTER_SCOPED:
            obj["metadata"]["namespace"] = kust["namespace"]
        for label in kust.get("labels", []):
            assert not label.get("includeSelectors") and not label.get("includeTemplates"), label
            obj["metadata"].setdefault("labels", {}).update(label["pairs"])
        for image in kust.get("images", []):
            for spec in _pod_specs(obj):
                for c in [*spec.get("initContainers", []), *spec["containers"]]:
                    name, _, tag = c["image"].partition(":")
                    if name == image["name"]:
                        c["image"] = f"{image.get('newName', name)}:{image.get('newTag', tag)}"
    for patch in kust.get("patches", []):
        ops: list[Obj] = yaml.safe_load((folder / patch["path"]).read_text())
        target = patch["target"]
        hits = [o for o in objs if o["kind"] == target["kind"]
                and re.fullmatch(target.get("name", ".*"), o["metadata"]["name"])]
        assert hits, f"patch {patch['path']} matches nothing"
        for obj in hits:
            for op in ops:
                assert op["op"] == "add", f"kustomize_build implements only `add`: {op}"
                _json6902_add(obj, op["path"], op["value"])
    return objs


def kustomize_binary() -> list[str] | None:
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    return None


@functools.cache
def _built_text(folder: Path) -> str:
    binary = kustomize_binary()
    if binary is None:
        return str(yaml.safe_dump_all(kustomize_build(folder)))
    out = subprocess.run([*binary, str(folder)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


def built(folder: Path) -> list[Obj]:
    """`kustomize build folder` (each folder built once per session)."""
    return load_all(_built_text(folder))


def keyed(objs: list[Obj]) -> dict[tuple[str, str], Obj]:
    return {(o["kind"], o["metadata"]["name"]): o for o in objs}


# ----------------------------------------------------------------------------------------- kubernetes
@pytest.mark.parametrize("path", sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml"),
                         ids=lambda p: p.name)
def test_k8s_file_against_openapi_schema(path: Path) -> None:
    errors = [e for e in map(validate_k8s, load_all(path.read_text())) if e]
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("folder", [K8S, K8S_GPU], ids=["base", "gpu"])
def test_kustomize_build_against_openapi_schema(folder: Path) -> None:
    objs = built(folder)
    files = sum(len(load_all(p.read_text())) for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
    assert len(objs) == files  # nothing dropped or duplicated
    errors = [e for e in map(validate_k8s, objs) if e]
    assert not errors, "\n".join(errors)


def test_gpu_overlay_puts_gpu_services_on_gpu_nodes() -> None:
    base, gpu = keyed(built(K8S)), keyed(built(K8S_GPU))
    assert base.keys() == gpu.keys()
    on_gpu = {name for (kind, name), o in gpu.items() if kind in ("Deployment", "CronJob")
              and any(s.get("nodeSelector", {}).get("nvidia.com/gpu.present") == "true" for s in _pod_specs(o))}
    assert {"nlp", "retrain-nlp"} <= on_gpu
    for (kind, name), o in gpu.items():
        for spec in _pod_specs(o):
            for c in spec["containers"]:
                if c["image"].startswith("sunday-ml/mesh"):
                    assert c["image"].endswith("-gpu"), (kind, name)  # one image everywhere in the overlay
                if name in on_gpu:
                    assert c["resources"]["limits"]["nvidia.com/gpu"] == 1, (kind, name)


def test_python_build_equals_the_kustomize_binary() -> None:
    if kustomize_binary() is None:  # nothing to compare with; the build tests above used the Python one
        assert kustomize_build(K8S_GPU)
        return
    for folder in (K8S, K8S_GPU):
        assert keyed(kustomize_build(folder)) == keyed(built(folder)), folder


def test_the_validator_rejects_what_a_cluster_would() -> None:
    (deployment,) = [o for o in load_all((K8S / "features.yaml").read_text()) if o["kind"] == "Deployment"]
    assert validate_k8s(deployment) is None
    typo = copy.deepcopy(deployment)
    typo["spec"]["replica"] = typo["spec"].pop("replicas")
    assert validate_k8s(typo)
    wrong_type = copy.deepcopy(deployment)
    wrong_type["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "9464"
    assert validate_k8s(wrong_type)


# ----------------------------------------------------------------------------------------- compose
@pytest.fixture(scope="module")
def compose_schema() -> jsonschema.protocols.Validator:
    vendored = distribution("check-jsonschema").locate_file(
        "check_jsonschema/builtin_schemas/vendor/compose-spec.json")
    schema = json.loads(Path(str(vendored)).read_text())
    assert schema["title"] == "Compose Specification"
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def test_compose_against_the_compose_spec(compose_schema: jsonschema.protocols.Validator) -> None:
    doc = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in compose_schema.iter_errors(doc)]
    assert not errors, "\n".join(errors)


def test_compose_schema_rejects_mistakes(compose_schema: jsonschema.protocols.Validator) -> None:
    doc = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    bad_condition = copy.deepcopy(doc)
    bad_condition["services"]["gateway"]["depends_on"]["redis"]["condition"] = "service_ready"
    assert not compose_schema.is_valid(bad_condition)
    unknown_key = copy.deepcopy(doc)
    unknown_key["services"]["gateway"]["healthchek"] = {"test": ["CMD", "true"]}
    assert not compose_schema.is_valid(unknown_key)


# ----------------------------------------------------------------------------------------- GPU lock
def _pins(path: Path) -> dict[str, str]:
    return dict(re.findall(r"^([A-Za-z0-9_.\-]+)==(\S+)", path.read_text(), re.M))


def test_gpu_requirements_follow_the_cpu_ones() -> None:
    docker = ROOT / "deploy" / "docker"
    cpu_in = (ROOT / "requirements.in").read_text().splitlines()
    gpu_in = (docker / "requirements-gpu.in").read_text().splitlines()
    assert gpu_in[1:] == ["onnxruntime-gpu[cuda,cudnn]" if line == "onnxruntime" else line for line in cpu_in], \
        "deploy/docker/requirements-gpu.in is stale: run deploy/docker/gpu-lock.sh"
    cpu, gpu = _pins(ROOT / "requirements.lock"), _pins(docker / "requirements-gpu.lock")
    assert "onnxruntime" not in gpu and "onnxruntime-gpu" in gpu  # never both: they install the same module
    changed = {n for n in cpu.keys() & gpu.keys() if cpu[n] != gpu[n]}
    assert not changed, f"the GPU lock moved shared pins {sorted(changed)}: run deploy/docker/gpu-lock.sh"
    assert not cpu.keys() - gpu.keys() - {"onnxruntime"}, "missing from the GPU lock: run deploy/docker/gpu-lock.sh"
    extra = gpu.keys() - cpu.keys() - {"onnxruntime-gpu"}
    assert all(n.startswith(("nvidia-", "cuda-")) for n in extra), extra
