"""Label Studio: the heartex/label-studio Helm release and the secrets it runs on.

Everything the manual runbook typed by hand is generated here: the first-boot admin
(email from settings, generated password and legacy API token), Django's SECRET_KEY and
the database passwords. They live in ONE Kubernetes Secret; the chart values only name
that Secret and its keys, so no secret value ever appears in the Helm values, the Pulumi
diff or `helm get values`.

`chart_values` builds the values as plain data (testable without a Pulumi engine) and
`unknown_value_keys` checks every key we set against the chart's own values.yaml.

Security trade-offs of the Label Studio settings (SSRF protection):
- With SAM enabled, `ML_BLOCK_LOCAL_IP=false`: the in-cluster SAM Service has a private
  address, which Label Studio otherwise refuses. Any user who may add a model to a
  project can then make Label Studio send requests (GET /health, POST /setup, /predict)
  to any private address the app pod can reach, cluster Services included. Open sign-up
  is disabled, so only invited users hold that power.
- Storage endpoints stay checked unless the stack uses an S3-compatible store with
  `storage.allowPrivateEndpoint` set: then `SSRF_PROTECTION_ENABLED=false` and users who
  may add cloud storage can point it at private addresses as well.
- `USE_DEFAULT_BANNED_SUBNETS` is never touched: it would lift both checks at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random
import yaml

from components.sam_backend import SAM_NAME
from components.database import POSTGRES_PORT, DatabaseConnection
from components.settings import LabelStudioSettings, Settings
from components.storage import ObjectStorage

CHART_NAME = "label-studio"
CHART_REPOSITORY = "https://charts.heartex.com/"

# A first install pulls the images, initialises PostgreSQL and runs every migration.
RELEASE_TIMEOUT_SECONDS = 900
# Helm keeps one Secret per revision; enough for `helm rollback`, not an ever-growing pile.
RELEASE_MAX_HISTORY = 10

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

# The app container's name in the chart's templates/app-deployment.yaml.
APP_CONTAINER = "app"

# Keys of the platform Secret.
ADMIN_PASSWORD_KEY = "admin-password"
ADMIN_TOKEN_KEY = "admin-api-token"
DJANGO_SECRET_KEY_KEY = "django-secret-key"
DATABASE_PASSWORD_KEY = "database-password"
DATABASE_ADMIN_PASSWORD_KEY = "database-admin-password"

# Label Studio's legacy tokens are 6 to 40 characters; the longest is the strongest.
ADMIN_TOKEN_LENGTH = 40
DJANGO_SECRET_KEY_LENGTH = 64
PASSWORD_LENGTH = 32

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
})

@dataclass(frozen=True)
class StorageRefs:
    """Where Label Studio keeps uploads and exports, as plain values for the chart."""

    bucket: str
    region: str
    endpoint: Optional[str]
    prefix: str
    credentials_secret_name: Optional[str]
    access_key_id_key: str
    secret_access_key_key: str
    role_arn: Optional[str]


@dataclass(frozen=True)
class DatabaseRefs:
    """A database outside the chart (external or RDS), as plain values for the chart."""

    host: str
    port: int
    name: str
    user: str
    ssl_mode: Optional[str]


def app_selector_labels(release_name: str) -> dict[str, str]:
    """The selector labels the chart puts on app pods (`ls-app.selectorLabels`)."""
    return {"app.kubernetes.io/name": "ls-app", "app.kubernetes.io/instance": release_name}


def _secret_ref(secret_name: str, key: str) -> dict[str, str]:
    return {"secretName": secret_name, "secretKey": key}


def _environment(settings: Settings) -> dict[str, str]:
    label_studio = settings.label_studio
    environment = {
        "LABEL_STUDIO_USERNAME": label_studio.admin_email,
        # A fixed token for the API and the SAM backend; takes effect when the
        # organization is created, i.e. on first boot.
        "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
        "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
        # Behind the HTTPS ingress Django refuses form posts from an untrusted origin.
        "CSRF_TRUSTED_ORIGINS": label_studio.public_url,
        "LABEL_STUDIO_HOST": label_studio.public_url,
        **ML_TIMEOUTS,
    }
    if settings.sam.enabled:
        environment["ML_BLOCK_LOCAL_IP"] = "false"
    if settings.storage.mode == "s3Compatible" and settings.storage.allow_private_endpoint:
        environment["SSRF_PROTECTION_ENABLED"] = "false"
    return environment


def _persistence(storage: StorageRefs) -> dict[str, Any]:
    s3: dict[str, Any] = {
        "bucket": storage.bucket,
        "region": storage.region,
        # Uploads and exports under their own prefix, apart from the source images.
        "folder": f"{storage.prefix}/uploads",
        "urlExpirationSecs": UPLOAD_URL_EXPIRATION_SECONDS,
    }
    if storage.endpoint:
        s3["endpointUrl"] = storage.endpoint
    if storage.credentials_secret_name:
        s3.update(
            accessKeyExistingSecret=storage.credentials_secret_name,
            accessKeyExistingSecretKey=storage.access_key_id_key,
            secretKeyExistingSecret=storage.credentials_secret_name,
            secretKeyExistingSecretKey=storage.secret_access_key_key,
        )
    return {"enabled": True, "type": PERSISTENCE_TYPE, "config": {"s3": s3}}


def _database_values(label_studio: LabelStudioSettings, secret_name: str,
                     outside: Optional[DatabaseRefs]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(global.pgConfig, postgresql): the chart's own PostgreSQL, or one outside the chart."""
    database = label_studio.database
    # The app always reads its password from our Secret, the same key PostgreSQL uses.
    password_ref = _secret_ref(secret_name, DATABASE_PASSWORD_KEY)
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
        "primary": {"persistence": {"size": database.storage_size}},
    }
    return {"password": password_ref}, postgresql


