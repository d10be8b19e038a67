"""The values of the heartex/label-studio chart, as plain data (testable without a Pulumi engine).

Secrets appear only by reference: the chart reads them from the platform Secret, so no
secret value is ever in the Helm values, the Pulumi diff or `helm get values`.
`unknown_value_keys` checks every key we set against the chart's own values.yaml.

Label Studio's SSRF protection stays on in every configuration (docs/security.md): it is
what keeps the members of the organization, who may all add storages, ML backends and
webhooks, away from the database, other Services and the cloud metadata address.
- The platform's S3-compatible store is reached through `S3_ENDPOINT`, the operator's
  endpoint, which Label Studio trusts; the storages the reconciler manages leave their own
  `s3_endpoint` empty, and one a member enters is checked as always.
- The in-cluster SAM backend has a private address. `ML_BLOCK_LOCAL_IP=false` would open ML
  URLs to every address, the metadata one included, and (SSRF protection being on) still
  fail: saving the backend adds a webhook whose check refuses the address. Instead the
  banned subnets are Label Studio's own list with exactly the SAM Service's ClusterIP cut
  out (`USE_DEFAULT_BANNED_SUBNETS=false` plus `USER_ADDITIONAL_BANNED_SUBNETS`).
"""

from __future__ import annotations

import ipaddress
from typing import Any, Mapping, Optional

import pulumi
import yaml

from components.conventions import SecretKeyRef, app_selector_labels
from components.database import DatabaseConnection
from components.settings import LabelStudioSettings
from components.storage import StorageAccess, StorageKeys, WorkloadIdentity

# The only persistence type this platform deploys. The chart falls back to an emptyDir
# for any type it does not know (a typo loses every upload on restart), so the type is
# never taken from configuration.
PERSISTENCE_TYPE = "s3"
# Presigned URLs to uploads are bearer tokens to private data; Label Studio signs a fresh
# one each time a task is opened, so an hour is ample.
UPLOAD_URL_EXPIRATION_SECONDS = "3600"

# SAM loads a model: its /health and /setup answer slower than Label Studio's defaults
# (1 s, 3 s) expect, and a prediction on CPU can take long.
ML_TIMEOUTS = {"ML_TIMEOUT_HEALTH": "10", "ML_TIMEOUT_SETUP": "60", "ML_TIMEOUT_PREDICT": "100"}

# A self-hosted platform reports to nobody: no version check against PyPI, no usage
# analytics, no error reports to Label Studio's Sentry (server and browser).
NO_CALLS_HOME = {"LATEST_VERSION_CHECK": "false", "COLLECT_ANALYTICS": "false", "SENTRY_DSN": "",
                 "FRONTEND_SENTRY_DSN": ""}

# The app container's name in the chart's templates/app-deployment.yaml.
APP_CONTAINER = "app"

# Keys of the platform Secret.
ADMIN_PASSWORD_KEY = "admin-password"
ADMIN_TOKEN_KEY = "admin-api-token"
DJANGO_SECRET_KEY_KEY = "django-secret-key"
DATABASE_PASSWORD_KEY = "database-password"
DATABASE_ADMIN_PASSWORD_KEY = "database-admin-password"

# Keys of the bitnami PostgreSQL subchart (16.7.27) we set. The subchart is not in the
# chart directory we test against, so its keys cannot be checked from its values.yaml:
# keep this list in step with `_database_values` and check it on every chart upgrade.
POSTGRESQL_SUBCHART_KEYS = frozenset({
    "postgresql.auth.username",
    "postgresql.auth.database",
    "postgresql.auth.password",
    "postgresql.auth.existingSecret",
    "postgresql.auth.secretKeys.userPasswordKey",
    "postgresql.auth.secretKeys.adminPasswordKey",
    "postgresql.primary.persistence.size",
    "postgresql.primary.networkPolicy.allowExternalEgress",
})

# Label Studio's app Service port, templates/app-service.yaml; it forwards to the pod's
# nginx, the port a NetworkPolicy toward the app pods names.
APP_SERVICE_PORT = 80
APP_POD_PORT = 8085

# Label Studio 1.23.2's own banned subnets (core/utils/io.py, validate_ip): the reserved
# ranges its SSRF protection refuses. A test holds this list to the installed source.
DEFAULT_BANNED_SUBNETS = (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12", "192.0.0.0/24",
    "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16", "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24",
    "224.0.0.0/4", "233.252.0.0/24", "240.0.0.0/4", "255.255.255.255/32", "::/128", "::1/128", "::ffff:0:0/96",
    "::ffff:0:0:0/96", "64:ff9b::/96", "64:ff9b:1::/48", "100::/64", "2001:0000::/32", "2001:20::/28",
    "2001:db8::/32", "2002::/16", "fc00::/7", "fe80::/10", "ff00::/8",
)


