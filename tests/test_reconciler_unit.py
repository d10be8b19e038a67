"""Fast tests of the reconciler: pure functions, and whole runs against an in-memory Label Studio
that answers through the injected opener like 1.23.2 does (paths and shapes from its source)."""

from __future__ import annotations

import base64
import http.client
import json
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings as hypothesis_settings, strategies as st

from reconciler.client import Deadline, LabelStudioClient, describe_error_body, relative_api_path
from reconciler.contract import (
    DEFAULT_DEADLINE_SECONDS, ProjectSpec, RunEnvironment, StorageSpec, credential, parse_desired_state,
)
from reconciler.errors import ReconcileError
from reconciler.projects import (
    HEALTH_POLL_SECONDS, LEGACY_SAM_BACKEND_TITLE, ML_BACKEND_RETRY_SECONDS, PREDICTION_ON_OPEN, SAM_BACKEND_TITLE,
    ensure_prediction_on_open, ensure_sam_backend, wait_for_health,
)
from reconciler.reconcile import main, reconcile
from reconciler.storages import (
    CREDENTIAL_FIELDS, SOURCE_STORAGE_TITLE, changed_fields, credentials_fingerprint, export_prefix_for, patch_for,
    probe_s3_endpoint, project_slug, s3_probe_url, sync_source_storage,
)
from reconciler.sam_selftest import SamSelfTest
from reconciler.team import TeamSecret, absolute_invite_url, store_invite_in_secret
from tests.sam_fakes import SAM_CONFIG, SAM_URL, FakeSam, resolve_url

CATS_CONFIG = '<View><Image name="image" value="$image"/><Choices name="choice" toName="image">' \
              '<Choice value="Cat"/><Choice value="Dog"/></Choices></View>'
# A warning changes nothing: the 0-objects warning repeats on every run until the bucket or the prefix changes.
NO_OP_LINE = re.compile(r"unchanged|: healthy$|: accepted|: reachable$|: available|: present$|: present, not managed|"
                        r"SAM self-test: |"
                        r"^members: 0 created, \d+ present, 0 removed$|: warning: ")


def desired(projects=None, endpoint="http://minio:9000", sam_url="http://sam:9090", members=()) -> dict:
    return {
        "storage": {"bucket": "b", "region": "us-east-1", "endpoint": endpoint, "presign": True,
                    "presignTtlMinutes": 60},
        "exportPrefix": "label-studio/exports",
        "samUrl": sam_url,
        "projects": projects if projects is not None else [
            {"title": "Cats and dogs", "labelConfig": CATS_CONFIG, "prefix": "kagglecatsanddogs",
             "regexFilter": ".*\\.(jpe?g|png)$", "sam": False}],
        "members": list(members),
    }


# ---------------------------------------------------------------- a fake Label Studio

