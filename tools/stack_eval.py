"""Evaluate the real Pulumi program for a stack, offline, under `pulumi.runtime.set_mocks`.

It reads Pulumi.yaml and Pulumi.<stack>.yaml the way the CLI would (project defaults,
then stack values), stands a secret placeholder in for every `secure:` value (only the
CLI can decrypt those), runs `__main__.py`, and records every resource the program
registers: type, name, parent, inputs, which input paths are secret, and the options
that matter for data safety (protect, retainOnDelete, aliases, dependencies).

Both the offline plan (tools/plan.py) and the tests use it.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import runpy
import zlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional, Sequence

import pulumi
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import rpc
from pulumi.runtime.settings import SETTINGS, get_root_resource
from pulumi.runtime.stack import run_pulumi_func, wait_for_rpcs
from pulumi.runtime.sync_await import _sync_await

from components import PROJECT_ROOT
from components.label_studio import DEPLOYED_RELEASE_OUTPUT
from components.settings.label_studio import DEFAULT_CHART_VERSION, DEFAULT_LABEL_STUDIO_IMAGE_TAG
from components.settings.stack_file import load_yaml, stack_file_config, stack_file_path



def stack_names(directory: Path) -> tuple[str, ...]:
    """The stacks with a stack file in `directory`, whatever their names."""
    return tuple(sorted(path.name[len("Pulumi."):-len(".yaml")] for path in directory.glob("Pulumi.*.yaml")))


# Every stack with a stack file in the repository.
STACKS = stack_names(PROJECT_ROOT)
# Stacks whose files live in another copy of the project (Pulumi.yaml beside them): the
# tests write stacks there the way users add theirs, and evaluate them like the committed ones.
PROJECT_DIRS: dict[str, Path] = {}

PLACEHOLDER_PREFIX = "secret-placeholder:"
DELETE = object()  # an override value that removes the key from the stack's config

_SECRET_SIG = rpc._special_secret_sig
_SIG_KEY = rpc._special_sig_key


@dataclass
class DeclaredResource:
    type: str
    name: str
    urn: str
    parent: Optional[str]
    custom: bool
    inputs: dict
    secret_paths: set[str]
    protect: bool
    retain_on_delete: bool
    dependencies: list[str]
    provider: str
    aliases: list[Any]
    delete_before_replace: bool
    ignore_changes: list[str]

    def masked_inputs(self) -> Any:
        """The inputs with every secret value replaced by `[secret]`, as a preview shows them."""
        return _mask(self.inputs, "", self.secret_paths)

    @property
    def kubernetes_manifest(self) -> Optional[dict]:
        """The object as the Kubernetes provider would send it (for kubernetes-validate, checkov)."""
        if not self.type.startswith("kubernetes:") or "helm.sh" in self.type or self.type.endswith(":Provider"):
            return None
        return {k: v for k, v in self.inputs.items() if k in ("apiVersion", "kind", "metadata", "spec", "data",
                                                              "stringData", "type", "immutable", "rules",
                                                              "roleRef", "subjects")}


class ProgramGlobals(dict):
    """The live objects of one run of the program: a copy of an Evaluation shares them (they
    hold modules and pending outputs, which cannot be copied)."""

    def __deepcopy__(self, memo) -> "ProgramGlobals":
        return self


@dataclass
class Evaluation:
    stack: str
    resources: list[DeclaredResource]
    outputs: dict[str, Any]
    secret_outputs: set[str]
    warnings: list[str] = field(default_factory=list)
    # The accounts earlier runs created, as the mocked team Secret recorded them.
    previous_members: list[str] = field(default_factory=list)
    reads: list["ReadResource"] = field(default_factory=list)
    # The program's module globals after the run (`platform`, `settings`): the components' typed handles.
    program: ProgramGlobals = field(default_factory=ProgramGlobals)

    def of_type(self, type_: str) -> list[DeclaredResource]:
        return [r for r in self.resources if r.type == type_]

    def one(self, type_: str, name: Optional[str] = None) -> DeclaredResource:
        found = [r for r in self.of_type(type_) if name is None or r.name == name]
        if len(found) != 1:
            raise AssertionError(f"expected one {type_} named {name!r}, found {[r.name for r in found]}")
        return found[0]

    def children_of(self, parent: DeclaredResource) -> list[DeclaredResource]:
        return [r for r in self.resources if r.parent == parent.urn]

    def kubernetes_objects(self) -> list[dict]:
        return [m for r in self.resources if (m := r.kubernetes_manifest) is not None]


def _mask(value: Any, path: str, secret_paths: set[str]) -> Any:
    if (path or "$") in secret_paths:
        return "[secret]"
    if isinstance(value, dict):
        return {k: _mask(v, f"{path}.{k}" if path else k, secret_paths) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(v, f"{path}[{i}]", secret_paths) for i, v in enumerate(value)]
    return value


# --------------------------------------------------------------------------- config


def _project_config_defaults(project_file: Path) -> tuple[str, dict[str, Any]]:
    project = load_yaml(project_file)
    name = project["name"]
    defaults = {}
    for key, spec in (project.get("config") or {}).items():
        if isinstance(spec, Mapping) and "default" in spec:
            defaults[key if ":" in key else f"{name}:{key}"] = spec["default"]
    return name, defaults


def _set_path(config: dict, path: str, value: Any, project: str) -> None:
    value = value if value is DELETE else copy.deepcopy(value)  # never alias the caller's data
    top, _, rest = path.partition(".")
    key = top if ":" in top else f"{project}:{top}"
    if not rest:
        if value is DELETE:
            config.pop(key, None)
        else:
            config[key] = value
        return
    node = config.setdefault(key, {})
    parts = rest.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    if value is DELETE:
        node.pop(parts[-1], None)
    else:
        node[parts[-1]] = value


def _replace_secure(value: Any, path: str) -> tuple[Any, bool]:
    """Swap each `secure:` ciphertext for a recognisable placeholder."""
    if isinstance(value, Mapping):
        if set(value) == {"secure"}:
            return f"{PLACEHOLDER_PREFIX}{path}", True
        found = False
        out = {}
        for k, v in value.items():
            out[k], inner = _replace_secure(v, f"{path}.{k}")
            found = found or inner
        return out, found
    if isinstance(value, list):
        found = False
        items = []
        for i, v in enumerate(value):
            item, inner = _replace_secure(v, f"{path}[{i}]")
            items.append(item)
            found = found or inner
        return items, found
    return value, False


def project_dir(stack: str) -> Path:
    """The directory holding Pulumi.yaml and the stack's file: what `pulumi.get_root_directory()` names."""
    return PROJECT_DIRS.get(stack, PROJECT_ROOT)


