"""Property tests of the configuration contract (components/settings/).

Generated valid configurations always parse, and a bounded sample of them deploys under
mocks, its chart rendered, without a mandatory policy violation. Generated mistakes (a typo in a key, a wrong
type, an integer out of range, a bad quantity, a contradiction) always end in one
`ConfigError` whose problems are single lines, one of them naming the mistake's key path.
"""

from __future__ import annotations

import hashlib

import copy
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from components.settings import ConfigError, describe_fields, parse_settings, quantity_value
from tests.conftest import changed_at, fuzz_examples
from tools.manifests import stack_objects
from tools.policy_check import blocking, run_pack
from tools.stack_eval import DELETE, evaluate, stack_config

PREFIX = "labeling-platform:"
FIELDS = {f.path: f for f in describe_fields()}
# Full-program evaluations cost about 0.6 s each (with the policy pack); parsing milliseconds.
EVALUATED_EXAMPLES = fuzz_examples(full=20, fast=4)
PARSED_EXAMPLES = fuzz_examples(full=150, fast=40)
MISTAKE_EXAMPLES = fuzz_examples(full=150, fast=40)

# --------------------------------------------------------------------------- valid configurations

dns_label = st.from_regex(r"[a-z][a-z0-9-]{0,14}[a-z0-9]", fullmatch=True)
host_name = st.builds(lambda a, b: f"{a}.{b}.example.com", dns_label, dns_label)
hex_id = st.from_regex(r"[0-9a-f]{8,17}", fullmatch=True)
# Only a digest pins: a tag without one may move, whatever it looks like.
PINNED_IMAGES = [f"{name}@sha256:{hashlib.sha256(name.encode()).hexdigest()}" for name in (
    "ghcr.io/example-org/labeling-platform/sam-server:1.0.0", "registry.example.com/ml/sam:2024.06.1",
    "heartexlabs/label-studio-ml-backend:sam-master")]
MOVING_IMAGES = ["t9kpublic/label-studio-sam:main", "heartexlabs/label-studio-ml-backend:sam-master",
                 "heartexlabs/label-studio-ml-backend:sam-1.0.0", "ghcr.io/example-org/labeling-platform/sam-server:1.0.0"]
SAM_LABEL_CONFIG = "label_configs/sam_segmentation.xml"
LABEL_CONFIGS = ["label_configs/image_classification.xml", SAM_LABEL_CONFIG]


