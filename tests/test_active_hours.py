"""sam.activeHours: the windows and the clock, the refusals at plan, the scalers' objects for both
scalers, the Deployment's ignored replicas, the scaler's one PATCH, and the reconciler's paused
SAM step (the clock injected everywhere)."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from components.network import KUBERNETES_API_PORTS
from components.sam_active_hours import SCALER_LABELS, SCALER_MODULES, scaler_modules
from components.sam_backend import PATCH_FORCE_ANNOTATION, SAM_NAME
from components.settings import ConfigError
from reconciler.active_hours import ActiveHours, Window, parse_clock_time, parse_days
from reconciler.client import LabelStudioClient
from reconciler.contract import RUN_LOCK_KEY, RunEnvironment, parse_desired_state
from reconciler.kubernetes_api import KubernetesApi
from reconciler.reconcile import reconcile_once
from reconciler.sam_scale import FIELD_MANAGER, apply_schedule, schedule_document
from tests.conftest import evaluate_cached, stack_settings
from tests.test_continuous_reconcile_unit import VersionedSecret, lock
from tests.test_reconciler_unit import FakeLabelStudio, desired, reachable_s3
from reconciler.sam_selftest import SamSelfTest
from tests.sam_fakes import SAM_CONFIG, SAM_URL

BERLIN = ZoneInfo("Europe/Berlin")
OFFICE = ActiveHours("Europe/Berlin", (Window(parse_days("Mon-Fri"), 8 * 60, 18 * 60),), 30)
OFFICE_SETTINGS = {"timeZone": "Europe/Berlin", "windows": [{"days": "Mon-Fri", "start": "08:00", "end": "18:00"}]}


def berlin(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=BERLIN)


# --------------------------------------------------------------------------- the windows and the clock


@pytest.mark.parametrize("days, expected", [
    ("Mon-Fri", (0, 1, 2, 3, 4)), (["Sat", "sun"], (5, 6)), ("Mon,Wed", (0, 2)), ("Mon-Wed,Fri", (0, 1, 2, 4)),
])
def test_days_are_read_as_ranges_lists_and_names(days, expected):
    assert parse_days(days) == expected


def test_inside_up_and_paused_follow_the_clock_of_the_teams_zone():
    # Monday 2026-12-07 (CET, UTC+1).
    assert not OFFICE.up(berlin(2026, 12, 7, 7, 29)) and OFFICE.up(berlin(2026, 12, 7, 7, 30)), "the lead"
    assert not OFFICE.inside(berlin(2026, 12, 7, 7, 59)) and OFFICE.inside(berlin(2026, 12, 7, 8, 0))
    assert OFFICE.inside(berlin(2026, 12, 7, 17, 59)) and not OFFICE.up(berlin(2026, 12, 7, 18, 0))
    # An instant in UTC is judged in the zone: 07:10 UTC is 08:10 in Berlin.
    assert OFFICE.inside(datetime(2026, 12, 7, 7, 10, tzinfo=timezone.utc))
    # Friday evening: the next opening is Monday's.
    assert OFFICE.next_opening(berlin(2026, 12, 11, 18, 0)) == berlin(2026, 12, 14, 8, 0)
    assert not OFFICE.up(berlin(2026, 12, 12, 12, 0)), "Saturday"


def test_windows_follow_daylight_saving_time():
    # Europe/Berlin leaves summer time on Sunday 2026-10-25: 08:00 is 06:00 UTC before, 07:00 UTC after.
    assert OFFICE.inside(datetime(2026, 10, 23, 6, 0, tzinfo=timezone.utc))
    assert not OFFICE.inside(datetime(2026, 10, 26, 6, 30, tzinfo=timezone.utc))
    assert OFFICE.inside(datetime(2026, 10, 26, 7, 0, tzinfo=timezone.utc))
    assert OFFICE.next_opening(datetime(2026, 10, 24, 12, 0, tzinfo=timezone.utc)).utcoffset() == timedelta(hours=1)


def test_a_lead_reaching_into_the_day_before_and_a_close_at_midnight_move_their_cron_days():
    night = ActiveHours("UTC", (Window((0,), 0, 24 * 60),), 45)  # all of Monday
    assert [t.expression() for t in night.scale_up_times()] == ["15 23 * * 0"], "Sunday 23:15"
    assert [t.expression() for t in night.scale_down_times()] == ["0 0 * * 2"], "Tuesday 00:00"
    assert night.up(datetime(2026, 12, 6, 23, 20, tzinfo=timezone.utc))


def test_cron_schedules_and_weekly_hours():
    assert [t.expression() for t in OFFICE.scale_up_times()] == ["30 7 * * 1,2,3,4,5"]
    assert [t.expression() for t in OFFICE.scale_down_times()] == ["0 18 * * 1,2,3,4,5"]
    assert OFFICE.held_minutes() == 5 * 630
    assert "52.5 h of 168 h" in OFFICE.describe()
    # Windows whose leads overlap the previous window are counted once.
    split = ActiveHours("UTC", (Window((0,), 8 * 60, 12 * 60), Window((0,), 13 * 60, 17 * 60)), 120)
    assert split.held_minutes() == 11 * 60


def test_the_override_keeps_sam_up_for_the_24_hours_before_it():
    late = ActiveHours(OFFICE.time_zone, OFFICE.windows, 30, datetime(2026, 12, 8, 2, 0))
    assert late.up(berlin(2026, 12, 7, 23, 0)) and late.inside(berlin(2026, 12, 8, 1, 59))
    assert not late.up(berlin(2026, 12, 8, 2, 0))
    assert not late.kept_up(berlin(2026, 12, 7, 1, 59)), "more than 24 h before"
    assert ActiveHours.from_document(late.to_document()) == late


# --------------------------------------------------------------------------- refused at plan, one keyed line


def _problems(active_hours: dict) -> list[str]:
    with pytest.raises(ConfigError) as raised:
        stack_settings("dev", {"sam.activeHours": active_hours})
    return raised.value.problems


@pytest.mark.parametrize("window, line", [
    ({"days": "Mon-Fri", "start": "18:00", "end": "08:00"},
     'sam.activeHours.windows[0].end: "08:00" is not after start "18:00"; expected an end later the same day '
     "(24:00 at the latest; split a night into two windows)"),
    ({"days": "Mon-Fri", "start": "08:00", "end": "08:00"},
     'sam.activeHours.windows[0].end: "08:00" is not after start "08:00"; expected an end later the same day '
     "(24:00 at the latest; split a night into two windows)"),
    ({"days": ["Mon", "Thurs"], "start": "08:00", "end": "18:00"},
     'sam.activeHours.windows[0].days: "Thurs" is not a day (did you mean \'Thu\'?); expected Mon, Tue, Wed, Thu, '
     "Fri, Sat, Sun or a range such as Mon-Fri"),
    ({"days": "Mon", "start": "8am", "end": "18:00"},
     'sam.activeHours.windows[0].start: "8am" is not a time of day; expected HH:MM from 00:00 to 24:00'),
])
def test_a_bad_window_is_refused_with_one_keyed_line(window, line):
    assert _problems({"timeZone": "Europe/Berlin", "windows": [window]}) == [line]


def test_an_unknown_time_zone_is_refused_with_the_closest_name():
    assert _problems({**OFFICE_SETTINGS, "timeZone": "Europe/Berln"}) == [
        'sam.activeHours.timeZone: "Europe/Berln" is not a time zone of the tz database (did you mean '
        "'Europe/Berlin'?); expected an IANA name such as Europe/Berlin or UTC"]


def test_overlapping_windows_are_refused():
    windows = [*OFFICE_SETTINGS["windows"], {"days": ["Fri", "Sat"], "start": "17:00", "end": "20:00"}]
    assert _problems({**OFFICE_SETTINGS, "windows": windows}) == [
        "sam.activeHours.windows[1]: Fri,Sat 17:00-20:00 overlaps windows[0] (Mon-Fri 08:00-18:00); "
        "expected windows that do not overlap"]


def test_an_override_with_an_offset_and_an_unknown_scaler_are_refused():
    assert _problems({**OFFICE_SETTINGS, "keepUpUntil": "2026-12-08T02:00+01:00", "scaler": "hpa"}) == [
        'sam.activeHours.scaler: "hpa" is not allowed; expected one of cronjob | keda',
        'sam.activeHours.keepUpUntil: "2026-12-08T02:00+01:00" carries an offset; expected a local time '
        "YYYY-MM-DDTHH:MM in sam.activeHours.timeZone"]


def test_values_as_the_cli_stores_them_are_read():
    # `pulumi config set --path` stores true and 45 typed; everything else is text.
    settings = stack_settings("dev", {"sam.activeHours": {**OFFICE_SETTINGS, "enabled": True, "leadMinutes": 45,
                                                          "keepUpUntil": "2026-12-08T02:00"}})
    hours = settings.sam.active_hours.hours
    assert hours.lead_minutes == 45 and hours.keep_up_until == datetime(2026, 12, 8, 2, 0)


def test_the_switch_works_alone_and_sam_off_leaves_the_section_unread():
    off = stack_settings("dev", {"sam.activeHours": {"enabled": False, "timeZone": "Nowhere/Else"}})
    assert off.sam.active_hours is None
    assert "sam.activeHours.timeZone: ignored while sam.activeHours.enabled is false" in off.warnings
    no_sam = stack_settings("dev", {"sam.enabled": False, "labeling.projects": [],
                                    "sam.activeHours": {"windows": [{"days": "Mon"}]}})
    assert no_sam.sam.active_hours is None and any("sam.activeHours" in w for w in no_sam.warnings)


def test_the_default_lead_covers_a_new_gpu_node_the_pull_and_the_models_load():
    # 10 min for the node, 10 for the image pull, sam.startupTimeoutSeconds 600: 30 min.
    assert stack_settings("prod").sam.active_hours.hours.lead_minutes == 30
    assert stack_settings("dev").sam.active_hours is None, "off in dev"


# --------------------------------------------------------------------------- the declared objects


def _children(evaluation, type_suffix):
    return [r for r in evaluation.resources if r.type.endswith(type_suffix) and "SamActiveHours" in r.urn]


def _sam_deployment(evaluation):
    return next(r for r in evaluation.of_type("kubernetes:apps/v1:Deployment") if r.inputs["metadata"]["name"] == SAM_NAME)


def test_the_cronjob_scaler_may_patch_the_scale_of_the_sam_deployment_only():
    evaluation = evaluate_cached("prod")
    [role] = _children(evaluation, ":Role")
    assert role.inputs["rules"] == [{"apiGroups": ["apps"], "resources": ["deployments/scale"],
                                     "resourceNames": [SAM_NAME], "verbs": ["patch"]}]
    [binding] = _children(evaluation, ":RoleBinding")
    assert binding.inputs["subjects"][0]["name"] == role.inputs["metadata"]["name"]
    cronjobs = {c.inputs["metadata"]["name"]: c.inputs["spec"] for c in _children(evaluation, ":CronJob")}
    assert {name: (spec["schedule"], spec["timeZone"]) for name, spec in cronjobs.items()} == {
        "sam-scale-up-0": ("30 7 * * 1,2,3,4,5", "Europe/Berlin"),
        "sam-scale-down-0": ("0 18 * * 1,2,3,4,5", "Europe/Berlin")}
    pod = cronjobs["sam-scale-up-0"]["jobTemplate"]["spec"]["template"]
    assert pod["spec"]["serviceAccountName"] == role.inputs["metadata"]["name"]
    assert pod["spec"]["containers"][0]["command"][:3] == ["python", "-m", "reconciler.sam_scale"]
    assert all(spec["startingDeadlineSeconds"] > 0 for spec in cronjobs.values())


@pytest.mark.parametrize("overrides", [None, {"sam.activeHours.scaler": "keda"}], ids=["cronjob", "keda"])
def test_the_scaler_is_one_component_whose_children_use_the_stack_provider(overrides):
    evaluation = evaluate_cached("prod", overrides)
    [component] = evaluation.of_type("labeling:ml:SamActiveHours")
    children = evaluation.children_of(component)
    provider = evaluation.one("pulumi:providers:kubernetes").urn
    assert children and all(child.provider.startswith(provider) for child in children)


def test_the_scalers_pods_reach_the_api_server_only():
    [policy] = _children(evaluate_cached("prod"), ":NetworkPolicy")
    spec = policy.inputs["spec"]
    assert spec["podSelector"]["matchLabels"] == SCALER_LABELS and spec["ingress"] == []
    [rule] = spec["egress"]
    assert {port["port"] for port in rule["ports"]} == set(KUBERNETES_API_PORTS)


def test_the_deployment_ignores_replicas_only_while_active_hours_are_on():
    on, off = _sam_deployment(evaluate_cached("prod")), _sam_deployment(evaluate_cached("dev"))
    assert on.ignore_changes == ["spec.replicas"] and off.ignore_changes == []
    assert on.inputs["spec"]["replicas"] == 1, "created with its count, the same plan at any hour"
    # Off, the stack owns the field again and takes it back from the scaler's field manager.
    assert off.inputs["metadata"]["annotations"][PATCH_FORCE_ANNOTATION] == "true"
    assert PATCH_FORCE_ANNOTATION not in on.inputs["metadata"]["annotations"]


def test_keda_gets_a_scaled_object_with_a_cron_trigger_per_window_and_the_override():
    evaluation = evaluate_cached("prod", {"sam.activeHours.scaler": "keda",
                                          "sam.activeHours.keepUpUntil": "2026-12-08T02:00"})
    assert _children(evaluation, ":CronJob") == [] and _children(evaluation, ":Role") == []
    [scaled] = _children(evaluation, ":ScaledObject")
    spec = scaled.inputs["spec"]
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": SAM_NAME}
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (0, 1)
    assert [(t["metadata"]["start"], t["metadata"]["end"]) for t in spec["triggers"]] == [
        ("30 7 * * 1,2,3,4,5", "0 18 * * 1,2,3,4,5"), ("0 2 7 12 *", "0 2 8 12 *")]
    assert {t["metadata"]["timezone"] for t in spec["triggers"]} == {"Europe/Berlin"}
    assert _sam_deployment(evaluation).ignore_changes == ["spec.replicas"]


def test_an_override_adds_a_job_that_runs_once_and_a_scale_down_at_its_end():
    evaluation = evaluate_cached("prod", {"sam.activeHours.keepUpUntil": "2026-12-08T02:00"})
    [job] = _children(evaluation, ":Job")
    assert job.inputs["metadata"]["name"].startswith("sam-keep-up-")
    schedules = {c.inputs["metadata"]["name"]: c.inputs["spec"]["schedule"] for c in _children(evaluation, ":CronJob")}
    assert schedules["sam-scale-down-keep-up"] == "0 2 8 12 *"


def test_the_scaler_runs_from_its_own_modules_alone(tmp_path):
    package = tmp_path / "reconciler"
    package.mkdir()
    for name, text in scaler_modules().items():
        (package / name).write_text(text)
    # As the pod runs it, without site-packages (the image has only the standard library): the usage line.
    completed = subprocess.run([sys.executable, "-S", "-E", "-m", "reconciler.sam_scale"], cwd=tmp_path,
                               capture_output=True, text=True)
    assert completed.returncode == 2 and completed.stderr.startswith("usage: python -m reconciler.sam_scale"), \
        completed.stderr
    assert len(SCALER_MODULES) == len(scaler_modules())


# --------------------------------------------------------------------------- the scaler's run


class FakeScaleApi:
    """The API server's scale subresource: records each PATCH."""

    def __init__(self):
        self.patches: list[tuple[str, dict, str]] = []

    def __call__(self, request: urllib.request.Request, timeout: float) -> tuple[int, bytes]:
        self.patches.append((request.full_url, json.loads(request.data), request.get_header("Content-type")))
        return 200, b'{"kind": "Scale"}'


