"""Configuration as people type it: the shapes `pulumi config set` stores, switches that
switch on their own, values normalised where they have one meaning, sharp edges stopped
before any resource, and every config recipe in the README and docs run on each stack."""

from __future__ import annotations


import json
import re

import pytest
from hypothesis import given, settings as hypothesis_settings, strategies as st

from components import PROJECT_ROOT
from components.settings import ConfigError, describe_fields, parse_settings
from tests.conftest import ALL_STACKS, FULL_RUN, evaluate_cached, fuzz_examples, stack_settings
from tests.pulumi_cli import StackConfig, parse_path, stored_value
from tests.user_stacks import TYPED
from tests.variants import SAM_SERVER_BUILD, SIGNING_REPOSITORY

# --------------------------------------------------------------------------- what the CLI stores


@pytest.mark.parametrize("text, path, stored", [
    ("true", True, True), ("false", True, False), ("2", True, 2), ("-3", True, -3), ("0", True, 0),
    ("0755", True, "0755"), ("0.5", True, "0.5"), ("2Gi", True, "2Gi"), ("True", True, "True"),
    ("2", False, "2"), ("true", False, "true"),
])
def test_the_cli_stores_values_the_way_pulumi_does(text, path, stored):
    assert stored_value(text, path=path) == stored and type(stored_value(text, path=path)) is type(stored)


def test_paths_parse_like_pulumi():
    assert parse_path('sam.nodeSelector["nvidia.com/gpu.family"]') == ["sam", "nodeSelector", "nvidia.com/gpu.family"]
    assert parse_path("labeling.projects[1].title") == ["labeling", "projects", 1, "title"]


