"""The pinned chart rendered by the real Helm engine (tools/chart_render.py) from the values
each stack computes: which objects it makes, what the app pod reads, how it is reached.

The objects come from `tools.manifests.stack_objects` over the evaluated program, for
every configuration in tests/variants.py: the values of the `kubernetes:helm.sh/v3:Release`
resource as Pulumi would send them (secrets are only references there). The bitnami
PostgreSQL subchart is not rendered (see the module). Their validity is checked in
tests/test_manifests.py, how they connect to the stack's own objects in
tests/test_chart_wiring.py.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("helm_python", reason="helm-python-sdk (requirements-dev.txt) renders the chart")

from helm_python import HelmRenderError, HelmValuesError  # noqa: E402

from tools.chart_render import (  # noqa: E402
    CHART_DIR_ENV,
    locate_chart,
    object_key,
    render_chart,
    render_templates,
)
from components import PROJECT_ROOT  # noqa: E402
from tests.conftest import objects_cached  # noqa: E402
from tests.variants import VARIANTS  # noqa: E402
from tools.manifests import render_release  # noqa: E402

RELEASE = "kubernetes:helm.sh/v3:Release"


def release_of(configuration: str):
    releases = objects_cached(*VARIANTS[configuration]).evaluation.of_type(RELEASE)
    assert len(releases) == 1, [r.name for r in releases]
    return releases[0]


@pytest.fixture(scope="module")
def chart() -> Path:
    versions = {release_of(stack).inputs["version"] for stack in ("dev", "prod")}
    assert len(versions) == 1, versions
    chart_dir, hint = locate_chart(versions.pop())
    if chart_dir is None:
        pytest.fail(hint)
    return chart_dir


def rendered(chart: Path, configuration: str) -> list[dict]:
    [render] = objects_cached(*VARIANTS[configuration]).renders
    assert render.chart_dir == chart
    return list(render.objects)


def one(objects: list[dict], kind: str, name: str) -> dict:
    found = [o for o in objects if object_key(o) == (kind, name)]
    assert len(found) == 1, f"{kind}/{name} among {sorted(map(object_key, objects))}"
    return found[0]


def app_deployment(chart: Path, configuration: str) -> dict:
    return one(rendered(chart, configuration), "Deployment", f"{release_of(configuration).inputs['name']}-ls-app")


def container(pod_spec: dict, name: str, init: bool = False) -> dict:
    found = [c for c in pod_spec["initContainers" if init else "containers"] if c["name"] == name]
    assert len(found) == 1, [c["name"] for c in pod_spec.get("containers", [])]
    return found[0]


def env_of(container_spec: dict) -> dict[str, dict]:
    names = [e["name"] for e in container_spec["env"]]
    assert len(names) == len(set(names)), f"duplicate env names in {container_spec['name']}"
    return {e["name"]: e for e in container_spec["env"]}


# --------------------------------------------------------------------------- what renders

EXPECTED_OBJECTS = {
    "dev": {("Deployment", "label-studio-ls-app"), ("Service", "label-studio-ls-app"),
            ("ServiceAccount", "label-studio-ls-app"), ("Secret", "label-studio-ls-secrets")},
    # prod asks for a PodDisruptionBudget (two replicas)
    "prod": {("Deployment", "label-studio-ls-app"), ("Service", "label-studio-ls-app"),
             ("ServiceAccount", "label-studio-ls-app"), ("Secret", "label-studio-ls-secrets"),
             ("PodDisruptionBudget", "label-studio-ls-app")},
}


@pytest.mark.parametrize("stack", sorted(EXPECTED_OBJECTS))
def test_the_chart_renders_exactly_these_objects(chart, stack):
    objects = rendered(chart, stack)
    keys = [object_key(o) for o in objects]
    assert sorted(keys) == sorted(EXPECTED_OBJECTS[stack])
    # Ingress is the stack's own, not the chart's; our SECRET_KEY replaces the chart's
    # lookup-made Django secret; no migration Job, no rq worker (open source: no Redis).
    assert not {"Ingress", "Job", "StatefulSet"} & {kind for kind, _ in keys}


def test_nothing_of_the_postgresql_subchart_renders_but_the_app_still_names_it(chart):
    release = release_of("dev")
    assert release.inputs["values"]["postgresql"]["enabled"] is True
    objects = rendered(chart, "dev")
    assert not [o for o in objects if "postgresql" in object_key(o)[1]]
    env = env_of(container(app_deployment(chart, "dev")["spec"]["template"]["spec"], "app"))
    host = f"{release.inputs['name']}-postgresql-hl.{release.inputs['namespace']}.svc.cluster.local"
    assert env["POSTGRE_HOST"]["value"] == host
    assert env["POSTGRE_PORT"]["value"] == "5432"


def test_an_external_database_is_named_by_our_values(chart):
    env = env_of(container(app_deployment(chart, "external-db")["spec"]["template"]["spec"], "app"))
    assert {name: env[name]["value"] for name in ("POSTGRE_HOST", "POSTGRE_PORT", "POSTGRE_NAME", "POSTGRE_USER")} \
        == {"POSTGRE_HOST": "db.example.com", "POSTGRE_PORT": "6432", "POSTGRE_NAME": "labels",
            "POSTGRE_USER": "label_studio"}


# --------------------------------------------------------------------------- the app pod

@pytest.mark.parametrize("configuration", sorted(VARIANTS))
def test_the_app_container_gets_our_environment(chart, configuration):
    values = release_of(configuration).inputs["values"]["global"]
    env = env_of(container(app_deployment(chart, configuration)["spec"]["template"]["spec"], "app"))
    for name, value in values["extraEnvironmentVars"].items():
        assert env[name] == {"name": name, "value": str(value)}, name
    for name, ref in values["extraEnvironmentSecrets"].items():
        assert env[name] == {"name": name, "valueFrom": {"secretKeyRef": {"name": ref["secretName"],
                                                                           "key": ref["secretKey"]}}}, name
    password = values["pgConfig"]["password"]
    assert env["POSTGRE_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": password["secretName"],
                                                                    "key": password["secretKey"]}
    # the image's server, not Django's: uWSGI, migrations left to the init container
    assert container(app_deployment(chart, configuration)["spec"]["template"]["spec"], "app")["args"] \
        == ["label-studio-uwsgi"]
    assert env["SKIP_DB_MIGRATIONS"]["value"] == "true"


def test_the_image_and_the_migrations(chart):
    values = release_of("dev").inputs["values"]
    pod = app_deployment(chart, "dev")["spec"]["template"]["spec"]
    image = f"docker.io/heartexlabs/label-studio:{values['global']['image']['tag']}"
    assert {c["image"] for c in pod["initContainers"] + pod["containers"]} == {image}
    assert container(pod, "db-migrations", init=True)["args"] == ["label-studio-migrate"]


# --------------------------------------------------------------------------- how the app is reached

@pytest.mark.parametrize("stack", ("dev", "prod"))
def test_the_service_reaches_the_pods_nginx(chart, stack):
    release = release_of(stack).inputs["name"]
    objects = rendered(chart, stack)
    service = one(objects, "Service", f"{release}-ls-app")
    assert service["spec"]["type"] == "ClusterIP"
    assert [(p["port"], p["targetPort"], p["protocol"]) for p in service["spec"]["ports"]] == [(80, 8085, "TCP")]
    pod_template = app_deployment(chart, stack)["spec"]["template"]
    nginx = container(pod_template["spec"], "nginx")
    assert [(p["containerPort"], p["name"]) for p in nginx["ports"]] == [(8085, service["spec"]["ports"][0]["name"])]
    assert service["spec"]["selector"].items() <= pod_template["metadata"]["labels"].items()


@pytest.mark.parametrize("stack", ("dev", "prod"))
def test_the_pod_labels(chart, stack):
    release = release_of(stack).inputs["name"]
    deployment = app_deployment(chart, stack)
    labels = {"app.kubernetes.io/name": "ls-app", "app.kubernetes.io/instance": release}
    assert deployment["spec"]["template"]["metadata"]["labels"] == labels
    assert deployment["spec"]["selector"]["matchLabels"] == labels
    replicas = release_of(stack).inputs["values"]["app"]["replicas"]
    assert deployment["spec"]["replicas"] == replicas


# --------------------------------------------------------------------------- validity, stability

@pytest.mark.parametrize("stack", ("dev", "prod"))
def test_the_render_is_deterministic_with_our_own_django_secret(chart, stack):
    again = render_release(release_of(stack), chart).objects
    assert json.dumps(again, sort_keys=True) == json.dumps(rendered(chart, stack), sort_keys=True)


def test_without_our_secret_key_the_chart_makes_a_new_django_key_on_every_render(chart):
    # The chart's only `lookup` (django-secret.yaml) finds nothing offline, so randAscii wins.
    release = release_of("dev")
    values = copy.deepcopy(release.inputs["values"])
    del values["global"]["extraEnvironmentSecrets"]["SECRET_KEY"]
    keys = []
    for _ in range(2):
        objects = render_chart(chart, values, release.inputs["name"], release.inputs["namespace"])
        keys.append(one(objects, "Secret", f"{release.inputs['name']}-ls-app-django-secret")["data"]["key"])
    assert keys[0] != keys[1]


def test_notes_are_left_out_and_empty_templates_render_nothing(chart):
    release = release_of("dev")
    templates = render_templates(chart, release.inputs["values"], release.inputs["name"], release.inputs["namespace"])
    assert not [t for t in templates if t.endswith("NOTES.txt")]
    assert templates["label-studio/templates/app-ingress.yaml"] == []
    assert sum(len(objects) for objects in templates.values()) == len(rendered(chart, "dev"))


def test_values_are_checked_against_the_chart_schema(chart):
    with pytest.raises(HelmValuesError, match="ingres"):
        render_chart(chart, {"app": {"ingres": {"enabled": True}}}, "label-studio", "labeling-dev")


def test_the_chart_configuration_checks_fail_the_render(chart):
    with pytest.raises(HelmRenderError, match="global.pgConfig.host"):
        render_chart(chart, {"postgresql": {"enabled": False}}, "label-studio", "labeling-dev")


# --------------------------------------------------------------------------- finding the chart

def test_the_chart_is_found_beside_the_project_or_where_the_setting_points(tmp_path, chart):
    assert locate_chart("2.0.5", environ={}) == (PROJECT_ROOT.parent / "shared" / "charts" / "label-studio-2.0.5",
                                                 None)
    assert locate_chart("2.0.5", environ={CHART_DIR_ENV: str(chart)}) == (chart, None)


def test_without_a_chart_one_line_says_how_to_get_it(tmp_path):
    path, hint = locate_chart("9.9.9", project_root=tmp_path / "project", environ={})
    assert path is None
    assert "\n" not in hint
    assert "helm pull label-studio --repo https://charts.heartex.com/ --version 9.9.9 --untar" in hint
    assert CHART_DIR_ENV in hint
    path, hint = locate_chart("2.0.5", environ={CHART_DIR_ENV: str(tmp_path)})
    assert path is None and str(tmp_path) in hint


def test_a_chart_of_another_version_is_refused(chart):
    path, hint = locate_chart("2.0.6", environ={CHART_DIR_ENV: str(chart)})
    assert path is None
    assert "2.0.5" in hint and "2.0.6" in hint


def test_the_pulumi_program_never_imports_the_helm_engine():
    probe = ("import sys; from tools.stack_eval import evaluate; evaluate('dev'); "
             "assert 'helm_python' not in sys.modules, 'helm_python imported'; "
             "import tools.chart_render; assert 'helm_python' not in sys.modules, 'imported eagerly'")
    result = subprocess.run([sys.executable, "-c", probe], cwd=PROJECT_ROOT, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
