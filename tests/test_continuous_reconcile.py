"""Continuous reconciliation as the stacks declare it (under Pulumi mocks), and the guards on
what cannot be undone: the scheduled reconcile CronJob, the Job re-run on a key rotation, the
member-removal check and the configuration-namespace check."""

from __future__ import annotations

import dataclasses
import json
import subprocess

import kubernetes_validate
import pulumi
import pytest
import yaml

from components import PROJECT_ROOT, reconciler_pods
from reconciler import contract
from tests.conftest import evaluate_cached
from tests.variants import STORAGE_KEYS, VARIANTS
from tools import deployed, plan
from tools.object_validation import KUBERNETES_VERSION
from tools.plan_labeling import labeling_plan
from tools.stack_eval import PROJECT_DIRS, evaluate

CRONJOB = "kubernetes:batch/v1:CronJob"
SCHEDULED = "labeling-configuration-scheduled-reconcile"
POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
JOB = "kubernetes:batch/v1:Job"
RECONCILER_JOB = "labeling-configuration-job"
CONFIG_MAP = "kubernetes:core/v1:ConfigMap"
TEAM = ["annotator@example.com", "reviewer@example.com", "lead@example.com"]


def pod_of(resource) -> dict:
    spec = resource.inputs["spec"]
    return (spec["jobTemplate"]["spec"] if resource.type == CRONJOB else spec)["template"]["spec"]


def test_the_scheduled_reconcile_is_the_jobs_pod_in_its_scheduled_mode():
    evaluation = evaluate_cached("prod")
    cronjob = evaluation.one(CRONJOB, SCHEDULED)
    kubernetes_validate.validate(cronjob.kubernetes_manifest, KUBERNETES_VERSION, strict=True)
    spec = cronjob.inputs["spec"]
    assert spec["schedule"] == "0 * * * *" and spec["concurrencyPolicy"] == "Forbid"
    scheduled, job = pod_of(cronjob), pod_of(evaluation.one(JOB, RECONCILER_JOB))
    [container], [job_container] = scheduled["containers"], job["containers"]
    assert container["command"] == ["python", "-m", "reconciler", contract.SCHEDULED_FLAG,
                                    f"{reconciler_pods.WORKING_DIR}/{reconciler_pods.DESIRED_STATE_FILE}"]
    # The same ConfigMap, credentials (as files), identity and hardening as the Job.
    assert scheduled["volumes"] == job["volumes"] and container["volumeMounts"] == job_container["volumeMounts"]
    assert scheduled["serviceAccountName"] == job["serviceAccountName"] == reconciler_pods.RECONCILER_NAME
    assert container["securityContext"] == job_container["securityContext"]
    assert [e["name"] for e in container["env"]] == [e["name"] for e in job_container["env"]]
    assert all("valueFrom" not in e for e in container["env"])
    assert scheduled["restartPolicy"] == "Never" and spec["jobTemplate"]["spec"]["activeDeadlineSeconds"] > 0


def test_the_scheduled_reconcile_has_its_own_egress_policy():
    evaluation = evaluate_cached("prod")
    labels = pod_of(evaluation.one(CRONJOB, SCHEDULED))
    policy = evaluation.one(POLICY, "labeling-configuration-scheduled-reconcile-network-policy").inputs["spec"]
    job_policy = evaluation.one(POLICY, "labeling-configuration-network-policy").inputs["spec"]
    assert policy["podSelector"]["matchLabels"] == reconciler_pods.SCHEDULED_RECONCILE_LABELS
    assert labels is not None and reconciler_pods.SCHEDULED_RECONCILE_LABELS != reconciler_pods.LABELS
    assert policy["policyTypes"] == ["Ingress", "Egress"] and policy["ingress"] == []
    assert policy["egress"] == job_policy["egress"]