# Texts people type for each key, on the stack where the key applies. Every scalar key of
# the contract has an entry (a test below holds that), so a new key needs its own.
EXAMPLES: dict[str, tuple[str, tuple[str, ...]]] = {
    "namespace": ("dev", ("labeling-dev", "team-2")),
    "protect": ("prod", ("true", "false")),
    "kubernetes.context": ("dev", ("prod-cluster", "2024")),
    "ingress.enabled": ("dev", ("true", "false")),
    "ingress.host": ("dev", ("label.dev.example.com", "labels.example.org")),
    "ingress.className": ("dev", ("nginx", "traefik")),
    "ingress.tls.clusterIssuer": ("dev", ("letsencrypt-staging", "letsencrypt.prod")),
    "ingress.maxBodySize": ("dev", ("0", "100", "100m", "1g")),
    "ingress.plainHttpReason": ("prod", ("TLS ends at the load balancer", "2024")),
    "labelStudio.releaseName": ("dev", ("label-studio", "ls2")),
    "labelStudio.chartVersion": ("dev", ("2.0.5",)),
    "labelStudio.imageTag": ("dev", ("1.23.2",)),
    "labelStudio.confirmDowngradeFrom": ("dev", ("1.23.2", "1.24.0")),
    "labelStudio.replicas": ("dev", ("1", "2", "20")),
    "labelStudio.resources.requests.cpu": ("dev", ("1", "2", "500m", "0.5")),
    "labelStudio.resources.requests.memory": ("dev", ("1Gi", "1073741824")),
    "labelStudio.resources.limits.cpu": ("dev", ("4", "4000m", "8")),
    "labelStudio.resources.limits.memory": ("dev", ("6144Mi", "8Gi")),
    "labelStudio.adminEmail": ("dev", ("admin@example.com",)),
    "labelStudio.publicUrl": ("dev", ("https://label.dev.example.com", "http://10.0.0.5:8080")),
    "labelStudio.database.port": ("prod", ("5432", "6432")),
    "labelStudio.database.name": ("dev", ("labelstudio", "labels")),
    "labelStudio.database.user": ("dev", ("labelstudio", "ls_user")),
    "labelStudio.database.storageSize": ("dev", ("10Gi", "50Gi")),
    "labelStudio.database.rds.vpcId": ("prod", ("vpc-0a1b2c3d4e5f60718",)),
    "labelStudio.database.rds.instanceClass": ("prod", ("db.m7g.large",)),
    "labelStudio.database.rds.engineVersion": ("prod", ("16", "17", "16.4")),
    "labelStudio.database.rds.allocatedStorageGb": ("prod", ("50", "100")),
    "labelStudio.database.rds.maxAllocatedStorageGb": ("prod", ("500", "1000")),
    "labelStudio.database.rds.multiAz": ("prod", ("true", "false")),
    "labelStudio.database.rds.backupRetentionDays": ("prod", ("7", "35")),
    "labelStudio.database.rds.snapshotIdentifier": ("prod", ("labeling-platform-prod-final",)),
    "labelStudio.database.backup.enabled": ("dev", ("true", "false")),
    "labelStudio.database.backup.schedule": ("dev", ("17 3 * * *", "@daily", "0 6 * * MON-FRI")),
    "labelStudio.database.backup.retentionDays": ("dev", ("14", "365")),
    "storage.bucketName": ("dev", ("labeling-dev-images-example", "12345678")),
    "storage.region": ("dev", ("eu-central-1", "us-east-1")),
    "storage.prefix": ("dev", ("label-studio", "2024", "ls/data/")),
    "storage.forceDestroy": ("dev", ("true", "false")),
    "storage.kmsKeyArn": ("dev", ("arn:aws:kms:eu-central-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",)),
    "storage.oidcProviderArn": ("dev", ("arn:aws:iam::123456789012:oidc-provider/oidc.eks.eu-central-1.amazonaws.com/id/X",)),
    "sam.enabled": ("dev", ("true", "false")),
    "sam.image": ("dev", ("t9kpublic/label-studio-sam:main", "registry.example.com/sam:1.0")),
    "sam.gpus": ("prod", ("1", "2")),
    "sam.resources.requests.cpu": ("dev", ("2", "1500m")),
    "sam.resources.requests.memory": ("dev", ("4Gi",)),
    "sam.resources.requests.ephemeral-storage": ("dev", ("10Gi", "1000000000")),
    "sam.resources.limits.cpu": ("dev", ("8", "4")),
    "sam.resources.limits.memory": ("dev", ("8Gi",)),
    "sam.resources.limits.ephemeral-storage": ("dev", ("20Gi",)),
    "sam.shmSize": ("dev", ("2Gi", "1073741824")),
    "sam.startupTimeoutSeconds": ("dev", ("600", "3600")),
    "sam.workers": ("dev", ("1", "4")),
    "sam.imageCacheSize": ("dev", ("5Gi", "1073741824")),
    "sam.replicas": ("dev", ("1", "3")),
    "sam.embeddingCacheMiB": ("dev", ("512", "4096")),  # with the platform's server (SETUP)
    "sam.selfTest": ("dev", ("warn", "fail")),
    "sam.unpinnedImageReason": ("prod", ("no digest verified yet", "1")),
    "sam.verifySignature.enabled": ("dev", ("true", "false")),  # with a signed image (SETUP)
    "sam.verifySignature.repository": ("dev", ("example-org/labeling-platform", "octo-org/sam.images")),
    'sam.nodeSelector["nvidia.com/gpu.family"]': ("prod", ("ampere", "true", "2")),
    "sam.tolerations[0].key": ("prod", ("nvidia.com/gpu", "dedicated")),
    "sam.tolerations[0].value": ("prod", ("sam", "true", "1")),  # after sam.tolerations[0].key (SETUP)
    "labeling.projects[0].title": ("dev", ("Cats and dogs", "2024", " Padded title ")),
    "labeling.projects[0].prefix": ("dev", ("kagglecatsanddogs", "2024", "cats/")),
    "labeling.projects[0].regexFilter": ("dev", (r".*\.(jpe?g|png)$", "123")),
    "labeling.projects[0].sam": ("dev", ("true", "false")),
    "labeling.members[0]": ("dev", ("annotator@example.com",)),
    "storage.presign": ("dev", ("true", "false")),
    "network.dnsNamespace": ("dev", ("kube-system", "dns")),
    "network.nodeLocalDns": ("dev", ("169.254.20.10",)),
    "network.eksPodIdentity": ("prod", ("true", "false")),
    "network.apiServerCidrs[0]": ("dev", ("172.20.0.1/32", "10.0.0.0/16")),
    "network.memberEgressCidrs[0]": ("dev", ("203.0.113.0/24", "10.40.0.0/16")),
    "labeling.projects[0].split": ("dev", ("true", "false")),
    "labeling.exportResync": ("dev", ("true", "false")),
    "labeling.exportResyncSchedule": ("dev", ("30 * * * *", "@hourly", "*/15 8-18 * * MON-FRI")),
    "labeling.reconcile": ("dev", ("true", "false")),
    "labeling.removeMembers[0]": ("dev", ("gone@example.com",)),
    "labeling.reconcileSchedule": ("dev", ("0 * * * *", "@hourly", "*/30 6-20 * * *")),
    "monitoring.enabled": ("dev", ("true", "false")),
    'monitoring.ruleLabels["release"]': ("prod", ("kube-prometheus-stack", "true", "2")),
    "monitoring.runbookUrl": ("prod", ("https://git.example.com/platform/labeling-platform/blob/main/docs/operations.md",
                                       "docs/operations.md")),
    "monitoring.missedReconciles": ("prod", ("3", "12")),
    "monitoring.prometheusNamespace": ("prod", ("monitoring", "observability")),
    "monitoring.samClickP95Seconds": ("prod", ("5", "2", "30")),
    "monitoring.samQueuedClicks": ("prod", ("4", "10")),
    "sam.activeHours.enabled": ("prod", ("true", "false")),
    "sam.activeHours.timeZone": ("prod", ("Europe/Berlin", "UTC", "America/New_York")),
    "sam.activeHours.windows[0].days": ("prod", ("Mon-Fri", "Sat", "Mon,Wed")),
    "sam.activeHours.windows[0].start": ("prod", ("07:00", "09:30")),
    "sam.activeHours.windows[0].end": ("prod", ("18:00", "24:00")),
    "sam.activeHours.leadMinutes": ("prod", ("45", "0")),
    "sam.activeHours.scaler": ("prod", ("cronjob", "keda")),
    "sam.activeHours.keepUpUntil": ("prod", ("2026-12-08T02:00",)),
}
# Keys an example needs set first, as `pulumi config set --path` would.
SETUP = {"sam.tolerations[0].value": {"sam.tolerations[0].key": "dedicated"},
         "sam.verifySignature.enabled": {"sam.image": SAM_SERVER_BUILD, "sam.verifySignature.repository": SIGNING_REPOSITORY},
         "sam.embeddingCacheMiB": {"sam.model": "sam2.1-tiny"},
         "labeling.projects[0].split": {"labeling.members[0]": "annotator@example.com"},
         # Only a config SAM can fill may ask for it (dev's first project classifies).
         "labeling.projects[0].sam": {"labeling.projects[0].labelConfig": "label_configs/sam_segmentation.xml"}}
