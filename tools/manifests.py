"""The Kubernetes objects of a stack: those it declares, as the provider would send them,
and those its Helm release renders (tools/chart_render.py), with every secret value
masked: the input of kubernetes-validate, checkov, the policy pack's Kubernetes rules,
the offline plan and the chart wiring tests.

`stack_objects(evaluation)` is the one place that collects them; each guardrail takes
its objects from there.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

import yaml

from components import PROJECT_ROOT
from components.label_studio import CHART_NAME
from tools.chart_render import locate_chart, render_chart
from tools.stack_eval import DeclaredResource, Evaluation


MASK = "[masked]"
# Secret.data (and ConfigMap.binaryData) must stay base64 after masking.
MASK_BASE64 = base64.b64encode(MASK.encode()).decode()


def _mask_leaves(value: Any, base64_values: bool) -> Any:
    if value is None:  # an empty field (the chart renders `data: null`) stays empty
        return None
    if isinstance(value, dict):
        return {k: _mask_leaves(v, base64_values) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask_leaves(v, base64_values) for v in value]
    return MASK_BASE64 if base64_values else MASK


def _masked(value: Any, path: str, secret_paths: set[str]) -> Any:
    """Mask each leaf under a secret path, keeping the shape (a Secret's keys stay visible)."""
    if path in secret_paths:
        return _mask_leaves(value, base64_values=path.split(".")[0] in ("data", "binaryData"))
    if isinstance(value, dict):
        return {k: _masked(v, f"{path}.{k}" if path else k, secret_paths) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v, f"{path}[{i}]", secret_paths) for i, v in enumerate(value)]
    return value


def _plain_numbers(value: Any) -> Any:
    """Pulumi carries every number as a float; the API server receives 9090, not 9090.0."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _plain_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain_numbers(v) for v in value]
    return value


def masked_objects(evaluation: Evaluation) -> list[dict]:
    """Each declared Kubernetes object (Helm releases excluded), secrets masked."""
    return [
        _plain_numbers(_masked(manifest, "", resource.secret_paths))
        for resource in evaluation.resources
        if (manifest := resource.kubernetes_manifest) is not None
    ]


# --------------------------------------------------------------------------- declared + rendered

HELM_RELEASE = "kubernetes:helm.sh/v3:Release"
# What a Secret holds; masked in every rendered Secret (the chart's own included).
SECRET_CONTENT_PATHS = {"data", "stringData"}


def type_token(obj: Mapping[str, Any]) -> str:
    """The Pulumi type of a Kubernetes object: `kubernetes:apps/v1:Deployment`, `kubernetes:core/v1:Secret`."""
    api_version = str(obj.get("apiVersion", ""))
    group_version = api_version if "/" in api_version else f"core/{api_version}"
    return f"kubernetes:{group_version}:{obj.get('kind')}"


def object_id(obj: Mapping[str, Any]) -> str:
    """`Kind/name`, for messages."""
    return f"{obj.get('kind')}/{(obj.get('metadata') or {}).get('name')}"


@dataclass(frozen=True)
class ReleaseRender:
    """The objects one Helm release renders: the chart's own templates, not its subcharts'.

    Rendered from the release's values as the plan shows them (secret values masked) and
    with each object's metadata.namespace set to the release namespace where the chart
    leaves it out, as Helm applies it; every Secret's data is masked.
    """

    release: DeclaredResource
    chart_dir: Path
    objects: tuple[dict, ...]

    @property
    def release_name(self) -> str:
        return self.release.inputs["name"]

    @property
    def namespace(self) -> str:
        return self.release.inputs["namespace"]

    @property
    def values(self) -> dict:
        return self.release.masked_inputs()["values"]


@dataclass(frozen=True)
class StackObjects:
    """Every Kubernetes object of a stack: declared by the program, and rendered by its release."""

    evaluation: Evaluation
    renders: tuple[ReleaseRender, ...]
    # One line per release that was not rendered, saying how to get its chart.
    not_rendered: tuple[str, ...]

    @property
    def declared(self) -> list[dict]:
        """The declared objects with their real input values (what kubernetes-validate judges)."""
        return self.evaluation.kubernetes_objects()

    @property
    def declared_masked(self) -> list[dict]:
        return masked_objects(self.evaluation)

    @property
    def rendered(self) -> list[dict]:
        return [obj for render in self.renders for obj in render.objects]

    def all(self) -> list[dict]:
        """Declared, then rendered."""
        return self.declared + self.rendered

    def all_masked(self) -> list[dict]:
        """Declared, then rendered, every secret value masked: what may be written to a file."""
        return self.declared_masked + self.rendered

    def all_masked_yaml(self) -> str:
        return yaml.safe_dump_all(self.all_masked(), sort_keys=False)


def _as_helm_applies_it(obj: dict, namespace: str) -> dict:
    metadata = obj.setdefault("metadata", {})
    if not metadata.get("namespace"):
        metadata["namespace"] = namespace
    if obj.get("kind") == "Secret" and obj.get("apiVersion") == "v1":
        return _masked(obj, "", SECRET_CONTENT_PATHS)
    return obj


def render_release(release: DeclaredResource, chart_dir: Path) -> ReleaseRender:
    inputs = release.masked_inputs()
    objects = render_chart(chart_dir, inputs["values"], inputs["name"], inputs["namespace"])
    return ReleaseRender(release, chart_dir, tuple(_as_helm_applies_it(obj, inputs["namespace"]) for obj in objects))


def stack_objects(evaluation: Evaluation, environ: Optional[Mapping[str, str]] = None,
                  project_root: Path = PROJECT_ROOT) -> StackObjects:
    """The declared objects, plus what each Helm release renders when its chart is at hand.

    The chart is looked for as tools.chart_render.locate_chart does (LABEL_STUDIO_CHART_DIR,
    else ../shared/charts/label-studio-<version>); without it the release is left out and
    `not_rendered` holds the one-line hint saying how to get it.
    """
    environ = os.environ if environ is None else environ
    renders: list[ReleaseRender] = []
    hints: list[str] = []
    for release in evaluation.of_type(HELM_RELEASE):
        if release.inputs.get("chart") != CHART_NAME:
            hints.append(f"{release.name}: chart {release.inputs.get('chart')!r} has no offline renderer")
            continue
        chart_dir, hint = locate_chart(str(release.inputs["version"]), project_root, environ)
        if chart_dir is None:
            hints.append(hint)
        else:
            renders.append(render_release(release, chart_dir))
    return StackObjects(evaluation, tuple(renders), tuple(hints))
