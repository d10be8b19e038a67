"""Data Manager tabs that split a project's tasks among members.

With `split`, each member gets a tab over a contiguous range of task IDs (equal shares of
all the project's tasks, in ID order) showing the tasks nobody has annotated yet, and one
more tab shows every task nobody has annotated. `GET /api/projects/{id}/next?view=<tab>`
serves only the tab's tasks, so a member who labels from their tab stays in their range.
Tabs are advisory: Label Studio shows every tab to everyone in the organization.

"Nobody annotated yet" is `total_annotations = 0`: a skipped task has no annotation
counted either, so it stays in the tab and comes back to its member. The ranges are
computed anew on each run, so tasks added to the bucket or a changed member list move them
(tabs are updated in place). A tab carries a marker in its `data`; a tab without it (one a
person made, even with the same title) is never touched.
"""

from __future__ import annotations

from typing import Callable, Optional

from reconciler.client import LabelStudioClient
from reconciler.contract import ProjectSpec

VIEWS = "/api/dm/views/"
MARKER_KEY = "managedBy"
MARKER = "labeling-reconciler"
# Whose tab it is: a member's e-mail, or ALL_UNANNOTATED for the tab over every task.
OWNER_KEY = "managedFor"
RANGE_KEY = "managedRange"
ALL_UNANNOTATED = "*"
UNANNOTATED_TITLE = "Unannotated tasks"
TASK_PAGE_SIZE = 1000
UNANNOTATED = {"filter": "filter:tasks:total_annotations", "operator": "equal", "type": "Number", "value": 0}


def task_ids(client: LabelStudioClient, project_id: int) -> list[int]:
    """Every task ID of the project, ascending (only the IDs are fetched)."""
    ids: list[int] = []
    page = 1
    while True:
        answer = client.get(f"/api/tasks/?project={project_id}&page={page}&page_size={TASK_PAGE_SIZE}"
                            "&fields=task_only&include=id")
        tasks = answer.get("tasks", []) if isinstance(answer, dict) else answer
        ids.extend(int(task["id"]) for task in tasks)
        total = answer.get("total") if isinstance(answer, dict) else None
        if len(tasks) < TASK_PAGE_SIZE or (total is not None and len(ids) >= int(total)):
            return sorted(ids)
        page += 1


def shares(ids: list[int], members: int) -> list[Optional[tuple[int, int]]]:
    """(first, last) task ID of each member's equal share, in order; None for an empty share."""
    size, extra = divmod(len(ids), members)
    ranges: list[Optional[tuple[int, int]]] = []
    start = 0
    for index in range(members):
        chunk = ids[start:start + size + (1 if index < extra else 0)]
        start += len(chunk)
        ranges.append((chunk[0], chunk[-1]) if chunk else None)
    return ranges


def tab_data(owner: str, share: Optional[tuple[int, int]]) -> dict:
    """A tab's `data`: title, filters and the marker."""
    if owner == ALL_UNANNOTATED:
        title, items, bounds = UNANNOTATED_TITLE, [UNANNOTATED], None
    else:
        # An empty share gets a range no task is in (IDs start at 1).
        first, last = share or (0, 0)
        title = f"{owner}: tasks {first}-{last}" if share else f"{owner}: no tasks yet"
        bounds = [first, last]
        items = [{"filter": "filter:tasks:id", "operator": "greater_or_equal", "type": "Number", "value": first},
                 {"filter": "filter:tasks:id", "operator": "less_or_equal", "type": "Number", "value": last},
                 UNANNOTATED]
    return {"title": title, "filters": {"conjunction": "and", "items": items},
            MARKER_KEY: MARKER, OWNER_KEY: owner, RANGE_KEY: bounds}


def ensure_tabs(client: LabelStudioClient, project: dict, spec: ProjectSpec, report: Callable[[str], None]) -> None:
    """Make the project's managed tabs match `spec.split`: create, update in place, remove."""
    listed = client.get(f"{VIEWS}?project={project['id']}")
    managed = {view["data"].get(OWNER_KEY): view for view in listed
               if isinstance(view.get("data"), dict) and view["data"].get(MARKER_KEY) == MARKER}
    wanted: dict[str, dict] = {}
    if spec.split:
        ranges = shares(task_ids(client, project["id"]), len(spec.split))
        wanted = {member: tab_data(member, share) for member, share in zip(spec.split, ranges)}
        wanted[ALL_UNANNOTATED] = tab_data(ALL_UNANNOTATED, None)
    for owner, data in wanted.items():
        label = f'project "{spec.title}": tab "{data["title"]}"'
        view = managed.get(owner)
        if view is None:
            created = client.post(VIEWS, {"project": project["id"], "data": data})
            report(f"{label}: created (id {created['id']})")
        elif (view["data"].get("title"), view["data"].get(RANGE_KEY)) != (data["title"], data[RANGE_KEY]):
            client.patch(f"{VIEWS}{view['id']}/", {"project": project["id"], "data": data})
            report(f'{label}: updated (was "{view["data"].get("title")}", id {view["id"]})')
        else:
            report(f"{label}: unchanged")
    for owner, view in managed.items():
        if owner not in wanted:
            client.call("DELETE", f"{VIEWS}{view['id']}/")
            report(f'project "{spec.title}": tab "{view["data"].get("title")}": removed (id {view["id"]})')
