"""Label Studio: the Helm release values, the generated secrets, and the data-safety rules.

Pure tests build values from parsed settings and plain storage references; stack tests
evaluate the real program (tools/stack_eval.py) for dev, prod and other configurations.
"""

from __future__ import annotations

import ast
import copy
import importlib.util
import ipaddress
import json
import re
from pathlib import Path
from typing import Any, Iterator

import jsonschema
import pytest
import yaml

from components.chart_values import (
    APP_CONTAINER,
    DEFAULT_BANNED_SUBNETS,
    PERSISTENCE_TYPE,
    POSTGRESQL_SUBCHART_KEYS,
    chart_values,
    unknown_value_keys,
)
from components.conventions import SecretKeyRef, app_selector_labels
from components.database import DatabaseConnection
from components.label_studio import ADMIN_TOKEN_LENGTH, CHART_NAME, CHART_REPOSITORY
from components.network import endpoint_egress, to_networks
from components.settings import ConfigError, DatabaseMode
from components.settings.label_studio import DEFAULT_LABEL_STUDIO_IMAGE_TAG
from components.storage import StorageAccess, StorageKeys, WorkloadIdentity
from tests.conftest import evaluate_cached, stack_settings, stacks_running_sam
from tests.variants import CONFIGURED_SECRETS, EXTERNAL_DATABASE, OIDC_PROVIDER, S3_COMPATIBLE, VARIANTS
from tools.stack_eval import PLACEHOLDER_PREFIX, Evaluation, stack_config

RELEASE = "kubernetes:helm.sh/v3:Release"
SECRET = "kubernetes:core/v1:Secret"
RANDOM = "random:index/randomPassword:RandomPassword"
COMPONENT = "labeling:app:LabelStudio"
PLATFORM_SECRET = "label-studio-platform-secrets"
PREFIX = "labeling-platform:"
# The Pulumi names of this component's children start with it.
CHILD_PREFIX = "labeling-label-studio-"

# A ClusterIP as the cluster would give the SAM Service.
SAM_CLUSTER_IP = "10.96.0.50"

# Values that must never appear outside a secret input.
SECRET_MARKERS = ("mock-generated-", "mock-secret-access-key", PLACEHOLDER_PREFIX, *CONFIGURED_SECRETS.values())


def evaluation(variant: str) -> Evaluation:
    stack, overrides, secrets = VARIANTS[variant]
    return evaluate_cached(stack, overrides=overrides, secrets=secrets)


@pytest.fixture(params=sorted(VARIANTS))
def any_eval(request) -> Evaluation:
    return evaluation(request.param)


def release_values(ev: Evaluation) -> dict:
    return ev.one(RELEASE).inputs["values"]


def platform_secret(ev: Evaluation):
    return next(r for r in ev.of_type(SECRET) if r.inputs["metadata"]["name"] == PLATFORM_SECRET)


