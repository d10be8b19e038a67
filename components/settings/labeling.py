"""The `labeling` section: projects, their source images and the team, declared as code."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Optional

from components import PROJECT_ROOT
from components.settings.checks import check_email, check_prefix, check_regex
from components.settings.model import LabelingProject, LabelingSettings, SamSettings
from components.settings.reader import Section, show

DEFAULT_REGEX_FILTER = r".*\.(jpe?g|png)$"


def _check_title(text: str) -> Optional[str]:
    return None if 1 <= len(text) <= 50 else "is not 1 to 50 characters"


def _check_label_config_path(text: str) -> Optional[str]:
    path = (PROJECT_ROOT / text).resolve()
    if PROJECT_ROOT not in path.parents or not path.is_file():
        return "is not a file in this repository; expected a path like label_configs/classification.xml"
    try:
        root = ET.fromstring(path.read_text())
    except ET.ParseError as exc:
        return f"is not well-formed XML ({exc})"
    if root.tag != "View":
        return "is not a labeling config; expected a <View> root element"
    return None


def _project(item: Section, sam: SamSettings) -> Optional[LabelingProject]:
    title = item.string("title", "Project title; projects are matched by it.", required=True, check=_check_title)
    config_path = item.string("labelConfig", "Path of the labeling config XML in this repository.", required=True,
                              check=_check_label_config_path, kind="path")
    prefix = item.string("prefix", "Bucket prefix holding the project's source images.", "",
                         check=check_prefix, kind="key prefix")
    regex = item.string("regexFilter", "Regular expression selecting which objects become tasks.", DEFAULT_REGEX_FILTER,
                        check=check_regex, kind="regex")
    wants_sam = item.boolean("sam", "Connect the SAM backend for interactive pre-annotation.", False)
    item.finish()
    if wants_sam and not sam.enabled:
        item.error("sam", "is true but sam.enabled is false; enable SAM or set sam false")
    if not (title and config_path):
        return None
    return LabelingProject(title, config_path, (PROJECT_ROOT / config_path).read_text(), prefix or "", regex or "",
                           wants_sam)


def read_labeling(section: Section, sam: SamSettings) -> LabelingSettings:
    projects_raw = section.items("projects", "Projects the stack creates and keeps in sync.",
                                 "list of {title, labelConfig, prefix, regexFilter, sam}")
    members_raw = section.items("members", "Emails of team members who get accounts.", "list of emails")
    section.finish()
    projects: list[LabelingProject] = []
    for i, raw in enumerate(projects_raw):
        item = Section(section.key(f"projects[{i}]"), raw, section.problems)
        project = _project(item, sam)
        if project is None:
            continue
        if any(p.title == project.title for p in projects):
            item.error("title", f"{show(project.title)} is used twice; expected unique titles")
        else:
            projects.append(project)
    members = []
    for i, email in enumerate(members_raw):
        problem = check_email(email) if isinstance(email, str) else "is not a string"
        if problem:
            section.problems.error(section.key(f"members[{i}]"), f"{show(email)} {problem}")
        else:
            members.append(email)
    return LabelingSettings(tuple(projects), tuple(members))
