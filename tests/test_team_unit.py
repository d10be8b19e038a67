"""Fast tests of members, split tabs, the export re-sync and the restore, against the in-memory
Label Studio of tests/test_reconciler_unit.py."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, strategies as st

from reconciler.client import LabelStudioClient
from reconciler.contract import MEMBER_PASSWORDS, RunEnvironment, parse_desired_state, parse_member_passwords
from reconciler.errors import ReconcileError
from reconciler.members import (
    CANNOT_READD, CreatedRecord, form_errors, reconcile_members, removal_refusal, removal_warning,
)
from reconciler.reconcile import main, resync_exports
from reconciler.restore import read_export, restore, task_key
from reconciler.tabs import ALL_UNANNOTATED, UNANNOTATED_TITLE, ensure_tabs, shares, tab_data
from reconciler.team import TeamSecret
from tests.test_reconciler_unit import FakeKubernetes, FakeLabelStudio, desired, fake_sign_up, reachable_s3, run


@pytest.fixture
def secret(tmp_path) -> TeamSecret:
    (tmp_path / "token").write_text("jwt")
    (tmp_path / "namespace").write_text("labeling")
    return TeamSecret("labeling-team", FakeKubernetes(), tmp_path, "https://k")


def members_run(fake: FakeLabelStudio, secret: TeamSecret, members: list[str], remove: tuple[str, ...] = ()
                ) -> list[str]:
    lines: list[str] = []
    client = LabelStudioClient("http://ls", "good-token", fake)
    passwords = {m.lower(): f"pw-{m}" for m in members}
    reconcile_members(client, tuple(members), passwords, CreatedRecord(secret), fake.sign_up, lines.append, remove)
    return lines


# ---------------------------------------------------------------- members

def test_members_are_created_kept_and_removed_only_when_the_reconciler_created_them(secret):
    fake = FakeLabelStudio()
    fake.sign_up = fake_sign_up(fake)
    fake.users.append({"id": 50, "email": "before@example.com", "active_organization": 1})
    first = members_run(fake, secret, ["new@example.com", "before@example.com", "admin@example.com"])
    assert first[-1] == "members: 1 created, 2 present, 0 removed"
    assert fake.passwords == {"new@example.com": "pw-new@example.com"}
    assert json.loads(secret.read()["created-members"]) == ["new@example.com"]

    again = members_run(fake, secret, ["new@example.com", "before@example.com", "admin@example.com"])
    assert again[0] == 'member "new@example.com": present' and again[-1] == "members: 0 created, 3 present, 0 removed"

    # Delisting everyone (confirmed) removes only the account the reconciler made; never the owner, never "before".
    removed = members_run(fake, secret, [], remove=("NEW@example.com",))
    assert removed == ['member "new@example.com": removed from the organization (no access to projects, tasks '
                       'or annotations)', "members: 0 created, 0 present, 1 removed"]
    assert [u["email"] for u in fake.users] == ["admin@example.com", "before@example.com", "Deleted"]
    assert not any(m == "DELETE" and "/memberships/1/" in p for m, p, _ in fake.requests)

    back = members_run(fake, secret, ["new@example.com"])
    assert back == [f'member "new@example.com": {CANNOT_READD}', "members: 0 created, 0 present, 0 removed"]


def test_removing_several_members_or_the_last_one_needs_them_confirmed(secret):
    fake = FakeLabelStudio()
    fake.sign_up = fake_sign_up(fake)
    team = ["a@example.com", "b@example.com", "c@example.com"]
    members_run(fake, secret, team)
    # An emptied list (or a mistyped namespace that hides it) must not take the whole team.
    with pytest.raises(ReconcileError, match=r"^labeling.members is empty: the accounts the stack created for "
                                             r"a@example.com, b@example.com, c@example.com would be removed for good; "
                                             r"to confirm, list a@example.com, b@example.com, c@example.com in "
                                             r"labeling.removeMembers$"):
        members_run(fake, secret, [])
    with pytest.raises(ReconcileError, match=r"^2 members leave labeling.members at once: .* to confirm, list "
                                             r"c@example.com in labeling.removeMembers$"):
        members_run(fake, secret, ["a@example.com"], remove=("b@example.com",))
    assert not any(method == "DELETE" for method, _, _ in fake.requests), "refused before anything was removed"
    # One at a time needs no confirmation; several go once each is named.
    assert members_run(fake, secret, team[:2])[-1] == "members: 0 created, 2 present, 1 removed"
    assert members_run(fake, secret, [], remove=("a@example.com", "B@example.com"))[-1] == (
        "members: 0 created, 0 present, 2 removed")


@pytest.mark.parametrize("removing, members, approved, refused", [
    ([], [], [], False), (["a@x.io"], ["b@x.io"], [], False), (["a@x.io"], [], [], True),
    (["a@x.io"], [], ["A@x.io"], False), (["a@x.io", "c@x.io"], ["b@x.io"], ["a@x.io"], True),
    (["a@x.io", "c@x.io"], ["b@x.io"], ["a@x.io", "c@x.io"], False)])
def test_removal_refusal(removing, members, approved, refused):
    assert (removal_refusal(removing, members, approved) is not None) is refused
    assert (removal_warning(removing) is not None) is bool(removing)


def test_a_soft_deleted_email_that_the_reconciler_never_made_gets_the_same_clear_line(secret):
    fake = FakeLabelStudio()
    fake.sign_up = fake_sign_up(fake)
    fake.removed_emails.add("gone@example.com")
    lines = members_run(fake, secret, ["gone@example.com"])
    assert lines[0] == (f'member "gone@example.com": {CANNOT_READD} (sign-up says: User with this email already '
                        'exists)')


def test_a_refused_sign_up_ends_the_run_with_the_forms_reason(secret):
    fake = FakeLabelStudio()
    fake.sign_up = lambda email, password: "This password is too short. It must contain at least 8 characters."
    with pytest.raises(ReconcileError, match=r'member "x@example.com": Label Studio refused the sign-up: This '
                                             r'password is too short'):
        members_run(fake, secret, ["x@example.com"])


def test_form_errors_are_read_from_the_sign_up_page():
    page = (b'<form><ul class="field_errors"><li>User with this email already exists</li></ul>'
            b'<ul class="field_errors"><li>Password &amp; more</li></ul><li>not an error</li></form>')
    assert form_errors(page) == "User with this email already exists; Password & more"


def test_member_passwords_come_from_their_file_and_never_show(tmp_path):
    path = tmp_path / "member-passwords.json"
    path.write_text('{"Ann@Example.com": "s3cret-value"}')
    environment = RunEnvironment.from_environment({MEMBER_PASSWORDS + "_FILE": str(path)})
    assert environment.member_passwords == {"ann@example.com": "s3cret-value"}
    assert "s3cret-value" not in repr(environment)
    with pytest.raises(ReconcileError) as caught:
        parse_member_passwords('["s3cret-value"]')
    assert "s3cret-value" not in str(caught.value)


def test_without_the_team_secret_members_are_left_alone():
    fake = FakeLabelStudio()
    lines = run(fake, desired(members=["new@example.com"]))
    assert "members: not managed (the accounts it creates are recorded in the team Secret, out of reach here)" in lines
    assert fake.users == [{"id": 1, "email": "admin@example.com", "active_organization": 1}]


def test_split_members_must_be_members():
    document = desired(members=["a@example.com"])
    document["projects"][0]["split"] = ["b@example.com"]
    with pytest.raises(ReconcileError, match="splits its tasks for 'b@example.com', who is not in members"):
        parse_desired_state(document)


# ---------------------------------------------------------------- tabs

@given(st.lists(st.integers(1, 10**6), unique=True, max_size=200), st.integers(1, 12))
def test_shares_are_contiguous_equal_and_cover_every_task(ids, members):
    ranges = shares(sorted(ids), members)
    counts = [len([i for i in ids if r and r[0] <= i <= r[1]]) for r in ranges]
    assert sum(counts) == len(ids) and max(counts) - min(counts) <= 1
    bounds = [r for r in ranges if r]
    assert all(a[1] < b[0] for a, b in zip(bounds, bounds[1:]))


def split_project(fake: FakeLabelStudio, tasks: int, split: list[str]):
    fake.projects[1] = {"id": 1, "title": "P", "label_config": "", "task_number": tasks}
    spec = parse_desired_state(desired(members=split, projects=[
        {"title": "P", "labelConfig": "<View/>", "split": split}])).projects[0]
    lines: list[str] = []
    ensure_tabs(LabelStudioClient("http://ls", "good-token", fake), fake.projects[1], spec, lines.append)
    return lines


def test_tabs_are_made_moved_in_place_and_removed_without_touching_a_tab_made_by_hand():
    fake = FakeLabelStudio()
    fake.views[900] = {"id": 900, "project": 1, "data": {"title": "a@x.io: tasks 1001-1005"}}
    assert split_project(fake, 10, ["a@x.io", "b@x.io"]) == [
        'project "P": tab "a@x.io: tasks 1001-1005": created (id 1)',
        'project "P": tab "b@x.io: tasks 1006-1010": created (id 2)',
        f'project "P": tab "{UNANNOTATED_TITLE}": created (id 3)']
    assert split_project(fake, 10, ["a@x.io", "b@x.io"])[0] == 'project "P": tab "a@x.io: tasks 1001-1005": unchanged'
    moved = split_project(fake, 12, ["a@x.io", "b@x.io"])
    assert moved[0] == 'project "P": tab "a@x.io: tasks 1001-1006": updated (was "a@x.io: tasks 1001-1005", id 1)'
    assert split_project(fake, 12, ["a@x.io"])[-1] == 'project "P": tab "b@x.io: tasks 1007-1012": removed (id 2)'
    assert fake.views[900]["data"] == {"title": "a@x.io: tasks 1001-1005"}


def test_a_tab_filters_its_range_to_tasks_nobody_annotated():
    data = tab_data("a@x.io", (5, 9))
    assert data["filters"] == {"conjunction": "and", "items": [
        {"filter": "filter:tasks:id", "operator": "greater_or_equal", "type": "Number", "value": 5},
        {"filter": "filter:tasks:id", "operator": "less_or_equal", "type": "Number", "value": 9},
        {"filter": "filter:tasks:total_annotations", "operator": "equal", "type": "Number", "value": 0}]}
    assert tab_data("a@x.io", None)["title"] == "a@x.io: no tasks yet"
    assert tab_data(ALL_UNANNOTATED, None)["filters"]["items"] == [data["filters"]["items"][-1]]


# ---------------------------------------------------------------- export re-sync

def test_export_resync_syncs_each_projects_export_storage_and_nothing_else():
    fake = FakeLabelStudio({"kagglecatsanddogs": 3})
    run(fake, desired())
    before = len(fake.requests)
    lines: list[str] = []
    resync_exports(parse_desired_state(desired()), LabelStudioClient("http://label-studio:80", "good-token", fake),
                   RunEnvironment(), report=lines.append, s3_opener=reachable_s3)
    posts = [(m, p) for m, p, _ in fake.requests[before:] if m != "GET"]
    assert posts == [("POST", "/api/storages/export/s3/3/sync")]
    assert any(line.startswith('project "Cats and dogs": export storage s3://b/label-studio/exports/cats-and-dogs: '
                               "re-synced ") for line in lines), lines


def test_the_command_line_takes_the_export_resync_flag(monkeypatch, capsys, tmp_path):
    monkeypatch.delenv("LABEL_STUDIO_URL", raising=False)
    assert main(["--export-resync", "a", "b"]) == 2
    assert "usage: python -m reconciler [--export-resync | --scheduled] DESIRED_STATE.json" in capsys.readouterr().err


# ---------------------------------------------------------------- restore

# An object as Label Studio 1.23.2's S3 export storage writes it (trimmed): the pinned format.
EXPORTED = {"id": 17, "result": [{"from_name": "choice", "to_name": "image", "type": "choices",
                                  "value": {"choices": ["Cat"]}}],
            "was_cancelled": False, "ground_truth": False, "lead_time": 4.2, "created_username": "ann",
            "task": {"id": 5, "data": {"image": "s3://b/kagglecatsanddogs/0.jpg"}, "meta": {}}}


class RestoreTarget(FakeLabelStudio):
    """A fresh instance: one project whose tasks have new IDs."""

    def route(self, method, path, query, body):
        if path == "/api/tasks/":
            return self.answer(200, {"tasks": self.tasks, "total": len(self.tasks)})
        if path.startswith("/api/tasks/") and path.endswith("/annotations/"):
            task = next(t for t in self.tasks if f"/{t['id']}/" in path)
            task["annotations"].append({**body, "id": self.new_id()})
            return self.answer(201, task["annotations"][-1])
        return super().route(method, path, query, body)


def test_restore_matches_tasks_by_data_and_restores_each_annotation_once(tmp_path):
    (tmp_path / "17").write_text(json.dumps(EXPORTED))
    (tmp_path / "18").write_text(json.dumps({**EXPORTED, "id": 18, "task": {"id": 6, "data": {"image": "s3://b/x"}}}))
    fake = RestoreTarget()
    fake.projects[1] = {"id": 1, "title": "Cats and dogs", "task_number": 1}
    fake.tasks = [{"id": 901, "data": {"image": "s3://b/kagglecatsanddogs/0.jpg"}, "annotations": []}]
    client = LabelStudioClient("http://ls", "good-token", fake)
    lines: list[str] = []
    assert restore(client, "Cats and dogs", tmp_path, lines.append) == (1, 0, 1)
    assert fake.tasks[0]["annotations"][0]["result"] == EXPORTED["result"]
    assert fake.tasks[0]["annotations"][0]["lead_time"] == 4.2
    assert restore(client, "Cats and dogs", tmp_path, lines.append) == (0, 1, 1)
    assert '18: no task with data {"image":"s3://b/x"}' in lines


def test_restore_refuses_an_object_outside_the_pinned_format(tmp_path):
    (tmp_path / "17").write_text(json.dumps({"id": 17, "annotations": []}))
    with pytest.raises(ReconcileError, match="not in the pinned export format"):
        list(read_export(tmp_path))
    assert task_key({"b": 1, "a": 2}) == '{"a":2,"b":1}'