# Keys that take no free text, or whose values only make sense together with others.
NOT_TYPED_ALONE = {"kubernetes.kubeconfig", "labelStudio.database.password", "storage.accessKeyId",
                   "storage.secretAccessKey", "labelStudio.database.host", "labelStudio.database.sslMode",
                   "labelStudio.database.mode", "storage.mode", "storage.endpoint", "storage.allowPrivateEndpoint",
                   "sam.model", "sam.modelConfig", "sam.modelCheckpoint", "ingress.tls.secretName", "sam.tolerations[].operator", "sam.tolerations[].effect",
                   "labeling.projects[].labelConfig",
                   # a file's contents (`< ca.pem`): the docs' recipe sets it, tests/test_onprem_store.py checks it
                   "storage.caBundle"}


def _template(path: str) -> str:
    return re.sub(r"\[\d+\]", "[]", re.sub(r'\["[^"]*"\]$', "", path))


def test_every_key_has_examples_of_what_people_type():
    scalar = {f.path for f in describe_fields() if f.kind != "object" and not f.kind.startswith(("list", "map"))}
    covered = {_template(path) for path in EXAMPLES} | NOT_TYPED_ALONE
    assert scalar - covered == set()


def _typed(stack: str, path: str, text: str, *, as_cli: bool):
    """The stack with one key set: as `pulumi config set --path` stores it, or as the text itself."""
    config = StackConfig.of(stack)
    for before, value in SETUP.get(path, {}).items():
        config.set(before, value, path=True)
    nested = "." in path or "[" in path
    if as_cli:
        config.set(path, text, path=nested)
    else:  # a hand-edited stack file, or `--type string`
        config.set(path, text, path=nested)
        parts = parse_path(path) if nested else [path]
        node = config.values
        for part in parts[:-1]:
            node = node[part]
        node[parts[-1]] = text
    return parse_settings(config.values, stack=stack, secret_keys=frozenset(config.secret_keys))