class FakeLabelStudio:
    """Keeps projects, storages and ML backends in dicts; `objects` maps a prefix to its image count."""

    PAGE_SIZE = 2  # small, so that runs with a few projects cross a page boundary

    def __init__(self, objects: dict[str, int] | None = None, token: str = "good-token"):
        self.objects = objects or {}
        self.token = token
        self.projects: dict[int, dict] = {}
        self.storages: dict[str, dict[int, dict]] = {"import": {}, "export": {}}
        self.backends: dict[int, dict] = {}
        self.imported: dict[int, set[str]] = {}
        self.users = [{"id": 1, "email": "admin@example.com", "active_organization": 1}]
        self.views: dict[int, dict] = {}
        self.requests: list[tuple[str, str, dict | None]] = []
        self.ml_refusals_left = 0
        # uWSGI's harakiri: a sync request is cut after this many new objects (None: never),
        # answered as `cut_as` (an exception to raise, or a proxy's status), and the storage
        # stays held until this many list requests have run its health check.
        self.cut_after: int | None = None
        self.cut_as: BaseException | int = http.client.RemoteDisconnected("Remote end closed connection without response")
        self.lists_until_released = 2
        self.held: dict[int, int] = {}
        self.sam = FakeSam()
        self._next_id = 0

    def new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def __call__(self, request: urllib.request.Request, timeout: float) -> tuple[int, bytes]:
        url = urllib.parse.urlsplit(request.full_url)
        body = json.loads(request.data) if request.data else None
        method = request.get_method()
        self.requests.append((method, url.path + (f"?{url.query}" if url.query else ""), body))
        if url.path == "/health":
            return self.answer(200, {"status": "UP"})
        if request.get_header("Authorization") != f"Token {self.token}":
            return self.answer(401, {"detail": "Invalid token."})
        query = dict(urllib.parse.parse_qsl(url.query))
        return self.route(method, url.path, query, body)

    @staticmethod
    def answer(status: int, document) -> tuple[int, bytes]:
        return status, json.dumps(document).encode()

    def route(self, method: str, path: str, query: dict, body: dict | None) -> tuple[int, bytes]:
        if path == "/api/current-user/whoami":
            return self.answer(200, self.users[0])
        if path == "/api/dm/views/" and method == "GET":
            return self.answer(200, [view for view in self.views.values() if view["project"] == int(query["project"])])
        if path == "/api/dm/views/" and method == "POST":
            view = {**body, "id": self.new_id()}
            self.views[view["id"]] = view
            return self.answer(201, view)
        if match := re.fullmatch(r"/api/dm/views/(\d+)/", path):
            if method == "DELETE":
                del self.views[int(match[1])]
                return 204, b""
            self.views[int(match[1])].update(body)
            return self.answer(200, self.views[int(match[1])])
        if path == "/api/tasks/":
            # Task IDs of project P are P*1000+1, P*1000+2, ...: contiguous, as a sync makes them.
            project_id = int(query["project"])
            ids = [project_id * 1000 + n for n in range(1, self.projects[project_id]["task_number"] + 1)]
            page, size = int(query.get("page", 1)), int(query["page_size"])
            return self.answer(200, {"tasks": [{"id": i, "data": {"image": resolve_url(i)}}
                                               for i in ids[(page - 1) * size: page * size]],
                                     "total": len(ids)})
        if match := re.fullmatch(r"/tasks/(\d+)/presign/", path):
            if self.sam.download_status != 200:
                return self.answer(self.sam.download_status, {"detail": "Not found."})
            return 200, self.sam.image(int(match[1]))
        if match := re.fullmatch(r"/api/ml/(\d+)/interactive-annotating", path):
            return self.answer(200, self.sam.interactive(body["task"], body["context"]))
        if (match := re.fullmatch(r"/api/organizations/1/memberships/(\d+)/", path)) and method == "DELETE":
            if int(match[1]) == 1:
                return self.answer(405, {"detail": "User cannot soft delete self"})
            # A soft delete: the user stays listed, as "Deleted".
            next(user for user in self.users if user["id"] == int(match[1]))["email"] = "Deleted"
            return 204, b""
        if path == "/api/projects/" and method == "GET":
            ordered = sorted(self.projects.values(), key=lambda project: project["id"])
            page = int(query.get("page", 1))
            chunk = ordered[(page - 1) * self.PAGE_SIZE: page * self.PAGE_SIZE]
            more = page * self.PAGE_SIZE < len(ordered)
            next_url = f"http://label-studio.internal:8080/api/projects/?page={page + 1}" if more else None
            return self.answer(200, {"count": len(ordered), "next": next_url, "previous": None, "results": chunk})
        if path == "/api/projects/" and method == "POST":
            if "toName" in body["label_config"] and 'toName="image"' not in body["label_config"]:
                return self.answer(400, {"detail": "Validation error", "validation_errors": {
                    "label_config": ['toName="nowhere" not found in names: [\'choice\', \'image\']']}})
            # Like 1.23.2's serializer: the title is trimmed, then held to 3-50 characters.
            title = body["title"].strip()
            if not 3 <= len(title) <= 50:
                return self.answer(400, {"detail": "Validation error", "validation_errors": {
                    "title": ["Ensure this field has at least 3 characters."]}})
            project = {"id": self.new_id(), "title": title, "label_config": body["label_config"], "task_number": 0,
                       "show_collab_predictions": True, "model_version": ""}
            self.projects[project["id"]] = project
            return self.answer(201, project)
        if match := re.fullmatch(r"/api/projects/(\d+)/", path):
            project = self.projects[int(match[1])]
            project.update(body or {})
            return self.answer(200, project)
        for kind, collection in (("import", "/api/storages/s3"), ("export", "/api/storages/export/s3")):
            if path.rstrip("/") == collection:
                if method == "GET":
                    project_id = int(query["project"])
                    listed = [storage for storage in self.storages[kind].values() if storage["project"] == project_id]
                    for storage in listed:
                        self.health_check(storage)
                    return self.answer(200, [self.public(storage) for storage in listed])
                storage = {**body, "id": self.new_id(), "status": "initialized", "last_sync_count": None, "meta": {}}
                self.storages[kind][storage["id"]] = storage
                return self.answer(201, self.public(storage))
            if match := re.fullmatch(re.escape(collection) + r"/(\d+)(/sync)?", path):
                storage = self.storages[kind][int(match[1])]
                if match[2] and storage["status"] != "in_progress":
                    if not self.sync(storage):
                        if isinstance(self.cut_as, BaseException):
                            raise self.cut_as
                        return self.cut_as, b"<html><h1>502 Bad Gateway</h1></html>"
                elif method == "PATCH":
                    storage.update(body)
                return self.answer(200, self.public(storage))
        if path == "/api/ml/" and method == "GET":
            return self.answer(200, [backend for backend in self.backends.values()
                                     if backend["project"] == int(query["project"])])
        if path == "/api/ml/" and method == "POST":
            if self.ml_refusals_left:
                self.ml_refusals_left -= 1
                return self.answer(400, {"detail": "Validation error", "validation_errors": {
                    "non_field_errors": ["Can't connect to ML backend, health check failed."]}})
            backend = {**body, "id": self.new_id(), "state": "CO", "readable_state": "Connected"}
            self.backends[backend["id"]] = backend
            # As Label Studio does: a project without a model version takes the first backend's title.
            project = self.projects.get(body["project"])
            if project is not None and not project.get("model_version"):
                project["model_version"] = body.get("title", "")
            return self.answer(201, backend)
        if (match := re.fullmatch(r"/api/ml/(\d+)", path)) and method == "DELETE":
            del self.backends[int(match[1])]
            return 204, b""
        if match := re.fullmatch(r"/api/ml/(\d+)", path):
            backend = self.backends[int(match[1])]
            backend.update(body or {}, state="CO")
            return self.answer(200, backend)
        if path == "/api/invite":
            return self.answer(200, {"invite_url": "/user/signup/?token=org-secret-token", "token": "org-secret-token"})
        if path == "/api/users/":
            return self.answer(200, self.users)
        return self.answer(404, {"detail": "Not found."})

    @staticmethod
    def public(storage: dict) -> dict:
        return {key: value for key, value in storage.items() if key not in CREDENTIAL_FIELDS}

    def sync(self, storage: dict) -> bool:
        """Import what is new; False when the request is cut short first (storage left held)."""
        keys = {f"{storage['prefix']}/{index}.jpg" for index in range(self.objects.get(storage["prefix"], 0))}
        already = self.imported.setdefault(storage["id"], set())
        new = sorted(keys - already)
        cut = self.cut_after is not None and len(new) > self.cut_after
        taken = new[:self.cut_after] if cut else new
        already |= set(taken)
        self.projects[storage["project"]]["task_number"] += len(taken)
        if cut:
            storage.update(status="in_progress", last_sync_count=None)
            self.held[storage["id"]] = self.lists_until_released
            return False
        storage.update(status="completed", last_sync_count=len(taken),
                       meta={"tasks_existed": len(keys) - len(taken), "duration": 0.1})
        return True

    def health_check(self, storage: dict) -> None:
        """The list endpoint's check: a held storage whose pings stopped is marked failed."""
        if storage["status"] == "in_progress" and storage["id"] in self.held:
            self.held[storage["id"]] -= 1
            if self.held[storage["id"]] <= 0:
                del self.held[storage["id"]]
                storage.update(status="failed", traceback="It appears the job was failed because the last ping "
                                                          "time is too old, and no traceback information is available.")

    def snapshot(self) -> str:
        """The configuration, without the sync counters every sync rewrites."""
        storages = {kind: {storage_id: {key: value for key, value in storage.items()
                                        if key not in ("last_sync_count", "meta", "status", "traceback")}
                           for storage_id, storage in by_id.items()}
                    for kind, by_id in self.storages.items()}
        return json.dumps([self.projects, storages, self.backends, self.views, self.users], sort_keys=True)


