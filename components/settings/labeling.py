"""The `labeling` section: projects, their source images and the team, declared as code."""

from __future__ import annotations

from typing import Optional

from components import PROJECT_ROOT
from components.label_config import label_config_problem
from components.settings.checks import check_email, check_prefix, check_regex, is_under, normalise_prefix
from components.settings.database import check_cron
from components.settings.model import LabelingProject, LabelingSettings, SamSettings
from components.settings.reader import MISSING, Section, show
from reconciler.sam_selftest import SelfTestFailure, sam_tags

DEFAULT_REGEX_FILTER = r".*\.(jpe?g|png)$"
# Half past every hour: annotations a submit could not write to S3 reach the bucket within the hour.
DEFAULT_EXPORT_RESYNC_SCHEDULE = "30 * * * *"
# Every hour on the hour, half an hour away from the export re-sync: images added to the
# bucket become tasks within the hour, and what someone deleted or changed comes back.
DEFAULT_RECONCILE_SCHEDULE = "0 * * * *"
# Label Studio trims titles and refuses one outside 3-50 characters (400 validation_errors.title).
TITLE_LENGTH = (3, 50)


def _check_title(text: str) -> Optional[str]:
    low, high = TITLE_LENGTH
    return None if low <= len(text) <= high else f"is not {low} to {high} characters (Label Studio's rule, after trimming)"


def _check_label_config_path(text: str) -> Optional[str]:
    path = (PROJECT_ROOT / text).resolve()
    if PROJECT_ROOT not in path.parents or not path.is_file():
        return "is not a file in this repository; expected a path like label_configs/classification.xml"
    return label_config_problem(path.read_text())


def _split(item: Section, members: tuple[str, ...]) -> tuple[str, ...]:
    """`split`: true (every member) or a list of members; each gets a tab over an equal share of the tasks."""
    raw = item.take("split", "true or list of emails", False,
                     "Data Manager tab per member over an equal, contiguous share of the tasks: true for every "
                     "member, or a list of members.", accepts="true, false or a list of emails")
    if raw is MISSING or raw is None or raw is False or raw == "false":
        return ()
    if raw is True or raw == "true":
        if not members:
            item.error("split", "is true but labeling.members is empty; expected members to split the tasks among")
        return members
    if not isinstance(raw, list):
        item.error("split", f"{show(raw)} is not allowed; expected true, false or a list of e-mails from labeling.members")
        return ()
    known = {member.lower(): member for member in members}
    chosen: list[str] = []
    for i, email in enumerate(raw):
        text = email.strip() if isinstance(email, str) else email
        if not isinstance(text, str) or text.lower() not in known:
            allowed = ", ".join(members) or "none: labeling.members is empty"
            item.problems.error(item.key(f"split[{i}]"), f"{show(email)} is not in labeling.members; expected one of "
                                                        f"{allowed}")
        elif known[text.lower()] in chosen:
            item.problems.error(item.key(f"split[{i}]"), f"{show(email)} is listed twice; expected each member once")
        else:
            chosen.append(known[text.lower()])
    return tuple(chosen)


def _project(item: Section, sam: SamSettings, platform_prefix: str, members: tuple[str, ...]
             ) -> Optional[LabelingProject]:
    title = item.string("title", "Project title; projects are matched by it (trimmed, 3-50 characters).",
                        required=True, check=_check_title)
    config_path = item.string("labelConfig", "Path of the labeling config XML in this repository.", required=True,
                              check=_check_label_config_path, kind="path")
    refused_before = len(item.problems.errors)
    prefix = item.string("prefix", "Bucket prefix holding the project's source images (outside storage.prefix).",
                         required=True, check=check_prefix, kind="key prefix", normalise=normalise_prefix)
    prefix_refused = len(item.problems.errors) > refused_before
    regex = item.string("regexFilter", "Regular expression selecting which objects become tasks.", DEFAULT_REGEX_FILTER,
                        check=check_regex, kind="regex")
    wants_sam = item.boolean("sam", "Connect the SAM backend for interactive pre-annotation.", False)
    split = _split(item, members)
    item.finish()
    if not prefix_refused and is_under(prefix, platform_prefix):
        # Uploads, exports and database dumps live there: scanning it makes them tasks.
        item.error("prefix", f"{show(prefix)} overlaps the platform's own area {platform_prefix}/ (uploads, exports, "
                             "backups); expected a prefix outside it, e.g. images/cats")
    if wants_sam and not sam.enabled:
        item.problems.warnings.append(
            f"{item.key('sam')}: ignored while sam.enabled is false; the project is reconciled without SAM")
        wants_sam = False
    if not (title and config_path):
        return None
    label_config = (PROJECT_ROOT / config_path).read_text()
    if wants_sam:
        _check_sam_can_fill(item, config_path, label_config)
    return LabelingProject(title, config_path, label_config, prefix or "", regex or "", wants_sam, split)


