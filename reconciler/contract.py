"""The contract between the stack and the reconciler: the desired state document, the
Job's environment and the team Secret's keys.

The stack (components/labeling.py) builds a `DesiredState` and writes `to_document()`
into the Job's ConfigMap; the reconciler reads it back with `parse_desired_state`.
Both sides import these names from here, so they cannot drift apart.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from reconciler.active_hours import ActiveHours
from reconciler.errors import ReconcileError

# Environment variables the Job sets and the reconciler reads.
LABEL_STUDIO_URL = "LABEL_STUDIO_URL"
# The address people open: the base of the invite link the reconciler stores.
PUBLIC_URL = "LABEL_STUDIO_PUBLIC_URL"
API_TOKEN = "LABEL_STUDIO_API_KEY"
TEAM_SECRET_NAME = "TEAM_SECRET_NAME"
TIMEOUT_SECONDS = "RECONCILER_TIMEOUT_SECONDS"
ACCESS_KEY_ID = "AWS_ACCESS_KEY_ID"
SECRET_ACCESS_KEY = "AWS_SECRET_ACCESS_KEY"
# The members' passwords, a JSON object e-mail -> password; only ever read from its file.
MEMBER_PASSWORDS = "MEMBER_PASSWORDS"
# A credential NAME may instead come from the file that NAME_FILE points at (a mounted Secret key).
FILE_SUFFIX = "_FILE"

# The key of the team Secret under which the reconciler keeps the invite link.
INVITE_URL_KEY = "invite-url"
# ... and the e-mails of the accounts it created (a JSON list): the only ones it ever removes.
CREATED_MEMBERS_KEY = "created-members"
# ... and which run is applying the state right now, so the Job and the scheduled run never overlap.
RUN_LOCK_KEY = "reconcile-lock"
# The command-line flag of the scheduled reconcile: a full run that steps aside while another holds the lock.
SCHEDULED_FLAG = "--scheduled"
# The key of the member Secret holding MEMBER_PASSWORDS.
MEMBER_PASSWORDS_KEY = "member-passwords.json"
# The SAM backend's Service name: an ML backend the reconciler manages points at it.
SAM_SERVICE_NAME = "sam-backend"
# What a failed SAM self-test does to the run (sam.selfTest).
SELF_TEST_FAIL = "fail"
SELF_TEST_WARN = "warn"
SELF_TEST_MODES = (SELF_TEST_FAIL, SELF_TEST_WARN)
# Presigned image URLs a browser gets are valid this long.
PRESIGN_TTL_MINUTES = 60
DEFAULT_DEADLINE_SECONDS = 1500


@dataclass(frozen=True)
class StorageSpec:
    bucket: str
    region: str
    endpoint: str | None
    presign: bool
    presign_ttl_minutes: int = PRESIGN_TTL_MINUTES
    # Label Studio knows `endpoint` already (its S3_ENDPOINT): the storages carry none of their
    # own, so the operator's endpoint is trusted while one a member enters stays checked.
    endpoint_from_label_studio: bool = False


@dataclass(frozen=True)
class ProjectSpec:
    title: str
    label_config: str
    prefix: str
    regex_filter: str
    sam: bool
    # Members who get a Data Manager tab each over an equal, contiguous share of the tasks.
    split: tuple[str, ...] = ()


@dataclass(frozen=True)
class DesiredState:
    storage: StorageSpec
    export_prefix: str
    sam_url: str | None
    projects: tuple[ProjectSpec, ...]
    members: tuple[str, ...]
    # Accounts the reconciler created that may go when several go at once or the last ones go.
    remove_members: tuple[str, ...] = ()
    # What a failed SAM self-test does: SELF_TEST_FAIL or SELF_TEST_WARN.
    sam_self_test: str = SELF_TEST_FAIL
    # sam.activeHours: outside its windows SAM runs no pod and the run leaves it alone.
    sam_active_hours: ActiveHours | None = None
    # The labels of the SAM Deployment's pods: while Label Studio refuses the backend, the run
    # reads their status for the cause (reconciler/sam_pods.py).
    sam_pod_labels: dict[str, str] = field(default_factory=dict)

    def to_document(self) -> dict:
        """The JSON document `parse_desired_state` reads."""
        return {
            "storage": {"bucket": self.storage.bucket, "region": self.storage.region,
                        "endpoint": self.storage.endpoint, "presign": self.storage.presign,
                        "presignTtlMinutes": self.storage.presign_ttl_minutes,
                        "endpointFromLabelStudio": self.storage.endpoint_from_label_studio},
            "exportPrefix": self.export_prefix,
            "samUrl": self.sam_url,
            "samSelfTest": self.sam_self_test,
            "samActiveHours": self.sam_active_hours.to_document() if self.sam_active_hours else None,
            "samPodLabels": dict(self.sam_pod_labels),
            "projects": [{"title": p.title, "labelConfig": p.label_config, "prefix": p.prefix,
                          "regexFilter": p.regex_filter, "sam": p.sam, "split": list(p.split)}
                         for p in self.projects],
            "members": list(self.members),
            "removeMembers": list(self.remove_members),
        }


def _require(mapping: dict, key: str, where: str):
    if key not in mapping or mapping[key] in (None, ""):
        raise ReconcileError(f"desired state: {where}.{key} is missing")
    return mapping[key]


def parse_desired_state(document: dict) -> DesiredState:
    """Validate the JSON document written by the stack and turn it into typed values."""
    if not isinstance(document, dict):
        raise ReconcileError("desired state: the document must be a JSON object")
    storage = _require(document, "storage", "state")
    storage_spec = StorageSpec(
        bucket=_require(storage, "bucket", "storage"),
        region=_require(storage, "region", "storage"),
        endpoint=(storage.get("endpoint") or None),
        presign=bool(storage.get("presign", True)),
        presign_ttl_minutes=int(storage.get("presignTtlMinutes", PRESIGN_TTL_MINUTES)),
        endpoint_from_label_studio=bool(storage.get("endpointFromLabelStudio", False)),
    )
    sam_url = document.get("samUrl") or None
    sam_self_test = document.get("samSelfTest") or SELF_TEST_FAIL
    if sam_self_test not in SELF_TEST_MODES:
        raise ReconcileError(f"desired state: samSelfTest is {sam_self_test!r}; expected one of {', '.join(SELF_TEST_MODES)}")
    members = tuple(document.get("members") or ())
    known = {member.lower() for member in members}
    projects = []
    titles_seen = set()
    for index, project in enumerate(document.get("projects") or []):
        where = f"projects[{index}]"
        # Label Studio trims titles: matching the trimmed title never creates a second project.
        title = str(_require(project, "title", where)).strip()
        if title in titles_seen:
            raise ReconcileError(f"desired state: project title {title!r} appears twice")
        titles_seen.add(title)
        wants_sam = bool(project.get("sam", False))
        if wants_sam and not sam_url:
            raise ReconcileError(f"desired state: project {title!r} wants SAM but samUrl is not set")
        split = tuple(project.get("split") or ())
        strangers = [email for email in split if email.lower() not in known]
        if strangers:
            raise ReconcileError(f"desired state: project {title!r} splits its tasks for {strangers[0]!r}, "
                                 "who is not in members")
        projects.append(ProjectSpec(
            title=title,
            label_config=_require(project, "labelConfig", where),
            prefix=str(project.get("prefix") or "").strip("/"),
            regex_filter=project.get("regexFilter") or "",
            sam=wants_sam,
            split=split,
        ))
    return DesiredState(
        storage=storage_spec,
        export_prefix=str(document.get("exportPrefix") or "label-studio/exports").strip("/"),
        sam_url=sam_url,
        projects=tuple(projects),
        members=members,
        remove_members=tuple(document.get("removeMembers") or ()),
        sam_self_test=sam_self_test,
        sam_active_hours=_active_hours(document.get("samActiveHours")),
        sam_pod_labels=_labels(document.get("samPodLabels")),
    )


def _active_hours(document: dict | None) -> ActiveHours | None:
    if not document:
        return None
    try:
        return ActiveHours.from_document(document)
    except (KeyError, TypeError, ValueError) as error:
        raise ReconcileError(f"desired state: samActiveHours is not a schedule ({error})") from None


def _labels(document: object) -> dict[str, str]:
    if not document:
        return {}
    if not isinstance(document, dict) or not all(isinstance(v, str) for v in document.values()):
        raise ReconcileError("desired state: samPodLabels is not an object of label -> value")
    return dict(document)


def credential(environ: dict[str, str], name: str) -> str | None:
    """A credential from `NAME`, or from the file `NAME_FILE` names (a mounted Secret key)."""
    path = environ.get(name + FILE_SUFFIX)
    if path:
        try:
            return Path(path).read_text().strip() or None
        except OSError as error:
            raise ReconcileError(f"cannot read {name} from {path}: {error.strerror}") from None
    return environ.get(name) or None


@dataclass(frozen=True)
class RunEnvironment:
    """What the Job's environment supplies besides the desired state."""

    aws_access_key_id: str | None = None
    aws_secret_access_key: str | None = None
    team_secret_name: str | None = None
    public_url: str | None = None
    deadline_seconds: float = DEFAULT_DEADLINE_SECONDS
    # e-mail (lower case) -> password; kept out of repr so no log line can show one.
    member_passwords: dict[str, str] = field(default_factory=dict, repr=False)

    @classmethod
    def from_environment(cls, environ: dict[str, str]) -> "RunEnvironment":
        deadline_text = environ.get(TIMEOUT_SECONDS) or str(DEFAULT_DEADLINE_SECONDS)
        try:
            deadline = float(deadline_text)
        except ValueError:
            raise ReconcileError(f"{TIMEOUT_SECONDS}={deadline_text!r} is not a number") from None
        key_id = credential(environ, ACCESS_KEY_ID)
        secret = credential(environ, SECRET_ACCESS_KEY)
        if bool(key_id) != bool(secret):
            raise ReconcileError(f"set both {ACCESS_KEY_ID} and {SECRET_ACCESS_KEY}, or neither")
        return cls(aws_access_key_id=key_id, aws_secret_access_key=secret,
                   team_secret_name=environ.get(TEAM_SECRET_NAME) or None,
                   public_url=environ.get(PUBLIC_URL) or None,
                   deadline_seconds=deadline,
                   member_passwords=parse_member_passwords(credential(environ, MEMBER_PASSWORDS)))


def parse_member_passwords(text: str | None) -> dict[str, str]:
    """The member Secret's JSON object; its values never appear in an error."""
    if not text:
        return {}
    try:
        document = json.loads(text)
    except ValueError:
        raise ReconcileError(f"{MEMBER_PASSWORDS} is not a JSON object of e-mail -> password") from None
    if not isinstance(document, dict) or not all(isinstance(v, str) and v for v in document.values()):
        raise ReconcileError(f"{MEMBER_PASSWORDS} is not a JSON object of e-mail -> password")
    return {str(email).lower(): password for email, password in document.items()}
