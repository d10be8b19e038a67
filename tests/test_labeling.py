"""The reconciler Job as the stacks declare it: manifest, identity, wiring, re-run rules."""

from __future__ import annotations

import json
import re
import tomllib
from importlib import metadata

import kubernetes_validate
import pytest

from components import PROJECT_ROOT, labeling
from components.settings import parse_settings
from components.settings.label_studio import DEFAULT_LABEL_STUDIO_IMAGE_TAG
from reconciler import contract
from reconciler.contract import parse_desired_state
from tests.conftest import stacks_running_sam, evaluate_cached, stack_settings
from tools.object_validation import KUBERNETES_VERSION

JOB = "kubernetes:batch/v1:Job"
# The reconciler's Job (the pre-upgrade backup is a Job too).
RECONCILER_JOB = "labeling-configuration-job"


# The CronJobs' objects carry these in their names; the Job's objects are the others.
CRONJOB_OBJECT_NAMES = ("-export-resync", "-scheduled-reconcile")


def reconciler_objects(evaluation):
    """The Job's Kubernetes objects by kind, told from the CronJobs' by name, not by declaration
    order: resources register asynchronously, in no fixed order."""
    component = evaluation.one("labeling:app:LabelingConfiguration")
    objects: dict = {}
    for resource in evaluation.children_of(component):
        if not any(part in resource.name for part in CRONJOB_OBJECT_NAMES):
            objects.setdefault(resource.type.rsplit(":", 1)[-1], resource)
    return objects


def reconciler_children(evaluation):
    return evaluation.children_of(evaluation.one("labeling:app:LabelingConfiguration"))


def job_container(evaluation):
    return evaluation.one(JOB, RECONCILER_JOB).inputs["spec"]["template"]["spec"]["containers"][0]


def test_every_reconciler_object_is_a_valid_kubernetes_object(stack_eval):
    for resource in reconciler_children(stack_eval):
        if not resource.type.startswith("kubernetes:"):
            continue
        kubernetes_validate.validate(resource.kubernetes_manifest, KUBERNETES_VERSION, strict=True)


def test_job_runs_once_per_state_without_ttl(stack_eval):
    spec = stack_eval.one(JOB, RECONCILER_JOB).inputs["spec"]
    assert "ttlSecondsAfterFinished" not in spec
    assert spec["backoffLimit"] == 3
    assert spec["activeDeadlineSeconds"] == labeling.DEADLINE_SECONDS
    assert spec["template"]["spec"]["restartPolicy"] == "Never"


