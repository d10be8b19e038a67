"""Object storage: the hardening each stack declares, least privilege, and secret hygiene."""

from __future__ import annotations

import json

import pulumi
import pytest

from components import storage
from components.settings import StorageMode
from tests.conftest import evaluate_cached, stacks_storing_in
from tools.stack_eval import PLACEHOLDER_PREFIX

S3 = "aws:s3/"
BUCKET = "aws:s3/bucket:Bucket"
S3_COMPATIBLE = {
    "storage": {"mode": "s3Compatible", "bucketName": "my-bucket", "endpoint": "https://s3.example.com",
                "egressCidrs": ["10.20.0.0/16"]},
}
S3_COMPATIBLE_KEYS = {"storage.accessKeyId": "AKIACONFIGURED", "storage.secretAccessKey": "configured-secret-key"}
OIDC = "arn:aws:iam::123456789012:oidc-provider/oidc.eks.eu-central-1.amazonaws.com/id/ABCDEF"


# The bucket's hardening is the stack's own only where the stack creates the bucket.
AWS_STACKS = stacks_storing_in(StorageMode.AWS)
S3_COMPATIBLE_STACKS = stacks_storing_in(StorageMode.S3_COMPATIBLE)


@pytest.fixture(params=AWS_STACKS)
def aws_stack_eval(request):
    return evaluate_cached(request.param)


def storage_component(evaluation):
    return evaluation.one("labeling:storage:ObjectStorage")


def bucket_config(evaluation, type_suffix):
    return evaluation.one(f"{S3}{type_suffix}").inputs