def reachable_s3(request: urllib.request.Request, timeout: float) -> tuple[int, bytes]:
    return 403, b"<Error><Code>AccessDenied</Code></Error>"


def fake_sign_up(fake: FakeLabelStudio):
    """The invite sign-up as Label Studio answers it: a new account, or the form's error."""
    def sign_up(email: str, password: str):
        if any(user["email"].lower() == email.lower() for user in fake.users) or email in fake.removed_emails:
            return "User with this email already exists"
        fake.users.append({"id": 100 + fake.new_id(), "email": email, "active_organization": 1})
        fake.passwords[email.lower()] = password
        return None
    fake.removed_emails, fake.passwords = set(), {}
    return sign_up


def run(fake: FakeLabelStudio, document: dict, settings: RunEnvironment | None = None, token: str = "good-token",
        kubernetes=None, service_account: Path = Path("/nonexistent")):
    lines: list[str] = []
    client = LabelStudioClient("http://label-studio:80", token, opener=fake)
    if kubernetes is not None:
        settings = replace(settings or RunEnvironment(), team_secret_name="labeling-team")
    self_test = SamSelfTest(client, document.get("samUrl") or SAM_URL, image_opener=fake,
                            backend_opener=fake.sam.backend, clock=fake.sam.clock)
    reconcile(parse_desired_state(document), client, settings or RunEnvironment(), report=lines.append,
              s3_opener=reachable_s3, kubernetes_opener=kubernetes, service_account_dir=service_account,
              sign_up=getattr(fake, "sign_up", None), sam_self_test=self_test)
    return lines


# ---------------------------------------------------------------- pure functions

@pytest.mark.parametrize("title, slug", [("Cats and dogs", "cats-and-dogs"), ("  SAM / v2 ", "sam-v2"),
                                         ("猫", "project"), ("A--B", "a-b")])
def test_project_slug(title, slug):
    assert project_slug(title) == slug


@given(st.text(max_size=40))
def test_project_slug_is_always_a_safe_path_segment(title):
    slug = project_slug(title)
    assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", slug)


def test_export_prefix_is_per_project():
    assert export_prefix_for("/label-studio/exports/", "Cats and dogs") == "label-studio/exports/cats-and-dogs"
    assert export_prefix_for("", "Cats") == "cats"


def test_credentials_fingerprint_changes_with_either_key_and_hides_them():
    base = credentials_fingerprint("AKIAEXAMPLE", "secret-one")
    assert base == credentials_fingerprint("AKIAEXAMPLE", "secret-one")
    assert base != credentials_fingerprint("AKIAEXAMPLE", "secret-two")
    assert base != credentials_fingerprint("AKIAOTHER", "secret-one")
    assert "secret" not in base and "AKIA" not in base
    assert credentials_fingerprint(None, None) == "credentials: workload identity"


def test_s3_probe_url_uses_the_endpoint_or_aws():
    storage = StorageSpec("my-bucket", "eu-west-1", "http://minio:9000/", True, 60)
    assert s3_probe_url(storage) == "http://minio:9000/my-bucket"
    aws = StorageSpec("my-bucket", "eu-west-1", None, True, 60)
    assert s3_probe_url(aws) == "https://my-bucket.s3.eu-west-1.amazonaws.com/"


