"""The offline plan (tools/plan.py) shows the objects the Helm release renders beside the
stack's own, or says in one line how to get the chart."""

from __future__ import annotations

import copy
import dataclasses
import io
from pathlib import Path

import yaml

from tests.conftest import evaluate_cached, objects_cached
from tools.manifests import MASK_BASE64, render_release, stack_objects
from tools.plan import CHART_OBJECTS_FILE, print_tree, report_chart_objects


def test_the_tree_lists_the_rendered_objects_under_the_release():
    objects = objects_cached("dev")
    out = io.StringIO()
    print_tree(objects.evaluation, out=out, objects=objects)
    lines = out.getvalue().splitlines()
    release = next(i for i, line in enumerate(lines) if "kubernetes:helm.sh/v3:Release" in line)
    indent = len(lines[release]) - len(lines[release].lstrip())
    assert lines[release + 1] == " " * (indent + 2) + "(chart) kubernetes:apps/v1:Deployment label-studio-ls-app"
    assert sum("(chart) " in line for line in lines) == len(objects.rendered)


def test_the_rendered_objects_are_written_with_their_secrets_masked(tmp_path: Path):
    objects = objects_cached("prod")
    out = io.StringIO()
    report_chart_objects(objects, tmp_path, 0.1, out=out)
    path = tmp_path / CHART_OBJECTS_FILE
    assert out.getvalue() == f"Wrote {len(objects.rendered)} objects rendered by the chart to {path} (rendered in 0.10 s)\n"
    text = path.read_text()
    assert text.startswith("# labeling-label-studio-release: chart label-studio 2.0.5 from ")
    written = list(yaml.safe_load_all(text))
    assert written == objects.rendered
    assert {o["metadata"]["namespace"] for o in written} == {"labeling"}


def test_a_rendered_secret_shows_its_keys_never_its_values():
    # Without our SECRET_KEY the chart makes its own Django key Secret (randAscii offline).
    render = objects_cached("dev").renders[0]
    inputs = copy.deepcopy(render.release.inputs)
    del inputs["values"]["global"]["extraEnvironmentSecrets"]["SECRET_KEY"]
    objects = render_release(dataclasses.replace(render.release, inputs=inputs), render.chart_dir).objects
    [django] = [o for o in objects if o["metadata"]["name"] == "label-studio-ls-app-django-secret"]
    assert django["data"] == {"key": MASK_BASE64}


def test_without_a_chart_one_line_says_how_to_get_it(tmp_path: Path):
    objects = stack_objects(evaluate_cached("dev"), environ={"LABEL_STUDIO_CHART_DIR": str(tmp_path)})
    assert objects.renders == () and objects.rendered == []
    out = io.StringIO()
    report_chart_objects(objects, tmp_path, 0.0, out=out)
    [line] = out.getvalue().splitlines()
    assert line.startswith("Chart objects not rendered: ")
    assert "helm pull label-studio --repo https://charts.heartex.com/ --version 2.0.5 --untar" in line
    assert not (tmp_path / CHART_OBJECTS_FILE).exists()


def test_values_the_chart_refuses_stop_the_plan_with_one_error(monkeypatch, capsys, tmp_path: Path):
    from tools import plan

    evaluation = copy.deepcopy(evaluate_cached("dev"))
    evaluation.one("kubernetes:helm.sh/v3:Release").inputs["values"]["app"]["replicas"] = "two"
    monkeypatch.setattr(plan, "evaluate", lambda stack, **options: evaluation)
    assert plan.main(["dev", "--out", str(tmp_path)]) == 1
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("error: the chart does not render the release's values: ") and "replicas" in line


def test_two_plans_write_the_same_files_with_integers_as_integers(tmp_path: Path):
    from tools.plan import write_manifests
    from tools.stack_eval import evaluate

    first, second = tmp_path / "first", tmp_path / "second"
    write_manifests(evaluate("dev"), first)
    write_manifests(evaluate("dev"), second)
    names = sorted(path.name for path in first.iterdir())
    assert names == sorted(path.name for path in second.iterdir())
    assert all((first / name).read_text() == (second / name).read_text() for name in names)
    assert not any(name[0].isdigit() for name in names)
    [deployment] = [name for name in names if name.startswith("deployment-")]
    sam = yaml.safe_load((first / deployment).read_text())
    assert sam["spec"]["replicas"] == 1 and isinstance(sam["spec"]["replicas"], int)
    assert "1.0" not in (first / deployment).read_text().split()