@pytest.mark.parametrize("overrides, schedule", [
    ({"labeling.reconcileSchedule": "*/30 6-20 * * *"}, "*/30 6-20 * * *"),
    ({"labeling.reconcile": "false"}, None),
])
def test_the_schedule_is_set_or_switched_off_with_one_key(overrides, schedule):
    evaluation = evaluate_cached("dev", overrides=overrides)
    cronjobs = [r for r in evaluation.of_type(CRONJOB) if r.name == SCHEDULED]
    policies = [r for r in evaluation.of_type(POLICY) if r.name.startswith(SCHEDULED)]
    assert [c.inputs["spec"]["schedule"] for c in cronjobs] == ([schedule] if schedule else [])
    assert len(policies) == (1 if schedule else 0)


def _names(evaluation) -> tuple[str, str]:
    return (evaluation.one(JOB, RECONCILER_JOB).inputs["metadata"]["name"], evaluation.one(CONFIG_MAP).inputs["metadata"]["name"])


def test_a_rotated_key_runs_the_job_again_and_nothing_else_changes():
    variant = VARIANTS["s3-compatible"]
    job, bundle = _names(evaluate_cached(variant.stack, variant.overrides, variant.secrets))
    again = _names(evaluate(variant.stack, variant.overrides, variant.secrets))
    rotated = _names(evaluate(variant.stack, variant.overrides,
                              {**STORAGE_KEYS, "storage.secretAccessKey": "rotated-secret-access-key"}))
    assert again == (job, bundle), "the same configuration gives the same Job"
    assert rotated[0] != job and rotated[1] == bundle, "a new Job over the same ConfigMap"


def test_a_changed_member_list_runs_the_job_again():
    job = _names(evaluate_cached("dev", overrides={"labeling.members": TEAM}))[0]
    assert job != _names(evaluate_cached("dev", overrides={"labeling.members": TEAM[:2]}))[0]


def _plan(members, previous, remove=None):
    overrides = {"labeling.members": members}
    if remove is not None:
        overrides["labeling.removeMembers"] = remove
    return evaluate("dev", overrides=overrides, previous_members=previous)


def test_emptying_the_members_without_confirming_stops_the_plan_with_one_line():
    with pytest.raises(pulumi.RunError) as refused:
        _plan([], TEAM[:1])
    assert str(refused.value) == (
        "labeling.members is empty: the accounts the stack created for annotator@example.com would be removed for "
        "good; to confirm, list annotator@example.com in labeling.removeMembers")


def test_several_members_leaving_at_once_need_each_named():
    with pytest.raises(pulumi.RunError, match=r"^2 members leave labeling.members at once: .* to confirm, list "
                                              r"lead@example.com in labeling.removeMembers$"):
        _plan(TEAM[:1], TEAM, remove=["reviewer@example.com"])
    confirmed = _plan(TEAM[:1], TEAM, remove=["reviewer@example.com", "lead@example.com"])
    assert ("labeling.members: the next run removes lead@example.com, reviewer@example.com from the organization "
            "for good (accounts the stack created; Label Studio cannot add them back)") in confirmed.warnings
    state = confirmed.one(CONFIG_MAP).inputs["data"][reconciler_pods.DESIRED_STATE_FILE]
    assert contract.parse_desired_state(json.loads(state)).remove_members == (
        "reviewer@example.com", "lead@example.com")


def test_one_member_leaving_is_named_in_a_warning_and_needs_no_confirmation():
    evaluation = _plan(TEAM[:2], TEAM)
    assert [w for w in evaluation.warnings if "removes" in w] == [
        "labeling.members: the next run removes lead@example.com from the organization for good (accounts the "
        "stack created; Label Studio cannot add them back)"]
    assert not any("removes" in w for w in evaluate_cached("dev").warnings)


def test_a_member_to_remove_must_have_left_the_list():
    with pytest.raises(pulumi.RunError, match=r"labeling.removeMembers\[0\]: \"lead@example.com\" is still in "
                                              r"labeling.members"):
        _plan(TEAM, TEAM, remove=["lead@example.com"])