def _check_sam_can_fill(item: Section, config_path: str, label_config: str) -> None:
    """The deploy-time self-test's own reading of the config (reconciler/sam_selftest.py), so the
    plan refuses exactly the SAM projects the self-test would fail on."""
    try:
        sam_tags(label_config)
    except SelfTestFailure as failure:
        item.error("sam", f"is true but {config_path}: {failure}; expected a config with an <Image>, <BrushLabels> "
                          "and a KeyPointLabels or RectangleLabels tool on that image (label_configs/"
                          "sam_segmentation.xml), or sam: false")


def read_labeling(section: Section, sam: SamSettings, platform_prefix: str) -> LabelingSettings:
    projects_raw = section.items("projects", "Projects the stack creates and keeps in sync.",
                                 "list of {title, labelConfig, prefix, regexFilter, sam, split}")
    members_raw = section.items("members", "Emails of team members: the stack creates an account for each "
                                "(password in the memberPasswords output) and removes the ones it created when "
                                "they leave the list.", "list of emails")
    resync = section.boolean("exportResync", "Re-sync the export storages on a schedule (annotations a submit "
                             "could not write to S3 reach the bucket then).", True)
    schedule = section.string("exportResyncSchedule", "Cron schedule of the export re-sync (cluster time zone).",
                              DEFAULT_EXPORT_RESYNC_SCHEDULE, check=check_cron, kind="cron schedule")
    if not resync:
        section.inapplicable(("exportResyncSchedule",), "while labeling.exportResync is false")
    scheduled = section.boolean("reconcile", "Run the full reconciler on a schedule as well: new images become "
                                "tasks, deleted or changed projects, storages and ML backends come back, tabs are "
                                "rebalanced.", True)
    reconcile_schedule = section.string("reconcileSchedule", "Cron schedule of the scheduled reconcile (cluster "
                                        "time zone).", DEFAULT_RECONCILE_SCHEDULE, check=check_cron,
                                        kind="cron schedule")
    if not scheduled:
        section.inapplicable(("reconcileSchedule",), "while labeling.reconcile is false")
    removals_raw = section.items("removeMembers", "E-mails whose accounts (made by the stack) may be removed when "
                                 "several members leave labeling.members at once or the list becomes empty; "
                                 "removal is final.", "list of emails")
    section.finish()
    members = _members(section, members_raw)
    remove_members = _members(section, removals_raw, "removeMembers")
    for i, email in enumerate(remove_members):
        if email.lower() in (m.lower() for m in members):
            section.problems.error(section.key(f"removeMembers[{i}]"), f"{show(email)} is still in labeling.members; "
                                   "expected only e-mails that leave the list")
    projects: list[LabelingProject] = []
    for i, raw in enumerate(projects_raw):
        item = Section(section.key(f"projects[{i}]"), raw, section.problems)
        project = _project(item, sam, platform_prefix, members)
        if project is None:
            continue
        if any(p.title == project.title for p in projects):
            item.error("title", f"{show(project.title)} is used twice (after trimming); expected unique titles")
        else:
            projects.append(project)
    return LabelingSettings(tuple(projects), members, (schedule or DEFAULT_EXPORT_RESYNC_SCHEDULE) if resync else None,
                            (reconcile_schedule or DEFAULT_RECONCILE_SCHEDULE) if scheduled else None,
                            remove_members)


def _members(section: Section, members_raw: list, key: str = "members") -> tuple[str, ...]:
    members: list[str] = []
    for i, raw in enumerate(members_raw):
        email = raw.strip() if isinstance(raw, str) else raw
        problem = check_email(email) if isinstance(email, str) else "is not text"
        if not problem and email.lower() in (m.lower() for m in members):
            problem = "is listed twice (e-mails match without regard to case); expected each member once"
        if problem:
            section.problems.error(section.key(f"{key}[{i}]"), f"{show(raw)} {problem}")
        else:
            members.append(email)
    return tuple(members)