# The variable boto3 reads for the CA bundle of its S3 calls.
LABEL_STUDIO_CA_VARIABLES = ("AWS_CA_BUNDLE",)

def banned_subnets_except(address: str) -> str:
    """Label Studio's banned subnets with one address cut out, as USER_ADDITIONAL_BANNED_SUBNETS takes them."""
    allowed = ipaddress.ip_address(address)
    networks: list[str] = []
    for subnet in map(ipaddress.ip_network, DEFAULT_BANNED_SUBNETS):
        if subnet.version == allowed.version and allowed in subnet:
            networks += [str(part) for part in sorted(subnet.address_exclude(ipaddress.ip_network(allowed)))]
        else:
            networks.append(str(subnet))
    return ",".join(networks)


def _environment(settings: LabelStudioSettings, storage: StorageAccess,
                 ml_backend_address: Optional[pulumi.Input[str]]) -> dict[str, Any]:
    environment = {
        "LABEL_STUDIO_USERNAME": settings.admin_email,
        # A fixed token for the API and the SAM backend; takes effect when the
        # organization is created, i.e. on first boot.
        "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
        "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
        # Behind the HTTPS ingress Django refuses form posts from an untrusted origin.
        "CSRF_TRUSTED_ORIGINS": settings.public_url,
        "LABEL_STUDIO_HOST": settings.public_url,
        **ML_TIMEOUTS,
        **NO_CALLS_HOME,
    }
    if storage.endpoint:
        # The operator's endpoint: used by every storage without its own, never SSRF-checked.
        environment["S3_ENDPOINT"] = storage.endpoint
    if storage.trust:
        # boto3 (the storages, uploads, the image proxy) trusts the store's private CA. Not
        # REQUESTS_CA_BUNDLE: it would replace the public CAs for ML backends and webhooks.
        environment.update((e["name"], e["value"]) for e in storage.trust.environment(LABEL_STUDIO_CA_VARIABLES))
    if ml_backend_address is not None:
        environment["USE_DEFAULT_BANNED_SUBNETS"] = "false"
        environment["USER_ADDITIONAL_BANNED_SUBNETS"] = (
            banned_subnets_except(ml_backend_address) if isinstance(ml_backend_address, str)
            else pulumi.Output.from_input(ml_backend_address).apply(banned_subnets_except))
    return environment


def _persistence(storage: StorageAccess) -> dict[str, Any]:
    s3: dict[str, Any] = {
        "bucket": storage.bucket,
        "region": storage.region,
        # Uploads and exports under their own prefix, apart from the source images.
        "folder": storage.under_prefix("uploads"),
        "urlExpirationSecs": UPLOAD_URL_EXPIRATION_SECONDS,
    }
    if storage.endpoint:
        s3["endpointUrl"] = storage.endpoint
    if isinstance(storage.credentials, StorageKeys):
        keys = storage.credentials
        s3.update(
            accessKeyExistingSecret=keys.access_key_id.secret_name,
            accessKeyExistingSecretKey=keys.access_key_id.key,
            secretKeyExistingSecret=keys.secret_access_key.secret_name,
            secretKeyExistingSecretKey=keys.secret_access_key.key,
        )
    return {"enabled": True, "type": PERSISTENCE_TYPE, "config": {"s3": s3}}


