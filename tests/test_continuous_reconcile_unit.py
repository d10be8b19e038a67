"""The run lock, the scheduled run beside the Job, the summary line and the 0-objects warning,
against the in-memory Label Studio and a Kubernetes API that checks resourceVersions."""

from __future__ import annotations

import base64
import json
import urllib.request
from pathlib import Path

import pytest

from reconciler.client import LabelStudioClient
from reconciler.contract import RUN_LOCK_KEY, RunEnvironment, parse_desired_state
from reconciler.errors import ReconcileError
from reconciler.lock import RunLock
from reconciler.reconcile import main, reconcile_once
from reconciler.summary import RunSummary
from reconciler.team import TeamSecret
from tests.test_reconciler_unit import FakeLabelStudio, desired, reachable_s3, run
from tests.sam_fakes import SAM_CONFIG


class VersionedSecret:
    """One Secret as the API server keeps it: every write a new resourceVersion, and a merge
    patch carrying an older one refused with 409 Conflict; a null value deletes its key."""

    def __init__(self):
        self.data: dict[str, str] = {}
        self.version = 1
        self.after_read = None  # called after each GET: another writer stepping in

    def __call__(self, request: urllib.request.Request, timeout: float) -> tuple[int, bytes]:
        if request.get_method() == "PATCH":
            body = json.loads(request.data)
            expected = (body.get("metadata") or {}).get("resourceVersion")
            if expected is not None and expected != str(self.version):
                return 409, b'{"kind":"Status","reason":"Conflict","message":"the object has been modified"}'
            for key, value in body["data"].items():
                if value is None:
                    self.data.pop(key, None)
                else:
                    self.data[key] = value
            self.version += 1
        answer = json.dumps({"data": self.data, "metadata": {"resourceVersion": str(self.version)}}).encode()
        if request.get_method() == "GET" and self.after_read:
            self.after_read()
        return 200, answer


class Clock:
    def __init__(self):
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def service_account(tmp_path) -> Path:
    (tmp_path / "token").write_text("service-account-jwt\n")
    (tmp_path / "namespace").write_text("labeling\n")
    return tmp_path


@pytest.fixture
def secret():
    return VersionedSecret()


def lock(secret: VersionedSecret, service_account: Path, holder: str, clock=None) -> RunLock:
    return RunLock(TeamSecret("labeling-team", secret, service_account, "https://k"), holder, 600, clock or Clock())


def test_one_run_holds_the_lock_until_it_releases_it(secret, service_account):
    job, scheduled = lock(secret, service_account, "job-pod"), lock(secret, service_account, "cron-pod")
    assert job.try_acquire() is None
    assert scheduled.try_acquire() == "job-pod"
    assert job.try_acquire() is None, "the holder may take it again"
    job.release()
    assert RUN_LOCK_KEY not in secret.data
    assert scheduled.try_acquire() is None and job.try_acquire() == "cron-pod"


def test_a_lock_whose_run_died_expires_with_its_deadline(secret, service_account):
    clock = Clock()
    lock(secret, service_account, "killed-pod", clock).try_acquire()
    assert lock(secret, service_account, "next-pod", clock).try_acquire() == "killed-pod"
    clock.now += 601
    assert lock(secret, service_account, "next-pod", clock).try_acquire() is None
    held = json.loads(base64.b64decode(secret.data[RUN_LOCK_KEY]))
    assert held["holder"] == "next-pod" and held["until"] == clock.now + 600


def test_of_two_runs_taking_it_at_once_only_one_gets_it(secret, service_account):
    other = lock(secret, service_account, "cron-pod")
    # The other run writes between this run's read and its write.
    secret.after_read = lambda: (setattr(secret, "after_read", None), other.try_acquire())
    assert lock(secret, service_account, "job-pod").try_acquire() == "a run that took it at the same moment"
    assert json.loads(base64.b64decode(secret.data[RUN_LOCK_KEY]))["holder"] == "cron-pod"


def test_the_job_waits_for_a_scheduled_run_to_finish(secret, service_account):
    scheduled = lock(secret, service_account, "cron-pod")
    scheduled.try_acquire()
    lines: list[str] = []
    lock(secret, service_account, "job-pod").acquire(lambda: 100.0, lines.append,
                                                     sleep=lambda seconds: scheduled.release())
    assert lines == ["run lock: held by cron-pod; waiting", "run lock: taken by job-pod"]
    with pytest.raises(ReconcileError, match=r"^another run \(job-pod\) held the lock until the deadline$"):
        lock(secret, service_account, "late-pod").acquire(lambda: 0.0, lines.append, sleep=lambda seconds: None)


