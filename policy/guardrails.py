"""The labeling platform's guardrails: rules every `pulumi preview` / `pulumi up` must pass.

Each policy looks at what the program declares (resource inputs and options), so a
mistake is stopped before it reaches AWS or the cluster. The pack is defined here and
only constructed in `__main__.py`, because constructing a `PolicyPack` starts the
analyzer server and blocks: tests and tools import this module instead.

Every rule is mandatory except the moving-image-tag warning, which is advisory because a
stack may knowingly run a tag without a digest (dev before the SAM image's first digest, the
exact release tags of the images no registry was asked for a digest of here).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Optional

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    PolicyResource,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

# The CLI runs the pack with only policy/ on sys.path; the repository root holds the
# config contract, whose definition of a pinned image the pack shares rather than copies.
REPOSITORY_ROOT = Path(__file__).resolve().parent.parent
if str(REPOSITORY_ROOT) not in sys.path:
    sys.path.insert(0, str(REPOSITORY_ROOT))

from components.settings import image_reference_problem  # noqa: E402
from policy.egress import POD_TEMPLATE_PATHS, dig, validate_egress  # noqa: E402

MANDATORY = EnforcementLevel.MANDATORY
ADVISORY = EnforcementLevel.ADVISORY

# pulumi-aws v7 names the bucket resources without the V2 suffix; the V2 names remain as
# deprecated aliases, so a program written against either is checked.
BUCKET_TYPES = ("aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2")
PUBLIC_ACCESS_BLOCK_TYPES = ("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",)
ENCRYPTION_TYPES = (
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
    "aws:s3/bucketServerSideEncryptionConfigurationV2:BucketServerSideEncryptionConfigurationV2",
)
VERSIONING_TYPES = ("aws:s3/bucketVersioning:BucketVersioning", "aws:s3/bucketVersioningV2:BucketVersioningV2")
BUCKET_POLICY_TYPES = ("aws:s3/bucketPolicy:BucketPolicy",)
IAM_POLICY_TYPES = (
    "aws:iam/userPolicy:UserPolicy",
    "aws:iam/rolePolicy:RolePolicy",
    "aws:iam/groupPolicy:GroupPolicy",
    "aws:iam/policy:Policy",
)
HELM_RELEASE_TYPES = ("kubernetes:helm.sh/v3:Release", "kubernetes:helm.sh/v4:Chart")
# What a protected stack must never lose on a mistaken `pulumi destroy` or replacement:
# the bucket, and the database (the Helm release owning the in-cluster PostgreSQL volume, or RDS).
RDS_TYPES = ("aws:rds/instance:Instance",)
DATA_STORE_TYPES = (*BUCKET_TYPES, "kubernetes:helm.sh/v3:Release", *RDS_TYPES)

# Where each workload keeps its pod spec.
POD_SPEC_PATHS: Mapping[str, tuple[str, ...]] = {kind: (*path, "spec") for kind, path in POD_TEMPLATE_PATHS.items()}

ENCRYPTION_ALGORITHMS = ("AES256", "aws:kms", "aws:kms:dsse")
EXACT_VERSION = re.compile(r"^v?\d+\.\d+\.\d+([-+][0-9A-Za-z.-]+)?$")

DEFAULT_PROTECTED_STACKS = ["prod"]
PROTECTED_STACKS_SCHEMA = PolicyConfigSchema(
    properties={
        "protectedStacks": {
            "type": "array",
            "items": {"type": "string"},
            "default": DEFAULT_PROTECTED_STACKS,
            "description": "Stack names whose data stores must be protected (the stack's `protect: true`).",
        }
    }
)


# --------------------------------------------------------------------------- helpers


def _as_list(value: Any) -> list:
    """IAM documents allow a single value where a list is meant ("Action": "s3:GetObject")."""
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _policy_statements(document: Any) -> list[Mapping[str, Any]]:
    """The statements of an IAM or bucket policy, given as JSON text or as a mapping."""
    if isinstance(document, str):
        try:
            document = json.loads(document)
        except ValueError:
            return []
    if not isinstance(document, Mapping):
        return []
    return [s for s in _as_list(document.get("Statement")) if isinstance(s, Mapping)]


def stack_of(urn: str) -> str:
    """The stack name inside a URN: urn:pulumi:<stack>::<project>::<type>::<name>."""
    return urn.split(":", 3)[2].split("::", 1)[0] if urn.startswith("urn:pulumi:") else ""


def _name_words(name: str) -> list[str]:
    """`secretKeyExistingSecret` and `AWS_SECRET_ACCESS_KEY` alike, as lowercase words."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)
    return [w.lower() for w in re.split(r"[\s_.\-]+", spaced) if w]


