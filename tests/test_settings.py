"""The configuration contract: good stacks parse, every mistake is one clear line."""

from __future__ import annotations


import hashlib

import pulumi
import pytest
import yaml

from components.settings import ConfigError, describe_fields, parse_settings, quantity_value
from components.settings.checks import placeholder_pattern
from components.settings.label_studio import PORT_FORWARD_URL
from components.settings.sam import DIGEST_SOURCE
from tests.conftest import ALL_STACKS, EXAMPLE_STACKS, PROJECT_ROOT, changed_at, evaluate_cached, stack_settings
from tools.stack_eval import DELETE, stack_config

PREFIX = "labeling-platform:"


def stack_values(stack: str) -> dict:
    _, config, _ = stack_config(stack)
    return {k[len(PREFIX):]: v for k, v in config.items() if k.startswith(PREFIX)}



S3_COMPATIBLE = {
    "mode": "s3Compatible", "bucketName": "my-bucket", "endpoint": "https://s3.example.com",
    "egressCidrs": ["10.20.0.0/16"], "accessKeyId": "AKIAEXAMPLE", "secretAccessKey": "example-secret-key",
}

# (change to the dev stack, the key path the single error line must name, a word it must contain)
BAD_CONFIGS = [
    ({"ingres": {"enabled": True}}, "ingres", "did you mean 'ingress'"),
    ({"labelStudio.replica": 2}, "labelStudio.replica", "did you mean 'labelStudio.replicas'"),
    ({"sam.gpu": 1}, "sam.gpu", "did you mean 'sam.gpus'"),
    ({"labelStudio.replicas": "two"}, "labelStudio.replicas", "not an integer"),
    ({"labelStudio.replicas": 0}, "labelStudio.replicas", "out of range"),
    ({"labelStudio.replicas": True}, "labelStudio.replicas", "not an integer"),
    ({"protect": "yes"}, "protect", "not a boolean"),
    ({"storage.mode": "s3compatible"}, "storage.mode", "did you mean 's3Compatible'"),
    ({"sam.model": "SAM3"}, "sam.model", "expected one of sam2.1-tiny | sam2.1-small | sam2.1-base-plus | sam2.1-large | MobileSAM | SAM | SAM2"),
    ({"sam.model": "SAM2"}, "sam.model", "needs a GPU"),
    ({"sam.image": "t9kpublic/label-studio-sam:main@sha256:" + "0" * 64}, "sam.image", "looks made up (it repeats '0')"),
    ({"sam.image": "t9kpublic/label-studio-sam:main@sha256:" + "0123456789abcdef" * 4}, "sam.image",
     "looks made up (it repeats '0123456789abcdef')"),
    ({"labelStudio.database.mode": "sqlite"}, "labelStudio.database.mode", "expected one of"),
    ({"storage.bucketName": DELETE}, "storage.bucketName", "is required"),
    ({"labelStudio.adminEmail": DELETE}, "labelStudio.adminEmail", "is required"),
    ({"labelStudio.adminEmail": "admin"}, "labelStudio.adminEmail", "not an email"),
    ({"labelStudio.resources.limits.memory": "6GB"}, "labelStudio.resources.limits.memory", "not a Kubernetes quantity"),
    ({"labelStudio.resources.requests.cpu": "8"}, "labelStudio.resources.requests.cpu", "above the limit"),
    ({"sam.resources.requests.gpu": "1"}, "sam.resources.requests.gpu", "not a known key"),
    ({"namespace": "Labeling_Dev"}, "namespace", "not a DNS label"),
    ({"namespace": "default"}, "namespace", "own"),
    ({"ingress.host": "not a host"}, "ingress.host", "not a DNS host name"),
    ({"ingress.host": DELETE}, "ingress.host", "required when the ingress is enabled"),
    ({"ingress.tls.secretName": "existing-tls"}, "ingress.tls", "exactly one"),
    ({"sam.model": "SAM"}, "sam.model", "needs a GPU"),
    ({"sam.image": "t9kpublic/label-studio-sam"}, "sam.image", "no tag"),
    ({"sam.image": "t9kpublic/label-studio-sam:latest"}, "sam.image", "latest"),
    ({"sam.image": DELETE}, "sam.image", "is required"),
    ({"sam.gpus": 9}, "sam.gpus", "out of range"),
    ({"sam.workers": 0}, "sam.workers", "out of range"),
    ({"sam.model": "MobileSAM", "sam.imageCacheSize": "12Gi"}, "sam.imageCacheSize",
     "not below resources.limits.ephemeral-storage"),
    ({"sam.selfTest": "skip"}, "sam.selfTest", "expected one of fail | warn"),
    ({"sam.tolerations": [{"operator": "Exists"}]}, "sam.tolerations[0].key", "is required"),
    ({"storage.region": DELETE}, "storage.region", "required when mode is aws"),
    ({"storage.prefix": "/label-studio/"}, "storage.prefix", "not a key prefix"),
    ({"labelStudio.chartVersion": "2.x"}, "labelStudio.chartVersion", "not a pinned version"),
    ({"labelStudio.imageTag": "latest"}, "labelStudio.imageTag", "never latest"),
    ({"labelStudio.releaseName": "ls-postgresql"}, "labelStudio.releaseName", "postgresql"),
    ({"labelStudio.publicUrl": "label.example.com"}, "labelStudio.publicUrl", "not an origin"),
    ({"labelStudio.database.mode": "external"}, "labelStudio.database.host", "required when mode is external"),
    ({"labeling.projects": [{"title": "Cats", "labelConfig": "label_configs/missing.xml", "prefix": "cats"}]},
     "labeling.projects[0].labelConfig", "not a file in this repository"),
    ({"labeling.projects": [{"title": "Cats", "labelConfig": "label_configs/sam_segmentation.xml", "prefix": "cats",
                             "regexFilter": "*.jpg"}]},
     "labeling.projects[0].regexFilter", "not a regular expression"),
    ({"ingress": "on"}, "ingress", "not an object"),
    ({"monitoring.enabled": "yes"}, "monitoring.enabled", "not a boolean"),
    ({"monitoring.ruleLabel": {"release": "kps"}}, "monitoring.ruleLabel", "did you mean 'monitoring.ruleLabels'"),
    ({"monitoring.ruleLabels": {"release": "not a label value"}}, "monitoring.ruleLabels.release", "not"),
    ({"monitoring.runbookUrl": "https://git.example.com/ops.md#alerts"}, "monitoring.runbookUrl", "without a fragment"),
    ({"monitoring.missedReconciles": 0}, "monitoring.missedReconciles", "out of range"),
    ({"monitoring.prometheusNamespace": "Monitoring"}, "monitoring.prometheusNamespace", "not a DNS label"),
    ({"monitoring.samClickP95Seconds": 32}, "monitoring.samClickP95Seconds", "expected an integer from 1 to 30"),
    ({"monitoring.samQueuedClicks": "four"}, "monitoring.samQueuedClicks", "not an integer"),
]


