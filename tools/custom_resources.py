"""Schemas of the custom resources the stack declares, which kubernetes-validate has none for.

Each covers the fields the stack writes, as the resource's own CRD defines them, and refuses
any other field (as strict kubernetes-validate does): a typo fails here, not in the cluster.

- keda.sh/v1alpha1 ScaledObject: KEDA 2.x's CRD (config/crd/bases/keda.sh_scaledobjects.yaml):
  spec.scaleTargetRef {apiVersion, kind, name (required)}, minReplicaCount / maxReplicaCount
  (int32), triggers (required) [{type (required), metadata: map of strings}]; the cron scaler
  reads metadata timezone, start, end and desiredReplicas (strings).
- monitoring.coreos.com/v1 PodMonitor: the Prometheus Operator's CRD
  (example/prometheus-operator-crd/monitoring.coreos.com_podmonitors.yaml): spec.selector
  (required), a LabelSelector {matchLabels: map of strings}; spec.podMetricsEndpoints
  [{port (the container port's name), path}] (strings).
- kyverno.io/v1 ClusterPolicy (cluster-scoped): Kyverno 1.19.0's types (api/kyverno/v1,
  spec_types.go, rule_types.go, match_resources_types.go, resource_description_types.go,
  image_verification_types.go at tag v1.19.0): spec.background (bool), spec.rules [{name
  (required), match {any: [{resources {kinds, namespaces, selector}}]}, verifyImages
  [{type Cosign|SigstoreBundle|Notary, imageReferences, failureAction Audit|Enforce, attestors
  [{entries [{keyless {subject, issuer, rekor {url (required)}}}]}], mutateDigest,
  verifyDigest, required (bools)}]}].
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

import jsonschema

_STRING = {"type": "string"}
_STRING_MAP = {"type": "object", "additionalProperties": _STRING}
_NAMED_METADATA = {"type": "object", "required": ["name"],
                   "properties": {"name": _STRING, "namespace": _STRING, "labels": _STRING_MAP,
                                  "annotations": _STRING_MAP},
                   "additionalProperties": False}
_CRON_METADATA = {"type": "object", "required": ["timezone", "start", "end", "desiredReplicas"],
                  "properties": {key: _STRING for key in ("timezone", "start", "end", "desiredReplicas")},
                  "additionalProperties": False}

_LABEL_SELECTOR = {"type": "object", "additionalProperties": False, "properties": {"matchLabels": _STRING_MAP}}


def _custom_resource(api_version: str, kind: str, metadata: dict, spec_required: list[str],
                     spec_properties: dict) -> dict:
    """What every custom resource here shares: its apiVersion and kind, its metadata, and a spec
    that admits only the fields listed."""
    return {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": api_version}, "kind": {"const": kind}, "metadata": metadata,
            "spec": {"type": "object", "required": spec_required, "additionalProperties": False,
                     "properties": spec_properties},
        },
        "additionalProperties": False,
    }


SCALED_OBJECT = _custom_resource("keda.sh/v1alpha1", "ScaledObject", _NAMED_METADATA, ["scaleTargetRef", "triggers"], {
    "scaleTargetRef": {"type": "object", "required": ["name"], "additionalProperties": False,
                       "properties": {"apiVersion": _STRING, "kind": _STRING, "name": _STRING}},
    "minReplicaCount": {"type": "integer", "minimum": 0},
    "maxReplicaCount": {"type": "integer", "minimum": 1},
    "triggers": {"type": "array", "minItems": 1, "items": {
        "type": "object", "required": ["type", "metadata"], "additionalProperties": False,
        "properties": {"type": {"const": "cron"}, "metadata": _CRON_METADATA}}},
})

POD_MONITOR = _custom_resource("monitoring.coreos.com/v1", "PodMonitor", _NAMED_METADATA, ["selector"], {
    "selector": _LABEL_SELECTOR,
    "podMetricsEndpoints": {"type": "array", "items": {
        "type": "object", "additionalProperties": False, "properties": {"port": _STRING, "path": _STRING}}},
})

_CLUSTER_METADATA = {**_NAMED_METADATA, "properties": {
    name: schema for name, schema in _NAMED_METADATA["properties"].items() if name != "namespace"}}
_STRINGS = {"type": "array", "items": _STRING}
_KEYLESS = {"type": "object", "required": ["subject", "issuer"], "additionalProperties": False, "properties": {
    "subject": _STRING, "issuer": _STRING,
    "rekor": {"type": "object", "required": ["url"], "additionalProperties": False, "properties": {"url": _STRING}}}}
_VERIFY_IMAGES = {"type": "object", "required": ["imageReferences", "attestors"], "additionalProperties": False,
                  "properties": {
                      "type": {"enum": ["Cosign", "SigstoreBundle", "Notary"]},
                      "imageReferences": {**_STRINGS, "minItems": 1},
                      "failureAction": {"enum": ["Audit", "Enforce"]},
                      "attestors": {"type": "array", "minItems": 1, "items": {
                          "type": "object", "required": ["entries"], "additionalProperties": False,
                          "properties": {"entries": {"type": "array", "minItems": 1, "items": {
                              "type": "object", "required": ["keyless"], "additionalProperties": False,
                              "properties": {"keyless": _KEYLESS}}}}}},
                      **{flag: {"type": "boolean"} for flag in ("mutateDigest", "verifyDigest", "required")}}}
_MATCH_RESOURCES = {"type": "object", "additionalProperties": False, "properties": {
    "kinds": _STRINGS, "namespaces": _STRINGS, "selector": _LABEL_SELECTOR}}

CLUSTER_POLICY = _custom_resource("kyverno.io/v1", "ClusterPolicy", _CLUSTER_METADATA, ["rules"], {
    "background": {"type": "boolean"},
    "rules": {"type": "array", "minItems": 1, "items": {
        "type": "object", "required": ["name", "match"], "additionalProperties": False,
        "properties": {
            "name": {"type": "string", "maxLength": 63},
            "match": {"type": "object", "additionalProperties": False, "properties": {
                "any": {"type": "array", "items": {
                    "type": "object", "additionalProperties": False,
                    "properties": {"resources": _MATCH_RESOURCES}}}}},
            "verifyImages": {"type": "array", "items": _VERIFY_IMAGES},
        }}},
})

# Keyed by the (apiVersion, kind) each schema admits.
SCHEMAS: Mapping[tuple[str, str], dict] = {
    (schema["properties"]["apiVersion"]["const"], schema["properties"]["kind"]["const"]): schema
    for schema in (SCALED_OBJECT, POD_MONITOR, CLUSTER_POLICY)}


def custom_resource_problem(obj: Mapping[str, Any]) -> Optional[str]:
    """None when `obj` fits its schema; what is wrong otherwise. KeyError for a kind with no schema here."""
    schema = SCHEMAS[(obj.get("apiVersion"), obj.get("kind"))]
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(obj))
    return None if error is None else f"{error.message} at {'.'.join(map(str, error.absolute_path))}"
