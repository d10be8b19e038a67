"""Object storage for the platform: a hardened S3 bucket with scoped credentials, or an
existing S3-compatible store, exposed to the cluster as one Kubernetes Secret.

The images and everything the team labels are the customer's data: the bucket is
private, encrypted, versioned, TLS-only, and the keys Label Studio gets reach only it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Optional

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from components.settings import StorageSettings

ACCESS_KEY_ID_KEY = "AWS_ACCESS_KEY_ID"
SECRET_ACCESS_KEY_KEY = "AWS_SECRET_ACCESS_KEY"
CREDENTIALS_SECRET_NAME = "object-storage-credentials"

# Old object versions stay recoverable this long after an overwrite or delete.
NONCURRENT_VERSION_DAYS = 90
ABORT_MULTIPART_DAYS = 7

# What Label Studio does with the bucket: list and read source images; write, replace
# and delete uploads and exported annotations. Nothing else, nowhere else.
BUCKET_ACTIONS = ("s3:ListBucket",)
OBJECT_ACTIONS = ("s3:GetObject", "s3:PutObject", "s3:DeleteObject")


def bucket_policy_document(bucket_arn: str) -> dict:
    """Refuse every request that does not arrive over TLS."""
    return {
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "DenyInsecureTransport",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": [bucket_arn, f"{bucket_arn}/*"],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        }],
    }


def access_policy_document(bucket_arn: str) -> dict:
    """Least privilege for Label Studio's credentials: this bucket and its objects only."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "ListPlatformBucket", "Effect": "Allow", "Action": list(BUCKET_ACTIONS), "Resource": bucket_arn},
            {"Sid": "ReadWritePlatformObjects", "Effect": "Allow", "Action": list(OBJECT_ACTIONS),
             "Resource": f"{bucket_arn}/*"},
        ],
    }


def service_account_trust_document(oidc_provider_arn: str, namespace: str, service_account: str) -> dict:
    """IRSA: only the named service account of the cluster's OIDC provider may assume the role."""
    issuer = oidc_provider_arn.split(":oidc-provider/", 1)[-1]
    return {
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Federated": oidc_provider_arn},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {"StringEquals": {
                f"{issuer}:sub": f"system:serviceaccount:{namespace}:{service_account}",
                f"{issuer}:aud": "sts.amazonaws.com",
            }},
        }],
    }


def cors_rules(origin: str) -> list[dict]:
    """Browsers load images through presigned URLs, from the Label Studio origin only."""
    return [{
        "allowed_methods": ["GET", "HEAD"],
        "allowed_origins": [origin],
        "allowed_headers": ["*"],
        "expose_headers": ["ETag"],
        "max_age_seconds": 3600,
    }]


def lifecycle_rules() -> list[dict]:
    return [
        {
            "id": "expire-noncurrent-versions",
            "status": "Enabled",
            "filter": {"prefix": ""},
            "noncurrent_version_expiration": {"noncurrent_days": NONCURRENT_VERSION_DAYS},
        },
        {
            "id": "abort-incomplete-multipart-uploads",
            "status": "Enabled",
            "filter": {"prefix": ""},
            "abort_incomplete_multipart_upload": {"days_after_initiation": ABORT_MULTIPART_DAYS},
        },
    ]


@dataclass
class StorageArgs:
    settings: StorageSettings
    namespace: pulumi.Input[str]
    cors_origin: str
    protect: bool
    label_studio_service_account: str
    kubernetes_provider: k8s.Provider
    # The stack's AWS provider (mode aws); None for an existing S3-compatible store.
    aws_provider: Optional[aws.Provider] = None