SECRET_WORDS = ("password", "passwd", "secret", "token", "credentials", "apikey")
# A trailing KEY is a credential in environment-variable names (API_KEY, FERNET_KEY), but
# in camelCase value keys `...Key` usually names a field (topologyKey): there only these count.
SECRET_KEY_QUALIFIERS = {"secret", "api", "private", "access"}
# Words that make a secret-looking name point at a secret instead of holding one
# (`accessKeyExistingSecretKey`, `passwordSecretRef`).
REFERENCE_WORDS = {"existing", "ref"}
# Flags that merely switch a secret feature on (`LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN=true`).
SWITCH_VALUES = {"true", "false", "yes", "no", "on", "off", "0", "1"}
# Text the chart or shell substitutes later, not a literal.
PLACEHOLDER = re.compile(r"\{\{.*\}\}|\$\{.+\}|\$\(.+\)")


def names_a_secret(name: str) -> bool:
    """True when a key or variable name says it holds a credential and not a pointer to one."""
    words = _name_words(name)
    if not words or REFERENCE_WORDS.intersection(words):
        return False
    if words[-1].endswith(SECRET_WORDS):  # PGPASSWORD, apiToken, client_secret
        return True
    return words[-1] == "key" and (name.isupper() or (len(words) > 1 and words[-2] in SECRET_KEY_QUALIFIERS))


def is_literal_secret(name: str, value: Any) -> bool:
    """A credential written into the declaration itself (so into the state and the plan)."""
    return (
        names_a_secret(name)
        and isinstance(value, str)
        and value.strip() != ""
        and value.strip().lower() not in SWITCH_VALUES
        and not PLACEHOLDER.search(value)
    )


