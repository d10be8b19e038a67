"""The SAM ML backend: its manifests alone, and as the real program declares them per stack."""

from __future__ import annotations

import base64
import ipaddress
import re
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlsplit

import kubernetes_validate
import pytest

from components.sam_backend import (
    HEALTH_PATH,
    SAM_LABELS,
    SAM_NAME,
    SAM_PORT,
    rollout_budget_seconds,
    sam_manifests,
    service_url,
)
from components.sam_container import (
    BAKED_CHECKPOINT_DIR, IMAGE_CACHE_DIR, LABEL_STUDIO_TOKEN_VARIABLES, LABEL_STUDIO_URL_VARIABLES, SAM_SERVER_UID,
)
from components.conventions import SecretKeyRef
from components.network import to_pods
from components.settings import Resources, SamModel, SamSettings, Settings, Toleration, quantity_value
from tests.conftest import evaluate_cached, stack_settings, stacks_running_sam
from tests.variants import UPSTREAM_MOBILE_SAM, UPSTREAM_SAM_ON_GPU, Variant
from tests.variants import VARIANTS as NAMED_VARIANTS
from tools.object_validation import KUBERNETES_VERSION
from tools.stack_eval import DeclaredResource, Evaluation
SAM_TYPES = {
    "Deployment": "kubernetes:apps/v1:Deployment",
    "Service": "kubernetes:core/v1:Service",
    "NetworkPolicy": "kubernetes:networking.k8s.io/v1:NetworkPolicy",
}
COMPONENT_TYPE = "labeling:ml:SamBackend"
ACTIVE_HOURS_TYPE = "labeling:ml:SamActiveHours"
GPU = "nvidia.com/gpu"


@pytest.fixture(params=[*stacks_running_sam(), "sam-upstream"])
def stack_eval(request) -> Evaluation:
    """Each stack that runs SAM (the suite's fixture, narrowed: a stack with SAM off declares
    none), and dev with the upstream example instead of the platform's server."""
    return evaluate_cached(*NAMED_VARIANTS.get(request.param, Variant(request.param)))


def settings_of(evaluation: Evaluation) -> Settings:
    """The settings the evaluated program read (a variant's overrides included)."""
    return evaluation.program["settings"]

GPU_OVERRIDES = {"sam.gpus": 2, "sam.nodeSelector": {"node.kubernetes.io/instance-type": "g5.12xlarge"}}
CUSTOM_TOLERATION = {"key": "dedicated", "operator": "Equal", "value": "sam", "effect": "NoSchedule"}
# Every stack variant the wiring must hold for: committed CPU and GPU stacks, more GPUs
# with another node pool, operator-chosen tolerations, and a GPU added to the CPU stack.
VARIANTS = [
    ("dev", {}),
    ("prod", {}),
    ("prod", GPU_OVERRIDES),
    ("prod", {"sam.tolerations": [CUSTOM_TOLERATION]}),
    ("dev", {"sam.gpus": 1}),
]
VARIANT_IDS = ["dev", "prod", "prod-2gpus", "prod-tolerations", "dev-1gpu"]


# --------------------------------------------------------------------------- helpers


def sam_resources(evaluation: Evaluation) -> dict[str, DeclaredResource]:
    """The Deployment, Service and NetworkPolicy named SAM_NAME (not the platform server's peers Service)."""
    children = evaluation.children_of(evaluation.one(COMPONENT_TYPE))
    return {kind: next(r for r in children if r.type == type_ and r.inputs["metadata"]["name"] == SAM_NAME)
            for kind, type_ in SAM_TYPES.items()}


def pod_spec(deployment: dict) -> dict:
    return deployment["spec"]["template"]["spec"]


def sam_container(deployment: dict) -> dict:
    (container,) = pod_spec(deployment)["containers"]
    return container


def environment(container: dict) -> dict[str, dict]:
    return {variable["name"]: variable for variable in container["env"]}