class ObjectStorage(pulumi.ComponentResource):
    """The bucket and the credentials Label Studio uses to reach it."""

    bucket_name: pulumi.Output[str]
    region: str
    endpoint: Optional[str]
    prefix: str
    credentials_secret_name: Optional[pulumi.Output[str]]
    role_arn: Optional[pulumi.Output[str]]
    access_key_id_key = ACCESS_KEY_ID_KEY
    secret_access_key_key = SECRET_ACCESS_KEY_KEY

    def __init__(self, name: str, args: StorageArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("labeling:storage:Bucket", name, None, opts)
        settings = args.settings
        self.region = settings.region
        self.endpoint = settings.endpoint
        self.prefix = settings.prefix
        self.role_arn = None

        if settings.mode == "aws":
            access_key_id, secret_access_key = self._declare_bucket(args)
        else:
            self.bucket_name = pulumi.Output.from_input(settings.bucket_name)
            access_key_id, secret_access_key = settings.access_key_id, settings.secret_access_key

        self.credentials_secret_name = None
        if access_key_id is not None:
            secret = k8s.core.v1.Secret(
                "credentials",
                metadata={"name": CREDENTIALS_SECRET_NAME, "namespace": args.namespace,
                          "labels": {"app.kubernetes.io/part-of": "labeling-platform"}},
                type="Opaque",
                string_data={ACCESS_KEY_ID_KEY: access_key_id, SECRET_ACCESS_KEY_KEY: secret_access_key},
                opts=pulumi.ResourceOptions(parent=self, provider=args.kubernetes_provider),
            )
            self.credentials_secret_name = secret.metadata.apply(lambda m: m["name"])

        self.register_outputs({
            "bucketName": self.bucket_name,
            "region": self.region,
            "endpoint": self.endpoint,
            "prefix": self.prefix,
            "credentialsSecretName": self.credentials_secret_name,
            "roleArn": self.role_arn,
        })

    def _declare_bucket(self, args: StorageArgs) -> tuple[Optional[pulumi.Output], Optional[pulumi.Output]]:
        settings = args.settings
        child = pulumi.ResourceOptions(parent=self, provider=args.aws_provider)
        bucket = aws.s3.Bucket(
            "bucket",
            bucket=settings.bucket_name,
            force_destroy=settings.force_destroy,
            tags={"app.kubernetes.io/part-of": "labeling-platform"},
            # Protected stacks keep the bucket through a mistaken delete or destroy.
            opts=pulumi.ResourceOptions.merge(
                child, pulumi.ResourceOptions(protect=args.protect, retain_on_delete=args.protect)),
        )
        self.bucket_name = bucket.bucket
        aws.s3.BucketOwnershipControls(
            "ownership", bucket=bucket.id, rule={"object_ownership": "BucketOwnerEnforced"}, opts=child)
        public_access = aws.s3.BucketPublicAccessBlock(
            "public-access", bucket=bucket.id, block_public_acls=True, block_public_policy=True,
            ignore_public_acls=True, restrict_public_buckets=True, opts=child)
        encryption_default = (
            {"sse_algorithm": "aws:kms", "kms_master_key_id": settings.kms_key_arn}
            if settings.kms_key_arn else {"sse_algorithm": "AES256"}
        )
        aws.s3.BucketServerSideEncryptionConfiguration(
            "encryption", bucket=bucket.id,
            rules=[{"apply_server_side_encryption_by_default": encryption_default,
                    "bucket_key_enabled": bool(settings.kms_key_arn)}],
            opts=child)
        versioning = aws.s3.BucketVersioning(
            "versioning", bucket=bucket.id, versioning_configuration={"status": "Enabled"}, opts=child)
        aws.s3.BucketPolicy(
            "tls-only", bucket=bucket.id,
            policy=bucket.arn.apply(lambda arn: json.dumps(bucket_policy_document(arn))),
            # S3 rejects policy writes while the public access block is being applied.
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[public_access])))
        aws.s3.BucketCorsConfiguration(
            "cors", bucket=bucket.id, cors_rules=cors_rules(args.cors_origin), opts=child)
        aws.s3.BucketLifecycleConfiguration(
            "lifecycle", bucket=bucket.id, rules=lifecycle_rules(),
            # Noncurrent-version rules need versioning in place first.
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[versioning])))

        access_policy = bucket.arn.apply(lambda arn: json.dumps(access_policy_document(arn)))
        if settings.oidc_provider_arn:
            trust = pulumi.Output.from_input(args.namespace).apply(
                lambda ns: json.dumps(service_account_trust_document(
                    settings.oidc_provider_arn, ns, args.label_studio_service_account)))
            role = aws.iam.Role("label-studio", assume_role_policy=trust, opts=child)
            aws.iam.RolePolicy("label-studio-bucket-access", role=role.id, policy=access_policy, opts=child)
            self.role_arn = role.arn
            return None, None

        user = aws.iam.User("label-studio", path="/labeling-platform/", opts=child)
        aws.iam.UserPolicy("label-studio-bucket-access", user=user.name, policy=access_policy, opts=child)
        key = aws.iam.AccessKey("label-studio", user=user.name, opts=child)
        return pulumi.Output.secret(key.id), key.secret