@hypothesis_settings(max_examples=fuzz_examples(full=250, fast=100), deadline=None)
@given(st.sampled_from(sorted(EXAMPLES)).flatmap(
    lambda path: st.tuples(st.just(path), st.sampled_from(EXAMPLES[path][1]))))
def test_each_key_accepts_every_shape_the_cli_stores(example):
    """The stored shape (a number, a boolean, text) and the plain text mean the same setting."""
    path, text = example
    stack = EXAMPLES[path][0]
    assert _typed(stack, path, text, as_cli=True) == _typed(stack, path, text, as_cli=False)


@pytest.mark.parametrize("path, text, read", [
    ("labelStudio.resources.requests.cpu", "2", ("label_studio", "resources", "requests", "cpu", "2")),
    ("ingress.maxBodySize", "0", ("ingress", "max_body_size", "0")),
    ("labelStudio.replicas", "2", ("label_studio", "replicas", 2)),
    ("storage.prefix", "ls/data/", ("storage", "prefix", "ls/data")),
    ("labeling.projects[0].title", " Padded title ", ("labeling", "projects", 0, "title", "Padded title")),
])
def test_typed_values_read_as_meant(path, text, read):
    settings = _typed("dev", path, text, as_cli=True)
    *attributes, expected = read
    node = settings
    for attribute in attributes:
        node = node[attribute] if isinstance(attribute, int) or isinstance(node, dict) else getattr(node, attribute)
    assert node == expected


def test_an_integer_set_as_text_is_an_integer():
    values = StackConfig.of("dev").values
    values["labelStudio"]["replicas"] = "2"
    assert parse_settings(values, stack="dev").label_studio.replicas == 2


def test_the_prod_engine_version_accepts_the_number_16():
    config = StackConfig.of("prod")
    config.run("pulumi config set --path labelStudio.database.rds.engineVersion 16")
    assert config.values["labelStudio"]["database"]["rds"]["engineVersion"] == 16
    assert parse_settings(config.values, stack="prod").label_studio.database.rds.engine_version == "16"


# --------------------------------------------------------------------------- switches


def _config_after(stack: str, *commands: str) -> StackConfig:
    config = StackConfig.of(stack)
    for command in commands:
        config.run(command)
    return config


def _after(stack: str, *commands: str):
    overrides, secrets = _config_after(stack, *commands).as_overrides()
    # Cached: two documents that give the same recipe evaluate it once.
    return evaluate_cached(stack, overrides, secrets)


