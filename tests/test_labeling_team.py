"""Members' passwords and the export re-sync as the stacks declare them (under Pulumi mocks)."""

from __future__ import annotations

import json

import kubernetes_validate

from components import labeling, reconciler_pods
from reconciler import contract
from tests.conftest import evaluate_cached
from tools.object_validation import KUBERNETES_VERSION

MEMBERS = ["annotator@example.com", "reviewer@example.com"]
CRONJOB = "kubernetes:batch/v1:CronJob"
RESYNC = "labeling-configuration-export-resync"
# The mock generates each password as mock-generated-<resource name>-value.
PASSWORD_MARK = "mock-generated-labeling-configuration-member-"


def with_members(**overrides):
    return evaluate_cached("dev", overrides={"labeling.members": MEMBERS, **overrides})


def member_secret(evaluation):
    return evaluation.one("kubernetes:core/v1:Secret", "labeling-configuration-member-passwords")


def test_each_member_gets_a_generated_password_parented_to_the_labeling_component():
    evaluation = with_members()
    component = evaluation.one("labeling:app:LabelingConfiguration")
    generated = [r for r in evaluation.of_type("random:index/randomPassword:RandomPassword")
                 if r.name.startswith("labeling-configuration-member-")]
    assert sorted(r.name for r in generated) == [f"labeling-configuration-member-{m}" for m in MEMBERS]
    assert all(r.parent == component.urn and r.inputs["length"] >= 20 for r in generated)


def test_the_member_secret_is_secret_and_the_job_reads_it_from_a_file():
    evaluation = with_members()
    secret = member_secret(evaluation)
    assert secret.secret_paths & {"stringData", f"stringData.{contract.MEMBER_PASSWORDS_KEY}"}
    document = json.loads(secret.inputs["stringData"][contract.MEMBER_PASSWORDS_KEY])
    assert sorted(document) == MEMBERS and all(PASSWORD_MARK in value for value in document.values())
    pod = evaluation.one("kubernetes:batch/v1:Job", "labeling-configuration-job").inputs["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert contract.MEMBER_PASSWORDS not in env
    directory, file_name = env[contract.MEMBER_PASSWORDS + contract.FILE_SUFFIX].rsplit("/", 1)
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["mountPath"] == directory)
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    assert mount["readOnly"] and file_name == contract.MEMBER_PASSWORDS_KEY
    assert volume["secret"]["secretName"] == secret.inputs["metadata"]["name"]


def test_no_password_shows_outside_a_secret_value():
    evaluation = with_members()
    for resource in evaluation.resources:
        assert PASSWORD_MARK not in json.dumps(resource.masked_inputs(), default=str), resource.name
    for name, value in evaluation.outputs.items():
        if name not in evaluation.secret_outputs:
            assert PASSWORD_MARK not in json.dumps(value, default=str), name
    assert not any(PASSWORD_MARK in warning for warning in evaluation.warnings)


def test_member_passwords_output_is_secret_and_lists_only_accounts_the_reconciler_created():
    # The mocked team Secret records annotator@example.com as created; reviewer's account existed before.
    evaluation = with_members()
    assert "memberPasswords" in evaluation.secret_outputs
    assert evaluation.outputs["memberPasswords"] == {
        "annotator@example.com": f"{PASSWORD_MARK}annotator@example.com-value"}
    assert labeling.created_members_from_secret_data(None) == frozenset()


def test_export_resync_is_a_hardened_cronjob_of_the_reconciler_in_its_export_mode():
    evaluation = with_members()
    cronjob = evaluation.one(CRONJOB, RESYNC)
    kubernetes_validate.validate(cronjob.kubernetes_manifest, KUBERNETES_VERSION, strict=True)
    spec = cronjob.inputs["spec"]
    assert spec["schedule"] == "30 * * * *" and spec["concurrencyPolicy"] == "Forbid"
    pod = spec["jobTemplate"]["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["command"] == ["python", "-m", "reconciler", "--export-resync",
                                    f"{reconciler_pods.WORKING_DIR}/{reconciler_pods.DESIRED_STATE_FILE}"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["automountServiceAccountToken"] is False
    assert all("valueFrom" not in e for e in container["env"])
    # The same ConfigMap as the Job: one package, one desired state.
    job_pod = evaluation.one("kubernetes:batch/v1:Job", "labeling-configuration-job").inputs["spec"]["template"]["spec"]
    assert pod["volumes"][0] == job_pod["volumes"][0]
    assert not any(v["name"] == "members" for v in pod["volumes"])


def test_export_resync_has_its_own_egress_policy_without_the_kubernetes_api():
    evaluation = with_members()
    policy = evaluation.one("kubernetes:networking.k8s.io/v1:NetworkPolicy",
                            "labeling-configuration-export-resync-network-policy")
    pod_labels = evaluation.one(CRONJOB, RESYNC).inputs["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
    spec = policy.inputs["spec"]
    assert spec["podSelector"]["matchLabels"] == pod_labels and spec["ingress"] == []
    job_policy = evaluation.one("kubernetes:networking.k8s.io/v1:NetworkPolicy",
                                "labeling-configuration-network-policy").inputs["spec"]
    # The Job's rules, less the Kubernetes API (ports 443 and 6443) it needs for the team Secret
    # and the SAM backend its self-test asks.
    assert spec["egress"] == [rule for rule in job_policy["egress"]
                              if not {6443, 9090} & {port["port"] for port in rule.get("ports", [])}]
    job_labels = evaluation.one("kubernetes:batch/v1:Job", "labeling-configuration-job").inputs["spec"]["template"]["metadata"]["labels"]
    assert pod_labels != job_labels  # the Job's wider policy (the Kubernetes API) does not apply to it


def test_export_resync_can_be_switched_off_and_rescheduled():
    switched_off = evaluate_cached("dev", overrides={"labeling.exportResync": False})
    assert RESYNC not in {r.name for r in switched_off.of_type(CRONJOB)}
    rescheduled = evaluate_cached("dev", overrides={"labeling.exportResyncSchedule": "*/15 * * * *"})
    assert rescheduled.one(CRONJOB, RESYNC).inputs["spec"]["schedule"] == "*/15 * * * *"