def test_public_access_is_blocked(aws_stack_eval):
    block = bucket_config(aws_stack_eval, "bucketPublicAccessBlock:BucketPublicAccessBlock")
    assert {k: block[k] for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")} \
        == dict.fromkeys(("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"), True)


def test_encryption_defaults_to_aes256_and_uses_kms_when_configured(aws_stack_eval):
    rule = bucket_config(aws_stack_eval, "bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration")["rules"][0]
    assert rule["applyServerSideEncryptionByDefault"] == {"sseAlgorithm": "AES256"}
    key = "arn:aws:kms:eu-central-1:123456789012:key/0f0e0d0c-0b0a-0908-0706-050403020100"
    kms = evaluate_cached("prod", overrides={"storage.kmsKeyArn": key})
    rule = bucket_config(kms, "bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration")["rules"][0]
    assert rule["applyServerSideEncryptionByDefault"] == {"sseAlgorithm": "aws:kms", "kmsMasterKeyId": key}
    assert rule["bucketKeyEnabled"] is True


def test_versioning_ownership_and_lifecycle(aws_stack_eval):
    assert bucket_config(aws_stack_eval, "bucketVersioning:BucketVersioning")["versioningConfiguration"]["status"] == "Enabled"
    assert bucket_config(aws_stack_eval, "bucketOwnershipControls:BucketOwnershipControls")["rule"] == {
        "objectOwnership": "BucketOwnerEnforced"}
    rules = {r["id"]: r for r in bucket_config(aws_stack_eval, "bucketLifecycleConfiguration:BucketLifecycleConfiguration")["rules"]}
    assert rules["expire-noncurrent-versions"]["noncurrentVersionExpiration"] == {
        "noncurrentDays": storage.NONCURRENT_VERSION_DAYS}
    assert rules["abort-incomplete-multipart-uploads"]["abortIncompleteMultipartUpload"] == {
        "daysAfterInitiation": storage.ABORT_MULTIPART_DAYS}
    assert all(r["status"] == "Enabled" for r in rules.values())


def test_bucket_policy_denies_requests_without_tls(aws_stack_eval):
    policy = json.loads(bucket_config(aws_stack_eval, "bucketPolicy:BucketPolicy")["policy"])
    bucket = aws_stack_eval.one(BUCKET).inputs["bucket"]
    [statement] = policy["Statement"]
    assert statement["Effect"] == "Deny" and statement["Principal"] == "*" and statement["Action"] == "s3:*"
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert statement["Resource"] == [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"]


def test_cors_allows_only_reads_from_the_label_studio_origin(aws_stack_eval):
    [rule] = bucket_config(aws_stack_eval, "bucketCorsConfiguration:BucketCorsConfiguration")["corsRules"]
    assert rule["allowedMethods"] == ["GET", "HEAD"]
    assert rule["allowedOrigins"] == [aws_stack_eval.outputs["url"]]


def test_prod_bucket_is_protected_and_retained_dev_bucket_is_destroyable():
    prod = evaluate_cached("prod").one(BUCKET)
    assert prod.protect and prod.retain_on_delete
    assert prod.inputs["forceDestroy"] is False
    dev = evaluate_cached("dev").one(BUCKET)
    assert not dev.protect and not dev.retain_on_delete
    assert dev.inputs["forceDestroy"] is True


def test_every_storage_child_is_parented_to_the_component(stack_eval):
    component = storage_component(stack_eval)
    for resource in stack_eval.resources:
        if resource.type.startswith(("aws:s3/", "aws:iam/")) or resource.name == "labeling-storage-credentials":
            assert resource.parent == component.urn, resource.name


def iam_statements(evaluation):
    policies = evaluation.of_type("aws:iam/userPolicy:UserPolicy") + evaluation.of_type("aws:iam/rolePolicy:RolePolicy")
    assert len(policies) == 1
    return json.loads(policies[0].inputs["policy"])["Statement"]


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_credentials_grant_nothing_beyond_the_platform_bucket(stack):
    evaluation = evaluate_cached(stack)
    bucket_arn = f"arn:aws:s3:::{evaluation.one(BUCKET).inputs['bucket']}"
    allowed = {
        ("s3:ListBucket", bucket_arn),
        ("s3:GetObject", f"{bucket_arn}/*"), ("s3:PutObject", f"{bucket_arn}/*"), ("s3:DeleteObject", f"{bucket_arn}/*"),
    }
    granted = set()
    for statement in iam_statements(evaluation):
        assert statement["Effect"] == "Allow"
        assert "NotAction" not in statement and "NotResource" not in statement
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        granted |= {(a, r) for a in actions for r in resources}
    assert granted <= allowed, f"grants beyond the bucket: {granted - allowed}"
    assert granted == allowed


def test_the_least_privilege_check_would_catch_a_wildcard():
    document = storage.access_policy_document("arn:aws:s3:::b")
    document["Statement"][1]["Action"].append("s3:*")
    flattened = {a for s in document["Statement"] for a in s["Action"]}
    assert "s3:*" in flattened and not flattened <= set(storage.BUCKET_ACTIONS + storage.OBJECT_ACTIONS)


def test_key_material_appears_only_as_secrets(aws_stack_eval):
    key = aws_stack_eval.one("aws:iam/accessKey:AccessKey")
    credentials = aws_stack_eval.one("kubernetes:core/v1:Secret", "labeling-storage-credentials")
    assert credentials.inputs["stringData"] == {
        storage.ACCESS_KEY_ID_KEY: f"MOCKACCESSKEYID{key.name.upper()[:8]}",
        storage.SECRET_ACCESS_KEY_KEY: f"mock-secret-access-key-{key.name}",
    }
    assert "stringData" in credentials.secret_paths
    assert_only_secret(aws_stack_eval, ["mock-secret-access-key-", "MOCKACCESSKEYID"])


def assert_only_secret(evaluation, needles):
    """No needle occurs in a non-secret input of any resource or in a non-secret output."""
    for resource in evaluation.resources:
        text = json.dumps(resource.masked_inputs())
        for needle in needles:
            assert needle not in text, f"{resource.type} {resource.name} exposes {needle}"
    for name, value in evaluation.outputs.items():
        if name not in evaluation.secret_outputs:
            for needle in needles:
                assert needle not in json.dumps(value), f"output {name} exposes {needle}"


def test_credentials_secret_lives_in_the_platform_namespace(stack_eval):
    credentials = stack_eval.one("kubernetes:core/v1:Secret", "labeling-storage-credentials")
    namespace = stack_eval.one("kubernetes:core/v1:Namespace").inputs["metadata"]["name"]
    assert credentials.inputs["metadata"] == {
        "name": storage.CREDENTIALS_SECRET_NAME, "namespace": namespace,
        "labels": {"app.kubernetes.io/part-of": "labeling-platform"}}


def test_s3_compatible_declares_no_aws_resource_and_the_same_secret():
    evaluation = evaluate_cached("dev", overrides=S3_COMPATIBLE, secrets=S3_COMPATIBLE_KEYS)
    assert [r.type for r in evaluation.resources if r.type.startswith("aws:")] == []
    credentials = evaluation.one("kubernetes:core/v1:Secret", "labeling-storage-credentials")
    assert credentials.inputs["stringData"] == {
        storage.ACCESS_KEY_ID_KEY: "AKIACONFIGURED", storage.SECRET_ACCESS_KEY_KEY: "configured-secret-key"}
    assert "stringData" in credentials.secret_paths
    assert evaluation.outputs["bucketName"] == "my-bucket"
    assert_only_secret(evaluation, ["AKIACONFIGURED", "configured-secret-key"])


@pytest.mark.parametrize("stack", S3_COMPATIBLE_STACKS)
def test_a_stack_on_an_existing_store_passes_its_encrypted_keys_only_as_secrets(stack):
    """A stack file's `secure:` keys (the CLI decrypts them; the harness stands placeholders in) reach one Secret."""
    evaluation = evaluate_cached(stack)
    assert [r.type for r in evaluation.resources if r.type.startswith("aws:")] == []
    credentials = evaluation.one("kubernetes:core/v1:Secret", "labeling-storage-credentials")
    placeholders = {storage.ACCESS_KEY_ID_KEY: f"{PLACEHOLDER_PREFIX}labeling-platform:storage.accessKeyId",
                    storage.SECRET_ACCESS_KEY_KEY: f"{PLACEHOLDER_PREFIX}labeling-platform:storage.secretAccessKey"}
    assert credentials.inputs["stringData"] == placeholders
    assert "stringData" in credentials.secret_paths
    assert_only_secret(evaluation, list(placeholders.values()))


@pytest.mark.parametrize("missing", ["storage.endpoint", "storage.accessKeyId", "storage.secretAccessKey"])
def test_s3_compatible_without_endpoint_or_keys_is_a_config_error(missing):
    overrides = {"storage": dict(S3_COMPATIBLE["storage"])}
    overrides["storage"].pop("endpoint") if missing == "storage.endpoint" else None
    secrets = {k: v for k, v in S3_COMPATIBLE_KEYS.items() if k != missing}
    with pytest.raises(pulumi.RunError) as caught:
        evaluate_cached("dev", overrides=overrides, secrets=secrets)
    assert f"{missing}: is required when mode is s3Compatible" in str(caught.value)


def test_irsa_replaces_keys_with_a_role_for_the_label_studio_service_account():
    evaluation = evaluate_cached("prod", overrides={"storage.oidcProviderArn": OIDC})
    assert evaluation.of_type("aws:iam/user:User") == []
    assert evaluation.of_type("aws:iam/accessKey:AccessKey") == []
    assert [r for r in evaluation.resources if r.name == "labeling-storage-credentials"] == []
    trust = json.loads(evaluation.one("aws:iam/role:Role").inputs["assumeRolePolicy"])
    [statement] = trust["Statement"]
    issuer = OIDC.split(":oidc-provider/")[1]
    assert statement["Principal"] == {"Federated": OIDC}
    assert statement["Condition"]["StringEquals"][f"{issuer}:sub"] == \
        "system:serviceaccount:labeling:label-studio-ls-app"
    assert len(iam_statements(evaluation)) == 2
