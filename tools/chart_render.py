"""Render the pinned heartex/label-studio chart offline with the real Helm engine.

What `helm template` would show for a release, without a Helm binary, a cluster or a
network: `helm-python-sdk` (PyPI, ctypes over Helm v4's Go SDK) loads the chart, checks
the values against its values.schema.json and renders its templates.

    from tools.chart_render import locate_chart, render_chart
    chart_dir, hint = locate_chart("2.0.5")
    objects = render_chart(chart_dir, values, release_name="label-studio", namespace="labeling-dev")

What is and is not rendered
- Only the chart's own templates. Its bitnami subcharts (postgresql, redis) cannot be
  fetched here, so the render runs on a temporary copy of the chart whose Chart.yaml
  declares `dependencies: []` and which has no Chart.lock. The subcharts' own objects are
  therefore missing from the result: with `postgresql.enabled: true` there is no
  PostgreSQL StatefulSet, Service or Secret, while the app's containers still name them
  (POSTGRE_HOST `<release>-postgresql-hl.<namespace>.svc.cluster.local`, and the password
  from `global.pgConfig.password.secretName/secretKey` when set, else the literal
  `postgresql.auth.password`). The app templates read only the chart's own values under
  `postgresql:` (enabled, auth.*), never the subchart's defaults, so everything else renders
  as it would with the subchart present. (helm-python-sdk 0.2.2 would even render the
  unmodified chart with its dependencies missing, where `helm template` refuses; the copy
  keeps the result independent of that leniency.)
- NOTES.txt is not an object and is left out. It still runs: the chart's configuration
  checks live there and fail the render (HelmRenderError) when a required value is
  missing, e.g. `postgresql.enabled: false` without `global.pgConfig.host`.
- `lookup` returns nothing offline. The chart's one lookup, in django-secret.yaml, keeps an
  existing Django key; offline it falls back to `randAscii 50`, a new key on every render.
  That Secret is rendered only when SECRET_KEY is in neither `global.extraEnvironmentSecrets`
  nor `global.extraEnvironmentVars`; with our own SECRET_KEY the render is deterministic.
- `.Capabilities` are Helm's defaults (helm-python-sdk 0.2.2: Kubernetes v1.36.0), not a
  cluster's; the chart consults them only for the Ingress apiVersion (networking.k8s.io/v1
  from Kubernetes 1.19 on).

helm-python-sdk (a 75 MB wheel) is a dev/plan dependency: it is imported only inside the
functions that need it, and never by the Pulumi program (`__main__.py`, `components/`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Mapping, Optional

import yaml

from components import PROJECT_ROOT
from components.label_studio import CHART_NAME, CHART_REPOSITORY

CHART_DIR_ENV = "LABEL_STUDIO_CHART_DIR"
# Templates whose output is text for the user, not Kubernetes objects.
NON_OBJECT_TEMPLATES = ("NOTES.txt",)


def default_chart_dir(chart_version: str, project_root: Path = PROJECT_ROOT) -> Path:
    """Where an unpacked chart is looked for without the setting: ../shared/charts/ beside the project."""
    return project_root.parent / "shared" / "charts" / f"{CHART_NAME}-{chart_version}"


def pull_hint(chart_version: str) -> str:
    """One line on how to get the chart and point the setting at it."""
    return (f"no {CHART_NAME} {chart_version} chart to render: run `helm pull {CHART_NAME} --repo "
            f"{CHART_REPOSITORY} --version {chart_version} --untar` and set {CHART_DIR_ENV} to the "
            f"{CHART_NAME}/ directory it makes")


def chart_metadata(chart_dir: Path) -> tuple[Optional[str], Optional[str]]:
    """(name, version) from the Chart.yaml in `chart_dir`; None for what it does not say."""
    try:
        metadata = yaml.safe_load((Path(chart_dir) / "Chart.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return None, None
    if not isinstance(metadata, dict):
        return None, None
    name, version = metadata.get("name"), metadata.get("version")
    return (None if name is None else str(name)), (None if version is None else str(version))


def locate_chart(chart_version: str, project_root: Path = PROJECT_ROOT,
                 environ: Optional[Mapping[str, str]] = None) -> tuple[Optional[Path], Optional[str]]:
    """The directory of the unpacked chart `chart_version`, or None and a one-line hint.

    An explicit path (env LABEL_STUDIO_CHART_DIR) wins; else
    `<project>/../shared/charts/label-studio-<chart_version>`. A directory whose Chart.yaml
    names another chart or version is refused: its render would not be the stack's.
    Returns `(path, None)` or `(None, hint)`.
    """
    environ = os.environ if environ is None else environ
    explicit = environ.get(CHART_DIR_ENV, "").strip()
    candidate = Path(explicit).expanduser() if explicit else default_chart_dir(chart_version, project_root)
    origin = f"{CHART_DIR_ENV}={explicit}" if explicit else str(candidate)
    if not (candidate / "Chart.yaml").is_file():
        return None, (f"{origin} holds no chart; " if explicit else "") + pull_hint(chart_version)
    name, found = chart_metadata(candidate)
    if name != CHART_NAME or found != chart_version:
        return None, (f"{origin} is chart {name} {found}, the stack pins {CHART_NAME} {chart_version}; "
                      + pull_hint(chart_version))
    return candidate, None


def _copy_without_dependencies(chart_dir: Path, into: Path) -> Path:
    """A copy of the chart whose Chart.yaml declares no dependencies and which has no Chart.lock."""
    source = Path(chart_dir).resolve()
    copy = into / source.name

    def top_level_dependencies(directory: str, names: list[str]) -> set[str]:
        # vendored subcharts (charts/) and the lock would bring the dependencies back
        return {"charts", "Chart.lock"} & set(names) if Path(directory) == source else set()

    shutil.copytree(source, copy, ignore=top_level_dependencies)
    metadata = yaml.safe_load((copy / "Chart.yaml").read_text())
    metadata["dependencies"] = []
    (copy / "Chart.yaml").write_text(yaml.safe_dump(metadata, sort_keys=False))
    return copy


def render_templates(chart_dir: Path, values: Mapping[str, Any], release_name: str, namespace: str,
                     validate_schema: bool = True) -> dict[str, list[dict]]:
    """Render the chart's own templates: {template path: [objects]} (install, revision 1).

    Every rendered YAML document is parsed; empty documents are dropped, and so is
    NOTES.txt, but a template that rendered nothing stays as an empty list. With
    `validate_schema` the values are first checked against values.schema.json
    (helm_python.HelmValuesError names the offending key). A failing template, NOTES.txt
    included, raises helm_python.HelmRenderError.
    """
    from helm_python import Chart  # dev/plan dependency: imported only when rendering

    plain_values = dict(values)
    with tempfile.TemporaryDirectory(prefix="chart-render-") as scratch:
        copy = _copy_without_dependencies(Path(chart_dir), Path(scratch))
        with Chart.load(str(copy)) as chart:
            if validate_schema:
                chart.validate_schema(plain_values)
            manifests = chart.render(plain_values, name=release_name, namespace=namespace, is_install=True)
    rendered: dict[str, list[dict]] = {}
    for template in sorted(manifests):
        if template.rsplit("/", 1)[-1] in NON_OBJECT_TEMPLATES:
            continue
        documents = yaml.safe_load_all(manifests[template])
        rendered[template] = [doc for doc in documents if doc]
    return rendered


def render_chart(chart_dir: Path, values: Mapping[str, Any], release_name: str, namespace: str,
                 validate_schema: bool = True) -> list[dict]:
    """Every Kubernetes object the chart renders for this release, in template order.

    The objects are as Helm would send them (most carry no metadata.namespace: Helm applies
    them in the release namespace). See `render_templates` for errors; the subcharts' own
    objects are not rendered (module docstring).
    """
    rendered = render_templates(chart_dir, values, release_name, namespace, validate_schema)
    return [obj for objects in rendered.values() for obj in objects]


def render_errors() -> tuple[type[BaseException], ...]:
    """What a failed render raises (helm_python.HelmError: values or templates), for an `except` clause;
    importing the engine only when one is being matched."""
    from helm_python import HelmError  # dev/plan dependency: imported only when rendering

    return (HelmError,)


def object_key(obj: Mapping[str, Any]) -> tuple[str, str]:
    """(kind, metadata.name) of a rendered object, e.g. ("Service", "label-studio-ls-app")."""
    return str(obj.get("kind")), str((obj.get("metadata") or {}).get("name"))
