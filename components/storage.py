"""Object storage for the platform: a hardened S3 bucket with scoped credentials, or an
existing S3-compatible store, exposed to the cluster as one Kubernetes Secret.

The images and everything the team labels are the customer's data: the bucket is
private, encrypted, versioned, TLS-only, and the keys Label Studio gets reach only it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Optional, Sequence, Union

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from components.conventions import PART_OF, PLATFORM, SecretKeyRef, child_of, resource_version
from components.network import Rule, endpoint_egress
from components.settings import StorageMode, StorageSettings

ACCESS_KEY_ID_KEY = "AWS_ACCESS_KEY_ID"
SECRET_ACCESS_KEY_KEY = "AWS_SECRET_ACCESS_KEY"
CREDENTIALS_SECRET_NAME = "object-storage-credentials"
# The store's private CA (storage.caBundle): one ConfigMap, mounted at one path everywhere.
STORE_CA_CONFIG_MAP = "object-storage-ca"
STORE_CA_KEY = "ca.pem"
STORE_CA_VOLUME = "store-ca"
STORE_CA_DIR = "/etc/labeling/store-ca"
STORE_CA_FILE = f"{STORE_CA_DIR}/{STORE_CA_KEY}"

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


def service_account_trust_document(oidc_provider_arn: str, namespace: str, service_account: str,
                                   also: Sequence[str] = ()) -> dict:
    """IRSA: only the named service accounts of the cluster's OIDC provider may assume the role."""
    issuer = oidc_provider_arn.split(":oidc-provider/", 1)[-1]
    subjects = [f"system:serviceaccount:{namespace}:{account}" for account in (service_account, *also)]
    return {
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Federated": oidc_provider_arn},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {"StringEquals": {
                # StringEquals with a list admits any one of them.
                f"{issuer}:sub": subjects[0] if len(subjects) == 1 else subjects,
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


@dataclass(frozen=True)
class StorageKeys:
    """Access keys in a Kubernetes Secret, for pods that reach the store with keys."""

    access_key_id: SecretKeyRef
    secret_access_key: SecretKeyRef
    # The Secret's resourceVersion: it changes when the keys are rotated, and says nothing about them.
    version: pulumi.Input[str] = ""

    @property
    def secret_name(self) -> pulumi.Input[str]:
        return self.access_key_id.secret_name


@dataclass(frozen=True)
class WorkloadIdentity:
    """IRSA: pods running as `service_account` assume `role_arn`; no keys exist."""

    service_account: str
    role_arn: pulumi.Input[str]


@dataclass(frozen=True)
class StoreTrust:
    """The private CA of an https S3-compatible store, in a ConfigMap every client of the store
    mounts read-only; each client's TLS library is pointed at the file by its own variable."""

    config_map: pulumi.Input[str]

    def pod_spec_trusting(self, pod_spec: dict, variables: Sequence[str]) -> dict:
        """`pod_spec` with the bundle mounted in each container and `variables` naming the file."""
        spec = {**pod_spec, "volumes": [*pod_spec.get("volumes", []), self.volume()]}
        spec["containers"] = [self.container_trusting(container, variables) for container in pod_spec["containers"]]
        return spec

    def container_trusting(self, container: dict, variables: Sequence[str]) -> dict:
        """`container` with the bundle mounted and `variables` naming the file; the pod adds `volume()`."""
        return {**container, "env": [*container.get("env", []), *self.environment(variables)],
                "volumeMounts": [*container.get("volumeMounts", []), self.volume_mount()]}

    def volume(self) -> dict:
        return {"name": STORE_CA_VOLUME, "configMap": {"name": self.config_map,
                                                        "items": [{"key": STORE_CA_KEY, "path": STORE_CA_KEY}]}}

    @staticmethod
    def volume_mount() -> dict:
        return {"name": STORE_CA_VOLUME, "mountPath": STORE_CA_DIR, "readOnly": True}

    @staticmethod
    def environment(variables: Sequence[str]) -> list[dict]:
        return [{"name": variable, "value": STORE_CA_FILE} for variable in variables]


@dataclass(frozen=True)
class StorageAccess:
    """Everything a workload needs to use the platform's object store.

    Fields hold Pulumi Inputs inside the program and plain values in tests; the pure
    manifest builders accept either.
    """

    bucket: pulumi.Input[str]
    region: str
    endpoint: Optional[str]
    prefix: str
    credentials: Union[StorageKeys, WorkloadIdentity]
    # Browsers (and SAM) get presigned URLs to the store (true), or Label Studio streams the
    # objects itself (false: an endpoint only the cluster reaches).
    presign: bool = True
    # Where pods may connect to reach the store (a NetworkPolicy egress rule).
    egress: Rule = field(default_factory=lambda: endpoint_egress(None))
    # The private CA of an https store, when it has one.
    trust: Optional[StoreTrust] = None

    def under_prefix(self, area: str) -> str:
        """The key prefix of one of the platform's own areas (uploads, exports, backups)."""
        return f"{self.prefix}/{area}"


@dataclass(frozen=True)
class ObjectStorageArgs:
    settings: StorageSettings
    namespace: pulumi.Input[str]
    cors_origin: str
    protect: bool
    # The service account an IRSA role trusts (Label Studio's app pods run as it).
    workload_service_account: str
    # Other service accounts of the platform the role trusts: ones the stack creates itself,
    # for pods that must run before the chart has made Label Studio's.
    also_trusted_service_accounts: tuple[str, ...] = ()


class ObjectStorage(pulumi.ComponentResource):
    """The bucket and the credentials Label Studio uses to reach it; `access` hands both on.

    Needs the Kubernetes provider, and the AWS one in mode aws (`opts.providers`).
    """

    access: StorageAccess

    def __init__(self, name: str, args: ObjectStorageArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("labeling:storage:ObjectStorage", name, None, pulumi.ResourceOptions.merge(
            opts, pulumi.ResourceOptions(aliases=[pulumi.Alias(type_="labeling:storage:Bucket", name="storage")])))
        self._name = name
        settings = args.settings
        if settings.mode is StorageMode.AWS:
            bucket, credentials = self._declare_bucket(args)
        else:
            bucket = settings.bucket_name
            credentials = self._credentials_secret(args, settings.access_key_id, settings.secret_access_key)
        self.access = StorageAccess(bucket=bucket, region=settings.region, endpoint=settings.endpoint,
                                    prefix=settings.prefix, credentials=credentials, presign=settings.presign,
                                    egress=endpoint_egress(settings.endpoint, settings.egress_cidrs),
                                    trust=self._store_trust(args) if settings.ca_bundle else None)
        self.register_outputs({
            "bucketName": bucket,
            "region": settings.region,
            "endpoint": settings.endpoint,
            "prefix": settings.prefix,
        })

    def _store_trust(self, args: ObjectStorageArgs) -> StoreTrust:
        config_map = k8s.core.v1.ConfigMap(
            f"{self._name}-ca",
            metadata={"name": STORE_CA_CONFIG_MAP, "namespace": args.namespace, "labels": dict(PART_OF)},
            data={STORE_CA_KEY: args.settings.ca_bundle},
            opts=child_of(self),
        )
        return StoreTrust(config_map.metadata.apply(lambda m: m["name"]))

    def _credentials_secret(self, args: ObjectStorageArgs, access_key_id: pulumi.Input[str],
                            secret_access_key: pulumi.Input[str]) -> StorageKeys:
        secret = k8s.core.v1.Secret(
            f"{self._name}-credentials",
            metadata={"name": CREDENTIALS_SECRET_NAME, "namespace": args.namespace, "labels": dict(PART_OF)},
            type="Opaque",
            string_data={ACCESS_KEY_ID_KEY: access_key_id, SECRET_ACCESS_KEY_KEY: secret_access_key},
            opts=child_of(self, "credentials"),
        )
        name = secret.metadata.apply(lambda m: m["name"])
        version = secret.metadata.apply(resource_version)
        return StorageKeys(SecretKeyRef(name, ACCESS_KEY_ID_KEY), SecretKeyRef(name, SECRET_ACCESS_KEY_KEY), version)

    def _declare_bucket(self, args: ObjectStorageArgs) -> tuple[pulumi.Output[str], Union[StorageKeys, WorkloadIdentity]]:
        settings = args.settings
        name = self._name
        bucket = aws.s3.Bucket(
            f"{name}-bucket",
            bucket=settings.bucket_name,
            force_destroy=settings.force_destroy,
            tags=dict(PART_OF),
            # Protected stacks keep the bucket through a mistaken delete or destroy.
            opts=child_of(self, "bucket", protect=args.protect, retain_on_delete=args.protect),
        )
        aws.s3.BucketOwnershipControls(
            f"{name}-ownership", bucket=bucket.id, rule={"object_ownership": "BucketOwnerEnforced"},
            opts=child_of(self, "ownership"))
        public_access = aws.s3.BucketPublicAccessBlock(
            f"{name}-public-access", bucket=bucket.id, block_public_acls=True, block_public_policy=True,
            ignore_public_acls=True, restrict_public_buckets=True, opts=child_of(self, "public-access"))
        encryption_default = (
            {"sse_algorithm": "aws:kms", "kms_master_key_id": settings.kms_key_arn}
            if settings.kms_key_arn else {"sse_algorithm": "AES256"}
        )
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-encryption", bucket=bucket.id,
            rules=[{"apply_server_side_encryption_by_default": encryption_default,
                    "bucket_key_enabled": bool(settings.kms_key_arn)}],
            opts=child_of(self, "encryption"))
        versioning = aws.s3.BucketVersioning(
            f"{name}-versioning", bucket=bucket.id, versioning_configuration={"status": "Enabled"},
            opts=child_of(self, "versioning"))
        aws.s3.BucketPolicy(
            f"{name}-tls-only", bucket=bucket.id,
            policy=bucket.arn.apply(lambda arn: json.dumps(bucket_policy_document(arn))),
            # S3 rejects policy writes while the public access block is being applied.
            opts=child_of(self, "tls-only", depends_on=[public_access]))
        aws.s3.BucketCorsConfiguration(
            f"{name}-cors", bucket=bucket.id, cors_rules=cors_rules(args.cors_origin), opts=child_of(self, "cors"))
        aws.s3.BucketLifecycleConfiguration(
            f"{name}-lifecycle", bucket=bucket.id, rules=lifecycle_rules(),
            # Noncurrent-version rules need versioning in place first.
            opts=child_of(self, "lifecycle", depends_on=[versioning]))

        access_policy = bucket.arn.apply(lambda arn: json.dumps(access_policy_document(arn)))
        if settings.oidc_provider_arn:
            trust = pulumi.Output.from_input(args.namespace).apply(
                lambda ns: json.dumps(service_account_trust_document(
                    settings.oidc_provider_arn, ns, args.workload_service_account,
                    args.also_trusted_service_accounts)))
            role = aws.iam.Role(f"{name}-role", assume_role_policy=trust, opts=child_of(self, "label-studio"))
            aws.iam.RolePolicy(f"{name}-role-policy", role=role.id, policy=access_policy,
                               opts=child_of(self, "label-studio-bucket-access"))
            return bucket.bucket, WorkloadIdentity(args.workload_service_account, role.arn)

        user = aws.iam.User(f"{name}-user", path=f"/{PLATFORM}/", opts=child_of(self, "label-studio"))
        aws.iam.UserPolicy(f"{name}-user-policy", user=user.name, policy=access_policy,
                           opts=child_of(self, "label-studio-bucket-access"))
        key = aws.iam.AccessKey(f"{name}-access-key", user=user.name, opts=child_of(self, "label-studio"))
        return bucket.bucket, self._credentials_secret(args, pulumi.Output.secret(key.id), key.secret)