def chart_app_selector_labels(chart_dir: Path, release_name: str) -> dict[str, str]:
    """Render `ls-app.selectorLabels` from the chart's _helpers.tpl for `release_name`.

    Only the expressions the template uses today are understood; any other expression
    raises, so a chart that changes how it labels its pods fails the test.
    """
    helpers = (chart_dir / "templates" / "_helpers.tpl").read_text()

    def define(name: str) -> str:
        match = re.search(r'\{\{-?\s*define "' + re.escape(name) + r'"\s*-?\}\}(.*?)\{\{-?\s*end\s*-?\}\}', helpers, re.S)
        assert match, f"the chart no longer defines {name}"
        return match.group(1)

    default_name = re.search(r'default "([^"]+)" \.Values\.app\.NameOverride', define("ls-app.name"))
    assert default_name, "ls-app.name no longer defaults to a fixed name"
    expressions = {
        '{{ include "ls-app.name" . }}': default_name.group(1),
        "{{ .Release.Name }}": release_name,
    }
    labels = {}
    for line in define("ls-app.selectorLabels").strip().splitlines():
        key, _, expression = line.partition(":")
        labels[key.strip()] = expressions[expression.strip()]
    return labels


def _value_at(inputs: Any, path: str) -> Any:
    value = inputs
    for key, index in re.findall(r"([^.\[\]]+)|\[(\d+)\]", path):
        value = value[int(index)] if index else value[key]
    return value


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def secret_values(evaluation: Evaluation) -> set[str]:
    """Every secret string the program handles: secret inputs, Secret objects, secret outputs."""
    found: set[str] = set()
    for resource in evaluation.resources:
        for path in resource.secret_paths:
            found.update(_strings(resource.inputs if path == "$" else _value_at(resource.inputs, path)))
        if resource.type == "kubernetes:core/v1:Secret":
            found.update(_strings(resource.inputs.get("stringData", {})))
            found.update(base64.b64decode(v).decode(errors="replace") for v in _strings(resource.inputs.get("data", {})))
    for name in evaluation.secret_outputs:
        found.update(_strings(evaluation.outputs[name]))
    return found


def plain_settings(**changes: Any) -> SamSettings:
    values = dict(
        enabled=True, model=SamModel.MOBILE_SAM, image="registry.example/sam:1.0@sha256:" + "0" * 64, gpus=0,
        node_selector={}, tolerations=(), resources=Resources({"cpu": "1", "memory": "4Gi"}, {"cpu": "4", "memory": "8Gi"}),
        shm_size="2Gi", startup_timeout_seconds=600,
    )
    values.update(changes)
    return SamSettings(**values)


PLAIN_LABEL_STUDIO_LABELS = {"app.kubernetes.io/name": "ls-app", "app.kubernetes.io/instance": "label-studio"}


def plain_manifests(settings: SamSettings) -> dict[str, dict]:
    return sam_manifests(settings, "labeling", "http://label-studio-ls-app.labeling.svc.cluster.local:80",
                         SecretKeyRef("label-studio-admin", "token"), PLAIN_LABEL_STUDIO_LABELS,
                         [to_pods(PLAIN_LABEL_STUDIO_LABELS, [8085])])


# --------------------------------------------------------------------------- pure manifests


@pytest.mark.parametrize("gpus", [0, 1])
def test_manifests_are_valid_kubernetes_objects(gpus):
    for manifest in plain_manifests(plain_settings(gpus=gpus)).values():
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)


def test_cpu_backend_rolls_and_asks_for_no_gpu():
    deployment = plain_manifests(plain_settings())["Deployment"]
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    resources = sam_container(deployment)["resources"]
    assert GPU not in resources["requests"] and GPU not in resources["limits"]
    assert "nodeSelector" not in pod_spec(deployment)
    assert "tolerations" not in pod_spec(deployment)