def test_changed_fields_treats_null_as_empty_and_skips_write_only_keys():
    wanted = {"prefix": "a", "s3_endpoint": "", "aws_secret_access_key": "x", "presign_ttl": 60}
    assert changed_fields(wanted, {"prefix": "a", "s3_endpoint": None, "presign_ttl": 60}) == []
    assert changed_fields(wanted, {"prefix": "b", "s3_endpoint": None, "presign_ttl": 15}) == ["prefix", "presign_ttl"]


def test_patch_sends_keys_only_when_their_fingerprint_changed():
    wanted = {"prefix": "a", "description": "credentials: sha256:1", "aws_access_key_id": "k",
              "aws_secret_access_key": "s"}
    assert patch_for(wanted, ["prefix"]) == {"prefix": "a"}
    assert patch_for(wanted, ["description"]) == {"description": "credentials: sha256:1",
                                                      "aws_access_key_id": "k", "aws_secret_access_key": "s"}


@pytest.mark.parametrize("body, text", [
    (b'{"detail":"Validation error","validation_errors":{"label_config":["toName=\\"x\\" not found"]}}',
     'label_config: toName="x" not found'),
    (b'{"detail":"Invalid token."}', "Invalid token."),
    (b"<h1>Server Error (500)</h1>\n", "<h1>Server Error (500)</h1>"),
    (b"", "(empty answer)"),
])
def test_describe_error_body(body, text):
    assert describe_error_body(body) == text


def test_pagination_links_keep_path_and_query_only():
    assert relative_api_path("http://ls.internal:8080/api/projects/?page=2&page_size=100") == \
        "/api/projects/?page=2&page_size=100"


def test_invite_url_is_made_absolute():
    assert absolute_invite_url("https://label.example.com/", "/user/signup/?token=t") == \
        "https://label.example.com/user/signup/?token=t"


# ---------------------------------------------------------------- desired state and settings

def test_parse_desired_state_fills_defaults():
    state = parse_desired_state({"storage": {"bucket": "b", "region": "r"}, "projects": [
        {"title": "T", "labelConfig": "<View/>", "prefix": "/images/"}]})
    assert state.storage == StorageSpec("b", "r", None, True, 60)
    assert state.projects[0].prefix == "images" and state.projects[0].sam is False
    assert state.export_prefix == "label-studio/exports" and state.members == ()


@pytest.mark.parametrize("document, message", [
    ({"projects": []}, "storage is missing"),
    ({"storage": {"region": "r"}}, "storage.bucket is missing"),
    (desired(sam_url=None, projects=[{"title": "S", "labelConfig": "<View/>", "sam": True}]),
     "wants SAM but samUrl is not set"),
    (desired(projects=[{"title": "T", "labelConfig": "<View/>"}] * 2), "appears twice"),
    (desired(projects=[{"title": "T"}]), "projects[0].labelConfig is missing"),
])
def test_parse_desired_state_rejects_incomplete_documents(document, message):
    with pytest.raises(ReconcileError, match=re.escape(message)):
        parse_desired_state(document)


def test_settings_from_environment():
    settings = RunEnvironment.from_environment({"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s",
                                              "RECONCILER_TIMEOUT_SECONDS": "90", "TEAM_SECRET_NAME": "team"})
    assert (settings.aws_access_key_id, settings.deadline_seconds, settings.team_secret_name) == ("k", 90.0, "team")
    assert RunEnvironment.from_environment({}).deadline_seconds == DEFAULT_DEADLINE_SECONDS
    with pytest.raises(ReconcileError, match="both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"):
        RunEnvironment.from_environment({"AWS_ACCESS_KEY_ID": "k"})
    with pytest.raises(ReconcileError, match="not a number"):
        RunEnvironment.from_environment({"RECONCILER_TIMEOUT_SECONDS": "soon"})


# ---------------------------------------------------------------- steps with fakes

class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_wait_for_health_polls_until_up():
    answers = [OSError("connection refused"), (502, b"bad gateway"), (200, b'{"status":"UP"}')]

    def opener(request, timeout):
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    clock, lines = FakeClock(), []
    wait_for_health(LabelStudioClient("http://ls", "t", opener), Deadline(60, clock), lines.append,
                        sleep=clock.sleep)
    assert lines == ["label studio http://ls: waiting for /health (connection refused)", "label studio http://ls: healthy"]
    assert clock.now == 2 * HEALTH_POLL_SECONDS


def test_wait_for_health_gives_up_at_the_deadline():
    def refused(request, timeout):
        raise urllib.error.URLError("Connection refused")

    clock = FakeClock()
    with pytest.raises(ReconcileError, match=r"http://ls was not healthy within 10 s \(Connection refused\)"):
        wait_for_health(LabelStudioClient("http://ls", "t", refused), Deadline(10, clock),
                            lambda line: None, sleep=clock.sleep)


def test_bad_token_is_named():
    with pytest.raises(ReconcileError, match="Label Studio rejected the API token"):
        run(FakeLabelStudio(), desired(), token="wrong")