@st.composite
def cpu_pair(draw) -> dict:
    request = draw(st.integers(100, 8000))
    limit = draw(st.integers(request, 16000))
    as_text = lambda m: str(m // 1000) if m % 1000 == 0 else f"{m}m"  # noqa: E731 - "2" and "2500m" both occur
    return {"requests": as_text(request), "limits": as_text(limit)}


@st.composite
def memory_pair(draw) -> dict:
    request = draw(st.integers(256, 32768))
    limit = draw(st.integers(request, 65536))
    as_text = lambda mi: f"{mi // 1024}Gi" if mi % 1024 == 0 else f"{mi}Mi"  # noqa: E731
    return {"requests": as_text(request), "limits": as_text(limit)}


@st.composite
def resources(draw) -> dict:
    cpu, memory = draw(cpu_pair()), draw(memory_pair())
    return {part: {"cpu": cpu[part], "memory": memory[part]} for part in ("requests", "limits")}


def database(protect: bool, storage_mode: str):
    in_cluster = st.fixed_dictionaries({"mode": st.just("inCluster")}, optional={
        "storageSize": st.sampled_from(["10Gi", "50Gi", "200Gi"]),
        "backup": st.fixed_dictionaries({}, optional={
            "enabled": st.booleans(), "schedule": st.sampled_from(["17 3 * * *", "0 */6 * * *"]),
            "retentionDays": st.integers(1, 3650)}),
    })
    external = st.fixed_dictionaries({
        "mode": st.just("external"), "host": host_name, "password": st.just("generated-db-password"),
    }, optional={"port": st.integers(1, 65535), "sslMode": st.sampled_from(["require", "verify-full"])})
    rds = st.fixed_dictionaries({"mode": st.just("rds"), "rds": st.builds(
        lambda vpc, subnets, group, allocated, extra, retention: {
            "vpcId": f"vpc-{vpc}", "subnetIds": [f"subnet-{s}" for s in subnets],
            "allowedSecurityGroupIds": [f"sg-{group}"], "allocatedStorageGb": allocated,
            # RDS wants the autoscaling ceiling at least 10% above the allocated storage.
            "maxAllocatedStorageGb": allocated + -(-allocated // 10) + extra, "backupRetentionDays": retention},
        hex_id, st.lists(hex_id, min_size=2, max_size=3, unique=True), hex_id, st.integers(20, 1000),
        st.integers(0, 1000), st.integers(7 if protect else 1, 35))})
    # RDS lives in the stack's own AWS account, which only aws storage implies.
    return st.one_of(in_cluster, external, *([rds] if storage_mode == "aws" else []))


def storage(protect: bool):
    aws = st.fixed_dictionaries({
        "mode": st.just("aws"), "bucketName": st.builds(lambda n: f"{n}-images", dns_label),
        "region": st.sampled_from(["eu-central-1", "us-east-1"]),
    }, optional={"forceDestroy": st.just(False) if protect else st.booleans(),
                 "prefix": st.sampled_from(["label-studio", "data/ls"])})
    compatible = st.fixed_dictionaries({
        "mode": st.just("s3Compatible"), "bucketName": st.builds(lambda n: f"{n}-images", dns_label),
        "endpoint": st.sampled_from(["https://s3.example.com", "https://minio.example.org:9000"]),
        # A DNS name may resolve anywhere: the store's networks are required.
        "egressCidrs": st.sampled_from([["10.20.0.0/16"], ["0.0.0.0/0"], ["203.0.113.0/24", "10.0.0.0/8"]]),
        "accessKeyId": st.just("EXAMPLEACCESSKEY"), "secretAccessKey": st.just("example-secret-access-key"),
    })
    return st.one_of(aws, compatible)


ingress = st.one_of(
    st.just({"enabled": False}),
    st.fixed_dictionaries({"enabled": st.just(True), "host": host_name}, optional={
        "tls": st.one_of(st.builds(lambda n: {"clusterIssuer": n}, dns_label),
                         st.builds(lambda n: {"secretName": n}, dns_label)),
        "maxBodySize": st.sampled_from(["100m", "1g", "500m"]),
    }),
)


def sam(protect: bool):
    images = PINNED_IMAGES if protect else PINNED_IMAGES + MOVING_IMAGES
    cpu_model = st.fixed_dictionaries({"model": st.just("MobileSAM"), "gpus": st.integers(0, 8)})
    # The platform's server keeps its embedding cache in GPU memory there: no pod memory to size.
    gpu_model = st.fixed_dictionaries({"model": st.sampled_from(["SAM", "sam2.1-tiny", "sam2.1-large"]),
                                       "gpus": st.integers(1, 8)})
    enabled = st.builds(lambda model, image, res: {"enabled": True, "image": image, "resources": res, **model},
                        st.one_of(cpu_model, gpu_model), st.sampled_from(images), resources())
    return st.one_of(st.just({"enabled": False}), enabled)


@st.composite
def valid_configs(draw) -> dict:
    """Top-level key -> value, as `pulumi config` would hold them (secrets decrypted)."""
    protect = draw(st.booleans())
    bucket_store = draw(storage(protect))
    sam_section = draw(sam(protect))
    titles = draw(st.lists(st.from_regex(r"[A-Z][a-z]{2,12}( [a-z]{2,8})?", fullmatch=True),
                           max_size=2, unique=True))
    projects = []
    for i, title in enumerate(titles):
        label_config = draw(st.sampled_from(LABEL_CONFIGS))
        # SAM only where the config holds what a SAM click fills (the plan refuses the rest).
        wants_sam = label_config == SAM_LABEL_CONFIG and sam_section["enabled"] and draw(st.booleans())
        projects.append({"title": title, "labelConfig": label_config, "prefix": f"images/{i}", "sam": wants_sam})
    ingress_section = draw(ingress)
    if protect and ingress_section["enabled"] and "tls" not in ingress_section:
        # A protected stack states why its Ingress has no TLS (the plan refuses it otherwise).
        ingress_section["plainHttpReason"] = "TLS ends at the load balancer"
    return {
        "namespace": draw(dns_label.filter(lambda n: n != "default")),
        "protect": protect,
        "labelStudio": {
            "adminEmail": "admin@example.com",
            "replicas": draw(st.integers(1, 20)),
            "resources": draw(resources()),
            "database": draw(database(protect, bucket_store["mode"])),
        },
        "storage": bucket_store,
        "ingress": ingress_section,
        "sam": sam_section,
        "labeling": {"projects": projects},
    }


TYPICAL_CONFIG = {
    "namespace": "labeling-fuzz", "labelStudio": {"adminEmail": "admin@example.com"},
    "storage": {"mode": "aws", "bucketName": "fuzz-images", "region": "us-east-1"},
    "sam": {"enabled": True, "image": PINNED_IMAGES[0]},
}


def secret_keys_of(config: dict) -> frozenset[str]:
    """The top-level keys a valid stack holds encrypted: those with a secret field set."""
    holds_secret = {
        "storage": "accessKeyId" in config["storage"],
        "labelStudio": "password" in config["labelStudio"]["database"],
    }
    return frozenset(key for key, secret in holds_secret.items() if secret)


@settings(max_examples=PARSED_EXAMPLES, deadline=None)
@given(valid_configs())
def test_valid_configurations_parse(config):
    parsed = parse_settings(config, stack="fuzz", secret_keys=secret_keys_of(config))
    requests, limits = parsed.label_studio.resources.requests, parsed.label_studio.resources.limits
    assert all(quantity_value(requests[r]) <= quantity_value(limits[r]) for r in requests)


@settings(max_examples=EVALUATED_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_configs())
def test_valid_configurations_deploy_within_the_guardrails(config):
    # A protected configuration is evaluated as stack prod, so the stack-name-keyed rules apply.
    stack = "prod" if config["protect"] else "dev"
    _, base, _ = stack_config(stack)
    secret = secret_keys_of(config)
    overrides = {key[len(PREFIX):]: DELETE for key in base if key.startswith(PREFIX) and key[len(PREFIX):] not in config}
    overrides.update({k: v for k, v in config.items() if k not in secret})
    objects = stack_objects(evaluate(stack, overrides, {k: config[k] for k in secret}))
    assert objects.not_rendered == ()
    assert [str(v) for v in blocking(run_pack(objects), objects)] == []


# --------------------------------------------------------------------------- mistakes


def _template(path: str) -> str:
    return re.sub(r"\[\d+\]", "[]", path)


def known_keys(parent: str) -> set[str]:
    """The keys the reader knows directly under `parent` ("" for the top level)."""
    prefix = _template(parent) + "." if parent else ""
    return {p[len(prefix):] for p in FIELDS if p.startswith(prefix) and not re.search(r"[.\[]", p[len(prefix):])}


def section_keys(config: dict, parent: str = ""):
    """(parent path, key) of every key the reader looks up (free-form maps excluded)."""
    for key, value in config.items():
        path = f"{parent}.{key}" if parent else key
        if _template(path) not in FIELDS:
            continue
        yield parent, key
        if FIELDS[_template(path)].kind == "object" and isinstance(value, dict):
            yield from section_keys(value, path)
        elif isinstance(value, list):
            for index, item in enumerate(value):
                if isinstance(item, dict):
                    yield from section_keys(item, f"{path}[{index}]")


def typos(key: str) -> list[str]:
    """Misspellings people make: a letter dropped, doubled, swapped, or its case changed."""
    candidates = set()
    for i in range(len(key)):
        candidates.add(key[:i] + key[i + 1:])
        candidates.add(key[:i] + key[i] + key[i:])
        candidates.add(key[:i] + key[i].swapcase() + key[i + 1:])
        if i + 1 < len(key):
            candidates.add(key[:i] + key[i + 1] + key[i] + key[i + 2:])
    return sorted(c for c in candidates if c and c != key)


def _get(config: dict, path: str):
    node = config
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", path):
        node = node[int(part[1:-1])] if part.startswith("[") else node[part]
    return node


@pytest.mark.parametrize("section", ("labelStudio.resources", "sam.resources"))
def test_typo_directly_under_resources_is_reported(section):
    config = changed_at(TYPICAL_CONFIG, f"{section}.limit", {"cpu": "1"})
    with pytest.raises(ConfigError) as caught:
        parse_settings(config, stack="fuzz")
    assert any(p.startswith(f"{section}.limit: is not a known key") for p in caught.value.problems)


@st.composite
def key_typo(draw):
    config = draw(valid_configs())
    parent, key = draw(st.sampled_from(list(section_keys(config))))
    known = known_keys(parent)
    typo = draw(st.sampled_from([t for t in typos(key) if t not in known] or [key + "x"]))
    changed = copy.deepcopy(config)
    section = _get(changed, parent) if parent else changed
    section[typo] = section.pop(key)
    return changed, f"{parent}.{typo}" if parent else typo


SCALAR_FIELDS = sorted(p for p, f in FIELDS.items() if "[]" not in p and f.kind != "object")
NOT_A = {  # a value of the wrong type for each kind of field (a number is text's own spelling)
    "integer": st.sampled_from(["two", 1.5, True, "7.5"]),
    "boolean": st.sampled_from(["yes", 1, "True", 0.0]),
    "list": st.sampled_from(["a", 5, {"a": 1}]),
    "map": st.sampled_from(["a", 5, ["a"]]),
    "string": st.sampled_from([["x"], {"a": "b"}]),
}


def _kind_family(kind: str) -> str:
    for family in ("integer", "boolean", "list", "map"):
        if kind.startswith(family):
            return family
    return "string"


# The labeling windows' keys are read only while SAM and the windows are on (a switch that is
# off leaves them waiting, unjudged): a mistake there is put into a configuration that uses them.
ACTIVE_HOURS_ON = {"enabled": True, "image": PINNED_IMAGES[0],
                   "activeHours": {"timeZone": "UTC", "windows": [{"days": "Mon-Fri", "start": "08:00", "end": "18:00"}]}}


def _applying(config: dict, path: str) -> dict:
    return changed_at(config, "sam", ACTIVE_HOURS_ON) if path.startswith("sam.activeHours.") else config


@st.composite
def wrong_type(draw):
    path = draw(st.sampled_from(SCALAR_FIELDS))
    config = _applying(draw(valid_configs()), path)
    return changed_at(config, path, draw(NOT_A[_kind_family(FIELDS[path].kind)])), path


@st.composite
def out_of_range(draw):
    path = draw(st.sampled_from([p for p in SCALAR_FIELDS if FIELDS[p].kind.startswith("integer ")]))
    low, high = map(int, FIELDS[path].kind.split(" ")[1].split(".."))
    config = _applying(draw(valid_configs()), path)
    return changed_at(config, path, draw(st.sampled_from([low - 1, high + 1, -(10 ** 6)]))), path


@st.composite
def bad_quantity(draw):
    path = draw(st.sampled_from([p for p in SCALAR_FIELDS if FIELDS[p].kind == "Kubernetes quantity"]))
    value = draw(st.sampled_from(["6GB", "1.5.2", "-1", "one", "2 Gi", "500M i", ""]))
    return changed_at(draw(valid_configs()), path, value), path


def _project_in_platform_area(config: dict) -> dict:
    prefix = config["storage"].get("prefix", "label-studio")
    return changed_at(config, "labeling.projects", [{"title": "Fruit", "labelConfig": LABEL_CONFIGS[1],
                                                     "prefix": f"{prefix}/backups"}])


# (how to turn a valid configuration into a contradiction, the key path that must be named)
CONTRADICTIONS = [
    (lambda c: changed_at(c, "ingress", {"enabled": True, "tls": {"clusterIssuer": "letsencrypt"}}), "ingress.host"),
    (lambda c: changed_at(c, "ingress", {"enabled": True, "host": "a.example.com",
                                       "tls": {"secretName": "tls", "clusterIssuer": "le"}}), "ingress.tls"),
    (lambda c: changed_at(c, "sam", {"enabled": True, "image": PINNED_IMAGES[0], "model": "SAM", "gpus": 0}), "sam.model"),
    (lambda c: changed_at(changed_at(c, "protect", True), "storage",
                        {"mode": "aws", "bucketName": "b-images", "region": "us-east-1", "forceDestroy": True}),
     "storage.forceDestroy"),
    (lambda c: changed_at(c, "storage", {"mode": "s3Compatible", "bucketName": "b-images",
                                       "accessKeyId": "k", "secretAccessKey": "s"}), "storage.endpoint"),
    (lambda c: changed_at(c, "labelStudio.resources", {"requests": {"cpu": "4"}, "limits": {"cpu": "3500m"}}),
     "labelStudio.resources.requests.cpu"),
    (_project_in_platform_area, "labeling.projects[0].prefix"),
    (lambda c: changed_at(c, "labeling.projects", [{"title": "ab", "labelConfig": LABEL_CONFIGS[0],
                                                    "prefix": "images/x"}]), "labeling.projects[0].title"),
    (lambda c: changed_at(c, "namespace", "kube-system"), "namespace"),
    (lambda c: changed_at(changed_at(c, "protect", True), "sam",
                        {"enabled": True, "image": MOVING_IMAGES[0], "model": "MobileSAM"}), "sam.image"),
]


@st.composite
def contradiction(draw):
    make, path = draw(st.sampled_from(CONTRADICTIONS))
    return make(draw(valid_configs())), path


mistakes = st.one_of(key_typo(), wrong_type(), out_of_range(), bad_quantity(), contradiction())


@settings(max_examples=MISTAKE_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mistakes)
def test_every_mistake_is_one_line_naming_its_key(mistake):
    config, path = mistake
    # Secret fields are held encrypted here, so only the mistake itself can fail.
    with pytest.raises(ConfigError) as caught:
        parse_settings(config, stack="fuzz", secret_keys=frozenset({"storage", "labelStudio", "kubernetes"}))
    problems = caught.value.problems
    assert problems and all("\n" not in p for p in problems)
    assert any(p.startswith(f"{path}: ") for p in problems), (path, problems)
