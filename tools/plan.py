"""Offline plan: what `pulumi up` would declare for a stack, without CLI, cloud or cluster.

    python -m tools.plan dev

Runs the real program with the stack's configuration under mocks, prints the resource
tree (type, name, key inputs; secrets as [secret]) and the stack outputs, and writes
every Kubernetes object and each Helm release's values as YAML under build/plan/<stack>/.

When the release's chart is at hand (LABEL_STUDIO_CHART_DIR, else
../shared/charts/label-studio-<version>; tools/chart_render.py), the objects the release
renders, what `helm template` would show (the chart's own templates, not its
subcharts'), are listed under the release in the tree and written, secrets masked, to
build/plan/<stack>/chart-objects.yaml; without it one line says how to get the chart.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from components import PROJECT_ROOT
from components.settings.stack_file import StackFileError, stack_file_path
from tools.chart_render import render_errors
from tools.manifests import StackObjects, stack_objects, type_token
from tools.deployed import committed_deploy
from tools.plan_labeling import labeling_plan
from tools.stack_eval import DeclaredResource, Evaluation, evaluate, project_dir

import pulumi

# Inputs worth a glance in the tree; the full declared inputs go to the YAML files.
KEY_INPUTS = ("bucket", "chart", "version", "name", "namespace", "forceDestroy", "kind", "context",
              "region", "user", "policy", "type")


def _summary(resource: DeclaredResource) -> str:
    inputs = resource.masked_inputs()
    shown: dict[str, Any] = {}
    metadata = inputs.get("metadata") if isinstance(inputs.get("metadata"), dict) else {}
    if metadata.get("name"):
        shown["name"] = metadata["name"]
    for key in KEY_INPUTS:
        value = inputs.get(key)
        if value is not None and not isinstance(value, (dict, list)) and key not in shown:
            text = str(value)
            shown[key] = text if len(text) <= 60 else text[:57] + "..."
    if resource.type.endswith(":Secret") and isinstance(inputs.get("stringData"), dict):
        shown["keys"] = ",".join(sorted(inputs["stringData"]))
    flags = [flag for flag, on in (("protect", resource.protect), ("retain", resource.retain_on_delete)) if on]
    if resource.secret_paths:
        flags.append(f"{len(resource.secret_paths)} secret input(s)")
    details = " ".join(f"{k}={v}" for k, v in shown.items())
    return f"{resource.type} {resource.name}  {details}" + (f"  [{', '.join(flags)}]" if flags else "")


CHART_OBJECTS_FILE = "chart-objects.yaml"


def print_tree(evaluation: Evaluation, out=sys.stdout, objects: StackObjects | None = None) -> None:
    """The resources under their parents; a release's rendered objects under the release, marked `(chart)`."""
    children: dict[Any, list[DeclaredResource]] = {}
    for resource in evaluation.resources:
        children.setdefault(resource.parent, []).append(resource)
    known = {r.urn for r in evaluation.resources}
    rendered = {render.release.urn: render.objects for render in (objects.renders if objects else ())}

    def walk(parent: Any, depth: int) -> None:
        for resource in children.get(parent, []):
            print("  " * depth + _summary(resource), file=out)
            for obj in rendered.get(resource.urn, ()):
                print("  " * (depth + 1) + f"(chart) {type_token(obj)} {obj['metadata']['name']}", file=out)
            walk(resource.urn, depth + 1)

    for root in [p for p in children if p not in known]:
        walk(root, 0)


def write_manifests(evaluation: Evaluation, directory: Path) -> int:
    """Each Kubernetes object and Helm release's values in a file named by kind and resource
    name (never by registration order), so two plans of the same config write the same files."""
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    written: dict[str, str] = {}
    for resource in evaluation.resources:
        inputs = resource.masked_inputs()
        if resource.type == "kubernetes:helm.sh/v3:Release":
            document, stem = inputs.get("values", {}), f"helm-values-{resource.name}"
        elif resource.kubernetes_manifest is not None:
            document = {k: inputs[k] for k in resource.kubernetes_manifest}
            stem = f"{document.get('kind', 'object').lower()}-{resource.name}"
        else:
            continue
        if stem in written:
            raise ValueError(f"{resource.urn} and {written[stem]} would both be written to {stem}.yaml")
        written[stem] = resource.urn
        (directory / f"{stem}.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    return len(written)


def write_chart_objects(objects: StackObjects, directory: Path) -> Path:
    """The rendered objects, secrets masked, in one multi-document file, headed by where they come from."""
    header = "".join(f"# {render.release.name}: chart {render.release.inputs['chart']} "
                     f"{render.release.inputs['version']} from {render.chart_dir}, rendered offline; "
                     "its subcharts' objects are not rendered\n" for render in objects.renders)
    path = directory / CHART_OBJECTS_FILE
    path.write_text(header + yaml.safe_dump_all(objects.rendered, sort_keys=False))
    return path


def report_chart_objects(objects: StackObjects, directory: Path, elapsed: float, out=sys.stdout) -> None:
    """Write the rendered objects and say where, or say in one line how to get the chart."""
    if objects.renders:
        path = write_chart_objects(objects, directory)
        print(f"Wrote {len(objects.rendered)} objects rendered by the chart to {path} (rendered in {elapsed:.2f} s)",
              file=out)
    for hint in objects.not_rendered:
        print(f"Chart objects not rendered: {hint}", file=out)


def _masked_outputs(evaluation: Evaluation) -> dict[str, Any]:
    return {k: ("[secret]" if k in evaluation.secret_outputs else v) for k, v in evaluation.outputs.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stack", help="stack name: Pulumi.<stack>.yaml")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "build" / "plan")
    args = parser.parse_args(argv)
    if not stack_file_path(project_dir(args.stack), args.stack).is_file():
        print(f"error: no stack file Pulumi.{args.stack}.yaml in {project_dir(args.stack)}", file=sys.stderr)
        return 2

    started = time.perf_counter()
    # The accounts and the release the last deploy made, as far as the plan can tell offline.
    deployed = committed_deploy(args.stack)
    try:
        evaluation = evaluate(args.stack, previous_members=deployed.members, deployed_release=deployed.release)
    except (pulumi.RunError, StackFileError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    elapsed = time.perf_counter() - started
    started = time.perf_counter()
    try:
        objects = stack_objects(evaluation)
    except render_errors() as error:
        print(f"error: the chart does not render the release's values: {' '.join(str(error).split())}",
              file=sys.stderr)
        return 1
    render_elapsed = time.perf_counter() - started

    print(f"Offline plan of stack {args.stack!r}: {len(evaluation.resources)} resources"
          + (f", {len(objects.rendered)} objects rendered by the chart" if objects.renders else "") + "\n")
    print_tree(evaluation, objects=objects)
    print("\nWhat the reconciler applies (the Job after `pulumi up`, then on its schedule):")
    for line in labeling_plan(evaluation, evaluation.previous_members):
        print(f"  {line}")
    print("\nOutputs:")
    print(yaml.safe_dump(_masked_outputs(evaluation), sort_keys=False).rstrip())
    if evaluation.warnings:
        print("\nWarnings:")
        for warning in evaluation.warnings:
            print(f"  {warning}")
    directory = args.out / args.stack
    written = write_manifests(evaluation, directory)
    print(f"\nWrote {written} manifests to {directory}/ (evaluated in {elapsed:.2f} s)")
    report_chart_objects(objects, directory, render_elapsed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