@pytest.fixture
def service_account(tmp_path):
    (tmp_path / "token").write_text("jwt\n")
    (tmp_path / "namespace").write_text("labeling\n")
    return tmp_path


@pytest.mark.parametrize("now, replicas, reason", [
    (berlin(2026, 12, 7, 7, 30), 1, "inside sam.activeHours"),
    (berlin(2026, 12, 7, 18, 0), 0, "outside sam.activeHours until 2026-12-08T08:00+01:00"),
])
def test_the_scaler_patches_the_scale_subresource_as_its_own_field_manager(service_account, now, replicas, reason):
    api = FakeScaleApi()
    lines: list[str] = []
    assert apply_schedule(schedule_document(OFFICE, SAM_NAME, 1),
                          KubernetesApi(api, service_account, "https://k"), lines.append, lambda: now) == replicas
    [(url, body, content_type)] = api.patches
    assert url == (f"https://k/apis/apps/v1/namespaces/labeling/deployments/{SAM_NAME}/scale"
                   f"?fieldManager={FIELD_MANAGER}")
    assert body == {"spec": {"replicas": replicas}} and content_type == "application/merge-patch+json"
    assert lines == [f'deployment "labeling/{SAM_NAME}": {replicas} replica(s) at '
                     f"{now.isoformat(timespec='minutes')} ({reason})"]