def containers(resource_type: str, props: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """(where, container) for every init and app container of a workload's pod spec."""
    path = POD_SPEC_PATHS.get(resource_type)
    if path is None:
        return
    pod_spec = dig(props, path)
    if not isinstance(pod_spec, Mapping):
        return
    for field in ("initContainers", "containers"):
        for index, container in enumerate(pod_spec.get(field) or []):
            if isinstance(container, Mapping):
                yield f"{'.'.join(path)}.{field}[{index}] ({container.get('name', '?')})", container


def _resource_policy(name: str, description: str, resource_types: Iterable[str],
                     check: Callable[[ResourceValidationArgs], Iterable[str]],
                     level: EnforcementLevel = MANDATORY,
                     config_schema: Optional[PolicyConfigSchema] = None) -> ResourceValidationPolicy:
    """A policy that reports each problem `check` finds in resources of the given types."""
    types = frozenset(resource_types)

    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        if args.resource_type in types:
            for problem in check(args):
                report_violation(f"{args.name}: {problem}", args.urn)

    return ResourceValidationPolicy(name=name, description=description, enforcement_level=level,
                                    validate=validate, config_schema=config_schema)


def _container_policy(name: str, description: str, check: Callable[[Mapping[str, Any]], Iterable[str]],
                      level: EnforcementLevel = MANDATORY) -> ResourceValidationPolicy:
    """A policy applying `check` to each container of every workload type."""

    def check_workload(args: ResourceValidationArgs) -> Iterator[str]:
        for where, container in containers(args.resource_type, args.props):
            for problem in check(container):
                yield f"{where}: {problem}"

    return _resource_policy(name, description, POD_SPEC_PATHS, check_workload, level)


# --------------------------------------------------------------------------- S3


def _public_access_block_problems(args: ResourceValidationArgs) -> Iterator[str]:
    for flag in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"):
        if args.props.get(flag) is not True:
            yield f"{flag} is {args.props.get(flag)!r}; expected true"


def _encryption_problems(args: ResourceValidationArgs) -> Iterator[str]:
    rules = _as_list(args.props.get("rules"))
    if not rules:
        yield "has no encryption rule; expected applyServerSideEncryptionByDefault with AES256 or aws:kms"
    for index, rule in enumerate(rules):
        algorithm = dig(rule, ("applyServerSideEncryptionByDefault", "sseAlgorithm"))
        if algorithm not in ENCRYPTION_ALGORITHMS:
            yield f"rules[{index}] sseAlgorithm is {algorithm!r}; expected one of {', '.join(ENCRYPTION_ALGORITHMS)}"


def _versioning_problems(args: ResourceValidationArgs) -> Iterator[str]:
    status = dig(args.props, ("versioningConfiguration", "status"))
    if status != "Enabled":
        yield f"versioning status is {status!r}; expected Enabled so overwritten or deleted images can be restored"


def _denies_insecure_transport(statement: Mapping[str, Any]) -> bool:
    secure = dig(statement, ("Condition", "Bool", "aws:SecureTransport"))
    principal = statement.get("Principal")
    everyone = principal == "*" or (isinstance(principal, Mapping) and _as_list(principal.get("AWS")) == ["*"])
    actions = _as_list(statement.get("Action"))
    return (statement.get("Effect") == "Deny" and everyone
            and any(a in ("*", "s3:*") for a in actions)
            and [str(v).lower() for v in _as_list(secure)] == ["false"])


def _bucket_policy_problems(args: ResourceValidationArgs) -> Iterator[str]:
    if not any(_denies_insecure_transport(s) for s in _policy_statements(args.props.get("policy"))):
        yield ("has no statement denying s3:* to every principal when aws:SecureTransport is false; "
               "expected a TLS-only bucket policy")


def _bucket_names(resources: Iterable[PolicyResource]) -> dict[str, PolicyResource]:
    return {r.props.get("bucket"): r for r in resources if r.resource_type in BUCKET_TYPES and r.props.get("bucket")}


def _belongs_to(companion: PolicyResource, bucket: PolicyResource) -> bool:
    """A companion resource (versioning, encryption, ...) configures this bucket."""
    depends = bucket in companion.dependencies or bucket in companion.property_dependencies.get("bucket", [])
    # Dependencies are known even in a preview, where the bucket's name may not be.
    return depends or companion.props.get("bucket") == bucket.props.get("bucket")


REQUIRED_COMPANIONS = {
    "public access block": PUBLIC_ACCESS_BLOCK_TYPES,
    "server-side encryption configuration": ENCRYPTION_TYPES,
    "versioning": VERSIONING_TYPES,
    "bucket policy": BUCKET_POLICY_TYPES,
}


def _validate_bucket_hardening(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    for bucket in (r for r in args.resources if r.resource_type in BUCKET_TYPES):
        for what, types in REQUIRED_COMPANIONS.items():
            if not any(r.resource_type in types and _belongs_to(r, bucket) for r in args.resources):
                report_violation(f"{bucket.name}: has no {what}; every bucket needs its own", bucket.urn)


# --------------------------------------------------------------------------- IAM


def _allow_statements(props: Mapping[str, Any]) -> Iterator[tuple[int, Mapping[str, Any]]]:
    for index, statement in enumerate(_policy_statements(props.get("policy"))):
        if statement.get("Effect") == "Allow":
            yield index, statement


def _iam_wildcard_problems(args: ResourceValidationArgs) -> Iterator[str]:
    for index, statement in _allow_statements(args.props):
        where = f"Statement[{index}]"
        for key in ("NotAction", "NotResource"):
            if key in statement:
                yield f"{where} allows with {key}, which grants everything not listed; expected explicit Action and Resource"
        for action in _as_list(statement.get("Action")):
            if action == "*" or str(action).endswith(":*"):
                yield f"{where} allows action {action!r}; expected the exact actions Label Studio needs"
        for resource in _as_list(statement.get("Resource")):
            if resource == "*":
                yield f"{where} allows resource '*'; expected the platform bucket's ARNs"


def _validate_iam_bucket_scope(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    buckets = _bucket_names(args.resources)
    allowed = re.compile(r"^arn:aws[a-z-]*:s3:::(?P<bucket>[^/]+)(/.*)?$")
    for resource in (r for r in args.resources if r.resource_type in IAM_POLICY_TYPES):
        for index, statement in _allow_statements(resource.props):
            for arn in _as_list(statement.get("Resource")):
                match = allowed.match(str(arn))
                if not match or match.group("bucket") not in buckets:
                    report_violation(
                        f"{resource.name}: Statement[{index}] allows {arn!r}, which is not the platform bucket "
                        f"({', '.join(sorted(buckets)) or 'none declared'}) or an object in it", resource.urn)


# --------------------------------------------------------------------------- containers


def _resource_problems(container: Mapping[str, Any]) -> Iterator[str]:
    resources = container.get("resources") or {}
    for part in ("requests", "limits"):
        for resource in ("cpu", "memory"):
            if not dig(resources, (part, resource)):
                yield f"has no {resource} {part[:-1]}; expected resources.{part}.{resource}"


def _pinned_image_problems(container: Mapping[str, Any]) -> Iterator[str]:
    image = container.get("image")
    if not image:
        yield "has no image"
        return
    problem, _ = image_reference_problem(image)
    if problem:
        yield f"image {image!r} {problem}"


def _moving_tag_problems(container: Mapping[str, Any]) -> Iterator[str]:
    # The config contract's rule for sam.image, for every container: any tag may move.
    image = container.get("image")
    if image and image_reference_problem(image) == (None, True):
        yield f"image {image!r} has a tag without a digest, and a tag may move; pin it with @sha256:<digest>"


def _privileged_problems(container: Mapping[str, Any]) -> Iterator[str]:
    if dig(container, ("securityContext", "privileged")) is True:
        yield "runs privileged; expected securityContext.privileged false or unset"


def _privilege_escalation_problems(container: Mapping[str, Any]) -> Iterator[str]:
    # Unset means allowed (the kernel default is no_new_privs off), so it must be explicit.
    if dig(container, ("securityContext", "allowPrivilegeEscalation")) is not False:
        yield "may escalate privileges; expected securityContext.allowPrivilegeEscalation false"


def _inline_secret_env_problems(container: Mapping[str, Any]) -> Iterator[str]:
    for entry in container.get("env") or []:
        if isinstance(entry, Mapping) and is_literal_secret(str(entry.get("name", "")), entry.get("value")):
            yield (f"env {entry['name']} holds its value inline; expected valueFrom.secretKeyRef "
                   "so the credential stays out of the manifest")


# --------------------------------------------------------------------------- Helm


def _release_pin_problems(args: ResourceValidationArgs) -> Iterator[str]:
    chart = str(args.props.get("chart") or "")
    version = str(args.props.get("version") or "")
    repository = dig(args.props, ("repositoryOpts", "repo"))
    if not EXACT_VERSION.match(version):
        yield f"chart version is {version or 'unset'!r}; expected an exact version like 2.0.5"
    if not repository and not chart.startswith(("oci://", "https://")):
        yield f"chart {chart!r} has no repository; expected repositoryOpts.repo (or an oci:// chart reference)"


def literal_secrets_in_values(values: Any, path: str = "values") -> Iterator[str]:
    """Paths of credentials written literally into Helm values (and so into the release's state)."""
    if isinstance(values, Mapping):
        # Beside secretName/existingSecret, `secretKey` names a key inside that Secret
        # ({secretName, secretKey} is the chart's secretKeyRef).
        names_secret_keys = bool({"secretName", "existingSecret"}.intersection(values))
        name, value = values.get("name"), values.get("value")
        if isinstance(name, str) and is_literal_secret(name, value):
            yield f"{path}.value (env {name})"
        for key, item in values.items():
            child = f"{path}.{key}"
            if names_secret_keys and key == "secretKey":
                continue
            if isinstance(item, str):
                if is_literal_secret(str(key), item):
                    yield child
            else:
                yield from literal_secrets_in_values(item, child)
    elif isinstance(values, list):
        for index, item in enumerate(values):
            yield from literal_secrets_in_values(item, f"{path}[{index}]")


def _helm_values_problems(args: ResourceValidationArgs) -> Iterator[str]:
    for path in literal_secrets_in_values(args.props.get("values") or {}):
        yield (f"{path} holds a credential literally; expected an existing Secret reference "
               "(secretName/secretKey or existingSecret)")


# --------------------------------------------------------------------------- protection


def _protected_stacks(args: ResourceValidationArgs) -> list[str]:
    # Policy config defaults to the schema's default; a bare test call passes no config.
    return list(args.get_config().get("protectedStacks", DEFAULT_PROTECTED_STACKS))


def _holds_data(args: ResourceValidationArgs) -> bool:
    if args.resource_type in HELM_RELEASE_TYPES:
        # The release holds data only through the chart's PostgreSQL subchart, on unless disabled.
        return dig(args.props, ("values", "postgresql", "enabled")) is not False
    return True


def _data_store_protection_problems(args: ResourceValidationArgs) -> Iterator[str]:
    stack = stack_of(args.urn)
    if stack not in _protected_stacks(args) or not _holds_data(args):
        return
    if not args.opts.protect:
        yield f"is a data store in protected stack {stack!r} without protect=True; a destroy or replacement would lose data"
    if args.props.get("forceDestroy") is True:
        yield f"sets forceDestroy in protected stack {stack!r}; expected false so a destroy cannot empty the bucket"
    if args.resource_type in RDS_TYPES:
        if args.props.get("deletionProtection") is not True:
            yield f"has no deletionProtection in protected stack {stack!r}; expected true"
        if args.props.get("skipFinalSnapshot") is True:
            yield f"skips the final snapshot in protected stack {stack!r}; expected skipFinalSnapshot false"


def _rds_problems(args: ResourceValidationArgs) -> Iterator[str]:
    if args.props.get("storageEncrypted") is not True:
        yield "storage is not encrypted; expected storageEncrypted true"
    if args.props.get("publiclyAccessible") is True:
        yield "is publicly accessible; expected publiclyAccessible false (Label Studio reaches it inside the VPC)"


# --------------------------------------------------------------------------- the pack

ALL_POLICIES = [
    _resource_policy(
        "s3-public-access-block-all-on",
        "S3 public access blocks turn on all four switches (CKV_AWS_53-56): images stay private.",
        PUBLIC_ACCESS_BLOCK_TYPES, _public_access_block_problems),
    _resource_policy(
        "s3-encryption-at-rest",
        "S3 default encryption rules use AES256 or aws:kms (CKV_AWS_19).",
        ENCRYPTION_TYPES, _encryption_problems),
    _resource_policy(
        "s3-versioning-enabled",
        "S3 bucket versioning is Enabled (CKV_AWS_21): a bad sync or export cannot destroy images.",
        VERSIONING_TYPES, _versioning_problems),
    _resource_policy(
        "s3-bucket-policy-denies-insecure-transport",
        "Bucket policies deny s3:* to everyone when aws:SecureTransport is false (CKV_AWS_379).",
        BUCKET_POLICY_TYPES, _bucket_policy_problems),
    StackValidationPolicy(
        name="s3-bucket-hardening-complete",
        description="Every bucket has its own public access block, encryption configuration, versioning and bucket policy.",
        enforcement_level=MANDATORY, validate=_validate_bucket_hardening),
    _resource_policy(
        "iam-no-wildcard-grants",
        "IAM policies allow no '*' or 'service:*' action, no '*' resource, no NotAction/NotResource (CKV_AWS_63, 355).",
        IAM_POLICY_TYPES, _iam_wildcard_problems),
    StackValidationPolicy(
        name="iam-platform-bucket-only",
        description="IAM policies allow access only to a bucket this stack declares and the objects in it.",
        enforcement_level=MANDATORY, validate=_validate_iam_bucket_scope),
    _container_policy(
        "k8s-container-resources-set",
        "Every container sets cpu and memory requests and limits (CKV_K8S_10-13).",
        _resource_problems),
    _container_policy(
        "k8s-image-pinned",
        "Every container image has a tag other than latest, or a digest (CKV_K8S_14).",
        _pinned_image_problems),
    _container_policy(
        "k8s-image-moving-tag",
        "Images should carry a digest: any tag may move, sam-master, sam-v1 and 1.0.0 alike (CKV_K8S_43).",
        _moving_tag_problems, ADVISORY),
    _container_policy(
        "k8s-no-privileged-containers",
        "No container runs privileged (CKV_K8S_16).",
        _privileged_problems),
    _container_policy(
        "k8s-no-privilege-escalation",
        "Every container sets allowPrivilegeEscalation false (CKV_K8S_20).",
        _privilege_escalation_problems),
    _container_policy(
        "k8s-no-inline-secret-env",
        "No env variable named like a credential (…TOKEN, …PASSWORD, …SECRET, …KEY) carries an inline value.",
        _inline_secret_env_problems),
    _resource_policy(
        "helm-release-pinned",
        "Helm releases name an exact chart version and the repository it comes from.",
        HELM_RELEASE_TYPES, _release_pin_problems),
    _resource_policy(
        "helm-values-no-literal-secrets",
        "Helm values hold no literal password, secret key or token; they reference existing Secrets.",
        HELM_RELEASE_TYPES, _helm_values_problems),
    _resource_policy(
        "rds-encrypted-private",
        "RDS instances encrypt their storage (CKV_AWS_16) and are not publicly accessible (CKV_AWS_17).",
        RDS_TYPES, _rds_problems),
    StackValidationPolicy(
        name="k8s-egress-fenced",
        description="Every workload, and the Label Studio release's app pods, is selected by an egress NetworkPolicy; "
                    "no egress rule admits the cloud metadata address 169.254.169.254.",
        enforcement_level=MANDATORY, validate=validate_egress),
    _resource_policy(
        "protected-stack-data-stores",
        "In protected stacks (config protectedStacks, default prod) buckets and the database (the Label Studio "
        "release with in-cluster PostgreSQL, or RDS) are protected; buckets are not force-destroyable; RDS keeps "
        "deletion protection and a final snapshot.",
        DATA_STORE_TYPES, _data_store_protection_problems, config_schema=PROTECTED_STACKS_SCHEMA),
]