def test_a_mistyped_namespace_stops_the_plan_with_a_did_you_mean():
    with pytest.raises(pulumi.RunError) as refused:
        evaluate("dev", overrides={"labeling-platfrom:labeling": {"members": []}})
    [problem] = str(refused.value).splitlines()[1:]
    assert problem.strip().startswith("labeling-platfrom:labeling: the namespace 'labeling-platfrom' is read by "
                                      "nothing here; did you mean labeling-platform:labeling?")


def test_provider_namespaces_are_accepted():
    evaluation = evaluate("dev", overrides={"kubernetes:enableServerSideApply": "true", "pulumi:tags": "{}",
                                            "aws:skipMetadataApiCheck": "false"})
    assert evaluation.one(JOB, RECONCILER_JOB)


def test_the_plan_stops_with_one_line_when_the_committed_members_would_all_go(monkeypatch, capsys, tmp_path):
    # The stack file as committed listed a member; the working copy (dev) lists none.
    as_committed = deployed.committed_deploy("dev")
    monkeypatch.setattr(plan, "committed_deploy",
                        lambda stack: dataclasses.replace(as_committed, members=["annotator@example.com"]))
    assert plan.main(["dev", "--out", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert captured.err == ("error: labeling.members is empty: the accounts the stack created for "
                            "annotator@example.com would be removed for good; to confirm, list annotator@example.com "
                            "in labeling.removeMembers\n")


def test_the_plan_prints_what_the_reconciler_applies():
    projects = [{"title": "Cats and dogs", "labelConfig": "label_configs/image_classification.xml",
                 "prefix": "kagglecatsanddogs"},
                {"title": "Fruit segmentation with SAM", "labelConfig": "label_configs/sam_segmentation.xml",
                 "prefix": "fruit", "sam": True, "split": True}]
    evaluation = evaluate("dev", overrides={"labeling.members": TEAM[:2], "labeling.projects": projects,
                                            "labeling.exportResync": "false"}, previous_members=TEAM[1:])
    assert labeling_plan(evaluation, evaluation.previous_members) == [
        'project "Cats and dogs": s3://labeling-dev-images-example/kagglecatsanddogs matching .*\\.(jpe?g|png)$, '
        "SAM no, split no, images presigned URLs (60 min)",
        'project "Fruit segmentation with SAM": s3://labeling-dev-images-example/fruit matching .*\\.(jpe?g|png)$, '
        "SAM yes, split annotator@example.com, reviewer@example.com, images presigned URLs (60 min)",
        "members: 2 configured; added: annotator@example.com; removed: lead@example.com",
        "SAM active hours: off; SAM runs 168 h of 168 h a week",
        "full reconcile: '0 * * * *' (labeling-scheduled-reconcile)",
        "export re-sync: off",
    ]


def test_the_committed_members_come_from_the_stack_file_in_git():
    assert deployed.committed_deploy("dev", "HEAD").members == []
    assert deployed.committed_stack_file("no-such-stack") is None


def test_a_stack_file_git_does_not_hold_plans_every_member_as_added(tmp_path, monkeypatch, capsys):
    # A new stack file beside a copy of the project, in a repository that has never seen it.
    (tmp_path / "Pulumi.yaml").write_text((PROJECT_ROOT / "Pulumi.yaml").read_text())
    stack_file = yaml.safe_load((PROJECT_ROOT / "Pulumi.dev.yaml").read_text())
    stack_file["config"]["labeling-platform:labeling"]["members"] = TEAM
    (tmp_path / "Pulumi.newteam.yaml").write_text(yaml.safe_dump(stack_file))
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    monkeypatch.setitem(PROJECT_DIRS, "newteam", tmp_path)

    assert deployed.committed_deploy("newteam").members == []
    assert plan.main(["newteam", "--out", str(tmp_path / "plan")]) == 0
    added = next(line for line in capsys.readouterr().out.splitlines() if "members:" in line)
    assert added.strip() == f"members: {len(TEAM)} configured; added: {', '.join(sorted(TEAM))}; removed: none"
