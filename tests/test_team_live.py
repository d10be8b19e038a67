"""Members, split tabs, the export re-sync and the restore against real services: Label Studio
1.23.2 as the image serves it (uWSGI, PostgreSQL, the rendered app env) and moto S3.

The tests run in order on one instance: members are created, left alone, removed; tabs are
made and then moved by new tasks; an annotation submitted while moto is down reaches the
bucket after the re-sync; the exported annotations come back into a fresh Label Studio.
"""

from __future__ import annotations

import http.cookiejar
import json
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import replace
from pathlib import Path

import pytest

from components import PROJECT_ROOT
from reconciler import contract
from reconciler.client import LabelStudioClient
from reconciler.contract import RunEnvironment, parse_desired_state
from reconciler.errors import ApiError
from reconciler.members import CANNOT_READD
from reconciler.reconcile import reconcile, resync_exports
from reconciler.restore import restore
from reconciler.tabs import MARKER, MARKER_KEY, UNANNOTATED_TITLE
from tests.live_services import MOTO_ACCESS_KEY_ID, MOTO_SECRET_ACCESS_KEY, s3_client, start_moto, upload_images
from tests.live_stack import label_studio_stack, run_job, job_environment
from tests.test_reconciler_unit import FakeKubernetes

pytestmark = pytest.mark.slow

BUCKET = "labeling-data"
PREFIX = "kagglecatsanddogs"
TITLE = "Cats and dogs"
EXPORTS = "label-studio/exports"
MEMBERS = ["ann@example.com", "bob@example.com", "cat@example.com"]
PASSWORDS = {email: f"generated-{index}-Xq7vT2pLm9rS4wZk" for index, email in enumerate(MEMBERS)}
FIRST_IMAGES, ADDED_IMAGES = 30, 12
NO_OP_LINE = re.compile(r"unchanged|: healthy$|: accepted|: reachable$|: available|: present$|"
                        r"^members: 0 created, \d+ present, 0 removed$")


class Moto:
    """moto on a fixed port, so it can be stopped and started again at the same endpoint."""

    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self.process, self.endpoint = start_moto(log_dir)
        self.port = int(self.endpoint.rsplit(":", 1)[1])

    def restart(self) -> None:
        """A fresh moto holds nothing: the bucket and its images are put back."""
        self.process, _ = start_moto(self.log_dir, self.port)
        upload_images(self.endpoint, BUCKET, PREFIX, FIRST_IMAGES + ADDED_IMAGES)


@pytest.fixture(scope="module")
def moto(tmp_path_factory):
    log_dir = tmp_path_factory.mktemp("moto")
    server = Moto(log_dir)
    upload_images(server.endpoint, BUCKET, PREFIX, FIRST_IMAGES)
    yield server
    server.process.stop()


@pytest.fixture(scope="module")
def stack(moto, tmp_path_factory):
    with label_studio_stack(tmp_path_factory.mktemp("team"), moto.endpoint, BUCKET, {}) as started:
        yield started


def document(stack, members=MEMBERS, split=tuple(MEMBERS)) -> dict:
    return {
        # As the stack writes it: Label Studio has the endpoint as S3_ENDPOINT, the storages none.
        "storage": {"bucket": BUCKET, "region": "us-east-1", "endpoint": stack.s3_endpoint, "presign": True,
                    "endpointFromLabelStudio": True},
        "exportPrefix": EXPORTS,
        "samUrl": None,
        "projects": [{"title": TITLE, "prefix": PREFIX, "regexFilter": ".*\\.png$", "sam": False,
                      "labelConfig": (PROJECT_ROOT / "label_configs/image_classification.xml").read_text(),
                      "split": [m for m in split if m in members]}],
        "members": list(members),
    }