def _run_once(fake, secret, service_account, *, scheduled, holder="cron-pod", document=None):
    lines: list[str] = []
    client = LabelStudioClient("http://label-studio:80", "good-token", opener=fake)
    ran = reconcile_once(parse_desired_state(document or desired()), client, RunEnvironment(),
                         lock(secret, service_account, holder), scheduled, lines.append, s3_opener=reachable_s3)
    return ran, lines


def test_a_scheduled_run_steps_aside_while_the_job_applies_the_state(secret, service_account):
    lock(secret, service_account, "job-pod").try_acquire()
    fake = FakeLabelStudio({"kagglecatsanddogs": 3})
    ran, lines = _run_once(fake, secret, service_account, scheduled=True)
    assert not ran and lines == ["reconcile: skipped, another run (job-pod) is applying the state"]
    assert fake.requests == [], "it did not touch Label Studio"


def test_each_run_ends_with_one_summary_line_and_releases_the_lock(secret, service_account):
    fake = FakeLabelStudio({"kagglecatsanddogs": 3})
    ran, first = _run_once(fake, secret, service_account, scheduled=True)
    assert ran and first[0] == "run lock: taken by cron-pod" and RUN_LOCK_KEY not in secret.data
    # The project and its two storages made; three images imported.
    assert first[-1] == "reconcile: 3 imported, 3 repaired, 0 unchanged"
    fake.objects["kagglecatsanddogs"] = 4  # an image added since
    _, second = _run_once(fake, secret, service_account, scheduled=True)
    assert second[-1] == "reconcile: 1 imported, 0 repaired, 3 unchanged"


def test_the_summary_counts_outcomes_not_words_inside_subjects():
    lines: list[str] = []
    summary = RunSummary(lines.append)
    for line in ['project "Done: created": unchanged (id 1)',
                 'project "A": tab "a@x.io: tasks 1-5": updated (was "a@x.io: tasks 1-3", id 4)',
                 'project "A": source storage s3://b/p: synced 12 tasks in 1.0s',
                 "members: 1 created, 2 present, 0 removed", "api token: accepted (user admin@example.com)"]:
        summary(line)
    assert summary.line() == "reconcile: 12 imported, 1 repaired, 1 unchanged" and len(lines) == 5


def test_a_prefix_and_regex_that_import_nothing_are_named_in_a_warning():
    projects = [{"title": "Cats and dogs", "labelConfig": "<View></View>", "prefix": "kagglecatsanddgos",
                 "regexFilter": r".*\.png$", "sam": False}]
    lines = run(FakeLabelStudio({"kagglecatsanddogs": 3}), desired(projects=projects))
    assert ('project "Cats and dogs": source storage s3://b/kagglecatsanddgos: warning: prefix "kagglecatsanddgos" '
            'with regexFilter ".*\\.png$" imported 0 objects; check both against the bucket\'s keys') in lines
    assert not any("warning" in line for line in run(FakeLabelStudio({"kagglecatsanddogs": 3}), desired()))


def test_the_command_line_takes_the_scheduled_flag(monkeypatch, capsys):
    monkeypatch.delenv("LABEL_STUDIO_URL", raising=False)
    assert main(["--scheduled", "state.json"]) == 1
    assert capsys.readouterr().err.startswith("reconcile failed: ")
    assert main(["--scheduled"]) == 2


def test_what_someone_deleted_comes_back_except_a_source_storage_over_existing_tasks():
    sam_project = {"title": "SAM demo", "labelConfig": SAM_CONFIG, "prefix": "sam-demo", "sam": True}
    document = desired(projects=[*desired()["projects"], sam_project])
    fake = FakeLabelStudio({"kagglecatsanddogs": 3, "sam-demo": 2})
    run(fake, document)
    [backend] = fake.backends
    del fake.backends[backend]
    export = next(i for i, s in fake.storages["export"].items() if s["project"] == 1)
    del fake.storages["export"][export]
    again = run(fake, document)
    assert any(line.startswith('project "SAM demo": ml backend http://sam:9090: created') for line in again)
    assert any(line.startswith('project "Cats and dogs": export storage') and ": created" in line for line in again)
    assert len(fake.backends) == 1 and len(fake.storages["export"]) == 2

    source = next(i for i, s in fake.storages["import"].items() if s["project"] == 1)
    del fake.storages["import"][source]
    with pytest.raises(ReconcileError, match=r'^project "Cats and dogs": its source storage was deleted while the '
                                             r"project holds 3 tasks; a new one would import every object again"):
        run(fake, document)
    assert len(fake.storages["import"]) == 1, "no second storage, so no duplicate tasks"