def leaves(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield from leaves(v, f"{path}.{k}" if path else k)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from leaves(v, f"{path}[{i}]")
    else:
        yield path, value


def is_secret_path(path: str, secret_paths: set[str]) -> bool:
    return "$" in secret_paths or any(path == p or path.startswith((p + ".", p + "[")) for p in secret_paths)


# --------------------------------------------------------------------------- pure values


KEYS = StorageKeys(SecretKeyRef("object-storage-credentials", "AWS_ACCESS_KEY_ID"),
                   SecretKeyRef("object-storage-credentials", "AWS_SECRET_ACCESS_KEY"))
ROLE = WorkloadIdentity("label-studio-ls-app", "arn:aws:iam::123456789012:role/label-studio")


def access(**changes) -> StorageAccess:
    base = dict(bucket="images", region="eu-central-1", endpoint=None, prefix="label-studio", credentials=KEYS)
    return StorageAccess(**{**base, **changes})


def values_of(case: str, secret_name: str = "s") -> dict:
    settings, storage, database = PURE_CASES[case]
    return chart_values(settings.label_studio, storage, secret_name,
                        ml_backend_address=SAM_CLUSTER_IP if settings.sam.enabled else None, database=database)


@pytest.fixture(scope="module")
def chart_defaults_text(chart_dir) -> str:
    return (chart_dir / "values.yaml").read_text()


@pytest.fixture(scope="module")
def chart_schema(chart_dir) -> dict:
    return json.loads((chart_dir / "values.schema.json").read_text())


# (settings, storage, database outside the chart)
PURE_CASES = {
    "dev": (stack_settings("dev"), access(), None),
    "prod": (stack_settings("prod"), access(), None),
    "irsa": (stack_settings("prod", {"storage.oidcProviderArn": OIDC_PROVIDER}), access(credentials=ROLE), None),
    "s3-compatible-external-db": (
        stack_settings("dev", {"storage": S3_COMPATIBLE, "labelStudio.database": EXTERNAL_DATABASE}, CONFIGURED_SECRETS),
        access(endpoint="http://minio.storage.svc:9000", prefix="ls", presign=False,
               egress=endpoint_egress("http://minio.storage.svc:9000")),
        DatabaseConnection("db.example.com", 6432, "labels", "label_studio", to_networks(["203.0.113.0/24"], [6432]),
                           None, "verify-full")),
}


@pytest.fixture(params=sorted(PURE_CASES))
def pure_values(request) -> dict:
    return values_of(request.param, "label-studio-platform-secrets")


def test_every_key_we_set_exists_in_the_chart(pure_values, chart_defaults_text):
    assert unknown_value_keys(pure_values, chart_defaults_text) == []


# (a key path we set by mistake, the path reported: the first segment the chart lacks)
MISSPELLED = [
    ("app.ingres.enabled", "app.ingres"),                                       # a chart section
    ("global.persistence.config.s3.bukcet", "global.persistence.config.s3.bukcet"),  # a chart leaf
    ("global.persistance.type", "global.persistance"),                          # above the open maps
    ("postgresql.auth.existingSecrets", "postgresql.auth.existingSecrets"),     # the subchart
    ("postgresql.primary.persistance.size", "postgresql.primary.persistance"),  # under an allow-listed prefix
]


@pytest.mark.parametrize("path, reported", MISSPELLED)
def test_a_misspelled_key_is_caught(pure_values, chart_defaults_text, path, reported):
    values = copy.deepcopy(pure_values)
    node = values
    *parents, last = path.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = "x"
    assert unknown_value_keys(values, chart_defaults_text) == [reported]


def test_open_maps_accept_any_key(chart_defaults_text):
    values = {"global": {"extraEnvironmentVars": {"ANYTHING": "1"}, "featureFlags": {"ff_x": True}},
              "app": {"serviceAccount": {"annotations": {"example.com/any": "1"}}}}
    assert unknown_value_keys(values, chart_defaults_text) == []


def test_subchart_allow_list_stays_inside_the_subchart(chart_defaults_text):
    # The allow-list must not become a back door for keys of the chart itself.
    assert all(key.startswith("postgresql.") for key in POSTGRESQL_SUBCHART_KEYS)
    assert "postgresql" in yaml.safe_load(chart_defaults_text)


def test_values_validate_against_the_chart_schema(pure_values, chart_schema):
    jsonschema.Draft202012Validator(chart_schema).validate(pure_values)


def test_the_schema_check_is_live(pure_values, chart_schema):
    broken = copy.deepcopy(pure_values)
    broken["app"]["replicas"] = "two"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(chart_schema).validate(broken)


def test_resources_the_schema_refuses_are_config_errors():
    with pytest.raises(ConfigError, match="labelStudio.resources.limits.ephemeral-storage: is not a known key"):
        stack_settings("dev", {"labelStudio.resources.limits.ephemeral-storage": "2Gi"})


def test_no_secret_value_reaches_the_values():
    text = json.dumps(values_of("s3-compatible-external-db", "label-studio-platform-secrets"))
    assert not any(secret in text for secret in CONFIGURED_SECRETS.values())


@pytest.mark.parametrize("case", sorted(PURE_CASES))
def test_persistence_type_is_always_s3(case, chart_dir):
    persistence = values_of(case)["global"]["persistence"]
    assert persistence["enabled"] is True
    assert persistence["type"] == PERSISTENCE_TYPE == "s3"
    # A type the chart does not compare against falls back to an emptyDir.
    assert f'eq .Values.global.persistence.type "{PERSISTENCE_TYPE}"' in (chart_dir / "templates/_helpers.tpl").read_text()


def test_uploads_live_under_their_own_prefix():
    s3 = values_of("s3-compatible-external-db")["global"]["persistence"]["config"]["s3"]
    assert s3["folder"] == "ls/uploads"
    assert s3["endpointUrl"] == "http://minio.storage.svc:9000"
    assert isinstance(s3["urlExpirationSecs"], str)


def test_irsa_annotates_the_app_service_account_and_sets_no_keys():
    values = values_of("irsa")
    assert values["app"]["serviceAccount"]["annotations"] == {"eks.amazonaws.com/role-arn": ROLE.role_arn}
    assert not any("Existing" in key for key in values["global"]["persistence"]["config"]["s3"])


def test_external_database_values():
    values = values_of("s3-compatible-external-db", "platform")
    assert values["postgresql"] == {"enabled": False}
    assert values["global"]["pgConfig"] == {
        "host": "db.example.com", "port": 6432, "dbName": "labels", "userName": "label_studio",
        "password": {"secretName": "platform", "secretKey": "database-password"},
        "ssl": {"pgSslMode": "verify-full"},
    }


def test_in_cluster_database_has_no_default_password():
    values = values_of("dev", "platform")
    auth = values["postgresql"]["auth"]
    assert auth["password"] == "" and auth["existingSecret"] == "platform"
    # The app reads the very key PostgreSQL was initialised with.
    assert values["global"]["pgConfig"]["password"] == {
        "secretName": "platform", "secretKey": auth["secretKeys"]["userPasswordKey"]}
    assert values["postgresql"]["primary"]["persistence"]["size"] == "10Gi"


@pytest.mark.parametrize("case", sorted(PURE_CASES))
def test_ssrf_protection_stays_on(case):
    environment = values_of(case)["global"]["extraEnvironmentVars"]
    assert not {"SSRF_PROTECTION_ENABLED", "ML_BLOCK_LOCAL_IP"} & set(environment)
    # The platform's own endpoint is the operator's, trusted by Label Studio; AWS needs none.
    assert environment.get("S3_ENDPOINT") == PURE_CASES[case][1].endpoint


def test_only_the_sam_address_leaves_the_banned_subnets():
    environment = values_of("dev")["global"]["extraEnvironmentVars"]
    assert environment["USE_DEFAULT_BANNED_SUBNETS"] == "false"
    banned = [ipaddress.ip_network(n) for n in environment["USER_ADDITIONAL_BANNED_SUBNETS"].split(",")]
    address = ipaddress.ip_address(SAM_CLUSTER_IP)
    assert not any(address in network for network in banned)
    for probe in ("10.96.0.49", "10.96.0.51", "10.0.0.1", "169.254.169.254", "127.0.0.1", "192.168.1.1", "::1"):
        assert any(ipaddress.ip_address(probe) in network for network in banned), probe
    # Exactly one address is let through: the cut-out pieces cover the rest of 10.0.0.0/8.
    ten = [n for n in banned if n.version == 4 and n.subnet_of(ipaddress.ip_network("10.0.0.0/8"))]
    assert sum(n.num_addresses for n in ten) == 2 ** 24 - 1


def test_default_banned_subnets_are_label_studios():
    """Label Studio's list is a literal in core/utils/io.py (validate_ip); ours must match it,
    or cutting the SAM address out would silently drop or add a range."""
    source = Path(importlib.util.find_spec("label_studio").origin).parent / "core" / "utils" / "io.py"
    assignments = [node for node in ast.walk(ast.parse(source.read_text())) if isinstance(node, ast.Assign)
                   and any(getattr(target, "id", "") == "default_banned_subnets" for target in node.targets)]
    assert len(assignments) == 1
    assert tuple(ast.literal_eval(assignments[0].value)) == DEFAULT_BANNED_SUBNETS


def test_no_sam_keeps_the_default_banned_subnets():
    environment = values_of("prod")["global"]["extraEnvironmentVars"]
    if not stack_settings("prod").sam.enabled:
        assert not {"USE_DEFAULT_BANNED_SUBNETS", "USER_ADDITIONAL_BANNED_SUBNETS"} & set(environment)


def test_environment_variable_names_survive_the_chart(pure_values):
    # The chart renders each name through `replace "." "_" | upper`.
    for section in ("extraEnvironmentVars", "extraEnvironmentSecrets"):
        for name in pure_values["global"][section]:
            assert name == name.upper().replace(".", "_")
    assert all(isinstance(v, str) for v in pure_values["global"]["extraEnvironmentVars"].values())


# --------------------------------------------------------------------------- chart templates


def _define(helpers: str, name: str) -> str:
    match = re.search(r'\{\{-? define "' + re.escape(name) + r'" -?\}\}(.*?)\{\{-? end -?\}\}', helpers, re.S)
    assert match, name
    return match.group(1)


def test_app_pod_labels_match_the_chart_selector(chart_dir):
    helpers = (chart_dir / "templates/_helpers.tpl").read_text()
    # ls-app.name: `default "ls-app" .Values.app.NameOverride` -- we never set NameOverride.
    name_default = re.search(r'default "([^"]+)" \.Values\.app\.NameOverride', _define(helpers, "ls-app.name")).group(1)
    rendered = {}
    for line in _define(helpers, "ls-app.selectorLabels").strip().splitlines():
        key, _, expression = line.partition(": ")
        expression = expression.strip()
        if expression == "{{ .Release.Name }}":
            rendered[key] = "my-release"
        elif expression == '{{ include "ls-app.name" . }}':
            rendered[key] = name_default
        else:
            pytest.fail(f"unexpected selector label template: {line}")
    assert app_selector_labels("my-release") == rendered
    deployment = (chart_dir / "templates/app-deployment.yaml").read_text()
    assert 'labels:\n        {{- include "ls-app.selectorLabels" . | nindent 8 }}' in deployment


def test_log_command_container_exists_in_the_chart(chart_dir):
    deployment = (chart_dir / "templates/app-deployment.yaml").read_text()
    assert re.search(r"containers:\n\s+- name: " + APP_CONTAINER + r"\n", deployment)


# --------------------------------------------------------------------------- stacks


def test_release_is_pinned(stack_eval):
    release = stack_eval.one(RELEASE).inputs
    settings = stack_settings(stack_eval.stack).label_studio
    assert release["chart"] == CHART_NAME == "label-studio"
    assert release["repositoryOpts"]["repo"] == CHART_REPOSITORY == "https://charts.heartex.com/"
    assert release["version"] == settings.chart_version
    assert re.fullmatch(r"\d+\.\d+\.\d+", release["version"])
    assert release["name"] == "label-studio" and "postgresql" not in release["name"]
    assert release["cleanupOnFail"] is True and release["timeout"] >= 600
    assert release_values(stack_eval)["global"]["image"]["tag"] == settings.image_tag


def test_a_stack_on_another_label_studio_release_is_told_it_is_untested():
    """A staged upgrade: dev moves alone; its plan names the untested release and the tested one."""
    moved = evaluate_cached("dev", overrides={"labelStudio.imageTag": "1.24.0"})
    [warning] = [w for w in moved.warnings if w.startswith("labelStudio.imageTag:")]
    assert f"1.24.0 is untested; the tests run Label Studio {DEFAULT_LABEL_STUDIO_IMAGE_TAG}" in warning
    assert release_values(moved)["global"]["image"]["tag"] == "1.24.0"
    tested = evaluate_cached("dev", overrides={"labelStudio.imageTag": DEFAULT_LABEL_STUDIO_IMAGE_TAG})
    assert not [w for w in tested.warnings if w.startswith("labelStudio.imageTag:")]


def test_no_secret_appears_outside_secret_inputs(any_eval):
    for resource in any_eval.resources:
        for path, value in leaves(resource.inputs):
            if isinstance(value, str) and not is_secret_path(path, resource.secret_paths):
                assert not any(marker in value for marker in SECRET_MARKERS), (resource.type, resource.name, path)
    release = any_eval.one(RELEASE)
    assert not release.secret_paths, "the values hold references only; a secret would hide their diff"


def test_release_values_match_the_chart(any_eval, chart_defaults_text, chart_schema):
    values = release_values(any_eval)
    assert unknown_value_keys(values, chart_defaults_text) == []
    jsonschema.Draft202012Validator(chart_schema).validate(values)
    assert values["global"]["persistence"]["type"] == "s3"
    assert values["app"]["ingress"] == {"enabled": False}


def test_secret_references_point_into_the_platform_secret(any_eval):
    values = release_values(any_eval)
    secret = platform_secret(any_eval)
    keys = set(secret.inputs["stringData"])
    references = list(values["global"]["extraEnvironmentSecrets"].values()) + [values["global"]["pgConfig"]["password"]]
    assert set(values["global"]["extraEnvironmentSecrets"]) == {"LABEL_STUDIO_PASSWORD", "LABEL_STUDIO_USER_TOKEN",
                                                                "SECRET_KEY"}
    for reference in references:
        assert reference["secretName"] == PLATFORM_SECRET and reference["secretKey"] in keys
    if values["postgresql"]["enabled"]:
        auth = values["postgresql"]["auth"]
        assert auth["existingSecret"] == PLATFORM_SECRET
        assert set(auth["secretKeys"].values()) <= keys


def test_platform_secret_values_are_all_secret(any_eval):
    secret = platform_secret(any_eval)
    assert secret.inputs["stringData"]
    for key in secret.inputs["stringData"]:
        assert is_secret_path(f"stringData.{key}", secret.secret_paths), key


def test_generated_secrets(stack_eval):
    randoms = {r.name.removeprefix(CHILD_PREFIX): r.inputs for r in stack_eval.of_type(RANDOM)
               if r.name.startswith(CHILD_PREFIX)}
    # The chart's own PostgreSQL gets generated passwords; RDS (prod) generates its own.
    in_cluster = (("database-password", "database-admin-password")
                  if stack_settings(stack_eval.stack).label_studio.database.mode is DatabaseMode.IN_CLUSTER else ())
    assert set(randoms) == {"admin-password", "admin-api-token", "django-secret-key", *in_cluster}
    token = randoms["admin-api-token"]
    assert token["length"] == ADMIN_TOKEN_LENGTH == 40 and token["special"] is False
    assert randoms["django-secret-key"]["length"] >= 50
    assert "adminPassword" in stack_eval.secret_outputs and "adminApiToken" in stack_eval.secret_outputs


def test_external_database_password_comes_from_config():
    ev = evaluation("external-db")
    assert not [r for r in ev.of_type(RANDOM) if "database" in r.name]
    assert platform_secret(ev).inputs["stringData"]["database-password"] == CONFIGURED_SECRETS[
        "labelStudio.database.password"]


def test_data_is_protected_only_in_a_protected_stack(stack_eval):
    expected = stack_settings(stack_eval.stack).protect
    guarded = [stack_eval.one(RELEASE), platform_secret(stack_eval),
               *(r for r in stack_eval.of_type(RANDOM) if r.name.startswith(CHILD_PREFIX))]
    assert [(r.name, r.protect) for r in guarded] == [(r.name, expected) for r in guarded]


def test_children_are_parented_to_the_component(stack_eval):
    component = stack_eval.one(COMPONENT)
    children = {(r.type, r.name) for r in stack_eval.resources if r.parent == component.urn}
    assert (RELEASE, f"{CHILD_PREFIX}release") in children
    assert (SECRET, f"{CHILD_PREFIX}platform-secrets") in children
    assert {n for t, n in children if t == RANDOM} == {
        r.name for r in stack_eval.of_type(RANDOM) if r.name.startswith(CHILD_PREFIX)}


def test_release_waits_for_its_secrets_and_storage(stack_eval):
    release = stack_eval.one(RELEASE)
    assert platform_secret(stack_eval).urn in release.dependencies
    storage = stack_eval.one("labeling:storage:ObjectStorage")
    credentials = [r for r in stack_eval.of_type(SECRET) if r.parent == storage.urn]
    assert credentials and all(r.urn in release.dependencies for r in credentials)


def test_exports(stack_eval):
    namespace = stack_config(stack_eval.stack)[1][PREFIX + "namespace"]
    logs = stack_eval.outputs["kubectlLogs"]
    assert f"kubectl -n {namespace} logs -f deploy/label-studio-ls-app -c app" in logs
    sam_logs = f"kubectl -n {namespace} logs -f deploy/sam-backend"
    assert (sam_logs in logs) == stack_settings(stack_eval.stack).sam.enabled


def test_no_sam_means_no_ml_exception():
    ev = evaluation("no-sam")
    assert not {"USE_DEFAULT_BANNED_SUBNETS", "USER_ADDITIONAL_BANNED_SUBNETS"} & set(
        release_values(ev)["global"]["extraEnvironmentVars"])
    assert "sam-backend" not in ev.outputs["kubectlLogs"]


def test_irsa_stack_uses_the_role():
    values = release_values(evaluation("irsa"))
    assert values["app"]["serviceAccount"]["annotations"]["eks.amazonaws.com/role-arn"].startswith("arn:aws:iam::")
    assert "accessKeyExistingSecret" not in values["global"]["persistence"]["config"]["s3"]


@pytest.mark.parametrize("stack", stacks_running_sam())
def test_service_url_is_the_chart_service(stack):
    ev = evaluate_cached(stack)
    namespace = stack_config(stack)[1][PREFIX + "namespace"]
    sam = ev.one("kubernetes:apps/v1:Deployment", "labeling-sam-deployment")
    url = f"http://label-studio-ls-app.{namespace}.svc.cluster.local:80"
    assert url in {value for _, value in leaves(sam.inputs)}


def test_stacks_deploy_the_chart_version_the_tests_check_against(stack_eval, chart_dir):
    """Values are validated against one chart; a stack on another version would go unchecked."""
    chart = yaml.safe_load((chart_dir / "Chart.yaml").read_text())
    assert stack_eval.one("kubernetes:helm.sh/v3:Release").inputs["version"] == chart["version"]
    assert chart["name"] == CHART_NAME