def test_unreachable_s3_endpoint_is_named():
    def unreachable(request, timeout):
        raise urllib.error.URLError(ConnectionRefusedError(111, "Connection refused"))

    with pytest.raises(ReconcileError, match=r"S3 endpoint http://minio:9000 is unreachable \(.*Connection refused"):
        probe_s3_endpoint(StorageSpec("b", "r", "http://minio:9000", True, 60), unreachable)


def test_probe_sends_an_unsigned_head_to_the_bucket():
    seen = []
    probe_s3_endpoint(StorageSpec("b", "r", "http://minio:9000", True, 60),
                          lambda request, timeout: seen.append(request) or (403, b""))
    assert [(request.get_method(), request.full_url, request.get_header("Authorization")) for request in seen] == \
        [("HEAD", "http://minio:9000/b", None)]


def test_invalid_label_config_carries_label_studios_text():
    document = desired(projects=[{"title": "Broken", "labelConfig": '<View><Choices toName="nowhere"/></View>'}])
    with pytest.raises(ReconcileError, match=r'project "Broken": Label Studio refused the label config: '
                                                 r'label_config: toName="nowhere" not found'):
        run(FakeLabelStudio(), document)


# ---------------------------------------------------------------- whole runs

def test_first_run_creates_everything_and_second_run_only_reports(service_account):
    fake = FakeLabelStudio({"kagglecatsanddogs": 25})
    fake.sign_up = fake_sign_up(fake)
    kubernetes = FakeKubernetes()
    document = desired(members=["admin@example.com", "new@example.com"])
    settings = RunEnvironment(member_passwords={"new@example.com": "generated-password"})
    first = run(fake, document, settings, kubernetes=kubernetes, service_account=service_account)
    assert 'project "Cats and dogs": created (id 1)' in first
    assert 'project "Cats and dogs": source storage s3://b/kagglecatsanddogs: created (id 2)' in first
    assert 'project "Cats and dogs": export storage s3://b/label-studio/exports/cats-and-dogs: created (id 3)' in first
    assert any(line.startswith('project "Cats and dogs": source storage s3://b/kagglecatsanddogs: synced 25 tasks in ')
               for line in first)
    assert 'member "admin@example.com": present, not managed' in " ".join(first)
    assert 'member "new@example.com": created (its password is in the member Secret)' in first
    assert "members: 1 created, 1 present, 0 removed" in first
    assert not any("org-secret-token" in line or "generated-password" in line for line in first)

    before, requests_before = fake.snapshot(), len(fake.requests)
    second = run(fake, document, settings, kubernetes=kubernetes, service_account=service_account)
    assert all(NO_OP_LINE.search(line) for line in second), second
    assert fake.snapshot() == before
    writes = [(method, path) for method, path, _ in fake.requests[requests_before:]
              if method == "PATCH" or (method == "POST" and not path.endswith("/sync"))]
    assert writes == []


def test_source_storage_request_carries_every_desired_field():
    fake = FakeLabelStudio()
    run(fake, desired(), RunEnvironment(aws_access_key_id="AKIAEXAMPLE", aws_secret_access_key="s3cr3t"))
    [created] = [body for method, path, body in fake.requests if method == "POST" and path == "/api/storages/s3/"]
    assert created == {
        "title": SOURCE_STORAGE_TITLE, "description": credentials_fingerprint("AKIAEXAMPLE", "s3cr3t"),
        "bucket": "b", "prefix": "kagglecatsanddogs", "regex_filter": ".*\\.(jpe?g|png)$", "use_blob_urls": True,
        "presign": True, "presign_ttl": 60, "recursive_scan": True, "region_name": "us-east-1",
        "s3_endpoint": "http://minio:9000", "aws_access_key_id": "AKIAEXAMPLE", "aws_secret_access_key": "s3cr3t",
        "project": 1}


def test_changes_are_patched_in_place():
    fake = FakeLabelStudio()
    run(fake, desired(), RunEnvironment(aws_access_key_id="k", aws_secret_access_key="old"))
    changed = desired()
    changed["projects"][0]["labelConfig"] = CATS_CONFIG.replace("Dog", "Fox")
    changed["storage"]["presignTtlMinutes"] = 15
    lines = run(fake, changed, RunEnvironment(aws_access_key_id="k", aws_secret_access_key="new"))
    assert 'project "Cats and dogs": label config updated (id 1)' in lines
    assert 'project "Cats and dogs": source storage s3://b/kagglecatsanddogs: updated credentials, presign_ttl (id 2)' in lines
    assert 'project "Cats and dogs": export storage s3://b/label-studio/exports/cats-and-dogs: updated credentials (id 3)' in lines
    patches = [body for method, path, body in fake.requests if method == "PATCH" and path == "/api/storages/s3/2"]
    assert patches[0]["aws_secret_access_key"] == "new" and patches[0]["presign_ttl"] == 15
    assert len(fake.projects) == 1 and len(fake.storages["import"]) == 1


@hypothesis_settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.text("abc XYZ", min_size=3, max_size=8).filter(lambda t: len(t.strip()) >= 3),
                          st.integers(0, 5), st.booleans()),
                max_size=5, unique_by=lambda item: item[0].strip()))