def apply_changes(values: dict, changes: dict) -> dict:
    for path, value in changes.items():
        values = changed_at(values, path, value)
    return values


@pytest.mark.parametrize("stack", ALL_STACKS)
def test_every_stack_parses(stack):
    assert stack_settings(stack).namespace


@pytest.mark.parametrize("stack", EXAMPLE_STACKS)
def test_the_example_stacks_are_served_over_https(stack):
    assert stack_settings(stack).label_studio.public_url.startswith("https://")


def test_dev_and_prod_differ_where_the_contract_says():
    dev = parse_settings(stack_values("dev"), stack="dev")
    prod = parse_settings(stack_values("prod"), stack="prod")
    assert (dev.sam.model, dev.sam.gpus) == ("sam2.1-tiny", 0)
    assert (prod.sam.model, prod.sam.gpus) == ("sam2.1-large", 1)
    # One image for both: the platform's server image, whatever model each stack runs.
    assert dev.sam.image.partition("@")[0] == prod.sam.image.partition("@")[0]
    assert dev.storage.force_destroy and not dev.protect
    assert prod.protect and not prod.storage.force_destroy
    assert dev.label_studio.resources.as_dict() == {
        "requests": {"cpu": "1000m", "memory": "1Gi"}, "limits": {"cpu": "4000m", "memory": "6144Mi"}}
    assert prod.label_studio.replicas == 2
    assert prod.ingress.tls is not None and prod.ingress.host


@pytest.mark.parametrize("changes,key,words", BAD_CONFIGS, ids=[c[1] for c in BAD_CONFIGS])
def test_each_mistake_is_one_line_naming_the_key(changes, key, words):
    values = apply_changes(stack_values("dev"), changes)
    with pytest.raises(ConfigError) as caught:
        parse_settings(values, stack="dev")
    problems = caught.value.problems
    assert all("\n" not in p for p in problems)
    naming_the_key = [p for p in problems if p.startswith(f"{key}: ")]
    assert len(naming_the_key) == 1, problems
    assert words in naming_the_key[0]


