"""The `storage` section: a bucket the stack creates on AWS, or an existing S3-compatible store."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from typing import Optional
from urllib.parse import urlsplit

from components.settings.checks import (
    check_arn, check_prefix, check_region, check_store_region, is_ip, normalise_prefix,
)
from components.settings.model import StorageMode, StorageSettings
from components.settings.reader import Section, show

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
# An S3-compatible store does not care about the region; the S3 clients want one.
S3_COMPATIBLE_DEFAULT_REGION = "us-east-1"
AWS_ONLY_KEYS = ("kmsKeyArn", "oidcProviderArn", "forceDestroy")
S3_COMPATIBLE_ONLY_KEYS = ("endpoint", "accessKeyId", "secretAccessKey", "allowPrivateEndpoint", "egressCidrs",
                           "caBundle")
_PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----(.*?)-----END \1-----", re.S)


def _check_bucket(text: str) -> Optional[str]:
    if _BUCKET.match(text) and ".." not in text and not is_ip(text):
        return None
    return "is not a valid S3 bucket name; expected 3-63 lowercase letters, digits, '.' and '-'"


def _check_aws_bucket(text: str) -> Optional[str]:
    """AWS's rules beyond the shape (the CreateBucket call refuses these after IAM work began)."""
    problem = _check_bucket(text)
    if problem:
        return problem
    if ".-" in text or "-." in text or text.startswith(("xn--", "sthree-", "amzn-s3-demo-")) or text.endswith(
            ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")):
        return "is a bucket name AWS reserves or refuses; expected no '.-'/'-.', no xn--/sthree- prefix, no -s3alias suffix"
    return None


def _check_endpoint(text: str) -> Optional[str]:
    parts = urlsplit(text)
    if parts.hostname and is_ip(parts.hostname) and ipaddress.ip_address(parts.hostname).is_link_local:
        return "is link-local, where the cloud metadata service lives; expected the store's own address"
    if parts.username or parts.password:
        return ("carries credentials in the URL, which would be copied into plain Helm values and the Job's "
                "ConfigMap; expected the bare endpoint, with storage.accessKeyId/secretAccessKey set --secret")
    if parts.scheme in ("http", "https") and parts.hostname and parts.path in ("", "/") and not (
            parts.query or parts.fragment):
        return None
    return "is not an endpoint URL; expected e.g. https://s3.example.com or http://minio.storage.svc:9000"


def _check_ca_bundle(text: str) -> Optional[str]:
    """PEM CA certificates only: each block a DER sequence, nothing else (never a private key)."""
    blocks = _PEM_BLOCK.findall(text)
    if not blocks:
        return "holds no PEM certificate; expected the CA's -----BEGIN CERTIFICATE----- block(s)"
    for label, body in blocks:
        if label != "CERTIFICATE":
            return f"holds a {label} block; expected CA certificates only (a private key never belongs here)"
        try:
            der = base64.b64decode("".join(body.split()), validate=True)
        except binascii.Error:
            der = b""
        if der[:1] != b"\x30":
            return "holds a certificate block that is not base64 DER; expected the CA's PEM file as is"
    if _PEM_BLOCK.sub("", text).strip():
        return "holds text outside its PEM blocks; expected the CA's PEM file as is"
    return None


def _check_kms_arn(text: str) -> Optional[str]:
    if check_arn(text) is None and text.split(":")[2] == "kms" and re.search(r":(key|alias)/.+$", text):
        return None
    return "is not a KMS key ARN; expected arn:aws:kms:<region>:<account>:key/<id>"


def _check_oidc_arn(text: str) -> Optional[str]:
    if check_arn(text) is None and text.split(":")[2] == "iam" and ":oidc-provider/" in text:
        return None
    return "is not an IAM OIDC provider ARN; expected arn:aws:iam::<account>:oidc-provider/<issuer>"


def resolves_private(url: str) -> bool:
    """True for endpoints that are literally private or in-cluster names: what a browser outside
    the cluster cannot reach. Decided from the URL's form, never by a DNS lookup, so the same
    configuration always gives the same inputs."""
    host = urlsplit(url).hostname or ""
    if is_ip(host):
        return not ipaddress.ip_address(host).is_global
    return host == "localhost" or host.endswith((".svc", ".svc.cluster.local", ".local", ".internal")) or "." not in host


# Public S3-compatible services: their names resolve to public addresses only, which the
# default egress (public addresses on the endpoint's port) admits.
PUBLIC_STORE_DOMAINS = ("amazonaws.com", "r2.cloudflarestorage.com", "digitaloceanspaces.com", "backblazeb2.com",
                        "wasabisys.com", "storage.googleapis.com", "linodeobjects.com")


def may_resolve_private(url: str) -> bool:
    """True for an endpoint named by a DNS name that could point into the operator's own
    network (a Ceph RGW or MinIO behind corporate DNS): neither an address, nor a name only
    the cluster resolves, nor `.local`/`.internal` (admitted to the private ranges), nor a
    public service's. Decided from the name, never by a lookup."""
    host = (urlsplit(url).hostname or "").rstrip(".").lower()
    if is_ip(host) or resolves_private(url):
        return False
    return not any(host == domain or host.endswith("." + domain) for domain in PUBLIC_STORE_DOMAINS)


def read_storage(section: Section, secret_keys: frozenset[str], production: bool) -> StorageSettings:
    mode = section.choice(
        "mode", "aws: the stack creates and hardens an S3 bucket; s3Compatible: use an existing S3-compatible store.",
        [m.value for m in StorageMode], required=True)
    mode = StorageMode(mode) if mode else None
    bucket = section.string("bucketName", "Bucket holding source images, uploads, exports and backups.",
                            required=True, check=_check_aws_bucket if mode is StorageMode.AWS else _check_bucket,
                            kind="S3 bucket name")
    region = section.string("region", "Bucket region (required for aws; s3Compatible: free-form, default us-east-1).",
                            check=check_region if mode is StorageMode.AWS else check_store_region, kind="region")
    endpoint = section.string("endpoint", "S3 API endpoint URL (s3Compatible only).", check=_check_endpoint, kind="URL")
    prefix = section.string("prefix", "Key prefix under which Label Studio writes uploads, exports and backups.",
                            "label-studio", check=check_prefix, kind="key prefix", normalise=normalise_prefix)
    force_destroy = section.boolean("forceDestroy", "Let `pulumi destroy` delete a non-empty bucket (aws; never with protect).", False)
    access_key = section.secret("accessKeyId", "Access key id of the existing store (s3Compatible only).",
                                secret_keys=secret_keys, top_key="storage")
    secret_key = section.secret("secretAccessKey", "Secret access key of the existing store (s3Compatible only).",
                                secret_keys=secret_keys, top_key="storage")
    kms = section.string("kmsKeyArn", "KMS key for bucket encryption (aws; default AES256).", check=_check_kms_arn,
                         kind="ARN")
    oidc = section.string("oidcProviderArn", "EKS OIDC provider ARN: Label Studio gets an IAM role (IRSA) instead of keys (aws).",
                          check=_check_oidc_arn, kind="ARN")
    section.boolean("allowPrivateEndpoint",
                    "Deprecated, no longer needed: Label Studio reaches the platform's store through S3_ENDPOINT "
                    "with SSRF protection on.", False)
    presign = section.boolean(
        "presign", "Browsers load images through presigned URLs (true) or through Label Studio (false). Default: "
                   "presigned on AWS and on endpoints browsers can reach; Label Studio's proxy for private or "
                   "in-cluster endpoints.", None)
    egress_cidrs = section.cidrs("egressCidrs", "Networks of an S3-compatible store's addresses, for the pods' egress. "
                                                "Required for an endpoint named by a DNS name that may resolve to a "
                                                "private address; otherwise decided from the endpoint (an address, an "
                                                "in-cluster name, .local/.internal, a public service).")
    ca_bundle = section.string(
        "caBundle", "PEM certificates of the private CA an https S3-compatible store's certificate chains to "
                    "(not secret): Label Studio, the reconciler, the backups and SAM trust it for the store. Set it "
                    "from the file: `pulumi config set --path storage.caBundle < ca.pem`.",
        check=_check_ca_bundle, kind="PEM certificates")
    section.finish()
    if section.has("allowPrivateEndpoint"):
        section.problems.warnings.append(
            f"{section.key('allowPrivateEndpoint')}: deprecated and ignored: Label Studio reaches the platform's store "
            "through S3_ENDPOINT with SSRF protection on; remove the key")
    if prefix == "":
        section.error("prefix", "is empty; expected a prefix of the platform's own, e.g. label-studio")
    if mode is StorageMode.AWS:
        if not region and not section.has("region"):
            section.error("region", "is required when mode is aws; expected e.g. us-east-1")
        section.inapplicable(S3_COMPATIBLE_ONLY_KEYS, "while storage.mode is aws: the stack creates its own bucket and keys")
        return StorageSettings(mode, bucket or "", region or "", None, prefix or "label-studio",
                               force_destroy, None, None, kms, oidc, True if presign is None else presign)
    if mode is StorageMode.S3_COMPATIBLE:
        for key, value in (("endpoint", endpoint), ("accessKeyId", access_key), ("secretAccessKey", secret_key)):
            if value is None and not section.has(key):
                section.error(key, "is required when mode is s3Compatible")
        section.inapplicable(AWS_ONLY_KEYS, "while storage.mode is s3Compatible: the stack does not manage the store")
        if production and any(section.has(key) for key in AWS_ONLY_KEYS):
            section.problems.warnings.append(
                f"{section.key('mode')}: s3Compatible in a protected stack that still holds aws-only keys: a bucket "
                "this stack created is protected, so `pulumi up` stops before dropping it; keep mode aws, or "
                "`pulumi state unprotect` the bucket after moving its data")
    if mode is StorageMode.S3_COMPATIBLE and endpoint and not egress_cidrs and not section.has("egressCidrs") \
            and may_resolve_private(endpoint):
        # NetworkPolicies match addresses, not names: the default for a name is public
        # addresses only, and a store on a private address would be blocked after a clean plan.
        section.error("egressCidrs", f"is required for endpoint {show(endpoint)}: a DNS name may resolve to a private "
                                     "address, which the default egress (public addresses only) blocks; expected the "
                                     "store's networks, e.g. `pulumi config set --path 'storage.egressCidrs[0]' "
                                     "10.20.0.0/16`, or 0.0.0.0/0 for a store on the internet")
    if presign is None:
        presign = not (endpoint and resolves_private(endpoint))
    if ca_bundle and endpoint and urlsplit(endpoint).scheme != "https":
        section.problems.warnings.append(
            f"{section.key('caBundle')}: ignored: {section.key('endpoint')} {show(endpoint)} is not https")
        ca_bundle = None
    return StorageSettings(mode or StorageMode.AWS, bucket or "", region or S3_COMPATIBLE_DEFAULT_REGION, endpoint,
                           prefix or "label-studio", False, access_key, secret_key, None, None, presign, egress_cidrs,
                           ca_bundle)