def test_any_desired_state_converges_in_one_run(specs):
    """Titles with surrounding spaces included: Label Studio stores them trimmed, and no run adds a second."""
    projects = [{"title": title, "labelConfig": SAM_CONFIG if sam else CATS_CONFIG, "prefix": f"p{index}", "sam": sam}
                for index, (title, _, sam) in enumerate(specs)]
    fake = FakeLabelStudio({f"p{index}": count for index, (_, count, _) in enumerate(specs)})
    run(fake, desired(projects=projects))
    before = fake.snapshot()
    second = run(fake, desired(projects=projects))
    assert fake.snapshot() == before
    assert all(NO_OP_LINE.search(line) for line in second), second
    assert sorted(project["title"] for project in fake.projects.values()) == sorted(t.strip() for t, _, _ in specs)
    assert len(fake.backends) == sum(sam for _, _, sam in specs)


def test_sam_backend_is_retried_until_it_answers():
    fake = FakeLabelStudio()
    fake.ml_refusals_left = 2
    client = LabelStudioClient("http://ls", "good-token", fake)
    spec = ProjectSpec("SAM", CATS_CONFIG, "p", "", True)
    clock, lines = FakeClock(), []
    backend = ensure_sam_backend(client, {"id": 7}, "http://sam:9090", spec, Deadline(60, clock),
                                     lines.append, sleep=clock.sleep)
    assert backend["is_interactive"] is True and backend["title"] == SAM_BACKEND_TITLE
    assert lines == [
        "project \"SAM\": ml backend http://sam:9090: waiting for the backend to answer healthy "
        "(non_field_errors: Can't connect to ML backend, health check failed.)",
        'project "SAM": ml backend http://sam:9090: created (id 1, interactive)']
    assert clock.now == 2 * ML_BACKEND_RETRY_SECONDS


def test_sam_backend_that_never_answers_fails_at_the_deadline():
    fake = FakeLabelStudio()
    fake.ml_refusals_left = 10**6
    client = LabelStudioClient("http://ls", "good-token", fake)
    clock = FakeClock()
    with pytest.raises(ReconcileError, match="not healthy before the deadline: non_field_errors: Can't connect"):
        ensure_sam_backend(client, {"id": 7}, "http://sam:9090", ProjectSpec("SAM", "", "", "", True),
                               Deadline(30, clock), lambda line: None, sleep=clock.sleep)


def test_a_sam_project_asks_the_backend_as_labelers_open_tasks_again_after_someone_switched_it_off():
    fake = FakeLabelStudio()
    client = LabelStudioClient("http://ls", "good-token", fake)
    project = client.post("/api/projects/", {"title": "SAM", "label_config": CATS_CONFIG})
    spec = ProjectSpec("SAM", CATS_CONFIG, "p", "", True)
    ensure_sam_backend(client, project, "http://sam:9090", spec, Deadline(60, FakeClock()), lambda line: None)
    lines = []
    ensure_prediction_on_open(client, project, spec, lines.append)
    assert lines == []  # adding the backend named it the project's model version
    fake.projects[project["id"]].update(show_collab_predictions=False, model_version="someone's model")
    ensure_prediction_on_open(client, project, spec, lines.append)
    assert lines == ['project "SAM": SAM warm-up on task open: set model_version, show_collab_predictions']
    assert {name: fake.projects[project["id"]][name] for name in PREDICTION_ON_OPEN} == PREDICTION_ON_OPEN


# ---------------------------------------------------------------- team Secret

@pytest.fixture
def service_account(tmp_path) -> Path:
    (tmp_path / "token").write_text("service-account-jwt\n")
    (tmp_path / "namespace").write_text("labeling\n")
    return tmp_path


class FakeKubernetes:
    def __init__(self, data: dict | None = None):
        self.data = dict(data or {})
        self.requests: list[urllib.request.Request] = []

    def __call__(self, request: urllib.request.Request, timeout: float) -> tuple[int, bytes]:
        self.requests.append(request)
        if request.get_method() == "PATCH":
            self.data.update(json.loads(request.data)["data"])
        return 200, json.dumps({"kind": "Secret", "data": self.data}).encode()


def test_invite_link_is_written_into_the_team_secret(service_account):
    kubernetes, lines = FakeKubernetes({"other": "eA=="}), []
    invite = "https://label.example.com/user/signup/?token=org-secret"
    secret = TeamSecret("labeling-team", kubernetes, service_account, api_server="https://10.0.0.1:443")
    store_invite_in_secret(invite, secret, lines.append)
    get, patch = kubernetes.requests
    assert get.get_method() == "GET"
    assert patch.full_url == "https://10.0.0.1:443/api/v1/namespaces/labeling/secrets/labeling-team"
    assert patch.get_header("Authorization") == "Bearer service-account-jwt"
    assert patch.get_header("Content-type") == "application/merge-patch+json"
    assert base64.b64decode(kubernetes.data["invite-url"]).decode() == invite and kubernetes.data["other"] == "eA=="
    assert lines == ['team secret "labeling/labeling-team": invite link stored under key invite-url']
    assert "org-secret" not in "".join(lines)

    store_invite_in_secret(invite, secret, lines.append)
    assert lines[-1] == 'team secret "labeling/labeling-team": unchanged'
    assert [request.get_method() for request in kubernetes.requests] == ["GET", "PATCH", "GET"]