def test_credentials_reach_the_job_only_as_files_from_their_secrets(stack_eval):
    pod = stack_eval.one(JOB, RECONCILER_JOB).inputs["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert all("valueFrom" not in e for e in container["env"])
    assert not any(name in env for name in ("LABEL_STUDIO_API_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"))
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    generated = stack_eval.one("kubernetes:core/v1:Secret", "labeling-label-studio-platform-secrets")

    token_file = env["LABEL_STUDIO_API_KEY_FILE"]["value"]
    token_mount = mounts[token_file.rsplit("/", 1)[0]]
    assert token_mount["readOnly"] is True
    token_volume = volumes[token_mount["name"]]["secret"]
    assert token_volume["secretName"] == generated.inputs["metadata"]["name"]
    [item] = token_volume["items"]
    assert item["key"] in generated.inputs["stringData"] and item["path"] == token_file.rsplit("/", 1)[1]

    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        directory, file_name = env[f"{key}_FILE"]["value"].rsplit("/", 1)
        assert file_name == key and mounts[directory]["readOnly"] is True
        assert volumes[mounts[directory]["name"]]["secret"]["secretName"] == "object-storage-credentials"
    assert re.fullmatch(r"http://[a-z0-9-]+-ls-app\.[a-z0-9-]+\.svc\.cluster\.local:80", env["LABEL_STUDIO_URL"]["value"])


def test_job_waits_for_label_studio_but_not_for_sam_to_load_its_model(stack_eval):
    """Through the data it uses: Label Studio's deployed URL; the SAM Service's URL in its state,
    never the Deployment's readiness, so syncing starts while the model loads (the reconciler
    waits for the backend itself, after the syncs)."""
    job = stack_eval.one(JOB, RECONCILER_JOB)
    release = stack_eval.one("kubernetes:helm.sh/v3:Release")
    config_map = reconciler_objects(stack_eval)["ConfigMap"]
    assert release.urn in job.dependencies and release.urn not in config_map.dependencies
    if json.loads(config_map.inputs["data"]["desired.json"])["samUrl"]:  # a project asks for SAM
        sam = stack_eval.one("kubernetes:apps/v1:Deployment", "labeling-sam-deployment")
        service = stack_eval.one("kubernetes:core/v1:Service", "labeling-sam-service")
        assert sam.urn not in job.dependencies and sam.urn not in config_map.dependencies
        assert service.urn in config_map.dependencies


def test_config_map_carries_the_reconciler_package_and_the_desired_state(stack_eval):
    data = reconciler_objects(stack_eval)["ConfigMap"].inputs["data"]
    package = {path.name: path.read_text() for path in (PROJECT_ROOT / "reconciler").glob("*.py")}
    assert {name: text for name, text in data.items() if name != "desired.json"} == package
    mounted = stack_eval.one(JOB, RECONCILER_JOB).inputs["spec"]["template"]["spec"]["volumes"][0]["configMap"]["items"]
    assert {item["key"]: item["path"] for item in mounted} == {
        **{name: f"reconciler/{name}" for name in package}, "desired.json": "desired.json"}
    state = json.loads(data["desired.json"])
    settings = stack_settings(stack_eval.stack)
    assert [(p["title"], p["labelConfig"]) for p in state["projects"]] == [
        (p.title, (PROJECT_ROOT / p.label_config_path).read_text()) for p in settings.labeling.projects]
    assert state["storage"]["bucket"] == stack_eval.outputs["bucketName"]
    wants_sam = any(p.sam for p in settings.labeling.projects)
    assert state["samUrl"] == (stack_eval.outputs["samBackendUrl"] if wants_sam else None)
    assert state["exportPrefix"] == f"{settings.storage.prefix}/exports"


def test_a_changed_state_renames_the_job_and_an_unchanged_one_does_not():
    base = evaluate_cached("dev").one(JOB, RECONCILER_JOB).inputs["metadata"]["name"]
    again = evaluate_cached("dev", overrides={"namespace": "labeling-dev"}).one(JOB, RECONCILER_JOB).inputs["metadata"]["name"]
    changed = evaluate_cached("dev", overrides={"labeling.members": ["annotator@example.com"]}).one(JOB, RECONCILER_JOB)
    assert base == again
    assert changed.inputs["metadata"]["name"] != base
    assert labeling.job_name("{}", {"a.py": "v1"}) != labeling.job_name("{}", {"a.py": "v2"})
    assert labeling.job_name("{}", {"a.py": "x"}) != labeling.job_name("{}", {"b.py": "x"})


TEAM_SECRET_RULE = {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["label-studio-team-access"],
                    "verbs": ["get", "patch"]}
SAM_POD_READER_RULE = {"apiGroups": [""], "resources": ["events", "pods"], "verbs": ["list"]}


def test_reconciler_may_touch_only_the_team_secret_and_read_pods_while_a_project_wants_sam(stack_eval):
    objects = reconciler_objects(stack_eval)
    wants_sam = bool(json.loads(objects["ConfigMap"].inputs["data"][labeling.DESIRED_STATE_FILE])["samUrl"])
    assert objects["Role"].inputs["rules"] == [TEAM_SECRET_RULE, *([SAM_POD_READER_RULE] if wants_sam else [])]
    team = stack_eval.one("kubernetes:core/v1:Secret", "labeling-configuration-team-access")
    assert team.ignore_changes == ["data", "stringData"]
    without = evaluate_cached(stack_eval.stack, {"labeling.projects": [
        {"title": "Cats", "labelConfig": "label_configs/image_classification.xml", "prefix": "cats"}]})
    assert reconciler_objects(without)["Role"].inputs["rules"] == [TEAM_SECRET_RULE]


@pytest.mark.parametrize("stack", stacks_running_sam())
def test_the_state_names_the_labels_of_the_pods_the_sam_deployment_makes(stack):
    """The run finds the SAM pods by the labels the Deployment gives them, passed in its state."""
    stack_eval = evaluate_cached(stack)
    template = stack_eval.one("kubernetes:apps/v1:Deployment", "labeling-sam-deployment").inputs["spec"]["template"]
    document = json.loads(reconciler_objects(stack_eval)["ConfigMap"].inputs["data"][labeling.DESIRED_STATE_FILE])
    wants_sam = bool(document["samUrl"])
    assert parse_desired_state(document).sam_pod_labels == (template["metadata"]["labels"] if wants_sam else {})


def test_the_record_of_created_accounts_is_protected_in_a_protected_stack(stack_eval):
    """The team Secret decides whose passwords the stack hands out: prod cannot delete it."""
    team = stack_eval.one("kubernetes:core/v1:Secret", "labeling-configuration-team-access")
    assert team.protect is (stack_eval.stack == "prod")


def test_without_sam_projects_the_state_names_no_backend():
    evaluation = evaluate_cached("dev", overrides={
        "sam.enabled": False,
        "labeling.projects": [{"title": "Cats and dogs", "labelConfig": "label_configs/image_classification.xml",
                               "prefix": "kagglecatsanddogs"}],
    })
    state = json.loads(reconciler_objects(evaluation)["ConfigMap"].inputs["data"]["desired.json"])
    assert state["samUrl"] is None
    assert not any("SamBackend" in dep for dep in evaluation.one(JOB, RECONCILER_JOB).dependencies)


def test_the_tested_label_studio_is_the_default_release():
    """The real-service tests run the release a stack gets when it pins none (and the one it is told about)."""
    test_group = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["dependency-groups"]["test"]
    pinned = next(str(r).removeprefix("label-studio==") for r in test_group if str(r).startswith("label-studio=="))
    assert DEFAULT_LABEL_STUDIO_IMAGE_TAG == pinned == metadata.version("label-studio")


def test_invite_links_point_at_the_public_url(stack_eval):
    env = {e["name"]: e.get("value") for e in job_container(stack_eval)["env"]}
    assert env["LABEL_STUDIO_PUBLIC_URL"] == stack_eval.outputs["url"]


def test_the_invite_link_is_read_back_as_a_secret_output(stack_eval):
    assert stack_eval.outputs["teamInviteUrl"] == "https://label.example.com/user/signup/?token=mock-organization-token"
    assert "teamInviteUrl" in stack_eval.secret_outputs
    assert labeling.invite_url_from_secret_data(None) is None
    assert labeling.invite_url_from_secret_data({}) is None


def test_the_reconciler_reads_the_state_the_stack_writes(stack_eval):
    """One contract: the document the stack generates parses, and says what the stack meant."""
    document = json.loads(reconciler_objects(stack_eval)["ConfigMap"].inputs["data"]["desired.json"])
    state = parse_desired_state(document)
    assert state.to_document() == document
    settings = stack_settings(stack_eval.stack)
    assert [(p.title, p.prefix, p.sam) for p in state.projects] == [
        (p.title, p.prefix, p.sam) for p in settings.labeling.projects]
    assert state.storage.presign_ttl_minutes == contract.PRESIGN_TTL_MINUTES
    env = {e["name"] for e in job_container(stack_eval)["env"]}
    assert {contract.LABEL_STUDIO_URL, contract.PUBLIC_URL, contract.TEAM_SECRET_NAME, contract.TIMEOUT_SECONDS,
            contract.API_TOKEN + contract.FILE_SUFFIX} <= env


@pytest.mark.parametrize(("overrides", "mode"), [({}, "fail"), ({"sam.selfTest": "warn"}, "warn")])
def test_the_desired_state_carries_what_a_failed_sam_self_test_does(overrides, mode):
    data = reconciler_objects(evaluate_cached("dev", overrides))["ConfigMap"].inputs["data"]
    assert parse_desired_state(json.loads(data[labeling.DESIRED_STATE_FILE])).sam_self_test == mode


@pytest.mark.parametrize("stack", stacks_running_sam())
def test_the_job_may_reach_the_sam_backend_for_its_self_test_only_while_a_project_wants_sam(stack):
    stack_eval = evaluate_cached(stack)
    sam_pods = stack_eval.one("kubernetes:apps/v1:Deployment", "labeling-sam-deployment").inputs["spec"]["template"][
        "metadata"]["labels"]
    objects = reconciler_objects(stack_eval)
    wants_sam = bool(json.loads(objects["ConfigMap"].inputs["data"][labeling.DESIRED_STATE_FILE])["samUrl"])
    sam_rule = {"to": [{"podSelector": {"matchLabels": sam_pods}}], "ports": [{"protocol": "TCP", "port": 9090}]}
    assert (sam_rule in objects["NetworkPolicy"].inputs["spec"]["egress"]) == wants_sam
    without = evaluate_cached(stack_eval.stack, {"labeling.projects": [
        {"title": "Cats", "labelConfig": "label_configs/image_classification.xml", "prefix": "cats"}]})
    assert not any(9090 in {port["port"] for port in rule.get("ports", [])}
                   for rule in reconciler_objects(without)["NetworkPolicy"].inputs["spec"]["egress"])


def test_a_sam_project_whose_config_sam_cannot_fill_stops_the_plan_with_one_keyed_line(tmp_path):
    """The plan refuses what the deploy-time self-test (reconciler/sam_selftest.py) would fail on."""
    from components.settings import ConfigError

    no_click_tool = PROJECT_ROOT / "label_configs" / "sam_segmentation.xml"
    without_tools = re.sub(r"<(KeyPointLabels|RectangleLabels)\b.*?</\1>", "", no_click_tool.read_text(), flags=re.S)
    cases = {
        "label_configs/image_classification.xml": 'the label config has no <Image value="$..."> and <BrushLabels> '
                                                  "for SAM to fill",
        without_tools: "the label config has no KeyPointLabels or RectangleLabels on the image to click with",
    }
    for config, cause in cases.items():
        path = config
        if not config.startswith("label_configs/"):
            written = PROJECT_ROOT / "label_configs" / f"test-{tmp_path.name}.xml"
            written.write_text(config)
            path = str(written.relative_to(PROJECT_ROOT))
        try:
            projects = [{"title": "Segmentation", "labelConfig": path, "prefix": "images", "sam": True}]
            with pytest.raises(ConfigError) as refused:
                stack_settings("dev", {"labeling.projects": projects})
        finally:
            if path != config:
                (PROJECT_ROOT / path).unlink()
        assert refused.value.problems == [
            f"labeling.projects[0].sam: is true but {path}: {cause}; expected a config with an <Image>, <BrushLabels> "
            "and a KeyPointLabels or RectangleLabels tool on that image (label_configs/sam_segmentation.xml), or "
            "sam: false"]


def test_the_same_config_without_sam_plans_cleanly():
    projects = [{"title": "Cats and dogs", "labelConfig": "label_configs/image_classification.xml",
                 "prefix": "images", "sam": False}]
    assert stack_settings("dev", {"labeling.projects": projects}).labeling.projects[0].sam is False
