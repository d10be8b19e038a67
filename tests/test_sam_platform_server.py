"""The stack runs the platform's SAM server (sam-server/) for the sam2.1-* models: its env (what
sam-server/sam_server/config.py reads, from the same names), one process per pod, the headless
Service its replicas find each other by, the NetworkPolicy letting them call each other, a
hardened container, and settings that keep its cache inside the pod's memory."""

from __future__ import annotations

import ast

import pytest

from components import PROJECT_ROOT
from components.sam_backend import SAM_LABELS, SAM_NAME
from components.sam_container import SAM_PEERS_NAME, SAM_PORT, SAM_SERVER_UID
from components.settings import ConfigError
from tests.conftest import evaluate_cached, stack_settings
from tools.object_validation import object_problem

SERVER = {"sam.model": "sam2.1-tiny", "sam.image": "registry.example.com/sam-server:1.0.0@sha256:d6cae419bd48386fbfa1199a194a1114f862301334ae0f072e3d9d0694bbdad3"}
CONFIG_PY = PROJECT_ROOT / "sam-server" / "sam_server" / "config.py"


def sam_objects(overrides: dict) -> dict[str, dict]:
    evaluation = evaluate_cached("dev", {**SERVER, **overrides})
    children = evaluation.children_of(evaluation.one("labeling:ml:SamBackend"))
    return {f"{child.type.rsplit(':', 1)[-1]}/{child.inputs['metadata']['name']}": child.inputs
            for child in children if "metadata" in child.inputs}


def container(objects: dict) -> dict:
    [found] = objects[f"Deployment/{SAM_NAME}"]["spec"]["template"]["spec"]["containers"]
    return found


def env(objects: dict) -> dict[str, dict]:
    return {variable["name"]: variable for variable in container(objects)["env"]}


def server_variables() -> set[str]:
    """Every environment variable name sam-server/sam_server/config.py reads (its string constants
    that look like one), read without importing the server (torch lives in its own environment)."""
    tree = ast.parse(CONFIG_PY.read_text())
    return {node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)
            and node.value.isupper() and node.value.startswith(("SAM_", "LABEL_STUDIO_"))}


def test_the_deployment_sets_only_variables_the_server_reads_and_the_token_from_the_secret():
    variables = env(sam_objects({}))
    ours = {name for name in variables if name.startswith(("SAM_", "LABEL_STUDIO_"))}
    assert ours <= server_variables(), ours - server_variables()
    assert variables["SAM_MODEL"]["value"] == "sam2.1-tiny" and variables["SAM_DEVICE"]["value"] == "cpu"
    assert variables["SAM_EMBEDDING_CACHE_MIB"]["value"] == "1024"
    assert variables["SAM_PORT"]["value"] == str(SAM_PORT)
    assert set(variables["LABEL_STUDIO_API_KEY"]["valueFrom"]) == {"secretKeyRef"}
    assert variables["SAM_SELF_ADDRESS"]["value"] == f"$(POD_IP):{SAM_PORT}"
    assert variables["POD_IP"]["valueFrom"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    # One process per pod: the upstream examples' worker and thread knobs are not there.
    assert not {"WORKERS", "THREADS", "SAM_CHOICE", "MODEL_DIR", "XDG_CACHE_HOME"} & set(variables)


def test_torch_gets_the_whole_cpu_limit_in_the_one_process():
    variables = env(sam_objects({"sam.resources.limits.cpu": "6"}))
    assert {variables[name]["value"] for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")} == {"6"}


def test_replicas_find_each_other_through_a_headless_service_and_may_call_each_other():
    objects = sam_objects({"sam.replicas": 3})
    namespace = objects[f"Deployment/{SAM_NAME}"]["metadata"]["namespace"]
    assert objects[f"Deployment/{SAM_NAME}"]["spec"]["replicas"] == 3
    peers = objects[f"Service/{SAM_PEERS_NAME}"]["spec"]
    assert peers["clusterIP"] == "None" and peers["selector"] == SAM_LABELS
    assert env(objects)["SAM_PEERS"]["value"] == f"{SAM_PEERS_NAME}.{namespace}.svc.cluster.local:{SAM_PORT}"
    policy = objects[f"NetworkPolicy/{SAM_NAME}"]["spec"]
    callers = [peer["podSelector"]["matchLabels"] for rule in policy["ingress"] for peer in rule["from"]]
    assert SAM_LABELS in callers
    assert any(rule["to"] == [{"podSelector": {"matchLabels": SAM_LABELS}}]
               and rule["ports"] == [{"protocol": "TCP", "port": SAM_PORT}] for rule in policy["egress"])
    for obj in objects.values():
        assert object_problem({"apiVersion": "v1", **obj} if "apiVersion" not in obj else obj) is None


def test_the_upstream_examples_get_no_peers_service_and_no_peer_rule():
    objects = sam_objects({"sam.model": "MobileSAM"})
    assert f"Service/{SAM_PEERS_NAME}" not in objects
    callers = [peer["podSelector"]["matchLabels"] for rule in objects[f"NetworkPolicy/{SAM_NAME}"]["spec"]["ingress"]
               for peer in rule["from"]]
    assert SAM_LABELS not in callers


def test_the_container_runs_as_the_images_user_on_a_read_only_root_filesystem():
    found = container(sam_objects({}))
    assert found["securityContext"]["readOnlyRootFilesystem"] is True
    assert found["securityContext"]["runAsUser"] == SAM_SERVER_UID and found["securityContext"]["runAsNonRoot"]
    assert {mount["mountPath"] for mount in found["volumeMounts"]} == {"/tmp", "/dev/shm"}
    assert env(sam_objects({}))["HOME"]["value"] == "/tmp"


def test_gpu_replicas_roll_one_at_a_time_and_the_cache_defaults_to_gpu_memory():
    objects = sam_objects({"sam.model": "sam2.1-large", "sam.gpus": 1, "sam.replicas": 2})
    assert objects[f"Deployment/{SAM_NAME}"]["spec"]["strategy"] == {
        "type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}
    variables = env(objects)
    assert (variables["SAM_DEVICE"]["value"], variables["SAM_EMBEDDING_CACHE_MIB"]["value"]) == ("cuda", "2048")


def test_a_cache_that_leaves_no_room_in_the_pods_memory_is_one_line_naming_the_key():
    with pytest.raises(ConfigError) as failed:
        stack_settings("dev", {**SERVER, "sam.embeddingCacheMiB": 7000, "sam.resources.limits.memory": "8Gi"})
    [problem] = [p for p in failed.value.problems if p.startswith("sam.embeddingCacheMiB: ")]
    assert "7000 leaves no room" in problem and "expected a smaller sam.embeddingCacheMiB or a larger limit" in problem


@pytest.mark.parametrize(("overrides", "warning"), [
    ({"sam.workers": 3}, "sam.workers: ignored with the platform's server"),
    ({"sam.model": "sam2.1-large"}, "sam.model: sam2.1-large on a CPU takes many seconds an image"),
    ({"sam.model": "MobileSAM", "sam.replicas": 2}, "sam.replicas: 2 replicas of the upstream MobileSAM example"),
    ({"sam.model": "MobileSAM", "sam.embeddingCacheMiB": 512}, "sam.embeddingCacheMiB: ignored unless sam.model"),
])
def test_settings_that_do_not_fit_the_server_warn_naming_the_key(overrides, warning):
    settings = stack_settings("dev", {**SERVER, **overrides})
    assert any(found.startswith(warning) for found in settings.warnings), settings.warnings
