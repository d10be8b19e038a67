"""Named configurations the tests evaluate: each stack file as committed, plus the modes
the stack files do not use. One list, so the URN record, the chart wiring tests and the
per-component tests all cover the same ground.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Mapping, NamedTuple, Optional


class Variant(NamedTuple):
    stack: str
    overrides: Optional[Mapping[str, Any]] = None
    secrets: Optional[Mapping[str, Any]] = None


# Values that stand in for what an operator sets with `pulumi config set --secret`.
CONFIGURED_SECRETS = {
    "labelStudio.database.password": "configured-database-password",
    "storage.accessKeyId": "AKIACONFIGUREDKEYID",
    "storage.secretAccessKey": "configured-secret-access-key",
}
STORAGE_KEYS = {k: v for k, v in CONFIGURED_SECRETS.items() if k.startswith("storage.")}

S3_COMPATIBLE = {"mode": "s3Compatible", "bucketName": "team-images", "endpoint": "http://minio.storage.svc:9000",
                 "prefix": "ls"}
# A store in the company's network, over https with the company's own CA (a CA certificate
# made by tests/private_ca.py, kept so the plan's inputs stay the same run after run).
STORE_CA_PEM = (Path(__file__).parent / "fixtures" / "store-ca.pem").read_text()
ON_PREMISES_HTTPS = {"mode": "s3Compatible", "bucketName": "team-images", "endpoint": "https://ceph.corp.example.com",
                     "egressCidrs": ["10.20.0.0/16"], "caBundle": STORE_CA_PEM}
EXTERNAL_DATABASE = {"mode": "external", "host": "db.example.com", "port": 6432, "name": "labels",
                     "user": "label_studio", "sslMode": "verify-full"}
RDS = {"mode": "rds",
       "rds": {"vpcId": "vpc-0a1b2c3d4e5f60718", "subnetIds": ["subnet-0a1b2c3d", "subnet-0e1f2a3b"],
               "allowedCidrs": ["10.20.0.0/16"], "backupRetentionDays": 3}}
# An image built from sam-server/ and pushed to the team's registry.
SAM_SERVER_IMAGE = "registry.example.com/labeling/sam-server:0.1.0"
OIDC_PROVIDER = "arn:aws:iam::123456789012:oidc-provider/oidc.eks.eu-central-1.amazonaws.com/id/EXAMPLE"

# The upstream label-studio-ml-backend examples, one setting away from the platform's server
# (the stacks' default): MobileSAM on a CPU, and SAM (ViT-H) on a GPU in a protected stack,
# whose moving upstream tag needs its reason.
UPSTREAM_SAM_IMAGE = "heartexlabs/label-studio-ml-backend:sam-master"
UPSTREAM_MOBILE_SAM = {"sam.model": "MobileSAM", "sam.image": UPSTREAM_SAM_IMAGE}
UPSTREAM_SAM_ON_GPU = {"sam.model": "SAM", "sam.image": UPSTREAM_SAM_IMAGE,
                       "sam.unpinnedImageReason": "the upstream example publishes no digest to vouch for"}

# The platform's image by digest, as the sam-image workflow proposes it, and admitted only with
# that workflow's signature (sam.verifySignature).
SIGNING_REPOSITORY = "example-org/labeling-platform"
SAM_SERVER_BUILD = (f"ghcr.io/{SIGNING_REPOSITORY}/sam-server:1.0.0@sha256:"
                    + hashlib.sha256(b"a build of sam-server/Dockerfile").hexdigest())
SIGNED_SAM_SERVER = {"sam.image": SAM_SERVER_BUILD,
                     "sam.verifySignature": {"enabled": True, "repository": SIGNING_REPOSITORY}}

VARIANTS: dict[str, Variant] = {
    "dev": Variant("dev"),
    "prod": Variant("prod"),
    "s3-compatible": Variant("dev", {"storage": S3_COMPATIBLE}, STORAGE_KEYS),
    "on-premises-https": Variant("dev", {"storage": ON_PREMISES_HTTPS}, STORAGE_KEYS),
    "external-db": Variant("prod", {"labelStudio.database": EXTERNAL_DATABASE},
                           {"labelStudio.database.password": CONFIGURED_SECRETS["labelStudio.database.password"]}),
    "rds": Variant("dev", {"labelStudio.database": RDS}),
    "irsa": Variant("prod", {"storage.oidcProviderArn": OIDC_PROVIDER}),
    "no-sam": Variant("dev", {"sam": {"enabled": False}, "labeling": {"projects": []}}),
    "no-ingress": Variant("dev", {"ingress": {"enabled": False}}),
    # prod scales SAM with CronJobs; the same windows through KEDA, and a late-night override.
    "sam-upstream": Variant("dev", UPSTREAM_MOBILE_SAM),
    "sam-signed-image": Variant("prod", SIGNED_SAM_SERVER),
    "sam-keda": Variant("prod", {"sam.activeHours.scaler": "keda", "sam.activeHours.keepUpUntil": "2026-12-08T02:00"}),
    # The platform's own SAM server on prod's GPU, under prod's monitoring: its PodMonitor, the
    # scrape in its NetworkPolicy and the alerts on its metrics.
    "sam-server": Variant("prod", {"sam.model": "sam2.1-large", "sam.image": SAM_SERVER_IMAGE}),
}