def test_gpu_backend_recreates_and_requests_its_gpus_on_selected_nodes():
    toleration = Toleration("nvidia.com/gpu", "Exists", None, "NoSchedule")
    deployment = plain_manifests(plain_settings(gpus=2, node_selector={"gpu": "a100"}, tolerations=(toleration,)))["Deployment"]
    pod = pod_spec(deployment)
    resources = sam_container(deployment)["resources"]
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert resources["limits"][GPU] == resources["requests"][GPU] == "2"
    assert resources["limits"]["memory"] == "8Gi"
    assert pod["nodeSelector"] == {"gpu": "a100"}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]


def test_token_is_referenced_from_the_secret_never_inlined():
    env = environment(sam_container(plain_manifests(plain_settings())["Deployment"]))
    for name in LABEL_STUDIO_TOKEN_VARIABLES:
        assert env[name] == {"name": name, "valueFrom": {"secretKeyRef": {"name": "label-studio-admin", "key": "token"}}}
    for name in LABEL_STUDIO_URL_VARIABLES:
        assert env[name]["value"] == "http://label-studio-ls-app.labeling.svc.cluster.local:80"
    assert env["SAM_CHOICE"]["value"] == "MobileSAM"


def test_startup_probe_budget_and_rollout_deadline_follow_the_loading_timeout():
    settings = plain_settings(startup_timeout_seconds=1805)
    deployment = plain_manifests(settings)["Deployment"]
    startup = sam_container(deployment)["startupProbe"]
    budget = startup["periodSeconds"] * startup["failureThreshold"]
    assert 1805 <= budget < 1805 + startup["periodSeconds"]
    assert deployment["spec"]["progressDeadlineSeconds"] == rollout_budget_seconds(settings) > 1805
    assert deployment["metadata"]["annotations"]["pulumi.com/timeoutSeconds"] == str(rollout_budget_seconds(settings))


@pytest.mark.parametrize(("image", "policy"), [
    ("registry.example/sam:1.0@sha256:" + "0" * 64, "IfNotPresent"),
    ("t9kpublic/label-studio-sam:main", "Always"),
])
def test_only_a_digest_lets_nodes_reuse_a_cached_image(image, policy):
    assert sam_container(plain_manifests(plain_settings(image=image))["Deployment"])["imagePullPolicy"] == policy


def test_manifests_refuse_a_missing_image():
    with pytest.raises(ValueError, match="sam.image"):
        plain_manifests(plain_settings(image=None))


def test_service_url_is_the_service_dns_name():
    assert service_url("labeling") == "http://sam-backend.labeling.svc.cluster.local:9090"


def test_chart_renders_the_expected_app_selector_labels(chart_dir):
    assert chart_app_selector_labels(chart_dir, "label-studio") == PLAIN_LABEL_STUDIO_LABELS


# --------------------------------------------------------------------------- declared by the program


def test_objects_are_valid_kubernetes(stack_eval):
    for resource in sam_resources(stack_eval).values():
        kubernetes_validate.validate(resource.kubernetes_manifest, KUBERNETES_VERSION, strict=True)


def test_objects_live_in_the_platform_namespace_with_explicit_names(stack_eval):
    namespace = settings_of(stack_eval).namespace
    for resource in sam_resources(stack_eval).values():
        metadata = resource.inputs["metadata"]
        assert (metadata["name"], metadata["namespace"]) == (SAM_NAME, namespace)
        assert metadata["labels"] == SAM_LABELS


def test_every_child_belongs_to_the_component_and_uses_the_stack_provider(stack_eval):
    component = stack_eval.one(COMPONENT_TYPE)
    children = [r for r in stack_eval.resources if r.parent == component.urn]
    # With sam.activeHours, the scaler is a component of its own inside this one.
    scaler = [r.type for r in children if r.type == ACTIVE_HOURS_TYPE]
    settings = settings_of(stack_eval).sam
    # The platform's server finds its fellow replicas through a headless Service of its own.
    peers = [SAM_TYPES["Service"]] if settings.model.platform_server else []
    assert sorted(r.type for r in children) == sorted([*SAM_TYPES.values(), *peers, *scaler])
    assert bool(scaler) == (settings.active_hours is not None)
    for child in (r for r in children if r.custom):
        assert child.provider.startswith(stack_eval.one("pulumi:providers:kubernetes").urn)