# --------------------------------------------------------------------------- the reconciler


def _sam_state(hours: ActiveHours) -> dict:
    project = {"title": "Fruit", "labelConfig": SAM_CONFIG, "prefix": "fruit", "regexFilter": "", "sam": True}
    return {**desired(projects=[project]), "samActiveHours": hours.to_document()}


def test_outside_the_windows_the_run_reports_sam_paused_and_holds_no_lock_waiting(service_account):
    secret, fake, lines = VersionedSecret(), FakeLabelStudio({"fruit": 2}), []
    client = LabelStudioClient("http://label-studio:80", "good-token", opener=fake)
    sleeps: list[float] = []
    run_lock = lock(secret, service_account, "cron-pod")
    run_lock_acquire = run_lock.acquire
    run_lock.acquire = lambda remaining, report: run_lock_acquire(remaining, report, sleep=sleeps.append)
    for scheduled in (True, False):  # the scheduled run and the Job alike
        assert reconcile_once(parse_desired_state(_sam_state(OFFICE)), client, RunEnvironment(), run_lock, scheduled,
                              lines.append, s3_opener=reachable_s3, clock=lambda: berlin(2026, 12, 7, 20, 0))
    assert lines.count("SAM paused by sam.activeHours until 2026-12-08T08:00+01:00") == 2
    assert not any(path.startswith("/api/ml") for _, path, _ in fake.requests), "no connection attempt"
    assert fake.backends == {} and sleeps == []
    assert RUN_LOCK_KEY not in secret.data, "released"


def test_inside_a_window_the_sam_step_runs_as_usual(service_account):
    secret, fake, lines = VersionedSecret(), FakeLabelStudio({"fruit": 2}), []
    client = LabelStudioClient("http://label-studio:80", "good-token", opener=fake)
    late_night = ActiveHours(OFFICE.time_zone, OFFICE.windows, 30, datetime(2026, 12, 8, 2, 0))
    self_test = SamSelfTest(client, SAM_URL, image_opener=fake, backend_opener=fake.sam.backend)
    for hours, now in ((OFFICE, berlin(2026, 12, 7, 10, 0)), (late_night, berlin(2026, 12, 7, 23, 0))):
        reconcile_once(parse_desired_state(_sam_state(hours)), client, RunEnvironment(),
                       lock(secret, service_account, "job-pod"), False, lines.append, s3_opener=reachable_s3,
                       sam_self_test=self_test, clock=lambda: now)
    assert not any("paused" in line for line in lines)
    assert len(fake.backends) == 1 and any("ml backend" in line for line in lines)
