"""The guardrail policy pack: each rule passes a good resource and fires on a bad one,
and the committed stacks, with the objects their Helm release renders, pass every
mandatory rule (but the scoped skips of tools/policy_skips.py)."""

from __future__ import annotations

import copy
import dataclasses
import json

import pytest
from pulumi_policy import EnforcementLevel, ResourceValidationArgs, ResourceValidationPolicy, StackValidationPolicy

from components.conventions import app_selector_labels, postgresql_pod_labels
from policy.guardrails import (ALL_POLICIES, BUCKET_POLICY_TYPES, ENCRYPTION_TYPES, HELM_RELEASE_TYPES, containers,
                               IAM_POLICY_TYPES, POD_SPEC_PATHS, PUBLIC_ACCESS_BLOCK_TYPES, RDS_TYPES, VERSIONING_TYPES,
                               literal_secrets_in_values, names_a_secret, stack_of)
from tests.conftest import ALL_STACKS, changed_at, evaluate_cached, objects_cached
from tests.variants import SAM_SERVER_BUILD
from tools.manifests import StackObjects
from tools.policy_check import (blocking, mandatory, options_of, rendered_resources, run_pack, run_policies,
                                skipped, subject)
from tools.policy_skips import POLICY_SKIPS
from tools.stack_eval import DeclaredResource

SAM_SERVER_TAG = "ghcr.io/example-org/labeling-platform/sam-server:1.0.0"

POLICIES = {p.name: p for p in ALL_POLICIES}
BUCKET = "labeling-dev-images-example"
BUCKET_ARN = f"arn:aws:s3:::{BUCKET}"


def resource(type_: str, props: dict, *, name: str = "subject", stack: str = "dev", protect: bool = False,
             dependencies: tuple[str, ...] = ()) -> DeclaredResource:
    """A declared resource as tools.stack_eval records it, for the policy harness."""
    return DeclaredResource(
        type=type_, name=name, urn=f"urn:pulumi:{stack}::labeling-platform::{type_}::{name}", parent=None,
        custom=True, inputs=props, secret_paths=set(), protect=protect, retain_on_delete=False,
        dependencies=list(dependencies), provider="", aliases=[], delete_before_replace=False, ignore_changes=[])


def violations_of(policy_name: str, resources: list[DeclaredResource]) -> list[str]:
    return [v.message for v in run_policies([POLICIES[policy_name]], resources)]


# --------------------------------------------------------------------------- fixtures of resources


def iam_document(*statements: dict) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