def test_token_reaches_the_pod_only_by_secret_key_ref(stack_eval):
    deployment = sam_resources(stack_eval)["Deployment"]
    assert deployment.secret_paths == set(), "a secret value was written into the Deployment"
    env = environment(sam_container(deployment.inputs))
    secrets = secret_values(stack_eval)
    assert not [v["name"] for v in env.values() if v.get("value") in secrets]
    # The upstream examples read either spelling, the platform's server the newer one.
    expected = LABEL_STUDIO_TOKEN_VARIABLES if not settings_of(stack_eval).sam.model.platform_server else (
        "LABEL_STUDIO_API_KEY",)
    assert [name for name in LABEL_STUDIO_TOKEN_VARIABLES if name in env] == list(expected)
    for name in expected:
        assert set(env[name]) == {"name", "valueFrom"}
        reference = env[name]["valueFrom"]["secretKeyRef"]
        (secret,) = [s for s in stack_eval.of_type("kubernetes:core/v1:Secret")
                     if s.inputs["metadata"]["name"] == reference["name"]]
        assert reference["key"] in {**secret.inputs.get("data", {}), **secret.inputs.get("stringData", {})}


def test_label_studio_is_reached_by_its_service_dns_name(stack_eval):
    settings = settings_of(stack_eval)
    env = environment(sam_container(sam_resources(stack_eval)["Deployment"].inputs))
    assert "LABEL_STUDIO_URL" in env
    for name in (name for name in LABEL_STUDIO_URL_VARIABLES if name in env):
        url = urlsplit(env[name]["value"])
        with pytest.raises(ValueError):
            ipaddress.ip_address(url.hostname)
        assert url.scheme == "http"
        # The chart's app Service answers on port 80.
        assert url.port in (None, 80)
        assert url.hostname == f"{settings.label_studio.app_service_name}.{settings.namespace}.svc.cluster.local"


@pytest.mark.parametrize(("stack", "overrides"), VARIANTS, ids=VARIANT_IDS)
def test_scheduling_follows_config(stack, overrides):
    settings = stack_settings(stack, overrides).sam
    deployment = sam_resources(evaluate_cached(stack, overrides))["Deployment"].inputs
    pod = pod_spec(deployment)
    resources = sam_container(deployment)["resources"]
    assert resources["limits"].get(GPU) == (str(settings.gpus) if settings.gpus else None)
    assert resources["requests"].get(GPU) == resources["limits"].get(GPU)
    assert pod.get("nodeSelector", {}) == dict(settings.node_selector)
    assert pod.get("tolerations", []) == [t.as_dict() for t in settings.tolerations]
    assert (deployment["spec"]["strategy"]["type"] == "Recreate") == (settings.gpus > 0)


def test_gpu_overrides_reach_the_pod():
    deployment = sam_resources(evaluate_cached("prod", GPU_OVERRIDES))["Deployment"].inputs
    pod = pod_spec(deployment)
    assert sam_container(deployment)["resources"]["limits"][GPU] == "2"
    assert pod["nodeSelector"] == GPU_OVERRIDES["sam.nodeSelector"]
    assert pod["tolerations"] == [{"key": GPU, "operator": "Exists", "effect": "NoSchedule"}]
    custom = sam_resources(evaluate_cached("prod", {"sam.tolerations": [CUSTOM_TOLERATION]}))["Deployment"].inputs
    assert pod_spec(custom)["tolerations"] == [CUSTOM_TOLERATION]


