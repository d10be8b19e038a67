"""What the offline plan takes as deployed: the stack file as committed (git HEAD), which the
last deploy from this repository ran. Offline there is no cluster or state to ask; `pulumi
preview` reads the real record instead (the team Secret, the stack's own outputs). A stack
file git does not hold yet was never deployed from this repository: every member is new and
there is no release to downgrade from.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from typing import Mapping, Optional

import yaml

from components.settings import PROJECT
from components.settings.stack_file import stack_file_path
from tools.stack_eval import NEVER_DEPLOYED, configured_members, configured_release, project_dir


def committed_stack_file(stack: str, revision: str = "HEAD") -> Optional[dict]:
    """The stack's file as git holds it at `revision`; None without git or without that file there."""
    directory = project_dir(stack)
    try:
        # `<revision>:./<file>` is relative to the working directory: the stack's project.
        shown = subprocess.run(["git", "show", f"{revision}:./{stack_file_path(directory, stack).name}"],
                               cwd=directory, capture_output=True, text=True, check=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return yaml.safe_load(shown.stdout) or {}


@dataclass(frozen=True)
class CommittedDeploy:
    """What the last deploy from the committed stack file made, as far as the plan can tell."""

    members: list[str]
    release: Mapping[str, str]


def committed_deploy(stack: str, revision: str = "HEAD") -> CommittedDeploy:
    """labeling.members and the Label Studio versions of the stack's file at `revision` (one git
    read); no members and NEVER_DEPLOYED when git does not hold the file."""
    committed = committed_stack_file(stack, revision)
    if committed is None:
        return CommittedDeploy([], NEVER_DEPLOYED)
    config = committed.get("config") or {}
    return CommittedDeploy(configured_members(config, PROJECT), configured_release(config, PROJECT))