def test_all_mistakes_of_a_stack_are_reported_together():
    values = apply_changes(stack_values("dev"), {"ingres": {}, "labelStudio.replicas": "two", "sam.gpus": -1})
    with pytest.raises(ConfigError) as caught:
        parse_settings(values, stack="dev")
    assert [p.split(":")[0] for p in caught.value.problems] == ["labelStudio.replicas", "sam.gpus", "ingres"]
    message = caught.value.message()
    assert message.splitlines()[0] == "invalid configuration for labeling-platform (3 problems):"


def test_bad_config_stops_the_program_before_any_resource(capsys):
    with pytest.raises(pulumi.RunError) as caught:
        evaluate_cached("dev", overrides={"labelStudio.replicas": "two"})
    assert "labelStudio.replicas: \"two\" is not an integer" in str(caught.value)
    assert "Traceback" not in str(caught.value)


@pytest.mark.parametrize("image", ["ghcr.io/example-org/labeling-platform/sam-server:1.0.0", "registry.example.com/sam:sam-v1",
                                   "heartexlabs/label-studio-ml-backend:sam-master"])
def test_a_tag_without_a_digest_warns_in_dev_and_fails_when_protected_unless_a_reason_is_given(image):
    """Any tag may move (its owner may push another build under it): only a digest pins."""
    dev = parse_settings(changed_at(stack_values("dev"), "sam.image", image), stack="dev")
    assert [w for w in dev.warnings if w.startswith("sam.image:")] == [
        f"sam.image: {image} has no digest, so its tag may move; pin one before production ({DIGEST_SOURCE})"]
    prod_values = changed_at(stack_values("prod"), "sam.image", image)
    prod = parse_settings(changed_at(prod_values, "sam.unpinnedImageReason", "no digest published yet"), stack="prod")
    assert f"sam.image: {image} has no digest in a protected stack, accepted because: no digest published yet" \
        in prod.warnings
    with pytest.raises(ConfigError) as caught:
        parse_settings(changed_at(prod_values, "sam.unpinnedImageReason", DELETE), stack="prod")
    assert caught.value.problems == [
        f'sam.image: "{image}" has a tag without a digest, and a tag may move; expected '
        f"repository:tag@sha256:<digest> in a protected stack ({DIGEST_SOURCE}), or sam.unpinnedImageReason saying "
        "why not yet"]
    assert "sam-image workflow" in DIGEST_SOURCE


def test_a_digest_pins_whatever_the_tag():
    digest = hashlib.sha256(b"a build").hexdigest()
    for image in (f"ghcr.io/example-org/labeling-platform/sam-server:1.0.0@sha256:{digest}",
                  f"heartexlabs/label-studio-ml-backend:sam-master@sha256:{digest}"):
        prod_values = changed_at(changed_at(stack_values("prod"), "sam.image", image), "sam.unpinnedImageReason", DELETE)
        assert not [w for w in parse_settings(prod_values, stack="prod").warnings if w.startswith("sam.image")]


@pytest.mark.parametrize("stack", EXAMPLE_STACKS)
def test_no_committed_stack_carries_a_made_up_digest(stack):
    image = stack_values(stack)["sam"]["image"]
    digest = image.partition("@sha256:")[2]
    assert not digest or placeholder_pattern(digest) is None


def test_real_digests_are_not_taken_for_placeholders():
    import hashlib

    for index in range(2000):
        assert placeholder_pattern(hashlib.sha256(str(index).encode()).hexdigest()) is None
    # The made-up digest prod carried: both halves count up at every other place.
    assert placeholder_pattern("5a3c7b1e2f4d6a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b") == \
        "25 digits counting up at every other place"


def test_protect_and_force_destroy_contradict():
    values = changed_at(stack_values("prod"), "storage.forceDestroy", True)
    with pytest.raises(ConfigError) as caught:
        parse_settings(values, stack="prod")
    assert caught.value.problems[0].startswith("storage.forceDestroy: is true in a protected stack")


def test_s3_compatible_needs_endpoint_and_both_keys():
    values = changed_at(stack_values("dev"), "storage", {"mode": "s3Compatible", "bucketName": "my-bucket"})
    with pytest.raises(ConfigError) as caught:
        parse_settings(values, stack="dev", secret_keys=frozenset({"storage"}))
    assert sorted(p.split(":")[0] for p in caught.value.problems) == [
        "storage.accessKeyId", "storage.endpoint", "storage.secretAccessKey"]