def test_probes_wait_for_the_model_on_health(stack_eval):
    settings = settings_of(stack_eval).sam
    deployment = sam_resources(stack_eval)["Deployment"].inputs
    container = sam_container(deployment)
    assert {"name": "http", "containerPort": SAM_PORT, "protocol": "TCP"} in container["ports"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": HEALTH_PATH, "port": SAM_PORT}
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= settings.startup_timeout_seconds
    # The provider keeps waiting for readiness, long enough for the model to load.
    annotations = deployment["metadata"]["annotations"]
    assert "pulumi.com/skipAwait" not in annotations
    assert int(annotations["pulumi.com/timeoutSeconds"]) >= settings.startup_timeout_seconds
    assert deployment["spec"]["progressDeadlineSeconds"] >= settings.startup_timeout_seconds


@pytest.mark.parametrize(("stack", "overrides"), [("dev", {}), ("prod", {"sam.shmSize": "8Gi"})], ids=["dev", "prod-8Gi"])
def test_shared_memory_is_an_in_memory_volume_of_the_configured_size(stack, overrides):
    settings = stack_settings(stack, overrides).sam
    deployment = sam_resources(evaluate_cached(stack, overrides))["Deployment"].inputs
    pod = pod_spec(deployment)
    (mount,) = [m for m in sam_container(deployment)["volumeMounts"] if m["mountPath"] == "/dev/shm"]
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    assert volume["emptyDir"] == {"medium": "Memory", "sizeLimit": settings.shm_size}


@pytest.mark.parametrize(("stack", "overrides"), [("dev", UPSTREAM_MOBILE_SAM), ("prod", UPSTREAM_SAM_ON_GPU)],
                         ids=["dev-mobilesam", "prod-sam"])
def test_model_cache_is_writable_and_leaves_the_baked_checkpoints_visible(stack, overrides):
    """The upstream examples write their sqlite cache under MODEL_DIR beside the baked checkpoints."""
    deployment = sam_resources(evaluate_cached(stack, overrides))["Deployment"].inputs
    pod = pod_spec(deployment)
    container = sam_container(deployment)
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    for path in mounts:
        assert not (BAKED_CHECKPOINT_DIR + "/").startswith(path.rstrip("/") + "/"), f"{path} hides {BAKED_CHECKPOINT_DIR}"
    for writable in (environment(container)["MODEL_DIR"]["value"], "/tmp"):
        assert "emptyDir" in volumes[mounts[writable]["name"]]
        assert not mounts[writable].get("readOnly", False)


def test_pod_runs_with_least_privilege(stack_eval):
    deployment = sam_resources(stack_eval)["Deployment"].inputs
    pod = pod_spec(deployment)
    container = sam_container(deployment)
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    unprivileged = {"allowPrivilegeEscalation": False, "privileged": False, "capabilities": {"drop": ["ALL"]}}
    settings = settings_of(stack_eval).sam
    if settings.model.platform_server:
        # The platform's image has its own user and writes only to its volumes.
        assert container["securityContext"] == {**unprivileged, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
                                                "runAsUser": SAM_SERVER_UID, "runAsGroup": SAM_SERVER_UID}
    else:
        # The upstream image runs as root and writes under its working directory.
        assert container["securityContext"] == unprivileged
    assert container["image"] == settings.image


def test_service_exposes_the_http_port_in_cluster_only(stack_eval):
    resources = sam_resources(stack_eval)
    spec = resources["Service"].inputs["spec"]
    assert spec["type"] == "ClusterIP"
    assert spec["ports"] == [{"name": "http", "port": SAM_PORT, "targetPort": "http", "protocol": "TCP"}]
    assert spec["selector"] == resources["Deployment"].inputs["spec"]["template"]["metadata"]["labels"]


@pytest.mark.parametrize(("stack", "overrides"), [("dev", {}), ("prod", {}), ("dev", {"labelStudio.releaseName": "annotate"})],
                         ids=["dev", "prod", "dev-release-annotate"])
def test_network_policy_admits_only_the_chart_app_pods_and_the_self_test(chart_dir, stack, overrides):
    release_name = stack_settings(stack, overrides).label_studio.release_name
    evaluation = evaluate_cached(stack, overrides)
    resources = sam_resources(evaluation)
    spec = resources["NetworkPolicy"].inputs["spec"]
    assert spec["podSelector"] == {"matchLabels": resources["Deployment"].inputs["spec"]["template"]["metadata"]["labels"]}
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    app_pods = {"podSelector": {"matchLabels": chart_app_selector_labels(chart_dir, release_name)}}
    # The full runs (the reconciler's Job, the scheduled reconcile) ask the backend directly for
    # the cause of a failed self-test.
    job_pods = {"podSelector": {"matchLabels": evaluation.one("kubernetes:batch/v1:Job", "labeling-configuration-job")
                                .inputs["spec"]["template"]["metadata"]["labels"]}}
    scheduled = evaluation.one("kubernetes:batch/v1:CronJob", "labeling-configuration-scheduled-reconcile")
    scheduled_pods = {"podSelector": {"matchLabels": scheduled.inputs["spec"]["jobTemplate"]["spec"]["template"]
                                      ["metadata"]["labels"]}}
    # The platform's server hands a click to the replica that owns its image.
    peers = [{"podSelector": {"matchLabels": SAM_LABELS}}] if stack_settings(stack, overrides).sam.model.platform_server \
        else []
    callers = {"from": [app_pods, job_pods, scheduled_pods, *peers], "ports": [{"protocol": "TCP", "port": SAM_PORT}]}
    # The cluster's Prometheus scrapes the platform's server when monitoring is on (tests/test_sam_metrics.py).
    assert spec["ingress"][0] == callers
    settings = stack_settings(stack, overrides)
    scraped = settings.monitoring.enabled and settings.sam.model.platform_server
    assert len(spec["ingress"]) == (2 if scraped else 1)
    # Out: Label Studio's app pods, for task images through Label Studio's nginx on 8085.
    assert {"to": [app_pods], "ports": [{"protocol": "TCP", "port": 8085}]} in spec["egress"]


def test_backend_url_output_is_the_service_dns_name(stack_eval):
    assert stack_eval.outputs["samBackendUrl"] == service_url(settings_of(stack_eval).namespace)


def test_disabled_backend_declares_nothing():
    # Projects asking for SAM would be refused with SAM off, so keep one that does not.
    overrides = {
        "sam.enabled": False,
        "labeling.projects": [{"title": "Cats and dogs", "labelConfig": "label_configs/image_classification.xml",
                               "prefix": "kagglecatsanddogs"}],
    }
    evaluation = evaluate_cached("dev", overrides)
    assert evaluation.of_type(COMPONENT_TYPE) == []
    for type_ in SAM_TYPES.values():
        assert [r.name for r in evaluation.of_type(type_) if SAM_NAME in (r.name, r.inputs["metadata"].get("name"))] == []
    assert evaluation.outputs["samBackendUrl"] is None


# --------------------------------------------------------------------------- safe for a team


@pytest.mark.parametrize(("stack", "overrides", "workers"),
                         [("dev", UPSTREAM_MOBILE_SAM, 2), ("prod", UPSTREAM_SAM_ON_GPU, 1),
                          ("dev", {**UPSTREAM_MOBILE_SAM, "sam.workers": 3}, 3)],
                         ids=["dev-cpu", "prod-gpu", "dev-3-workers"])
def test_every_worker_answers_one_request_at_a_time(stack, overrides, workers):
    """The upstream image starts `gunicorn --workers $WORKERS --threads $THREADS` around one
    predictor per process: with one thread no two requests ever share a predictor."""
    env = environment(sam_container(sam_resources(evaluate_cached(stack, overrides))["Deployment"].inputs))
    assert env["WORKERS"]["value"] == str(workers)
    assert env["THREADS"]["value"] == "1"


@pytest.mark.parametrize(("limit", "workers", "threads"), [("8", 2, 4), ("4", 1, 4), ("3", 2, 1), ("500m", 1, 1),
                                                           ("7500m", 2, 3)])
def test_torch_threads_are_each_workers_share_of_the_cpu_limit(limit, workers, threads):
    settings = plain_settings(workers=workers, resources=Resources({"cpu": "100m", "memory": "4Gi"},
                                                                   {"cpu": limit, "memory": "8Gi"}))
    env = environment(sam_container(plain_manifests(settings)["Deployment"]))
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        assert env[name]["value"] == str(threads)


def test_committed_stacks_keep_threads_times_workers_within_the_cpu_limit(stack_eval):
    settings = settings_of(stack_eval).sam
    env = environment(sam_container(sam_resources(stack_eval)["Deployment"].inputs))
    # The platform's server is one process: no WORKERS.
    used = int(env["OMP_NUM_THREADS"]["value"]) * int(env.get("WORKERS", {"value": "1"})["value"])
    assert 1 <= used <= max(1, quantity_value(settings.resources.limits["cpu"]))


@pytest.mark.parametrize(("stack", "overrides"), [("dev", UPSTREAM_MOBILE_SAM),
                                                  ("prod", {**UPSTREAM_SAM_ON_GPU, "sam.imageCacheSize": "4Gi"})],
                         ids=["dev", "prod-4Gi"])
def test_image_cache_is_a_sized_empty_dir_inside_the_ephemeral_storage_limit(stack, overrides):
    settings = stack_settings(stack, overrides).sam
    deployment = sam_resources(evaluate_cached(stack, overrides))["Deployment"].inputs
    container = sam_container(deployment)
    # label-studio-sdk's get_local_path caches under $XDG_CACHE_HOME/label-studio.
    assert environment(container)["XDG_CACHE_HOME"]["value"] == IMAGE_CACHE_DIR
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == IMAGE_CACHE_DIR]
    volume = next(v for v in pod_spec(deployment)["volumes"] if v["name"] == mount["name"])
    assert volume["emptyDir"] == {"sizeLimit": settings.image_cache_size}
    limit = container["resources"]["limits"]["ephemeral-storage"]
    assert quantity_value(settings.image_cache_size) < quantity_value(limit)
    assert "ephemeral-storage" in container["resources"]["requests"]


