"""The `storage` section: a bucket the stack creates on AWS, or an existing S3-compatible store."""

from __future__ import annotations

import ipaddress
import re
from typing import Optional
from urllib.parse import urlsplit

from components.settings.checks import check_arn, check_prefix, check_region, is_ip
from components.settings.model import StorageMode, StorageSettings
from components.settings.reader import Section

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
# An S3-compatible store does not care about the region; the S3 clients want one.
S3_COMPATIBLE_DEFAULT_REGION = "us-east-1"


def _check_bucket(text: str) -> Optional[str]:
    if _BUCKET.match(text) and ".." not in text and not is_ip(text):
        return None
    return "is not a valid S3 bucket name; expected 3-63 lowercase letters, digits, '.' and '-'"


def _check_endpoint(text: str) -> Optional[str]:
    parts = urlsplit(text)
    if parts.scheme in ("http", "https") and parts.hostname and parts.path in ("", "/"):
        return None
    return "is not an endpoint URL; expected e.g. https://s3.example.com or http://minio.storage.svc:9000"


def resolves_private(url: str) -> bool:
    """True for endpoints that are literally private or in-cluster names (no DNS lookup here)."""
    host = urlsplit(url).hostname or ""
    if is_ip(host):
        return not ipaddress.ip_address(host).is_global
    return host == "localhost" or host.endswith((".svc", ".svc.cluster.local", ".local", ".internal")) or "." not in host


def read_storage(section: Section, secret_keys: frozenset[str]) -> StorageSettings:
    mode = section.choice(
        "mode", "aws: the stack creates and hardens an S3 bucket; s3Compatible: use an existing S3-compatible store.",
        [m.value for m in StorageMode], required=True)
    bucket = section.string("bucketName", "Bucket holding source images, uploads, exports and backups.",
                            required=True, check=_check_bucket, kind="S3 bucket name")
    region = section.string("region", "Bucket region (required for aws; s3Compatible defaults to us-east-1).",
                            check=check_region, kind="region")
    endpoint = section.string("endpoint", "S3 API endpoint URL (s3Compatible only).", check=_check_endpoint, kind="URL")
    prefix = section.string("prefix", "Key prefix under which Label Studio writes uploads, exports and backups.",
                            "label-studio", check=check_prefix, kind="key prefix")
    force_destroy = section.boolean("forceDestroy", "Let `pulumi destroy` delete a non-empty bucket (aws; never with protect).", False)
    access_key = section.secret("accessKeyId", "Access key id of the existing store (s3Compatible only).",
                                secret_keys=secret_keys, top_key="storage")
    secret_key = section.secret("secretAccessKey", "Secret access key of the existing store (s3Compatible only).",
                                secret_keys=secret_keys, top_key="storage")
    kms = section.string("kmsKeyArn", "KMS key for bucket encryption (aws; default AES256).", check=check_arn, kind="ARN")
    oidc = section.string("oidcProviderArn", "EKS OIDC provider ARN: Label Studio gets an IAM role (IRSA) instead of keys (aws).",
                          check=check_arn, kind="ARN")
    allow_private = section.boolean(
        "allowPrivateEndpoint",
        "Lift Label Studio's SSRF block for storage endpoints so a private-network endpoint works (s3Compatible).", False)
    section.finish()
    mode = StorageMode(mode) if mode else None
    if mode is StorageMode.AWS:
        if not region and not section.has("region"):
            section.error("region", "is required when mode is aws; expected e.g. us-east-1")
        for key in ("endpoint", "accessKeyId", "secretAccessKey", "allowPrivateEndpoint"):
            if section.has(key):
                section.error(key, "applies only to mode s3Compatible; aws mode creates its own bucket and keys")
    elif mode is StorageMode.S3_COMPATIBLE:
        region = region or S3_COMPATIBLE_DEFAULT_REGION
        for key, value in (("endpoint", endpoint), ("accessKeyId", access_key), ("secretAccessKey", secret_key)):
            if value is None and not section.has(key):
                section.error(key, "is required when mode is s3Compatible")
        for key in ("kmsKeyArn", "oidcProviderArn", "forceDestroy"):
            if section.has(key):
                section.error(key, "applies only to mode aws; the stack does not manage an existing store")
        if not allow_private and endpoint and resolves_private(endpoint):
            section.problems.warnings.append(
                f"{section.key('endpoint')}: {endpoint} is on a private address; Label Studio refuses it unless "
                f"{section.key('allowPrivateEndpoint')} is true"
            )
    return StorageSettings(mode or StorageMode.AWS, bucket or "", region or "", endpoint, prefix or "label-studio",
                           force_destroy, access_key, secret_key, kms, oidc, allow_private)