def test_s3_compatible_defaults_region_and_wraps_keys_as_secrets():
    values = changed_at(stack_values("dev"), "storage", dict(S3_COMPATIBLE))
    settings = parse_settings(values, stack="dev", secret_keys=frozenset({"storage"}))
    assert settings.storage.region == "us-east-1"
    assert isinstance(settings.storage.secret_access_key, pulumi.Output)
    assert isinstance(settings.storage.access_key_id, pulumi.Output)


def test_secret_fields_set_in_plain_text_are_refused():
    values = changed_at(stack_values("dev"), "storage", dict(S3_COMPATIBLE))
    with pytest.raises(ConfigError) as caught:
        parse_settings(values, stack="dev", secret_keys=frozenset())
    assert sorted(p.split(":")[0] for p in caught.value.problems) == ["storage.accessKeyId", "storage.secretAccessKey"]
    assert all("--secret" in p for p in caught.value.problems)
    assert all("example-secret-key" not in p for p in caught.value.problems)


def test_public_url_defaults_follow_the_ingress():
    values = stack_values("dev")
    assert parse_settings(values, stack="dev").label_studio.public_url == "https://label.dev.example.com"
    plain = apply_changes(values, {"ingress.tls": DELETE})
    assert parse_settings(plain, stack="dev").label_studio.public_url == "http://label.dev.example.com"
    closed = apply_changes(values, {"ingress": {"enabled": False}})
    assert parse_settings(closed, stack="dev").label_studio.public_url == PORT_FORWARD_URL


def test_gpu_pods_tolerate_the_gpu_taint_by_default():
    prod = parse_settings(stack_values("prod"), stack="prod")
    assert [t.as_dict() for t in prod.sam.tolerations] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    dev = parse_settings(stack_values("dev"), stack="dev")
    assert dev.sam.tolerations == ()


@pytest.mark.parametrize("text,value", [("500m", "0.5"), ("2", "2"), ("1Gi", str(2**30)), ("6144Mi", str(6144 * 2**20))])
def test_quantities(text, value):
    assert quantity_value(text) == __import__("decimal").Decimal(value)


def test_pulumi_yaml_declarations_agree_with_settings():
    declared = yaml.safe_load((PROJECT_ROOT / "Pulumi.yaml").read_text())["config"]
    fields = {f.path: f for f in describe_fields()}
    kinds = {"string": ("DNS label", "string"), "boolean": ("boolean",), "integer": ("integer",)}
    for key, spec in declared.items():
        assert key in fields, f"Pulumi.yaml declares {key}, which settings.py does not read"
        assert fields[key].kind.split(" ")[0] in [k.split(" ")[0] for k in kinds[spec["type"]]]
        assert spec["default"] == fields[key].default
    scalar_top_level = [p for p, f in fields.items() if "." not in p and f.kind != "object"]
    assert sorted(scalar_top_level) == sorted(declared), "every top-level scalar key is declared in Pulumi.yaml"


def test_the_example_stack_files_hold_no_secure_values():
    """They evaluate anywhere, without a passphrase; a user's stack holds `secure:` values (tests/user_stacks.py)."""
    for stack in EXAMPLE_STACKS:
        text = (PROJECT_ROOT / f"Pulumi.{stack}.yaml").read_text()
        assert "secure:" not in text


def test_a_project_without_a_prefix_is_one_error_and_documented_as_required():
    """An empty prefix would scan the whole bucket, the platform's own area included: never a default."""
    values = changed_at(stack_values("dev"), "labeling.projects", [
        {"title": "Cats", "labelConfig": "label_configs/image_classification.xml"}])
    with pytest.raises(ConfigError) as caught:
        parse_settings(values, stack="dev")
    assert [p for p in caught.value.problems if ".prefix" in p] == [
        "labeling.projects[0].prefix: is required; bucket prefix holding the project's source images "
        "(outside storage.prefix)"]
    [field] = [f for f in describe_fields() if f.path == "labeling.projects[].prefix"]
    assert field.required and field.default is None


def test_monitoring_switches_on_alone_and_off_with_its_other_keys_ignored():
    on = parse_settings(apply_changes(stack_values("dev"), {"monitoring.enabled": True}), stack="dev")
    assert on.monitoring.enabled and on.monitoring.rule_labels == {} and on.monitoring.missed_reconciles == 3
    off = parse_settings(apply_changes(stack_values("prod"), {"monitoring.enabled": False}), stack="prod")
    assert not off.monitoring.enabled
    assert "monitoring.ruleLabels, monitoring.runbookUrl: ignored while monitoring.enabled is false" in off.warnings