def test_sam2_gets_its_own_environment_instead_of_sam_choice():
    overrides = {**UPSTREAM_SAM_ON_GPU, "sam.model": "SAM2", "sam.image": "heartexlabs/label-studio-ml-backend:sa2-master"}
    settings = stack_settings("prod", overrides).sam
    env = environment(sam_container(sam_resources(evaluate_cached("prod", overrides))["Deployment"].inputs))
    assert {name: env[name]["value"] for name in ("DEVICE", "MODEL_CONFIG", "MODEL_CHECKPOINT")} == {
        "DEVICE": "cuda", "MODEL_CONFIG": "configs/sam2.1/sam2.1_hiera_l.yaml",
        "MODEL_CHECKPOINT": "sam2.1_hiera_large.pt"}
    assert "SAM_CHOICE" not in env and settings.workers == 1 and env["THREADS"]["value"] == "1"
    chosen = {**overrides, "sam.modelCheckpoint": "sam2.1_hiera_base_plus.pt",
              "sam.modelConfig": "configs/sam2.1/sam2.1_hiera_b+.yaml"}
    env = environment(sam_container(sam_resources(evaluate_cached("prod", chosen))["Deployment"].inputs))
    assert (env["MODEL_CONFIG"]["value"], env["MODEL_CHECKPOINT"]["value"]) == (
        "configs/sam2.1/sam2.1_hiera_b+.yaml", "sam2.1_hiera_base_plus.pt")