@pytest.mark.parametrize("stack, command, ignored", [
    ("dev", "pulumi config set --path ingress.enabled false", "ingress.host, ingress.className, ingress.tls, ingress.maxBodySize"),
    ("prod", "pulumi config set --path ingress.enabled false", "ingress.host, ingress.className, ingress.tls, ingress.maxBodySize"),
    ("dev", "pulumi config set --path sam.enabled false", "sam.model, sam.image, sam.gpus, sam.resources"),
    ("prod", "pulumi config set --path sam.enabled false", "sam.model, sam.image, sam.gpus, sam.resources, sam.activeHours"),
    ("dev", "pulumi config set --path labelStudio.database.backup.enabled false", None),
    ("prod", "pulumi config set --path labelStudio.database.mode inCluster", "labelStudio.database.rds"),
    ("prod", "pulumi config set --path sam.activeHours.enabled false", "sam.activeHours.timeZone, sam.activeHours.windows"),
])
def test_one_key_switches_a_feature(stack, command, ignored):
    """The rest of the section is named in one warning (with whatever else the stack file sets there)."""
    evaluation = _after(stack, command)
    if ignored:
        named = [set(w.split(": ignored while")[0].split(", ")) for w in evaluation.warnings if ": ignored while" in w]
        assert any(set(ignored.split(", ")) <= keys for keys in named), evaluation.warnings


def test_projects_that_want_sam_go_on_without_it_when_sam_is_off():
    evaluation = _after("dev", "pulumi config set --path sam.enabled false")
    assert any(w.startswith("labeling.projects[1].sam: ignored while sam.enabled is false") for w in evaluation.warnings)
    state = json.loads(evaluation.one("kubernetes:core/v1:ConfigMap").inputs["data"]["desired.json"])
    assert [p["sam"] for p in state["projects"]] == [False, False] and state["samUrl"] is None
    assert evaluation.of_type("labeling:ml:SamBackend") == []


def test_leaving_rds_in_a_protected_stack_warns_about_the_protected_instance():
    evaluation = _after("prod", "pulumi config set --path labelStudio.database.mode inCluster")
    assert any("protected" in w and w.startswith("labelStudio.database.mode:") for w in evaluation.warnings)


def test_leaving_aws_storage_in_a_protected_stack_warns_about_the_protected_bucket():
    values = StackConfig.of("prod").values
    values["labelStudio"]["database"] = {"mode": "external", "host": "db.example.com", "password": "p"}
    values["storage"].update(mode="s3Compatible", endpoint="https://s3.example.com", egressCidrs=["10.20.0.0/16"],
                             accessKeyId="k", secretAccessKey="s", kmsKeyArn="arn:aws:kms:eu-central-1:123456789012:key/x")
    settings = parse_settings(values, stack="prod", secret_keys=frozenset({"storage", "labelStudio"}))
    assert any(w.startswith("storage.mode: s3Compatible in a protected stack") for w in settings.warnings)
    assert any(w.startswith("storage.kmsKeyArn: ignored while storage.mode is s3Compatible") for w in settings.warnings)


# --------------------------------------------------------------------------- sharp edges


S3_STORE = {"mode": "s3Compatible", "bucketName": "team-images", "endpoint": "https://s3.example.com",
            "egressCidrs": ["10.20.0.0/16"], "accessKeyId": "k", "secretAccessKey": "s"}