def test_team_secret_refusal_is_reported(service_account):
    def forbidden(request, timeout):
        return 403, b'{"kind":"Status","message":"secrets \\"labeling-team\\" is forbidden"}'

    with pytest.raises(ReconcileError, match=r'team secret "labeling/labeling-team": GET answered 403: '
                                                 r'secrets "labeling-team" is forbidden'):
        store_invite_in_secret("u", TeamSecret("labeling-team", forbidden, service_account, "https://k"),
                               lambda line: None)


def test_team_secret_is_skipped_outside_a_pod(tmp_path):
    lines = []
    assert TeamSecret.in_pod("labeling-team", lines.append, service_account_dir=tmp_path / "none") is None
    assert lines == [f'team secret "labeling-team": skipped (no service-account token at {tmp_path / "none"})']


# ---------------------------------------------------------------- main

def test_main_without_environment_fails_in_one_line(monkeypatch, capsys, tmp_path):
    monkeypatch.delenv("LABEL_STUDIO_URL", raising=False)
    assert main([str(tmp_path / "desired.json")]) == 1
    assert capsys.readouterr().err == ("reconcile failed: LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY "
                                       "(or LABEL_STUDIO_API_KEY_FILE) must be set\n")


def test_credentials_are_read_from_mounted_secret_files(tmp_path):
    (tmp_path / "api-token").write_text("token-from-file\n")
    (tmp_path / "AWS_ACCESS_KEY_ID").write_text("AKIAFROMFILE")
    (tmp_path / "AWS_SECRET_ACCESS_KEY").write_text("secret-from-file")
    environ = {"LABEL_STUDIO_API_KEY_FILE": str(tmp_path / "api-token"),
               "AWS_ACCESS_KEY_ID_FILE": str(tmp_path / "AWS_ACCESS_KEY_ID"),
               "AWS_SECRET_ACCESS_KEY_FILE": str(tmp_path / "AWS_SECRET_ACCESS_KEY")}
    assert credential(environ, "LABEL_STUDIO_API_KEY") == "token-from-file"
    settings = RunEnvironment.from_environment(environ)
    assert (settings.aws_access_key_id, settings.aws_secret_access_key) == ("AKIAFROMFILE", "secret-from-file")


def test_an_unreadable_credential_file_is_named(tmp_path):
    with pytest.raises(ReconcileError, match="cannot read AWS_ACCESS_KEY_ID from .*missing"):
        credential({"AWS_ACCESS_KEY_ID_FILE": str(tmp_path / "missing")}, "AWS_ACCESS_KEY_ID")


def test_main_with_unreadable_state_fails_in_one_line(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("LABEL_STUDIO_URL", "http://ls")
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "t")
    state_file = tmp_path / "desired.json"
    state_file.write_text("{not json")
    assert main([str(state_file)]) == 1
    error = capsys.readouterr().err
    assert error.startswith(f"reconcile failed: cannot read desired state {state_file}: ") and error.count("\n") == 1


def test_main_needs_exactly_one_argument(capsys):
    assert main([]) == 2
    assert "usage" in capsys.readouterr().err


def test_a_refused_title_is_named_as_the_title():
    project = {"title": "ab", "labelConfig": CATS_CONFIG, "prefix": "p", "regexFilter": "", "sam": False}
    with pytest.raises(ReconcileError, match=r'project "ab": Label Studio refused the title: title: Ensure'):
        run(FakeLabelStudio(), desired(projects=[project]))


def sam_project(wants_sam: bool) -> dict:
    return {"title": "Fruit", "labelConfig": SAM_CONFIG, "prefix": "fruit", "regexFilter": "", "sam": wants_sam}


def test_a_project_that_stops_wanting_sam_loses_only_the_backend_the_reconciler_added():
    fake = FakeLabelStudio()
    run(fake, desired(projects=[sam_project(True)]))
    [(project_id, ours)] = [(b["project"], b["id"]) for b in fake.backends.values()]
    for title, url in (("My SAM", "http://sam-backend.labeling.svc.cluster.local:9090"),
                       (LEGACY_SAM_BACKEND_TITLE, "http://sam.elsewhere.example:9090")):
        by_hand = {"id": fake.new_id(), "project": project_id, "title": title, "url": url, "state": "CO"}
        fake.backends[by_hand["id"]] = by_hand
    lines = run(fake, desired(projects=[sam_project(False)], sam_url=None))
    assert ours not in fake.backends and len(fake.backends) == 2
    assert f'project "Fruit": ml backend http://sam:9090: removed (id {ours}, SAM is not wanted any more)' in lines
    again = run(fake, desired(projects=[sam_project(False)], sam_url=None))
    assert all(NO_OP_LINE.search(line) for line in again) and len(fake.backends) == 2


def test_a_backend_with_the_earlier_title_on_the_platforms_service_is_adopted_then_removed():
    fake = FakeLabelStudio()
    url = "http://sam-backend.labeling.svc.cluster.local:9090"
    run(fake, desired(projects=[sam_project(True)], sam_url=url))
    [backend] = fake.backends.values()
    backend["title"] = LEGACY_SAM_BACKEND_TITLE
    run(fake, desired(projects=[sam_project(True)], sam_url=url))
    assert [b["title"] for b in fake.backends.values()] == [SAM_BACKEND_TITLE]
    backend["title"] = LEGACY_SAM_BACKEND_TITLE
    run(fake, desired(projects=[sam_project(False)], sam_url=None))
    assert fake.backends == {}