def _database_values(settings: LabelStudioSettings, secret_name: pulumi.Input[str],
                     outside: Optional[DatabaseConnection]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(global.pgConfig, postgresql): the chart's own PostgreSQL, or one outside the chart."""
    database = settings.database
    # The app always reads its password from our Secret, the same key PostgreSQL uses.
    password_ref = SecretKeyRef(secret_name, DATABASE_PASSWORD_KEY).chart_ref()
    if outside is not None:
        pg_config: dict[str, Any] = {
            "host": outside.host, "port": outside.port, "dbName": outside.name,
            "userName": outside.user, "password": password_ref,
        }
        if outside.ssl_mode:
            pg_config["ssl"] = {"pgSslMode": outside.ssl_mode}
        return pg_config, {"enabled": False}
    postgresql = {
        "enabled": True,
        "auth": {
            "username": database.user,
            "database": database.name,
            # Blank, so the chart's default password `labelstudio` is gone: with
            # existingSecret set, both passwords come from our Secret.
            "password": "",
            "existingSecret": secret_name,
            "secretKeys": {"userPasswordKey": DATABASE_PASSWORD_KEY,
                           "adminPasswordKey": DATABASE_ADMIN_PASSWORD_KEY},
        },
        "primary": {
            "persistence": {"size": database.storage_size},
            # The subchart's own NetworkPolicy admits every egress by default, and policies
            # add up: off, it admits DNS and read replicas (none here), and the stack's
            # `<release>-postgresql-egress` (components/label_studio.py) DNS only.
            "networkPolicy": {"allowExternalEgress": False},
        },
    }
    return {"password": password_ref}, postgresql


def _high_availability(settings: LabelStudioSettings) -> dict[str, Any]:
    """Several app pods: never two on one node, spread over zones, one always up."""
    if settings.replicas < 2:
        return {}
    selector = {"matchLabels": app_selector_labels(settings.release_name)}
    return {
        # The chart renders minAvailable unquoted and its schema wants a string.
        "pdb": {"create": True, "minAvailable": "1"},
        "topologySpreadConstraints": [
            {"maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "DoNotSchedule",
             "labelSelector": selector},
            {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway",
             "labelSelector": selector},
        ],
    }


def chart_values(settings: LabelStudioSettings, storage: StorageAccess, secret_name: pulumi.Input[str], *,
                 ml_backend_address: Optional[pulumi.Input[str]] = None,
                 database: Optional[DatabaseConnection] = None) -> dict[str, Any]:
    """The label-studio chart values for this stack; secrets only by reference.

    `database` is the server outside the chart (external or RDS); None runs the chart's own.
    `ml_backend_address` is the in-cluster ML backend's ClusterIP, the one private address
    Label Studio may call (module docstring).
    Values may hold Pulumi Inputs (bucket, Secret names, hosts): Pulumi resolves them.
    """
    pg_config, postgresql = _database_values(settings, secret_name, database)
    app: dict[str, Any] = {
        "replicas": settings.replicas,
        "resources": settings.resources.as_dict(),
        # The platform declares its own Ingress (components/ingress.py).
        "ingress": {"enabled": False},
        # Label Studio never calls the Kubernetes API; IRSA mounts its own token.
        "automountServiceAccountToken": False,
        **_high_availability(settings),
    }
    if storage.trust:
        app["extraVolumes"] = [storage.trust.volume()]
        app["extraVolumeMounts"] = [storage.trust.volume_mount()]
    if isinstance(storage.credentials, WorkloadIdentity):
        # IRSA: the chart has no key for it, the service account annotation is the way.
        # (The rqworker deployments render only for Label Studio Enterprise.)
        app["serviceAccount"] = {"annotations": {"eks.amazonaws.com/role-arn": storage.credentials.role_arn}}
    secret = lambda key: SecretKeyRef(secret_name, key).chart_ref()  # noqa: E731
    return {
        "global": {
            "image": {"tag": settings.image_tag},
            "persistence": _persistence(storage),
            "pgConfig": pg_config,
            "extraEnvironmentVars": _environment(settings, storage, ml_backend_address),
            "extraEnvironmentSecrets": {
                "LABEL_STUDIO_PASSWORD": secret(ADMIN_PASSWORD_KEY),
                "LABEL_STUDIO_USER_TOKEN": secret(ADMIN_TOKEN_KEY),
                # Also stops the chart from generating one with helm `lookup`, which
                # changes on every render under tools that cannot look up.
                "SECRET_KEY": secret(DJANGO_SECRET_KEY_KEY),
            },
        },
        "app": app,
        "postgresql": postgresql,
    }


def unknown_value_keys(values: Mapping[str, Any], chart_values_yaml: str) -> list[str]:
    """Key paths in `values` that the chart would silently ignore.

    A key is known when the chart's values.yaml has it, when it lies under an open map
    there (a `{}` default such as `extraEnvironmentVars` or `annotations`), or when it
    is on the PostgreSQL subchart allow-list.
    """
    unknown: list[str] = []

    def walk(ours: Mapping[str, Any], chart: Mapping[str, Any], path: str) -> None:
        for key, value in ours.items():
            key_path = f"{path}.{key}" if path else str(key)
            if key in chart:
                known = chart[key]
                if isinstance(known, Mapping) and not known:
                    continue
                if isinstance(value, Mapping):
                    walk(value, known if isinstance(known, Mapping) else {}, key_path)
            elif key_path in POSTGRESQL_SUBCHART_KEYS:
                continue
            elif isinstance(value, Mapping) and any(k.startswith(key_path + ".") for k in POSTGRESQL_SUBCHART_KEYS):
                walk(value, {}, key_path)
            else:
                unknown.append(key_path)

    walk(values, yaml.safe_load(chart_values_yaml) or {}, "")
    return unknown