@pytest.fixture(scope="module")
def service_account(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("service-account")
    (directory / "token").write_text("service-account-jwt")
    (directory / "namespace").write_text("labeling")
    return directory


@pytest.fixture(scope="module")
def team_secret():
    return FakeKubernetes()


@pytest.fixture(scope="module")
def environment(tmp_path_factory) -> RunEnvironment:
    """As the Job reads it: the passwords from the mounted member Secret's file."""
    secret_file = tmp_path_factory.mktemp("members") / contract.MEMBER_PASSWORDS_KEY
    secret_file.write_text(json.dumps(PASSWORDS))
    return RunEnvironment.from_environment({
        contract.ACCESS_KEY_ID: MOTO_ACCESS_KEY_ID, contract.SECRET_ACCESS_KEY: MOTO_SECRET_ACCESS_KEY,
        contract.TEAM_SECRET_NAME: "labeling-team", contract.TIMEOUT_SECONDS: "300",
        contract.MEMBER_PASSWORDS + contract.FILE_SUFFIX: str(secret_file)})


@pytest.fixture(scope="module")
def api(stack) -> LabelStudioClient:
    return LabelStudioClient(stack.label_studio_url, stack.admin.token)


@pytest.fixture(scope="module")
def run(api, environment, team_secret, service_account):
    def run_once(state: dict) -> list[str]:
        lines: list[str] = []
        reconcile(parse_desired_state(state), api, environment, report=lines.append,
                  kubernetes_opener=team_secret, service_account_dir=service_account)
        return lines
    return run_once


@pytest.fixture(scope="module")
def first_run(stack, run):
    return run(document(stack))


class Browser:
    """A person in a browser: a session cookie after logging in through the form."""

    def __init__(self, base_url: str):
        self.base_url = base_url
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar), NoRedirect)

    def open(self, path: str, data: dict | None = None) -> tuple[int, bytes]:
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        request = urllib.request.Request(self.base_url + path, data=body, headers={"Referer": self.base_url + path})
        try:
            with self.opener.open(request, timeout=30) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def log_in(self, email: str, password: str) -> int:
        _, page = self.open("/user/login/")
        token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page)[1].decode()
        status, _ = self.open("/user/login/", {"email": email, "password": password, "csrfmiddlewaretoken": token})
        return status


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def annotated(api) -> set[tuple[str, str]]:
    """(image, result) of every annotation of the project: what must survive a restore."""
    listed = api.get(f"/api/tasks/?project={project_id(api)}&page_size=1000&fields=all&resolve_uri=false")
    return {(task["data"]["image"], json.dumps(annotation["result"], sort_keys=True))
            for task in listed["tasks"] for annotation in task["annotations"]}


def project_id(api) -> int:
    return next(p["id"] for p in api.get_all_pages("/api/projects/") if p["title"] == TITLE)


def test_each_member_gets_an_account_that_logs_in_with_the_password_from_the_secret_file(first_run, stack):
    for email in MEMBERS:
        assert f'member "{email}": created (its password is in the member Secret)' in first_run
        assert Browser(stack.label_studio_url).log_in(email, PASSWORDS[email]) == 302, email
    assert "members: 3 created, 0 present, 0 removed" in first_run
    assert not any(password in line for line in first_run for password in PASSWORDS.values())


def test_a_second_run_changes_nothing(first_run, stack, run):
    again = run(document(stack))
    assert again and all(NO_OP_LINE.search(line) for line in again), again
    assert "members: 0 created, 3 present, 0 removed" in again


def test_an_account_that_existed_before_is_reported_and_never_removed(first_run, stack, run, api):
    outsider = "outsider@example.com"
    browser = Browser(stack.label_studio_url)
    invite = api.get("/api/invite")
    _, page = browser.open(invite["invite_url"])
    token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page)[1].decode()
    assert browser.open(invite["invite_url"], {"email": outsider, "password": "own-password-123",
                                               "csrfmiddlewaretoken": token})[0] == 302
    lines = run(document(stack, MEMBERS + [outsider]))
    assert any(line.startswith(f'member "{outsider}": present, not managed') for line in lines), lines
    lines = run(document(stack))
    assert not any(outsider in line for line in lines), lines
    assert outsider in {user["email"] for user in api.get_all_pages("/api/users/")}


def test_tabs_split_the_tasks_among_members(first_run, api):
    project = project_id(api)
    views = [v for v in api.get(f"/api/dm/views/?project={project}") if v["data"].get(MARKER_KEY) == MARKER]
    titles = sorted(v["data"]["title"] for v in views)
    tasks = sorted(t["id"] for t in api.get(f"/api/tasks/?project={project}&page_size=1000")["tasks"])
    assert len(tasks) == FIRST_IMAGES
    shares = [tasks[0:10], tasks[10:20], tasks[20:30]]
    assert titles == sorted([f"{m}: tasks {s[0]}-{s[-1]}" for m, s in zip(MEMBERS, shares)] + [UNANNOTATED_TITLE])
    for member, share in zip(MEMBERS, shares):
        view = next(v for v in views if v["data"]["title"].startswith(member))
        served = api.get(f"/api/tasks/?project={project}&view={view['id']}&page_size=1000")
        assert sorted(t["id"] for t in served["tasks"]) == share
        assert api.get(f"/api/projects/{project}/next?view={view['id']}")["id"] in share


def test_a_tab_made_by_hand_with_a_managed_title_is_left_alone(first_run, api, stack, run):
    project = project_id(api)
    title = next(v["data"]["title"] for v in api.get(f"/api/dm/views/?project={project}")
                 if v["data"].get(MARKER_KEY) == MARKER and v["data"]["title"].startswith(MEMBERS[0]))
    by_hand = api.post("/api/dm/views/", {"project": project, "data": {"title": title}})
    run(document(stack))
    assert api.get(f"/api/dm/views/{by_hand['id']}/")["data"] == {"title": title}


