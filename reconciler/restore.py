"""`python -m reconciler.restore PROJECT_TITLE EXPORT_DIR`: bring exported annotations back
into a Label Studio whose project holds the same tasks (a fresh instance after a loss, say).

EXPORT_DIR is a copy of one project's export prefix, e.g.
`aws s3 sync s3://<bucket>/<exportPrefix>/<project slug> ./export`: reading a local copy
keeps S3 credentials out of this script. Tasks are matched by their data (for images, the
`s3://bucket/key` URL the source storage gave them), never by ID: a fresh instance numbers
its tasks anew. An annotation whose task already has one with the same result is skipped,
so a second run restores nothing twice. LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY (or
LABEL_STUDIO_API_KEY_FILE) say where to; the project must exist and hold the tasks (one
reconciler run makes both).

The export format read here is pinned (EXPORT_FORMAT): what Label Studio 1.23.2's S3 export
storage writes by default, one object per annotation, keyed by annotation ID, holding the
annotation with its task nested. An object of another shape stops the run naming the file.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Callable, Iterator

from reconciler.client import LabelStudioClient, client_from_environment, one_line
from reconciler.errors import ReconcileError
from reconciler.projects import find_project, list_projects

# Keys of an exported annotation this script relies on: `result` (a list), `task.data` (an
# object); carried over when present: the rest below.
EXPORT_FORMAT = {"result": list, "task": dict}
CARRIED_FIELDS = ("was_cancelled", "ground_truth", "lead_time")
TASK_PAGE_SIZE = 1000


def task_key(data: dict) -> str:
    """A task's identity across instances: its data, canonically written."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def read_export(directory: Path) -> Iterator[tuple[Path, dict]]:
    """Each exported annotation under `directory`, checked against EXPORT_FORMAT."""
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        try:
            annotation = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise ReconcileError(f"{path}: not an exported annotation ({one_line(str(error))})") from None
        shape_ok = isinstance(annotation, dict) and all(
            isinstance(annotation.get(key), kind) for key, kind in EXPORT_FORMAT.items())
        if not shape_ok or not isinstance(annotation["task"].get("data"), dict):
            raise ReconcileError(f"{path}: not in the pinned export format (an annotation with `result` and its "
                                 "task nested under `task.data`)")
        yield path, annotation


def project_tasks(client: LabelStudioClient, project_id: int) -> dict[str, dict]:
    """task_key(data) -> task (with its annotations) of every task of the project."""
    tasks: dict[str, dict] = {}
    page = 1
    while True:
        # resolve_uri=false: the data as stored (s3://...), not rewritten into this instance's proxy URLs.
        answer = client.get(f"/api/tasks/?project={project_id}&page={page}&page_size={TASK_PAGE_SIZE}&fields=all"
                            "&resolve_uri=false")
        listed = answer.get("tasks", [])
        tasks.update((task_key(task["data"]), task) for task in listed)
        if len(listed) < TASK_PAGE_SIZE or len(tasks) >= int(answer.get("total") or 0):
            return tasks
        page += 1


def restore(client: LabelStudioClient, title: str, directory: Path,
            report: Callable[[str], None]) -> tuple[int, int, int]:
    """(restored, already present, unmatched)."""
    project = find_project(list_projects(client), title)
    if project is None:
        raise ReconcileError(f'project "{title}" does not exist; run the reconciler first')
    tasks = project_tasks(client, project["id"])
    restored = present = unmatched = 0
    for path, annotation in read_export(directory):
        task = tasks.get(task_key(annotation["task"]["data"]))
        if task is None:
            unmatched += 1
            report(f"{path.name}: no task with data {task_key(annotation['task']['data'])}")
            continue
        if any(existing.get("result") == annotation["result"] for existing in task.get("annotations") or []):
            present += 1
            continue
        body = {"result": annotation["result"],
                **{key: annotation[key] for key in CARRIED_FIELDS if annotation.get(key) is not None}}
        created = client.post(f"/api/tasks/{task['id']}/annotations/", body)
        task.setdefault("annotations", []).append(created)
        restored += 1
    report(f'restore of project "{project["title"]}": {restored} restored, {present} already present, '
           f"{unmatched} without a matching task")
    return restored, present, unmatched


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: python -m reconciler.restore PROJECT_TITLE EXPORT_DIR", file=sys.stderr)
        return 2
    try:
        client = client_from_environment(dict(os.environ))
        if not Path(argv[1]).is_dir():
            raise ReconcileError(f"{argv[1]} is not a directory (a copy of the project's export prefix)")
        _, _, unmatched = restore(client, argv[0], Path(argv[1]), print)
    except ReconcileError as error:
        print(f"restore failed: {error}", file=sys.stderr, flush=True)
        return 1
    # Annotations without their task are not restored: the instance lacks tasks the export had.
    return 1 if unmatched else 0


if __name__ == "__main__":
    sys.exit(main())