GOOD_IAM = iam_document(
    {"Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": BUCKET_ARN},
    {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"], "Resource": f"{BUCKET_ARN}/*"},
)
TLS_ONLY = iam_document({
    "Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": [BUCKET_ARN, f"{BUCKET_ARN}/*"],
    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
})

GOOD_CONTAINER = {
    "name": "app",
    "image": "heartexlabs/label-studio:1.23.2",
    "resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "2Gi"}},
    "securityContext": {"privileged": False, "allowPrivilegeEscalation": False},
    "env": [
        {"name": "LABEL_STUDIO_API_KEY", "valueFrom": {"secretKeyRef": {"name": "platform", "key": "token"}}},
        # A switch, not a credential, although its name ends in TOKEN.
        {"name": "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN", "value": "true"},
    ],
}


def with_container(**changes) -> dict:
    container = copy.deepcopy(GOOD_CONTAINER)
    for key, value in changes.items():
        if value is None:
            container.pop(key)
        else:
            container[key] = value
    return container


def deployment(container: dict) -> DeclaredResource:
    return resource("kubernetes:apps/v1:Deployment", {"spec": {"template": {"spec": {"containers": [container]}}}})


def job_init(container: dict) -> DeclaredResource:
    return resource("kubernetes:batch/v1:Job", {"spec": {"template": {"spec": {
        "initContainers": [container], "containers": [GOOD_CONTAINER]}}}})


def cron_job(container: dict) -> DeclaredResource:
    return resource("kubernetes:batch/v1:CronJob", {"spec": {"jobTemplate": {"spec": {"template": {"spec": {
        "containers": [container]}}}}}})


GOOD_RELEASE_VALUES = {
    "global": {
        "pgConfig": {"password": {"secretName": "platform", "secretKey": "database-password"}},
        "extraEnvironmentSecrets": {"SECRET_KEY": {"secretName": "platform", "secretKey": "django-secret-key"}},
        "extraEnvironmentVars": {"LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true"},
        "persistence": {"config": {"s3": {"accessKeyExistingSecret": "creds",
                                          "secretKeyExistingSecretKey": "AWS_SECRET_ACCESS_KEY"}}},
    },
    "postgresql": {"auth": {"password": "", "existingSecret": "platform",
                            "secretKeys": {"userPasswordKey": "database-password"}}},
}


def release(values: dict = GOOD_RELEASE_VALUES, **props) -> dict:
    return {"chart": "label-studio", "version": "2.0.5", "repositoryOpts": {"repo": "https://charts.heartex.com/"},
            "values": values, **props}


def values_with(path: str, value) -> dict:
    return changed_at(GOOD_RELEASE_VALUES, path, value)


NETWORK_POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
WORKER_LABELS = {"app.kubernetes.io/name": "worker"}
PUBLIC_HTTPS = {"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8", "169.254.0.0/16"]}}],
                "ports": [{"protocol": "TCP", "port": 443}]}


def labelled_workload(labels: dict, name: str = "worker") -> DeclaredResource:
    return resource("kubernetes:batch/v1:CronJob", {"metadata": {"namespace": "labeling"}, "spec": {"jobTemplate": {
        "spec": {"template": {"metadata": {"labels": labels}, "spec": {"containers": [GOOD_CONTAINER]}}}}}},
        name=name)


def egress_policy(selector: dict, *rules: dict, name: str = "fence", namespace: str = "labeling") -> DeclaredResource:
    return resource(NETWORK_POLICY, {"metadata": {"name": name, "namespace": namespace}, "spec": {
        "podSelector": {"matchLabels": selector}, "policyTypes": ["Egress"], "egress": list(rules)}}, name=name)


def label_studio_release(name: str = "label-studio") -> DeclaredResource:
    return resource(RELEASE, release(name=name, namespace="labeling"), name="release")


PAB = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
SSE = "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
VERSIONING = "aws:s3/bucketVersioning:BucketVersioning"
BUCKET_POLICY = "aws:s3/bucketPolicy:BucketPolicy"
USER_POLICY = "aws:iam/userPolicy:UserPolicy"
RELEASE = "kubernetes:helm.sh/v3:Release"
S3_BUCKET = "aws:s3/bucket:Bucket"
RDS = "aws:rds/instance:Instance"
GOOD_RDS = {"engine": "postgres", "storageEncrypted": True, "publiclyAccessible": False,
            "deletionProtection": True, "skipFinalSnapshot": False}
ALL_BLOCKED = {"blockPublicAcls": True, "blockPublicPolicy": True, "ignorePublicAcls": True,
               "restrictPublicBuckets": True, "bucket": BUCKET}
AES = {"bucket": BUCKET, "rules": [{"applyServerSideEncryptionByDefault": {"sseAlgorithm": "AES256"}}]}
KMS = {"bucket": BUCKET, "rules": [{"applyServerSideEncryptionByDefault": {"sseAlgorithm": "aws:kms",
                                                                          "kmsMasterKeyId": "arn:aws:kms:..."}}]}


def hardened_bucket(*, without: str = "", stack: str = "dev", **bucket_props) -> list[DeclaredResource]:
    bucket = resource(S3_BUCKET, {"bucket": BUCKET, **bucket_props}, name="bucket", stack=stack)
    companions = {
        PAB: ALL_BLOCKED, SSE: AES, VERSIONING: {"bucket": BUCKET, "versioningConfiguration": {"status": "Enabled"}},
        BUCKET_POLICY: {"bucket": BUCKET, "policy": TLS_ONLY},
    }
    # Companions name the bucket through a dependency only, as in a preview where its name is unknown.
    return [bucket] + [resource(t, {k: v for k, v in props.items() if k != "bucket"}, name=t.rsplit(":", 1)[-1],
                                stack=stack, dependencies=(bucket.urn,))
                       for t, props in companions.items() if t != without]


# (policy, resources, the fragment the single violation contains; None: no violation)
CASES = [
    ("s3-public-access-block-all-on", [resource(PAB, ALL_BLOCKED)], None),
    ("s3-public-access-block-all-on", [resource(PAB, {**ALL_BLOCKED, "blockPublicPolicy": False})],
     "blockPublicPolicy is False"),
    ("s3-public-access-block-all-on", [resource(PAB, {k: v for k, v in ALL_BLOCKED.items() if k != "ignorePublicAcls"})],
     "ignorePublicAcls is None"),
    ("s3-encryption-at-rest", [resource(SSE, AES)], None),
    ("s3-encryption-at-rest", [resource(SSE, KMS)], None),
    ("s3-encryption-at-rest", [resource(SSE, {"bucket": BUCKET, "rules": []})], "no encryption rule"),
    ("s3-encryption-at-rest", [resource(SSE, {"bucket": BUCKET, "rules": [{"bucketKeyEnabled": True}]})],
     "sseAlgorithm is None"),
    ("s3-versioning-enabled", [resource(VERSIONING, {"versioningConfiguration": {"status": "Enabled"}})], None),
    ("s3-versioning-enabled", [resource(VERSIONING, {"versioningConfiguration": {"status": "Suspended"}})],
     "'Suspended'; expected Enabled"),
    ("s3-bucket-policy-denies-insecure-transport", [resource(BUCKET_POLICY, {"policy": TLS_ONLY})], None),
    ("s3-bucket-policy-denies-insecure-transport",
     [resource(BUCKET_POLICY, {"policy": TLS_ONLY.replace('"false"', '"true"')})], "TLS-only"),
    ("s3-bucket-policy-denies-insecure-transport",
     [resource(BUCKET_POLICY, {"policy": TLS_ONLY.replace('"s3:*"', '"s3:GetObject"')})], "TLS-only"),
    ("s3-bucket-hardening-complete", hardened_bucket(), None),
    ("s3-bucket-hardening-complete", hardened_bucket(without=VERSIONING), "has no versioning"),
    ("s3-bucket-hardening-complete", hardened_bucket(without=SSE), "has no server-side encryption"),
    ("iam-no-wildcard-grants", [resource(USER_POLICY, {"policy": GOOD_IAM})], None),
    ("iam-no-wildcard-grants", [resource(USER_POLICY, {"policy": iam_document(
        {"Effect": "Allow", "Action": "s3:*", "Resource": BUCKET_ARN})})], "allows action 's3:*'"),
    ("iam-no-wildcard-grants", [resource("aws:iam/rolePolicy:RolePolicy", {"policy": iam_document(
        {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": "*"})})], "allows resource '*'"),
    ("iam-no-wildcard-grants", [resource("aws:iam/policy:Policy", {"policy": iam_document(
        {"Effect": "Allow", "Action": "*", "Resource": BUCKET_ARN})})], "allows action '*'"),
    ("iam-no-wildcard-grants", [resource(USER_POLICY, {"policy": iam_document(
        {"Effect": "Allow", "NotAction": "iam:*", "Resource": BUCKET_ARN})})], "NotAction"),
    ("iam-platform-bucket-only", [*hardened_bucket(), resource(USER_POLICY, {"policy": GOOD_IAM}, name="access")],
     None),
    ("iam-platform-bucket-only", [*hardened_bucket(), resource(USER_POLICY, {"policy": iam_document(
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::someone-elses-bucket/*"})},
        name="access")], "not the platform bucket"),
    ("k8s-container-resources-set", [deployment(GOOD_CONTAINER)], None),
    ("k8s-container-resources-set", [deployment(with_container(
        resources={"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "2"}}))], "no memory limit"),
    ("k8s-container-resources-set", [cron_job(with_container(
        resources={"requests": {"memory": "1Gi"}, "limits": {"cpu": "2", "memory": "2Gi"}}))], "no cpu request"),
    ("k8s-image-pinned", [deployment(GOOD_CONTAINER)], None),
    ("k8s-image-pinned", [deployment(with_container(image="heartexlabs/label-studio:latest"))], "tag latest"),
    ("k8s-image-pinned", [job_init(with_container(image="busybox"))], "has no tag"),
    ("k8s-image-moving-tag", [deployment(with_container(
        image="t9kpublic/label-studio-sam:main@sha256:" + "a" * 64))], None),
    ("k8s-image-moving-tag", [deployment(with_container(image="t9kpublic/label-studio-sam:main"))],
     "a tag may move"),
    ("k8s-image-moving-tag", [cron_job(with_container(image="heartexlabs/label-studio-ml-backend:sam-master"))],
     "a tag may move"),
    ("k8s-image-moving-tag", [deployment(with_container(image="registry.example.com/sam:sam-v1"))], "a tag may move"),
    ("k8s-image-moving-tag", [deployment(with_container(image=SAM_SERVER_BUILD))], None),
    ("k8s-image-moving-tag", [deployment(with_container(image="ghcr.io/example-org/labeling-platform/sam-server:1.0.0"))],
     "without a digest"),
    ("k8s-no-privileged-containers", [job_init(GOOD_CONTAINER)], None),
    ("k8s-no-privileged-containers", [job_init(with_container(
        securityContext={"privileged": True, "allowPrivilegeEscalation": False}))],
     "spec.template.spec.initContainers[0] (app): runs privileged"),
    ("k8s-no-privilege-escalation", [deployment(GOOD_CONTAINER)], None),
    ("k8s-no-privilege-escalation", [deployment(with_container(securityContext=None))], "may escalate"),
    ("k8s-no-privilege-escalation", [cron_job(with_container(securityContext={"allowPrivilegeEscalation": True}))],
     "may escalate"),
    ("k8s-no-inline-secret-env", [deployment(GOOD_CONTAINER)], None),
    ("k8s-no-inline-secret-env", [deployment(with_container(env=[{"name": "LABEL_STUDIO_API_KEY", "value": "abc123"}]))],
     "env LABEL_STUDIO_API_KEY holds its value inline"),
    ("k8s-no-inline-secret-env", [job_init(with_container(env=[{"name": "DB_PASSWORD", "value": "hunter2"}]))],
     "env DB_PASSWORD"),
    ("helm-release-pinned", [resource(RELEASE, release())], None),
    ("helm-release-pinned", [resource(RELEASE, release(version=None))], "version is 'unset'"),
    ("helm-release-pinned", [resource(RELEASE, release(version="^2.0.0"))], "expected an exact version"),
    ("helm-release-pinned", [resource(RELEASE, release(repositoryOpts=None))], "has no repository"),
    ("helm-values-no-literal-secrets", [resource(RELEASE, release())], None),
    ("helm-values-no-literal-secrets", [resource(RELEASE, release(values_with("postgresql.auth.password", "labelstudio")))],
     "values.postgresql.auth.password holds a credential"),
    ("helm-values-no-literal-secrets",
     [resource(RELEASE, release(values_with("global.extraEnvironmentVars.LABEL_STUDIO_PASSWORD", "changeme")))],
     "LABEL_STUDIO_PASSWORD holds a credential"),
    ("helm-values-no-literal-secrets", [resource(RELEASE, release(values_with("app.secretKey", "django-insecure-x")))],
     "values.app.secretKey"),
    ("helm-values-no-literal-secrets",
     [resource(RELEASE, release(values_with("app.extraEnv", [{"name": "ADMIN_TOKEN", "value": "t0k3n"}])))],
     "values.app.extraEnv[0].value (env ADMIN_TOKEN)"),
    ("protected-stack-data-stores", [resource(S3_BUCKET, {"bucket": BUCKET, "forceDestroy": True})], None),
    ("protected-stack-data-stores", [resource(S3_BUCKET, {"bucket": BUCKET}, stack="prod", protect=True)], None),
    ("protected-stack-data-stores", [resource(S3_BUCKET, {"bucket": BUCKET}, stack="prod")], "without protect=True"),
    ("protected-stack-data-stores", [resource(RELEASE, release(), stack="prod")], "without protect=True"),
    ("protected-stack-data-stores",
     [resource(S3_BUCKET, {"bucket": BUCKET, "forceDestroy": True}, stack="prod", protect=True)], "sets forceDestroy"),
    ("protected-stack-data-stores",
     [resource(RELEASE, release(values_with("postgresql.enabled", False)), stack="prod")], None),
    ("protected-stack-data-stores", [resource(RDS, {**GOOD_RDS, "deletionProtection": False}, stack="prod",
                                              protect=True)], "no deletionProtection"),
    ("protected-stack-data-stores", [resource(RDS, {**GOOD_RDS, "skipFinalSnapshot": True}, stack="prod",
                                              protect=True)], "skips the final snapshot"),
    ("k8s-egress-fenced", [labelled_workload(WORKER_LABELS), egress_policy(WORKER_LABELS, PUBLIC_HTTPS),
                           label_studio_release(), egress_policy(app_selector_labels("label-studio"), name="app"),
                           egress_policy(postgresql_pod_labels("label-studio"), name="database")],
     None),
    ("k8s-egress-fenced", [label_studio_release(), egress_policy(app_selector_labels("label-studio"), name="app")],
     "release: no egress NetworkPolicy selects its pods {'app.kubernetes.io/name': 'postgresql', "
     "'app.kubernetes.io/instance': 'label-studio'}"),
    ("k8s-egress-fenced", [resource(RELEASE, release(values_with("postgresql.enabled", False), name="label-studio",
                                                     namespace="labeling"), name="release"),
                           egress_policy(app_selector_labels("label-studio"), name="app")], None),
    ("k8s-egress-fenced", [labelled_workload(WORKER_LABELS)], "worker: no egress NetworkPolicy selects its pods"),
    ("k8s-egress-fenced", [labelled_workload(WORKER_LABELS), egress_policy(WORKER_LABELS, namespace="elsewhere")],
     "worker: no egress NetworkPolicy"),
    ("k8s-egress-fenced", [label_studio_release("annotate"), egress_policy(app_selector_labels("label-studio")),
                           egress_policy(postgresql_pod_labels("annotate"), name="database")],
     "release: no egress NetworkPolicy selects its pods {'app.kubernetes.io/name': 'ls-app', "
     "'app.kubernetes.io/instance': 'annotate'}"),
    ("k8s-egress-fenced", [labelled_workload(WORKER_LABELS), egress_policy(
        WORKER_LABELS, {"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8"]}}]})],
     "fence: spec.egress[0] admits the cloud metadata address 169.254.169.254"),
    ("k8s-egress-fenced", [labelled_workload(WORKER_LABELS), egress_policy({}, PUBLIC_HTTPS, {"ports": [
        {"protocol": "TCP", "port": 80}]})], "spec.egress[1] admits the cloud metadata address"),
    ("rds-encrypted-private", [resource(RDS, GOOD_RDS)], None),
    ("rds-encrypted-private", [resource(RDS, {**GOOD_RDS, "storageEncrypted": False})], "not encrypted"),
    ("rds-encrypted-private", [resource(RDS, {**GOOD_RDS, "publiclyAccessible": True})], "publicly accessible"),
]


def _case_id(case) -> str:
    return f"{case[0]}-{'good' if case[2] is None else case[2][:30]}"


@pytest.mark.parametrize("policy_name,resources,fragment", CASES, ids=[_case_id(c) for c in CASES])
def test_each_rule(policy_name, resources, fragment):
    messages = violations_of(policy_name, resources)
    if fragment is None:
        assert messages == []
    else:
        assert len(messages) == 1, messages
        assert fragment in messages[0]


def test_every_policy_has_a_good_and_a_bad_case():
    good = {c[0] for c in CASES if c[2] is None}
    bad = {c[0] for c in CASES if c[2] is not None}
    assert good == bad == set(POLICIES)


def test_levels_and_descriptions():
    advisory = [p.name for p in ALL_POLICIES if p.enforcement_level == EnforcementLevel.ADVISORY]
    assert advisory == ["k8s-image-moving-tag"]
    assert all(p.description and p.enforcement_level for p in ALL_POLICIES)
    assert all(isinstance(p, (ResourceValidationPolicy, StackValidationPolicy)) for p in ALL_POLICIES)
    assert len(POLICIES) == len(ALL_POLICIES), "policy names are unique"


def test_protected_stacks_come_from_policy_config():
    staging_bucket = resource(S3_BUCKET, {"bucket": BUCKET}, stack="staging")
    policy = POLICIES["protected-stack-data-stores"]
    assert violations_of(policy.name, [staging_bucket]) == []
    reported = []
    policy.validate(ResourceValidationArgs(staging_bucket.type, staging_bucket.inputs, staging_bucket.urn,
                                           staging_bucket.name, options_of(staging_bucket), None,
                                           {"protectedStacks": ["staging"]}),
                    lambda message, urn=None: reported.append(message))
    assert len(reported) == 1 and "protected stack 'staging'" in reported[0]


@pytest.mark.parametrize("name,secret", [
    ("password", True), ("secretKey", True), ("SECRET_KEY", True), ("LABEL_STUDIO_API_KEY", True),
    ("AWS_SECRET_ACCESS_KEY", True), ("apiToken", True), ("accessKeyExistingSecretKey", False),
    ("secretKeyExistingSecret", False), ("existingSecret", False), ("AWS_ACCESS_KEY_ID", False),
    ("LABEL_STUDIO_USERNAME", False), ("secretName", False), ("PGPASSWORD", True), ("FERNET_KEY", True),
    ("topologyKey", False), ("userPasswordKey", False), ("privateKey", True),
])
def test_secret_names(name, secret):
    assert names_a_secret(name) is secret


def test_template_placeholders_are_not_literals():
    assert list(literal_secrets_in_values({"password": "{{ .Values.x }}", "token": "${TOKEN}"})) == []


def test_stack_name_is_read_from_the_urn():
    assert stack_of("urn:pulumi:prod::labeling-platform::aws:s3/bucket:Bucket::bucket") == "prod"
    assert stack_of("not-a-urn") == ""


# --------------------------------------------------------------------------- the committed stacks


@pytest.mark.parametrize("stack", ALL_STACKS)
def test_committed_stacks_pass_every_mandatory_policy(stack):
    objects = objects_cached(stack)
    violations = run_pack(objects)
    assert [str(v) for v in blocking(violations, objects)] == []
    # the declared resources pass with no skip at all
    assert [str(v) for v in mandatory(run_policies(ALL_POLICIES, objects.evaluation.resources))] == []


def test_every_policy_skip_is_still_needed():
    def needed(skip, stack: str) -> bool:
        objects = objects_cached(stack)
        rendered = rendered_resources(objects)
        return any(skip.covers(stack, v.policy, subject(v, rendered) or "") for v in run_pack(objects))

    unused = [s for s in POLICY_SKIPS if not any(needed(s, stack) for stack in (s.stacks or ALL_STACKS))]
    assert unused == [], "these rules pass now: remove their skips"


def test_rendered_objects_reach_the_pack_as_the_providers_resources():
    objects = objects_cached("dev")
    release = objects.evaluation.one(RELEASE)
    resources = {r.type: r for r in rendered_resources(objects)}
    deployment = resources["kubernetes:apps/v1:Deployment"]
    assert set(resources) == {"kubernetes:apps/v1:Deployment", "kubernetes:core/v1:Service",
                              "kubernetes:core/v1:ServiceAccount", "kubernetes:core/v1:Secret"}
    assert deployment.parent == release.urn
    assert deployment.urn.startswith(release.urn.rpartition("::")[0] + "$kubernetes:apps/v1:Deployment::")
    assert deployment.inputs["metadata"] == {**deployment.inputs["metadata"], "name": "label-studio-ls-app",
                                             "namespace": "labeling-dev"}


def _with_app_container(objects: StackObjects, **changes) -> StackObjects:
    """The dev objects with the chart's app container changed."""
    render = objects.renders[0]
    changed = copy.deepcopy(list(render.objects))
    for obj in changed:
        if obj["kind"] == "Deployment":
            obj["spec"]["template"]["spec"]["containers"][0].update(changes)
    return dataclasses.replace(objects, renders=(dataclasses.replace(render, objects=tuple(changed)),))


def test_the_skips_cover_the_chart_sidecars_and_nothing_else():
    objects = objects_cached("dev")
    accepted = skipped(run_pack(objects), objects)
    assert {(v.policy, v.message.split(" (")[1].split(")")[0]) for v in accepted} \
        == {("k8s-container-resources-set", "nginx"), ("k8s-container-resources-set", "db-migrations")}
    # The app container keeps every rule: without its resources, or escalating, it fails the pack.
    for changes in ({"resources": {}}, {"securityContext": {"allowPrivilegeEscalation": True}},
                    {"image": "docker.io/heartexlabs/label-studio:latest"}):
        broken = _with_app_container(objects, **changes)
        found = blocking(run_pack(broken), broken)
        assert found and all("containers[0] (app)" in v.message for v in found), changes


def _advisory_images(objects: StackObjects) -> set[str]:
    advisory = [v for v in run_pack(objects) if v.level == EnforcementLevel.ADVISORY]
    assert {v.policy for v in advisory} <= {"k8s-image-moving-tag"}
    return {v.message.split("image '", 1)[1].split("'", 1)[0] for v in advisory}


def test_every_image_without_a_digest_is_reported_as_advisory():
    """The config contract's rule for sam.image, for every container the stack runs: a tag
    without a digest may move, whatever it looks like."""
    objects = objects_cached("dev", {"sam.image": SAM_SERVER_TAG})
    images = {container["image"] for resource in (*objects.evaluation.resources, *rendered_resources(objects))
              for _, container in containers(resource.type, resource.inputs)}
    assert SAM_SERVER_TAG in images
    # A digest pins: the rule's own cases hold the same image with one (CASES).
    assert _advisory_images(objects) == {image for image in images if "@sha256:" not in image}


@pytest.mark.parametrize("stack", ALL_STACKS)
def test_the_protection_rule_guards_each_stacks_data_stores(stack):
    """Evaluate a stack as if protected and strip protect: the rule names its bucket and its database."""
    unprotected = [dataclasses.replace(r, protect=False, urn=r.urn.replace(f"urn:pulumi:{stack}::", "urn:pulumi:prod::"))
                   for r in evaluate_cached(stack).resources]
    messages = violations_of("protected-stack-data-stores", unprotected)
    guarded = {m.split(":")[0] for m in messages if "without protect=True" in m}
    database = {r.name for r in evaluate_cached(stack).resources
                if r.type == RDS or (r.type == RELEASE and r.inputs["values"].get("postgresql", {}).get("enabled", True))}
    assert len(database) == 1
    bucket = {r.name for r in evaluate_cached(stack).resources if r.type == S3_BUCKET}
    assert guarded == bucket | database


def test_every_policy_applies_to_something_in_the_stacks():
    """No rule watches a resource type the program never declares (a sign of a wrong type token)."""
    declared = {r.type for stack in ALL_STACKS for r in evaluate_cached(stack).resources}
    for types in (BUCKET_POLICY_TYPES, ENCRYPTION_TYPES, HELM_RELEASE_TYPES, IAM_POLICY_TYPES, POD_SPEC_PATHS,
                  PUBLIC_ACCESS_BLOCK_TYPES, VERSIONING_TYPES, RDS_TYPES):
        assert declared.intersection(types), types