# (changes to dev, the key the one error line names, words it contains)
SHARP_EDGES = [
    ({"storage": {**S3_STORE, "endpoint": "https://AKIA123:wJalrXUtnFEMI@s3.example.com"}},
     "storage.endpoint", "carries credentials"),
    ({"namespace": "kube-system"}, "namespace", "shared by the whole cluster"),
    ({"namespace": "default"}, "namespace", "shared by the whole cluster"),
    ({"kubernetes": {"context": ""}}, "kubernetes.context", "is empty"),
    ({"storage.prefix": ""}, "storage.prefix", "is empty"),
    ({"labeling.projects[0].prefix": "images/../label-studio"}, "labeling.projects[0].prefix", "./.. segments"),
    ({"labeling.projects[0].prefix": "label-studio/backups"}, "labeling.projects[0].prefix", "platform's own area"),
    ({"labeling.projects[0].prefix": ""}, "labeling.projects[0].prefix", "platform's own area"),
    ({"labeling.projects[0].title": "ab"}, "labeling.projects[0].title", "3 to 50 characters"),
    ({"labeling.projects[0].title": "  ab  "}, "labeling.projects[0].title", "3 to 50 characters"),
    ({"labeling.projects[1].title": "Cats and dogs "}, "labeling.projects[1].title", "used twice"),
    ({"labeling.projects[0].labelConfig": "tests/fixtures/label_configs/dangling_to_name.xml"},
     "labeling.projects[0].labelConfig", 'toName="picture"'),
    ({"labeling.members": ["a@example.com", "A@example.com"]}, "labeling.members[1]", "listed twice"),
    ({"labelStudio.database.backup.schedule": "@every 5m"}, "labelStudio.database.backup.schedule", "macro"),
    ({"labelStudio.database.backup.schedule": "0 0 * * 7"}, "labelStudio.database.backup.schedule", "cron"),
    ({"storage.bucketName": "xn--labels"}, "storage.bucketName", "reserves"),
    ({"storage.kmsKeyArn": "arn:aws:iam::123456789012:role/x"}, "storage.kmsKeyArn", "not a KMS key ARN"),
    ({"sam.nodeSelector": {"pool": "gpu nodes"}}, "sam.nodeSelector.pool", "label value"),
    ({"labelStudio.database.user": "pg_labels"}, "labelStudio.database.user", "reserved"),
    ({"storage": {**S3_STORE, "endpoint": "http://169.254.169.254"}}, "storage.endpoint", "link-local"),
    ({"network.memberEgressCidrs": ["169.254.0.0/16"]}, "network.memberEgressCidrs[0]", "link-local"),
    ({"network.apiServerCidrs": ["10.0.0.0/33"]}, "network.apiServerCidrs[0]", "not a CIDR"),
    ({"network.nodeLocalDns": "169.254.169.254"}, "network.nodeLocalDns", "metadata service"),
    ({"network.nodeLocalDns": "dns.local"}, "network.nodeLocalDns", "not an IP address"),
]


def _changed(stack: str, changes: dict) -> dict:
    """The stack's values with typed values set at paths (as a hand-edited stack file holds them)."""
    config = StackConfig.of(stack)
    for path, value in changes.items():
        parts = parse_path(path)
        node = config.values
        for part in parts[:-1]:
            node = node[part] if isinstance(part, int) else node.setdefault(part, {})
        node[parts[-1]] = value
    return config.values


@pytest.mark.parametrize("changes, key, words", SHARP_EDGES, ids=[e[1] + ":" + e[2] for e in SHARP_EDGES])
def test_sharp_edges_stop_before_any_resource(changes, key, words):
    with pytest.raises(ConfigError) as caught:
        parse_settings(_changed("dev", changes), stack="dev", secret_keys=frozenset({"storage"}))
    naming = [p for p in caught.value.problems if p.startswith(f"{key}: ")]
    assert len(naming) == 1 and words in naming[0], caught.value.problems


def test_credentials_in_an_endpoint_never_reach_the_message():
    with pytest.raises(ConfigError) as caught:
        parse_settings(_changed("dev", SHARP_EDGES[0][0]), stack="dev", secret_keys=frozenset({"storage"}))
    assert "wJalrXUtnFEMI" not in caught.value.message() and "AKIA123" not in caught.value.message()
    assert "https://***@s3.example.com" in caught.value.message()


def test_long_values_are_shortened_in_messages():
    with pytest.raises(ConfigError) as caught:
        parse_settings(_changed("dev", {"ingress.host": "x" * 300}), stack="dev")
    assert max(len(p) for p in caught.value.problems) < 300


def test_rds_storage_autoscaling_needs_ten_percent_headroom():
    for allocated, ceiling, ok in ((100, 110, True), (100, 109, False), (50, 50, False)):
        values = _changed("prod", {"labelStudio.database.rds.allocatedStorageGb": allocated,
                                   "labelStudio.database.rds.maxAllocatedStorageGb": ceiling})
        if ok:
            parse_settings(values, stack="prod")
        else:
            with pytest.raises(ConfigError, match="maxAllocatedStorageGb: .* not 10% above"):
                parse_settings(values, stack="prod")