def stack_config(stack: str, overrides: Optional[Mapping[str, Any]] = None,
                 secrets: Optional[Mapping[str, Any]] = None) -> tuple[str, dict[str, Any], set[str]]:
    """(project, config, secret keys) as the CLI would hand them to the program."""
    directory = project_dir(stack)
    project, config = _project_config_defaults(directory / "Pulumi.yaml")
    stack_file = stack_file_path(directory, stack)
    if not stack_file.is_file():
        raise FileNotFoundError(f"no stack file {stack_file}")
    stack_values = stack_file_config(stack_file)
    secret_keys: set[str] = set()
    for key, value in stack_values.items():
        value, secure = _replace_secure(value, key)
        config[key] = value
        if secure:
            secret_keys.add(key)
    config = copy.deepcopy(config)
    for path, value in (overrides or {}).items():
        _set_path(config, path, value, project)
    for path, value in (secrets or {}).items():
        _set_path(config, path, value, project)
        top = path.partition(".")[0]
        secret_keys.add(top if ":" in top else f"{project}:{top}")
    return project, config, secret_keys


def _as_cli_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


@contextmanager
def _pulumi_config_env(config: Mapping[str, Any], secret_keys: set[str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in ("PULUMI_CONFIG", "PULUMI_CONFIG_SECRET_KEYS")}
    os.environ["PULUMI_CONFIG"] = json.dumps({k: _as_cli_value(v) for k, v in config.items()})
    os.environ["PULUMI_CONFIG_SECRET_KEYS"] = json.dumps(sorted(secret_keys))
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# --------------------------------------------------------------------------- mocks


def _unwrap_secrets(value: Any, path: str, found: set[str]) -> Any:
    """The value without its secret wrappers (their paths go to `found`), and with whole numbers
    as integers: the engine carries every number as a protobuf double, and the provider sends
    `1.0` to the API server as the integer it was declared as."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        if value.get(_SIG_KEY) == _SECRET_SIG:
            found.add(path or "$")
            return _unwrap_secrets(value["value"], path, found)
        return {k: _unwrap_secrets(v, f"{path}.{k}" if path else k, found) for k, v in value.items()}
    if isinstance(value, list):
        return [_unwrap_secrets(v, f"{path}[{i}]", found) for i, v in enumerate(value)]
    return value


def mock_cluster_ip(resource_name: str) -> str:
    """The ClusterIP the mocks give the Service named so: in a usual Service range, stable."""
    return f"10.96.{zlib.crc32(resource_name.encode()) % 250}.{len(resource_name) % 250 + 1}"


# The read of the team Secret before the Job (components/labeling.py): what earlier runs recorded.
TEAM_RECORD_READ_SUFFIX = "-team-access-record"


class PlatformMocks(pulumi.runtime.Mocks):
    """Answers as the providers would, with values that are obviously fake and traceable.

    `previous_members` are the accounts earlier runs of the reconciler created, as the team
    Secret records them before this update's Job runs; `deployed_release` the Label Studio
    versions the stack's last update exported (None: the stack was never deployed)."""

    def __init__(self, previous_members: Sequence[str] = (), deployed_release: Optional[Mapping[str, str]] = None):
        super().__init__()
        self.previous_members = [email.lower() for email in previous_members]
        self.deployed_release = deployed_release

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        state = dict(args.inputs)
        name = args.name
        if args.typ == "pulumi:pulumi:StackReference":
            # The stack's own last outputs: none before its first update.
            outputs = {DEPLOYED_RELEASE_OUTPUT: dict(self.deployed_release)} if self.deployed_release else {}
            return state["name"], {**state, "outputs": outputs, "secretOutputNames": []}
        if args.typ == "kubernetes:core/v1:Secret" and name.endswith(TEAM_RECORD_READ_SUFFIX):
            created = base64.b64encode(json.dumps(self.previous_members).encode()).decode()
            state["data"] = pulumi.Output.secret({"created-members": created} if self.previous_members else {})
            return args.resource_id, state
        if args.typ == "random:index/randomPassword:RandomPassword":
            state["result"] = pulumi.Output.secret(f"mock-generated-{name}-value")
        elif args.typ == "aws:s3/bucket:Bucket":
            bucket = state.get("bucket") or name
            state.update(bucket=bucket, arn=f"arn:aws:s3:::{bucket}")
            return bucket, state
        elif args.typ == "aws:iam/user:User":
            state["arn"] = f"arn:aws:iam::123456789012:user/{state.get('name', name)}"
        elif args.typ == "aws:iam/role:Role":
            state["arn"] = f"arn:aws:iam::123456789012:role/{state.get('name', name)}"
        elif args.typ == "aws:iam/accessKey:AccessKey":
            state["secret"] = pulumi.Output.secret(f"mock-secret-access-key-{name}")
            return f"MOCKACCESSKEYID{name.upper()[:8]}", state
        elif args.typ == "kubernetes:core/v1:Secret" and args.resource_id:
            # A read of an existing Secret: the team Secret as the reconciler leaves it, after
            # it created the account of annotator@example.com.
            link = base64.b64encode(b"https://label.example.com/user/signup/?token=mock-organization-token")
            created = base64.b64encode(b'["annotator@example.com"]')
            state["data"] = pulumi.Output.secret({"invite-url": link.decode(), "created-members": created.decode()})
            return args.resource_id, state
        elif args.typ == "kubernetes:core/v1:Secret":
            # The API server gives every write a new resourceVersion; a digest of the inputs
            # changes exactly when a write would.
            metadata = dict(state.get("metadata") or {})
            metadata["resourceVersion"] = str(zlib.crc32(json.dumps(state, sort_keys=True, default=str).encode()))
            state["metadata"] = metadata
        elif args.typ == "kubernetes:core/v1:Service":
            # The API server assigns a ClusterIP from the Service range; a stable stand-in.
            spec = dict(state.get("spec") or {})
            spec.setdefault("clusterIP", mock_cluster_ip(name))
            state["spec"] = spec
        elif args.typ.startswith("aws:rds/instance:Instance"):
            state.update(address=f"{name}.abcdefgh.us-east-1.rds.amazonaws.com", port=state.get("port", 5432),
                         identifier=state.get("identifier") or name,
                         endpoint=f"{name}.abcdefgh.us-east-1.rds.amazonaws.com:5432")
        return f"{name}-id", state

    def call(self, args: pulumi.runtime.MockCallArgs):
        if args.token == "aws:ec2/getSubnet:getSubnet":
            # Subnets of the stack files' example VPC: one /24 per subnet id.
            return {"id": args.args["id"], "cidrBlock": f"10.0.{zlib.crc32(args.args['id'].encode()) % 250}.0/24"}
        if args.token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {"accountId": "123456789012", "arn": "arn:aws:iam::123456789012:user/mock", "userId": "mock"}
        if args.token == "aws:index/getPartition:getPartition":
            return {"partition": "aws", "dnsSuffix": "amazonaws.com"}
        return {}


@dataclass
class ReadResource:
    """An existing resource the program reads (`Resource.get`, a StackReference): it declares nothing."""

    type: str
    name: str
    id: str
    parent: Optional[str]


class RecordingMonitor(pulumi_mocks.MockMonitor):
    """The stock mock monitor, plus a record of each registration's options and of each read."""

    def __init__(self, mocks: pulumi.runtime.Mocks):
        super().__init__(mocks)
        self.declared: list[DeclaredResource] = []
        self.reads: list[ReadResource] = []

    def ReadResource(self, request):
        response = super().ReadResource(request)
        self.reads.append(ReadResource(request.type, request.name, request.id, request.parent or None))
        return response

    def RegisterResource(self, request):
        response = super().RegisterResource(request)
        if request.type == "pulumi:pulumi:Stack":
            return response
        secret_paths: set[str] = set()
        inputs = _unwrap_secrets(rpc.deserialize_properties(request.object), "", secret_paths)
        self.declared.append(DeclaredResource(
            type=request.type,
            name=request.name,
            urn=response.urn,
            parent=request.parent or None,
            custom=request.custom,
            inputs=inputs,
            secret_paths=secret_paths,
            protect=bool(request.protect),
            retain_on_delete=bool(request.retainOnDelete),
            dependencies=list(request.dependencies),
            provider=request.provider,
            aliases=[_alias_dict(a) for a in request.aliases],
            delete_before_replace=bool(request.deleteBeforeReplace),
            ignore_changes=list(request.ignoreChanges),
        ))
        return response


def _alias_dict(alias: Any) -> dict:
    from google.protobuf.json_format import MessageToDict

    return MessageToDict(alias)


# --------------------------------------------------------------------------- evaluation


def _config_section(config: Mapping[str, Any], project: str, name: str) -> Mapping[str, Any]:
    """A top-level section as the configuration holds it: a map, or its JSON text."""
    section = config.get(f"{project}:{name}") or {}
    if isinstance(section, str):
        section = json.loads(section)
    return section if isinstance(section, Mapping) else {}


def configured_members(config: Mapping[str, Any], project: str) -> list[str]:
    """labeling.members as the configuration holds it."""
    members = _config_section(config, project, "labeling").get("members")
    return [m for m in members if isinstance(m, str)] if isinstance(members, list) else []


def configured_release(config: Mapping[str, Any], project: str) -> dict[str, str]:
    """labelStudio's imageTag and chartVersion as the configuration sets them (or their defaults)."""
    section = _config_section(config, project, "labelStudio")
    return {"imageTag": str(section.get("imageTag", DEFAULT_LABEL_STUDIO_IMAGE_TAG)),
            "chartVersion": str(section.get("chartVersion", DEFAULT_CHART_VERSION))}


# An evaluate() argument: the stack was never deployed (no outputs to read back).
NEVER_DEPLOYED: Mapping[str, str] = {}


def evaluate(stack: str, overrides: Optional[Mapping[str, Any]] = None,
             secrets: Optional[Mapping[str, Any]] = None, previous_members: Optional[Sequence[str]] = None,
             deployed_release: Optional[Mapping[str, str]] = None) -> Evaluation:
    """Run __main__.py for `stack` (plus overrides) under mocks and return what it declared.

    `previous_members`: the accounts earlier runs created (default: this configuration's members,
    as if the last update had the same list). `deployed_release`: the Label Studio versions the
    last update deployed (default: the configured ones; NEVER_DEPLOYED for a first deploy). A
    configuration error surfaces as the `pulumi.RunError` the program raises.
    """
    project, config, secret_keys = stack_config(stack, overrides, secrets)
    previous = configured_members(config, project) if previous_members is None else previous_members
    deployed = configured_release(config, project) if deployed_release is None else deployed_release
    monitor = RecordingMonitor(PlatformMocks(previous, deployed))
    warnings: list[str] = []

    class _WarningLog:
        def debug(self, msg): pass
        def info(self, msg): pass
        def warning(self, msg): warnings.append(msg)
        def error(self, msg): warnings.append(msg)

    with _pulumi_config_env(config, secret_keys):
        # A self-managed backend's organization is always "organization" (Pulumi Cloud's is the account's).
        pulumi.runtime.set_mocks(monitor.mocks, project=project, stack=stack, preview=False,
                                 monitor=monitor, logger=_WarningLog(), organization="organization")
        # The CLI tells the program where its project is; set_mocks takes no such argument.
        SETTINGS.root_directory = str(project_dir(stack))
        SETTINGS.rpc_manager.clear()
        SETTINGS.outputs.clear()

        outputs: dict[str, Any] = {}
        secret_outputs: set[str] = set()
        program_globals = ProgramGlobals()

        async def program() -> None:
            program_globals.update(runpy.run_path(str(PROJECT_ROOT / "__main__.py"), run_name="__main__"))
            await wait_for_rpcs()
            for name, value in get_root_resource().outputs.items():
                output = pulumi.Output.from_input(value)
                outputs[name] = await output.future()
                if await output.is_secret():
                    secret_outputs.add(name)

        _sync_await(run_pulumi_func(program))
    return Evaluation(stack, monitor.declared, outputs, secret_outputs, warnings, list(previous), monitor.reads,
                      program_globals)