def test_added_tasks_move_the_ranges_on_the_next_run(first_run, api, stack, run, moto):
    upload_images(moto.endpoint, BUCKET, PREFIX, FIRST_IMAGES + ADDED_IMAGES)
    lines = run(document(stack))
    project = project_id(api)
    tasks = sorted(t["id"] for t in api.get(f"/api/tasks/?project={project}&page_size=1000")["tasks"])
    assert len(tasks) == FIRST_IMAGES + ADDED_IMAGES
    for member, share in zip(MEMBERS, (tasks[0:14], tasks[14:28], tasks[28:42])):
        assert any(line.startswith(f'project "{TITLE}": tab "{member}: tasks {share[0]}-{share[-1]}": updated')
                   for line in lines), lines
    managed = [v for v in api.get(f"/api/dm/views/?project={project}") if v["data"].get(MARKER_KEY) == MARKER]
    assert len(managed) == len(MEMBERS) + 1  # updated in place, none added


def test_an_annotation_submitted_while_s3_is_down_reaches_the_bucket_after_the_resync(first_run, api, stack, moto,
                                                                                     environment):
    project = project_id(api)
    task = api.get(f"/api/tasks/?project={project}&page_size=1")["tasks"][0]
    result = [{"from_name": "choice", "to_name": "image", "type": "choices", "value": {"choices": ["Cat"]}}]
    moto.process.stop()
    try:
        with pytest.raises(ApiError) as refused:
            api.post(f"/api/tasks/{task['id']}/annotations/", {"result": result})
        assert refused.value.status == 500  # Label Studio saved it, then failed writing it to S3
    finally:
        moto.restart()
    [saved] = api.get(f"/api/tasks/{task['id']}/annotations/")
    lines: list[str] = []
    written = resync_exports(parse_desired_state(document(stack)), api, environment, report=lines.append)
    assert written >= 1, lines
    listed = s3_client(moto.endpoint).list_objects_v2(Bucket=BUCKET, Prefix=f"{EXPORTS}/cats-and-dogs/")
    keys = [item["Key"] for item in listed.get("Contents", [])]
    assert f"{EXPORTS}/cats-and-dogs/{saved['id']}" in keys


def test_export_resync_runs_as_the_cronjob_does(first_run, stack, tmp_path):
    env = {**job_environment(stack.label_studio_url, stack.admin.token)}
    for name in (contract.ACCESS_KEY_ID, contract.SECRET_ACCESS_KEY):
        env.pop(name)  # the CronJob gets the API token only
    result = run_job(tmp_path, document(stack), env, argv=["--export-resync"])
    assert result.returncode == 0, result.stderr
    assert any(re.search(r"export storage .*: re-synced \d+ annotations", line) for line in result.stdout.splitlines())


def test_removing_a_member_ends_their_access(first_run, stack, run, api):
    gone = MEMBERS[-1]
    browser = Browser(stack.label_studio_url)
    assert browser.log_in(gone, PASSWORDS[gone]) == 302
    project = project_id(api)
    assert browser.open(f"/api/projects/{project}/")[0] == 200
    lines = run(document(stack, MEMBERS[:-1]))
    assert f'member "{gone}": removed from the organization (no access to projects, tasks or annotations)' in lines
    assert "members: 0 created, 2 present, 1 removed" in lines
    assert browser.open(f"/api/projects/{project}/")[0] == 403
    assert browser.open(f"/api/projects/{project}/tasks/")[0] == 403
    back = run(document(stack))
    assert f'member "{gone}": {CANNOT_READD}' in back


def test_restore_brings_the_annotations_into_a_fresh_label_studio(first_run, api, stack, moto, tmp_path, environment,
                                                                  team_secret, service_account):
    export_dir = tmp_path / "export"
    export_dir.mkdir()
    s3 = s3_client(moto.endpoint)
    exported = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{EXPORTS}/cats-and-dogs/")["Contents"]
    for item in exported:
        body = s3.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read()
        (export_dir / item["Key"].rsplit("/", 1)[1]).write_bytes(body)
    originals = annotated(api)
    assert originals
    with label_studio_stack(tmp_path / "fresh", moto.endpoint, BUCKET, {}) as fresh:
        fresh_api = LabelStudioClient(fresh.label_studio_url, fresh.admin.token)
        reconcile(parse_desired_state(document(fresh, members=[])), fresh_api,
                  replace(environment, team_secret_name=None), report=lambda line: None)
        lines: list[str] = []
        assert restore(fresh_api, TITLE, export_dir, lines.append) == (len(exported), 0, 0), lines
        assert restore(fresh_api, TITLE, export_dir, lines.append) == (0, len(exported), 0)
        assert annotated(fresh_api) == originals