# --------------------------------------------------------------------------- one meaning, one form


@pytest.mark.parametrize("region", ["auto", "fr-par", "nyc3", "default", "us-east-1"])
def test_s3_compatible_regions_are_free_form(region):
    settings = parse_settings(_changed("dev", {"storage": {**S3_STORE, "region": region}}), stack="dev",
                              secret_keys=frozenset({"storage"}))
    assert settings.storage.region == region


def test_aws_regions_are_held_to_aws_names():
    with pytest.raises(ConfigError, match="storage.region: \"auto\" is not an AWS region"):
        parse_settings(_changed("dev", {"storage.region": "auto"}), stack="dev")


def test_trailing_slashes_and_spaces_have_one_meaning():
    plain = parse_settings(StackConfig.of("dev").values, stack="dev")
    padded = parse_settings(_changed("dev", {"storage.prefix": "label-studio/", "labeling.projects[0].prefix":
                                             "kagglecatsanddogs/", "labeling.projects[0].title": "  Cats and dogs ",
                                             "labelStudio.adminEmail": " admin@labeling-dev.example.com "}),
                            stack="dev")
    assert padded == plain


# --------------------------------------------------------------------------- recipes in the docs

DOCUMENTS = [PROJECT_ROOT / "README.md", *sorted((PROJECT_ROOT / "docs").glob("*.md"))]
FENCED = re.compile(r"```(?:sh|bash|shell)\n(.*?)```", re.S)
# An inline command with a key, not a mention of the command itself.
INLINE = re.compile(r"`(pulumi config (?:set|rm)(?: --[\w-]+)* [^-`\s][^`]*)`")
# "# on prod this stops with: <the start of the one error line>"
STOPS = re.compile(r"#\s*on (\w+)\b[^:]*stops with: (.+)$", re.M)
# Placeholders the docs use for values only the operator knows.
# A digest as a registry prints one (random hex): the config check refuses made-up patterns.
PLACEHOLDERS = {**TYPED, "<snapshot>": "labeling-platform-prod-final"}


def recipes() -> list[tuple[str, list[str], dict[str, str]]]:
    """(where, commands, {stack: expected error}) of every config recipe in the docs."""
    found = []
    for document in DOCUMENTS:
        text = document.read_text()
        for block in FENCED.findall(text):
            commands = [line.strip() for line in block.splitlines() if re.match(r"\s*pulumi config (set|rm) ", line)]
            if commands:
                found.append((f"{document.name}: {commands[0]}", commands, dict(STOPS.findall(block))))
        prose = FENCED.sub("", text)
        found += [(f"{document.name}: {command}", [command], {}) for command in INLINE.findall(prose)]
    return found


def _fill(command: str) -> str:
    for placeholder, value in PLACEHOLDERS.items():
        command = command.replace(placeholder, value)
    assert not re.search(r"<[a-z-]+>", command), f"a placeholder needs an example value in PLACEHOLDERS: {command}"
    return command


def test_the_docs_have_config_recipes():
    assert len(recipes()) >= 6


@pytest.mark.parametrize("stack", ALL_STACKS)
@pytest.mark.parametrize("where, commands, stops", recipes(), ids=[r[0] for r in recipes()])
def test_every_config_recipe_works_on_each_stack_or_says_why_not(where, commands, stops, stack):
    if stack in stops:
        with pytest.raises(Exception) as caught:  # pulumi.RunError, raised before any resource
            _after(stack, *map(_fill, commands))
        assert stops[stack] in str(caught.value), str(caught.value)
        assert len([line for line in str(caught.value).splitlines() if line.startswith("  ")]) == 1
    elif FULL_RUN or stack == next(s for s in ALL_STACKS if s not in stops):
        evaluation = _after(stack, *map(_fill, commands))
        assert evaluation.resources
    else:
        # The fast loop judges the configuration here; the program ran on the first stack above.
        overrides, secrets = _config_after(stack, *map(_fill, commands)).as_overrides()
        assert stack_settings(stack, overrides, secrets)