# ---------------------------------------------------------------- syncs through cut-short requests

def _synced(fake: FakeLabelStudio, objects: int, deadline_seconds: float = 600):
    """Sync one project's source storage through the fake, on a fake clock; (lines, created)."""
    fake.objects["cats"] = objects
    client = LabelStudioClient("http://ls", "good-token", fake)
    project = {"id": fake.new_id(), "title": "Cats", "label_config": CATS_CONFIG, "task_number": 0}
    fake.projects[project["id"]] = project
    storage = {"id": fake.new_id(), "project": project["id"], "bucket": "b", "prefix": "cats", "status": "initialized",
               "last_sync_count": None, "meta": {}}
    fake.storages["import"][storage["id"]] = storage
    clock, lines = FakeClock(), []
    spec = ProjectSpec("Cats", CATS_CONFIG, "cats", "", False)
    created = sync_source_storage(client, storage, spec, Deadline(deadline_seconds, clock), lines.append,
                                  sleep=clock.sleep)
    return lines, created, project


@pytest.mark.parametrize("cut_as", [
    http.client.RemoteDisconnected("Remote end closed connection without response"),
    ConnectionResetError(104, "Connection reset by peer"),
    502, 504,
], ids=["closed", "reset", "502", "504"])
def test_a_sync_cut_short_is_polled_released_and_sent_again_until_complete(cut_as):
    fake = FakeLabelStudio()
    fake.cut_after, fake.cut_as = 10, cut_as
    lines, created, project = _synced(fake, 25)
    assert created == 25 and project["task_number"] == 25
    assert len(fake.imported[max(fake.storages["import"])]) == 25  # each object once
    cut = [line for line in lines if "cut short" in line and "waiting for Label Studio" in line]
    assert len(cut) == 2, lines
    assert lines[-1].startswith('project "Cats": source storage s3://b/cats: synced 25 tasks in ')
    assert lines[-1].endswith("(3 requests, 2 cut short)")
    # released through the list endpoint, whose health check lets a dead sync go
    lists = [path for method, path, _ in fake.requests if method == "GET" and path.startswith("/api/storages/s3/?")]
    assert len(lists) == 2 * fake.lists_until_released


def test_a_storage_held_by_an_earlier_dead_sync_is_waited_for():
    fake = FakeLabelStudio()
    fake.cut_after = 5
    _synced(fake, 8, deadline_seconds=600)  # leaves it complete; hold it now as a dead sync would
    storage = fake.storages["import"][max(fake.storages["import"])]
    storage["status"], fake.cut_after = "in_progress", None
    fake.held[storage["id"]] = 3
    fake.objects["cats"] = 12
    client = LabelStudioClient("http://ls", "good-token", fake)
    clock, lines = FakeClock(), []
    created = sync_source_storage(client, storage, ProjectSpec("Cats", CATS_CONFIG, "cats", "", False),
                                  Deadline(600, clock), lines.append, sleep=clock.sleep)
    assert created == 4
    assert any("busy with an earlier sync" in line for line in lines)


def test_a_sync_that_never_gets_anywhere_stops_with_the_reason():
    fake = FakeLabelStudio()
    fake.cut_after = 0
    with pytest.raises(ReconcileError, match=r"sync makes no progress: 3 requests in a row were cut short .* harakiri"):
        _synced(fake, 5)


def test_a_sync_that_fails_for_real_is_not_retried():
    fake = FakeLabelStudio()

    def failing(storage: dict) -> bool:
        storage.update(status="failed", traceback="Traceback (most recent call last):\n"
                                                  "botocore.exceptions.ClientError: An error occurred (AccessDenied)")
        return True

    fake.sync = failing
    with pytest.raises(ReconcileError, match=r"sync failed: botocore.exceptions.ClientError: .*AccessDenied"):
        _synced(fake, 5)


def test_a_storage_never_released_ends_at_the_deadline():
    fake = FakeLabelStudio()
    fake.cut_after, fake.lists_until_released = 2, 10 ** 6
    with pytest.raises(ReconcileError, match="did not finish before the deadline .*release the storage"):
        _synced(fake, 5, deadline_seconds=30)


def test_other_errors_of_the_sync_request_end_the_run():
    fake = FakeLabelStudio()
    fake.cut_after, fake.cut_as = 1, 500
    with pytest.raises(ReconcileError, match="sync request failed: POST /api/storages/s3/.*/sync answered 500"):
        _synced(fake, 5)


def test_an_export_storage_whose_create_request_is_cut_short_is_found_not_made_twice():
    fake = FakeLabelStudio({"kagglecatsanddogs": 3})
    original = fake.route

    def cut_first_export_create(method, path, query, body):
        answer = original(method, path, query, body)
        if method == "POST" and path == "/api/storages/export/s3" and not fake.export_create_cut:
            fake.export_create_cut = True  # created, then the request is cut while it exports
            return 504, b"<html>Gateway Time-out</html>"
        return answer

    fake.export_create_cut = False
    fake.route = cut_first_export_create
    lines = run(fake, desired())
    assert len(fake.storages["export"]) == 1
    assert any("export storage" in line and "create request cut short (answered 504)" in line for line in lines)
