"""deploy/kubernetes, without a cluster: every manifest is valid against the Kubernetes
OpenAPI schemas (kubernetes-validate ships them: no network), the kustomize base names files
that exist, the pieces fit together (selectors, Secret keys, probes, GPU limits), and every
hpsearch command line in them parses."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from hpsearch.cli import _parser
from tests.conftest import REPO

KUBE = REPO / "deploy" / "kubernetes"
MANIFESTS = sorted(p for p in KUBE.glob("*.yaml") if p.name != "kustomization.yaml")


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def everything() -> list[dict[str, Any]]:
    return [doc for path in MANIFESTS for doc in documents(path)]


def find(kind: str, name: str) -> dict[str, Any]:
    for doc in everything():
        meta = doc["metadata"]
        if doc["kind"] == kind and name in (meta.get("name"), meta.get("generateName")):
            return doc
    raise AssertionError(f"no {kind} {name}")


def pod(doc: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = doc["spec"]["template"]["spec"]
    return spec


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_every_manifest_is_valid_against_the_kubernetes_schemas(path: Path) -> None:
    version = kubernetes_validate.latest_version()
    for doc in documents(path):
        # strict: an unknown or misspelt field is an error, not silently dropped.
        kubernetes_validate.validate(doc, version, strict=True)


def test_a_misspelt_field_is_caught() -> None:
    doc = find("Deployment", "hpsearch-api")
    broken = {**doc, "spec": {**doc["spec"], "replica": 2}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, kubernetes_validate.latest_version(), strict=True)


def test_the_kustomize_base_names_files_that_exist() -> None:
    base = yaml.safe_load((KUBE / "kustomization.yaml").read_text())
    assert base["namespace"] == "hpsearch"
    for resource in base["resources"]:
        assert (KUBE / resource).is_file(), resource
    names = {image["name"] for image in base["images"]}
    used = {
        c["image"]
        for doc in everything()
        if "template" in doc.get("spec", {})
        for c in pod(doc)["containers"]
    }
    assert {"hpsearch-server", "hpsearch-worker"} <= names and "hpsearch-server" in used


def test_services_select_their_pods_and_secret_keys_exist() -> None:
    secret = find("Secret", "hpsearch")["stringData"]
    for service, workload in (
        ("hpsearch-api", ("Deployment", "hpsearch-api")),
        ("hpsearch-postgres", ("StatefulSet", "hpsearch-postgres")),
    ):
        selector = find("Service", service)["spec"]["selector"]
        labels = find(*workload)["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items()
    for doc in everything():
        if "template" not in doc.get("spec", {}):
            continue
        spec = pod(doc)
        for container in spec.get("initContainers", []) + spec["containers"]:
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["name"] == "hpsearch" and ref["key"] in secret, env


def test_the_server_is_probed_on_health() -> None:
    (api,) = pod(find("Deployment", "hpsearch-api"))["containers"]
    for probe in ("readinessProbe", "livenessProbe"):
        assert api[probe]["httpGet"]["path"] == "/api/v1/health"
    env = {e["name"]: e.get("value") for e in api["env"]}
    assert env["HPSEARCH_ARTIFACT_BACKEND"] == "database"  # replicas share checkpoints


@pytest.mark.parametrize(
    ("kind", "name", "keep_alive"),
    [("Deployment", "hpsearch-worker", True), ("Job", "hpsearch-workers-", False)],
)
def test_workers_have_a_gpu_each_and_the_right_lifetime(
    kind: str, name: str, keep_alive: bool
) -> None:
    spec = pod(find(kind, name))
    (worker,) = spec["containers"]
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert spec["nodeSelector"] and spec["tolerations"]
    assert ("--keep-alive" in worker["args"]) is keep_alive
    assert spec["terminationGracePeriodSeconds"] >= 60  # SIGTERM: the epoch ends, trial handed back


def command_lines() -> list[list[str]]:
    lines = []
    for doc in everything():
        if "template" not in doc.get("spec", {}):
            continue
        spec = pod(doc)
        for container in spec.get("initContainers", []) + spec["containers"]:
            words = container.get("command", []) + container.get("args", [])
            if words[:2] == ["sh", "-c"]:
                lines += [shlex.split(part) for part in words[2].split("&&")]
            elif words[:1] == ["hpsearch"]:
                lines.append(words)
    return lines


@pytest.mark.parametrize("words", command_lines(), ids=lambda w: " ".join(w[:2]))
def test_every_hpsearch_command_line_parses(words: list[str]) -> None:
    assert words[0] == "hpsearch"
    _parser().parse_args(words[1:])