def _high_availability(label_studio: LabelStudioSettings) -> dict[str, Any]:
    """Several app pods: never two on one node, spread over zones, one always up."""
    if label_studio.replicas < 2:
        return {}
    selector = {"matchLabels": app_selector_labels(label_studio.release_name)}
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


def chart_values(settings: Settings, storage: StorageRefs, secret_name: str,
                 database: Optional[DatabaseRefs] = None) -> dict[str, Any]:
    """The label-studio chart values for this stack; secrets only by reference.

    `database` is the server outside the chart (external or RDS); None runs the chart's own.
    """
    label_studio = settings.label_studio
    pg_config, postgresql = _database_values(label_studio, secret_name, database)
    app: dict[str, Any] = {
        "replicas": label_studio.replicas,
        "resources": label_studio.resources.as_dict(),
        # The platform declares its own Ingress (components/ingress.py).
        "ingress": {"enabled": False},
        # Label Studio never calls the Kubernetes API; IRSA mounts its own token.
        "automountServiceAccountToken": False,
        **_high_availability(label_studio),
    }
    if storage.role_arn:
        # IRSA: the chart has no key for it, the service account annotation is the way.
        # (The rqworker deployments render only for Label Studio Enterprise.)
        app["serviceAccount"] = {"annotations": {"eks.amazonaws.com/role-arn": storage.role_arn}}
    return {
        "global": {
            "image": {"tag": label_studio.image_tag},
            "persistence": _persistence(storage),
            "pgConfig": pg_config,
            "extraEnvironmentVars": _environment(settings),
            "extraEnvironmentSecrets": {
                "LABEL_STUDIO_PASSWORD": _secret_ref(secret_name, ADMIN_PASSWORD_KEY),
                "LABEL_STUDIO_USER_TOKEN": _secret_ref(secret_name, ADMIN_TOKEN_KEY),
                # Also stops the chart from generating one with helm `lookup`, which
                # changes on every render under tools that cannot look up.
                "SECRET_KEY": _secret_ref(secret_name, DJANGO_SECRET_KEY_KEY),
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


@dataclass
class LabelStudioArgs:
    settings: Settings
    storage: ObjectStorage
    namespace: pulumi.Input[str]
    kubernetes_provider: k8s.Provider
    # A database outside the chart (external or RDS); None runs the chart's PostgreSQL.
    database: Optional[DatabaseConnection] = None


class LabelStudio(pulumi.ComponentResource):
    """The Label Studio Helm release, its generated secrets, and how to reach it."""

    service_name: str
    service_url: pulumi.Output[str]
    secret_name: pulumi.Output[str]
    admin_token_key = ADMIN_TOKEN_KEY
    admin_password_key = ADMIN_PASSWORD_KEY
    database_password_key = DATABASE_PASSWORD_KEY
    app_pod_labels: dict[str, str]
    admin_email: str
    admin_password: pulumi.Output[str]
    admin_token: pulumi.Output[str]
    url: str
    log_commands: pulumi.Output[str]
    database_host: pulumi.Output[str]
    database_port: int
    release: k8s.helm.v3.Release

    def __init__(self, name: str, args: LabelStudioArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("labeling:app:LabelStudio", name, None, opts)
        settings = args.settings
        label_studio = settings.label_studio
        release_name = label_studio.release_name
        namespace = pulumi.Output.from_input(args.namespace)

        # In a protected stack the generated secrets cannot be replaced or deleted: the
        # database volume keeps the password it was initialised with, so a regenerated
        # database password would lock Label Studio out of its own data (and a new
        # SECRET_KEY or admin token would break sessions and the SAM backend).
        kept = pulumi.ResourceOptions(parent=self, protect=settings.protect)

        def generated(purpose: str, length: int) -> pulumi.Output[str]:
            # Alphanumeric: safe verbatim in env vars, connection strings and headers.
            return random.RandomPassword(f"{name}-{purpose}", length=length, special=False, opts=kept).result

        self.admin_password = generated("admin-password", PASSWORD_LENGTH)
        self.admin_token = generated("admin-api-token", ADMIN_TOKEN_LENGTH)
        secret_data = {
            ADMIN_PASSWORD_KEY: self.admin_password,
            ADMIN_TOKEN_KEY: self.admin_token,
            DJANGO_SECRET_KEY_KEY: generated("django-secret-key", DJANGO_SECRET_KEY_LENGTH),
        }
        database = args.database
        if database is None:
            secret_data[DATABASE_PASSWORD_KEY] = generated("database-password", PASSWORD_LENGTH)
            secret_data[DATABASE_ADMIN_PASSWORD_KEY] = generated("database-admin-password", PASSWORD_LENGTH)
        else:
            secret_data[DATABASE_PASSWORD_KEY] = database.password

        secret = k8s.core.v1.Secret(
            f"{name}-platform-secrets",
            metadata={
                "name": f"{release_name}-platform-secrets",
                "namespace": namespace,
                "labels": {"app.kubernetes.io/part-of": "labeling-platform",
                           "app.kubernetes.io/instance": release_name},
            },
            type="Opaque",
            string_data=secret_data,
            opts=pulumi.ResourceOptions.merge(kept, pulumi.ResourceOptions(provider=args.kubernetes_provider)),
        )
        self.secret_name = secret.metadata.apply(lambda metadata: metadata["name"])

        storage = args.storage
        values = pulumi.Output.all(
            bucket=storage.bucket_name,
            credentials_secret_name=storage.credentials_secret_name,
            role_arn=storage.role_arn,
            secret_name=self.secret_name,
            database_host=database.host if database else None,
        ).apply(lambda resolved: chart_values(
            settings,
            StorageRefs(
                bucket=resolved["bucket"],
                region=storage.region,
                endpoint=storage.endpoint,
                prefix=storage.prefix,
                credentials_secret_name=resolved["credentials_secret_name"],
                access_key_id_key=storage.access_key_id_key,
                secret_access_key_key=storage.secret_access_key_key,
                role_arn=resolved["role_arn"],
            ),
            resolved["secret_name"],
            DatabaseRefs(resolved["database_host"], database.port, database.name, database.user, database.ssl_mode)
            if database else None,
        ))

        self.release = k8s.helm.v3.Release(
            f"{name}-release",
            name=release_name,
            chart=CHART_NAME,
            repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=CHART_REPOSITORY),
            version=label_studio.chart_version,
            namespace=namespace,
            values=values,
            timeout=RELEASE_TIMEOUT_SECONDS,
            cleanup_on_fail=True,
            max_history=RELEASE_MAX_HISTORY,
            # Protected: deleting the release deletes the database StatefulSet.
            opts=pulumi.ResourceOptions(parent=self, provider=args.kubernetes_provider, protect=settings.protect),
        )

        self.service_name = label_studio.app_service_name
        self.service_url = namespace.apply(
            lambda ns: f"http://{self.service_name}.{ns}.svc.cluster.local:80")
        self.app_pod_labels = app_selector_labels(release_name)
        # The chart's PostgreSQL Service (bitnami names it `<release>-postgresql`), or the server outside.
        self.database_host = (
            pulumi.Output.from_input(database.host) if database
            else namespace.apply(lambda ns: f"{release_name}-postgresql.{ns}.svc.cluster.local"))
        self.database_port = database.port if database else POSTGRES_PORT
        self.admin_email = label_studio.admin_email
        self.url = label_studio.public_url
        self.log_commands = namespace.apply(lambda ns: self._log_commands(ns, settings.sam.enabled))

        self.register_outputs({
            "serviceUrl": self.service_url,
            "secretName": self.secret_name,
            "url": self.url,
            "adminEmail": self.admin_email,
            "adminPassword": self.admin_password,
            "adminApiToken": self.admin_token,
        })

    def _log_commands(self, namespace: str, with_sam: bool) -> str:
        commands = [f"kubectl -n {namespace} logs -f deploy/{self.service_name} -c {APP_CONTAINER}"]
        if with_sam:
            commands.append(f"kubectl -n {namespace} logs -f deploy/{SAM_NAME}")
        return "\n".join(commands)
