"""The stack's objects wired to what the chart really renders, for every configuration in
tests/variants.py.

The objects come from `tools.manifests.stack_objects`: those the program declares, and
those the pinned chart renders from the release's values (tools/chart_render.py). Four
kinds of references cross from one to the other, and each must land:
- every Ingress backend names a rendered Service and a port that Service exposes, and
  that Service reaches the app pods;
- every `LABEL_STUDIO_URL` / `LABEL_STUDIO_HOST`-style address of Label Studio in a pod's
  environment (the SAM Deployment, the reconciler Job, the chart's own
  `LS_APP_SERVICE_*`, anything else) is the public URL or names a rendered Service, by DNS
  name, whose selector matches the rendered app pod labels, on a port it exposes;
- every NetworkPolicy peer selects pods that exist, and every NetworkPolicy guarding what
  Label Studio calls (the ML backend URL of the reconciler's desired state) admits the
  rendered app pods on the port it is called on;
- every Secret name and key a rendered pod reads (env secretKeyRef, envFrom, secret and
  projected volumes) is declared by the stack (a Secret with that key in stringData or
  data) or rendered by the release.

Beside the wiring, the network edges as the pods get them: the rendered app keeps Label
Studio's SSRF protection on, and every pod is fenced by an egress NetworkPolicy none of
whose rules reaches the cloud metadata address (the pack's `k8s-egress-fenced`).

Not rendered, so not covered: the bitnami PostgreSQL subchart (on with `database.mode
inCluster`). It would create, named after the release, the StatefulSet and Service
`<release>-postgresql` and the headless Service `<release>-postgresql-hl` (the app's
POSTGRE_HOST), and, only when `postgresql.auth.existingSecret` is empty, the Secret
`<release>-postgresql` with the keys `postgres-password` and `password` (its
templates/secrets.yaml). Of those, a rendered pod could read only that Secret: it is the
one exemption (`subchart_secret`), under exactly that condition. The stack always sets
`existingSecret`, so the subchart reads our Secret instead; those keys are checked too.
Its pods stand in for the NetworkPolicy peers (`subchart_pods`), with the labels bitnami
gives them.

Each check is a function returning its problems; the last tests break a copy of the
objects in one place each and show that the check names it.
"""

from __future__ import annotations

import copy
import dataclasses
import ipaddress
import json
import re
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Optional
from urllib.parse import urlsplit

import pytest

from components.chart_values import DEFAULT_BANNED_SUBNETS
from components.labeling import DESIRED_STATE_FILE, RECONCILER_NAME
from policy.guardrails import ALL_POLICIES
from reconciler.contract import parse_desired_state
from tests.conftest import objects_cached
from tests.variants import VARIANTS
from tools.manifests import object_id
from tools.policy_check import rendered_resources, run_policies

# Env names that carry Label Studio's address: LABEL_STUDIO_URL, LABEL_STUDIO_HOST, LABEL_STUDIO_PUBLIC_URL, ...
LABEL_STUDIO_ADDRESS = re.compile(r"^LABEL_STUDIO(_\w+)?_(URL|HOST)$")
# The chart's own address of its app Service, in three variables (templates/_helpers.tpl).
CHART_SERVICE_ADDRESS = ("LS_APP_SERVICE_SCHEME", "LS_APP_SERVICE_NAME", "LS_APP_SERVICE_PORT")
DEFAULT_PORTS = {"http": 80, "https": 443}
CLUSTER_SUFFIXES = (".svc.cluster.local", ".svc")
# The subchart's Secret and its keys when it makes one (bitnami postgresql templates/secrets.yaml).
SUBCHART_SECRET_KEYS = frozenset({"postgres-password", "password"})


# --------------------------------------------------------------------------- the objects


@dataclass(frozen=True)
class Wiring:
    declared: list[dict]
    rendered: list[dict]
    release: str
    namespace: str
    public_url: str
    values: dict

    @property
    def everything(self) -> list[dict]:
        return self.declared + self.rendered


def wiring_of(variant: str) -> Wiring:
    objects = objects_cached(*VARIANTS[variant])
    [render] = objects.renders
    return Wiring(objects.declared_masked, list(render.objects), render.release_name, render.namespace,
                  objects.evaluation.outputs["url"], render.values)


def broken(wiring: Wiring) -> Wiring:
    """A deep copy to break in one place."""
    return dataclasses.replace(wiring, declared=copy.deepcopy(wiring.declared),
                               rendered=copy.deepcopy(wiring.rendered), values=copy.deepcopy(wiring.values))


def namespace_of(obj: Mapping[str, Any]) -> Optional[str]:
    return (obj.get("metadata") or {}).get("namespace")


def of_kind(objects: list[dict], kind: str) -> list[dict]:
    return [o for o in objects if o.get("kind") == kind]


def find(objects: list[dict], kind: str, name: str, namespace: Optional[str] = None) -> Optional[dict]:
    for obj in of_kind(objects, kind):
        if obj["metadata"]["name"] == name and (namespace is None or namespace_of(obj) == namespace):
            return obj
    return None


TEMPLATE_PATHS = {"Deployment": ("spec", "template"), "StatefulSet": ("spec", "template"),
                  "DaemonSet": ("spec", "template"), "ReplicaSet": ("spec", "template"), "Job": ("spec", "template"),
                  "CronJob": ("spec", "jobTemplate", "spec", "template"), "Pod": ()}


@dataclass(frozen=True)
class PodTemplate:
    owner: dict
    labels: Mapping[str, str]
    spec: dict

    def __str__(self) -> str:
        return object_id(self.owner)

    def containers(self) -> list[dict]:
        return list(self.spec.get("initContainers") or []) + list(self.spec.get("containers") or [])


def pod_templates(objects: list[dict]) -> Iterator[PodTemplate]:
    for obj in objects:
        path = TEMPLATE_PATHS.get(obj.get("kind"))
        if path is None:
            continue
        template = obj
        for key in path:
            template = template[key]
        yield PodTemplate(obj, (template.get("metadata") or {}).get("labels") or {}, template["spec"])


def app_pods(wiring: Wiring) -> PodTemplate:
    """The rendered app pods: the chart's Deployment `<release>-ls-app`."""
    name = f"{wiring.release}-ls-app"
    found = [p for p in pod_templates(wiring.rendered) if p.owner["kind"] == "Deployment"
             and p.owner["metadata"]["name"] == name]
    assert len(found) == 1, f"the chart renders no Deployment {name}"
    return found[0]


def selects(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """A label selector (matchLabels / matchExpressions) matches these labels; empty selects all."""
    if not (set(selector) <= {"matchLabels", "matchExpressions"}):
        selector = {"matchLabels": selector}  # a Service's plain map
    if not (selector.get("matchLabels") or {}).items() <= labels.items():
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
        if not {"In": key in labels and labels[key] in values, "NotIn": labels.get(key) not in values,
                "Exists": key in labels, "DoesNotExist": key not in labels}[operator]:
            return False
    return True


def container_ports(pod: PodTemplate) -> list[dict]:
    return [port for container in pod.containers() for port in container.get("ports") or []]


# --------------------------------------------------------------------------- Services


def service_problems(wiring: Wiring, via: str, namespace: str, name: str, port: Any) -> list[str]:
    """`via` calls Service `name` in `namespace` on `port` (a number or a port name): the chart must
    render it, expose that port, select the app pods and send the port to one of their containers."""
    service = find(wiring.rendered, "Service", name, namespace)
    if service is None:
        rendered = sorted(f"{namespace_of(s)}/{s['metadata']['name']}" for s in of_kind(wiring.rendered, "Service"))
        return [f"{via}: Service {namespace}/{name} is not rendered by the chart (it renders {rendered})"]
    spec = service["spec"]
    exposed = [p for p in spec.get("ports") or [] if port in (p.get("port"), p.get("name"))]
    if not exposed:
        offered = [(p.get("name"), p.get("port")) for p in spec.get("ports") or []]
        return [f"{via}: Service {name} exposes {offered}, not port {port!r}"]
    app = app_pods(wiring)
    problems = []
    if not spec.get("selector") or not selects(spec["selector"], app.labels):
        problems.append(f"{via}: Service {name} selects {spec.get('selector')}, not the app pods' labels "
                        f"{dict(app.labels)}")
    target = exposed[0].get("targetPort", exposed[0]["port"])
    if not [p for p in container_ports(app) if target in (p.get("containerPort"), p.get("name"))]:
        problems.append(f"{via}: Service {name} port {port!r} targets {target!r}, which no container of "
                        f"{app} listens on")
    return problems


def ingress_backends(objects: list[dict]) -> Iterator[tuple[dict, Optional[str], Any]]:
    """(Ingress, Service, port number or name) for every backend of every Ingress; Service None for a
    resource backend."""
    for ingress in of_kind(objects, "Ingress"):
        spec = ingress["spec"]
        backends = [spec["defaultBackend"]] if spec.get("defaultBackend") else []
        backends += [path["backend"] for rule in spec.get("rules") or []
                     for path in (rule.get("http") or {}).get("paths") or []]
        for backend in backends:
            port = (backend.get("service") or {}).get("port") or {}
            yield ingress, (backend.get("service") or {}).get("name"), port.get("number", port.get("name"))


def ingress_problems(wiring: Wiring) -> list[str]:
    problems = []
    for ingress, service, port in ingress_backends(wiring.everything):
        if service is None:
            problems.append(f"{object_id(ingress)}: a backend that is no Service")
        else:
            problems += service_problems(wiring, object_id(ingress), namespace_of(ingress), service, port)
    return problems


# --------------------------------------------------------------------------- Label Studio's address


def label_studio_addresses(wiring: Wiring) -> Iterator[tuple[str, PodTemplate, str]]:
    """(where, pod, URL) for every address of Label Studio in a container's environment."""
    for pod in pod_templates(wiring.everything):
        for container in pod.containers():
            env = {e["name"]: e.get("value") for e in container.get("env") or []}
            where = f"{pod} container {container['name']}"
            for name, value in env.items():
                if LABEL_STUDIO_ADDRESS.match(name):
                    yield f"{where} env {name}", pod, value
            if all(name in env for name in CHART_SERVICE_ADDRESS):
                scheme, host, port = (env[name] for name in CHART_SERVICE_ADDRESS)
                yield f"{where} env LS_APP_SERVICE_*", pod, f"{scheme}://{host}:{port}"


def service_address(host: str, namespace: str) -> Optional[tuple[str, str]]:
    """(namespace, service) of an in-cluster DNS name: svc, svc.ns, svc.ns.svc, svc.ns.svc.cluster.local."""
    for suffix in CLUSTER_SUFFIXES:
        if host.endswith(suffix):
            host = host[: -len(suffix)]
            break
    parts = host.split(".")
    if len(parts) == 1:
        return namespace, parts[0]
    if len(parts) == 2:
        return parts[1], parts[0]
    return None


def address_problems(wiring: Wiring, where: str, pod: PodTemplate, url: Optional[str]) -> list[str]:
    if not isinstance(url, str):
        return [f"{where}: no literal URL ({url!r})"]
    if url.rstrip("/") == wiring.public_url.rstrip("/"):
        return []  # the public URL, through the Ingress
    parts = urlsplit(url)
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        return [f"{where}: {url!r} is not an http(s) URL"]
    try:
        ipaddress.ip_address(parts.hostname)
        return [f"{where}: {url!r} is an IP address; a ClusterIP changes when the Service is recreated, "
                "name the Service"]
    except ValueError:
        pass
    found = service_address(parts.hostname, namespace_of(pod.owner))
    if found is None:
        return [f"{where}: {url!r} is neither the public URL ({wiring.public_url}) nor an in-cluster Service name"]
    namespace, service = found
    return service_problems(wiring, where, namespace, service, parts.port or DEFAULT_PORTS[parts.scheme])


def label_studio_url_problems(wiring: Wiring) -> list[str]:
    return [problem for where, pod, url in label_studio_addresses(wiring)
            for problem in address_problems(wiring, where, pod, url)]


# --------------------------------------------------------------------------- NetworkPolicies


def ml_backend_urls(wiring: Wiring) -> list[str]:
    """The URLs Label Studio is told to call: the ML backend of the reconciler's desired state."""
    urls = []
    for config_map in of_kind(wiring.declared, "ConfigMap"):
        document = (config_map.get("data") or {}).get(DESIRED_STATE_FILE)
        if document is not None and (url := parse_desired_state(json.loads(document)).sam_url):
            urls.append(url)
    return urls


def peers(policy: dict) -> Iterator[dict]:
    for direction, field in (("ingress", "from"), ("egress", "to")):
        for rule in policy["spec"].get(direction) or []:
            yield from rule.get(field) or []


def admits(policy: dict, pod: PodTemplate, port: int) -> bool:
    """An ingress rule of `policy` lets pods with these labels (same namespace) in on `port`."""
    for rule in policy["spec"].get("ingress") or []:
        from_pod = any("podSelector" in peer and "namespaceSelector" not in peer
                       and selects(peer["podSelector"], pod.labels) for peer in rule.get("from") or [])
        ports = rule.get("ports")
        if (from_pod or not rule.get("from")) and (not ports or any(p.get("port") == port for p in ports)):
            return True
    return False


def subchart_pods(wiring: Wiring) -> list[PodTemplate]:
    """The bitnami PostgreSQL pods, which the offline render cannot produce (tools/chart_render.py):
    their StatefulSet `<release>-postgresql` labels its pods with common.labels.matchLabels,
    name `postgresql` and instance `<release>`, plus component `primary` (postgresql 16.7.x)."""
    if not (wiring.values.get("postgresql") or {}).get("enabled"):
        return []
    owner = {"kind": "StatefulSet", "metadata": {"name": f"{wiring.release}-postgresql", "namespace": wiring.namespace}}
    labels = {"app.kubernetes.io/name": "postgresql", "app.kubernetes.io/instance": wiring.release,
              "app.kubernetes.io/component": "primary"}
    return [PodTemplate(owner, labels, {"containers": [{"name": "postgresql", "ports": [{"containerPort": 5432}]}]})]


def network_policy_problems(wiring: Wiring) -> list[str]:
    problems = []
    pods = list(pod_templates(wiring.everything)) + subchart_pods(wiring)
    policies = of_kind(wiring.everything, "NetworkPolicy")
    for policy in policies:
        for peer in peers(policy):
            if "podSelector" in peer and "namespaceSelector" not in peer and not [
                    p for p in pods if namespace_of(p.owner) == namespace_of(policy)
                    and selects(peer["podSelector"], p.labels)]:
                problems.append(f"{object_id(policy)}: peer {peer['podSelector']} selects no pod of the stack "
                                "or the chart")
    app = app_pods(wiring)
    for url in ml_backend_urls(wiring):
        parts = urlsplit(url)
        namespace, name = service_address(parts.hostname, wiring.namespace) or (None, None)
        service = find(wiring.declared, "Service", name, namespace)
        if service is None:
            problems.append(f"ML backend {url}: no declared Service {namespace}/{name}")
            continue
        wanted = parts.port or DEFAULT_PORTS[parts.scheme]
        port = next((p for p in service["spec"]["ports"] if p["port"] == wanted), None)
        if port is None:
            problems.append(f"ML backend {url}: Service {name} exposes no port {wanted}")
            continue
        backends = [p for p in pods if namespace_of(p.owner) == namespace and selects(service["spec"]["selector"],
                                                                                       p.labels)]
        if not backends:
            problems.append(f"ML backend {url}: Service {name} selects no pod")
        for backend in backends:
            target = port.get("targetPort", port["port"])
            numbers = [c["containerPort"] for c in container_ports(backend) if target in (c["containerPort"],
                                                                                           c.get("name"))]
            for policy in policies:
                guards = (namespace_of(policy) == namespace and selects(policy["spec"]["podSelector"], backend.labels)
                          and "Ingress" in policy["spec"].get("policyTypes", ["Ingress"]))
                if guards and not any(admits(policy, app, number) for number in numbers):
                    problems.append(f"{object_id(policy)} does not let the app pods ({dict(app.labels)}) reach "
                                    f"{backend} on {url}")
    return problems


# --------------------------------------------------------------------------- Secrets


def secret_reads(pod: PodTemplate) -> Iterator[tuple[str, str, Optional[str]]]:
    """(where, Secret, key or None for the whole Secret) for everything the pod reads from Secrets."""
    for container in pod.containers():
        where = f"{pod} container {container['name']}"
        for entry in container.get("env") or []:
            ref = (entry.get("valueFrom") or {}).get("secretKeyRef")
            if ref:
                yield f"{where} env {entry['name']}", ref["name"], ref["key"]
        for source in container.get("envFrom") or []:
            if "secretRef" in source:
                yield f"{where} envFrom", source["secretRef"]["name"], None
    for volume in pod.spec.get("volumes") or []:
        sources = [volume["secret"] | {"name": volume["secret"]["secretName"]}] if "secret" in volume else []
        sources += [s["secret"] for s in (volume.get("projected") or {}).get("sources") or [] if "secret" in s]
        for source in sources:
            items = source.get("items") or []
            for item in items:
                yield f"{pod} volume {volume['name']}", source["name"], item["key"]
            if not items:
                yield f"{pod} volume {volume['name']}", source["name"], None


def secret_keys(objects: list[dict]) -> dict[tuple[str, str], set[str]]:
    return {(namespace_of(s), s["metadata"]["name"]): set(s.get("stringData") or {}) | set(s.get("data") or {})
            for s in of_kind(objects, "Secret")}


def subchart_secret(wiring: Wiring) -> dict[tuple[str, str], set[str]]:
    """The one object of the subchart a rendered pod could read: its Secret, made only without existingSecret."""
    postgresql = wiring.values.get("postgresql") or {}
    auth = postgresql.get("auth") or {}
    if postgresql.get("enabled", True) and not auth.get("existingSecret"):
        return {(wiring.namespace, f"{wiring.release}-postgresql"): set(SUBCHART_SECRET_KEYS)}
    return {}


def subchart_reads(wiring: Wiring) -> Iterator[tuple[str, str, str]]:
    """What the (unrendered) subchart reads from the Secret the values name."""
    postgresql = wiring.values.get("postgresql") or {}
    auth = postgresql.get("auth") or {}
    if postgresql.get("enabled", True) and auth.get("existingSecret"):
        for role, key in sorted((auth.get("secretKeys") or {}).items()):
            yield f"the PostgreSQL subchart ({role})", auth["existingSecret"], key


def secret_problems(wiring: Wiring) -> list[str]:
    available = secret_keys(wiring.declared)
    for source in (secret_keys(wiring.rendered), subchart_secret(wiring)):
        for name, keys in source.items():
            available.setdefault(name, set()).update(keys)
    reads = [(where, namespace_of(pod.owner), secret, key) for pod in pod_templates(wiring.rendered)
             for where, secret, key in secret_reads(pod)]
    reads += [(where, wiring.namespace, secret, key) for where, secret, key in subchart_reads(wiring)]
    problems = []
    for where, namespace, secret, key in reads:
        if (namespace, secret) not in available:
            problems.append(f"{where}: Secret {namespace}/{secret} is neither declared nor rendered")
        elif key is not None and key not in available[(namespace, secret)]:
            problems.append(f"{where}: Secret {secret} has no key {key!r} (it has {sorted(available[(namespace, secret)])})")
    return problems


# --------------------------------------------------------------------------- every variant


@pytest.fixture(params=sorted(VARIANTS))
def variant(request) -> str:
    return request.param


def test_each_ingress_backend_names_a_rendered_service_and_port(variant):
    wiring = wiring_of(variant)
    backends = list(ingress_backends(wiring.everything))
    assert len(backends) == (0 if variant == "no-ingress" else 1), backends
    assert ingress_problems(wiring) == []


def test_every_label_studio_address_reaches_the_rendered_app(variant):
    wiring = wiring_of(variant)
    found = {where.split(" container ")[0] + " " + where.rsplit(" env ", 1)[1]
             for where, _, _ in label_studio_addresses(wiring)}
    # The reconciler's Job calls Label Studio; the pre-upgrade backup's Job runs before it exists.
    reconciler_jobs = [job for job in of_kind(wiring.declared, "Job")
                       if job["metadata"]["name"].startswith(RECONCILER_NAME)]
    expected = {f"Job/{job['metadata']['name']} LABEL_STUDIO_URL" for job in reconciler_jobs}
    expected.add(f"Deployment/{wiring.release}-ls-app LS_APP_SERVICE_*")
    expected.add(f"Deployment/{wiring.release}-ls-app LABEL_STUDIO_HOST")  # the public URL
    sam = find(wiring.declared, "Deployment", "sam-backend")
    if sam:
        # The upstream examples read either spelling; the platform's server reads LABEL_STUDIO_URL.
        sam_env = {e["name"] for e in sam["spec"]["template"]["spec"]["containers"][0]["env"]}
        expected |= {f"Deployment/sam-backend {name}" for name in ("LABEL_STUDIO_URL", "LABEL_STUDIO_HOST")
                     if name in sam_env}
        assert "LABEL_STUDIO_URL" in sam_env
    assert expected <= found and len(reconciler_jobs) == 1
    assert label_studio_url_problems(wiring) == []


def test_network_policies_admit_the_rendered_app_pods(variant):
    wiring = wiring_of(variant)
    sam = find(wiring.declared, "NetworkPolicy", "sam-backend")
    assert (sam is None) == (ml_backend_urls(wiring) == [])
    assert network_policy_problems(wiring) == []


def test_every_secret_a_rendered_pod_reads_exists(variant):
    wiring = wiring_of(variant)
    reads = {(secret, key) for pod in pod_templates(wiring.rendered) for _, secret, key in secret_reads(pod)}
    assert (f"{wiring.release}-platform-secrets", "django-secret-key") in reads
    assert secret_problems(wiring) == []


def rendered_app_env(wiring: Wiring) -> dict[str, Any]:
    [app] = [c for c in app_pods(wiring).spec["containers"] if c["name"] == "app"]
    return {e["name"]: e.get("value") for e in app.get("env") or []}


def test_the_rendered_app_keeps_ssrf_protection_on(variant):
    """What the pods really get: SSRF protection on, and Label Studio's banned subnets intact
    but for the one ML backend address (SAM's ClusterIP) where there is one."""
    wiring = wiring_of(variant)
    env = rendered_app_env(wiring)
    assert env.get("SSRF_PROTECTION_ENABLED", "true") == "true" and env.get("ML_BLOCK_LOCAL_IP", "true") == "true"
    if env.get("USE_DEFAULT_BANNED_SUBNETS", "true") == "true":
        assert "USER_ADDITIONAL_BANNED_SUBNETS" not in env and not ml_backend_urls(wiring)
        return
    banned = [ipaddress.ip_network(n) for n in env["USER_ADDITIONAL_BANNED_SUBNETS"].split(",")]
    for probe in ("169.254.169.254", "127.0.0.1", "10.0.0.1", "172.16.0.1", "192.168.0.1", "100.64.0.1", "::1"):
        assert any(ipaddress.ip_address(probe) in n for n in banned), probe
    let_through = sum(n.num_addresses for n in map(ipaddress.ip_network, DEFAULT_BANNED_SUBNETS)) - sum(
        n.num_addresses for n in banned)
    assert let_through == 1


def test_every_pod_is_fenced_and_no_egress_reaches_the_metadata_address(variant):
    objects = objects_cached(*VARIANTS[variant])
    [egress_rule] = [p for p in ALL_POLICIES if p.name == "k8s-egress-fenced"]
    assert run_policies([egress_rule], objects.evaluation.resources + rendered_resources(objects)) == []
    wiring = wiring_of(variant)
    fenced = {object_id(p) for p in of_kind(wiring.declared, "NetworkPolicy") if "Egress" in p["spec"]["policyTypes"]}
    assert f"NetworkPolicy/{wiring.release}-ls-app-egress" in fenced


# --------------------------------------------------------------------------- each check can fail


def _rendered_service(w: Wiring) -> dict:
    return find(w.rendered, "Service", f"{w.release}-ls-app")


def _declared_ingress_backend(w: Wiring) -> dict:
    return of_kind(w.declared, "Ingress")[0]["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]


def _env(w: Wiring, objects: str, kind: str, name: str, container: Optional[str] = None) -> dict:
    obj = find(getattr(w, objects), kind, name)
    [pod] = pod_templates([obj])
    return {e["name"]: e for c in pod.containers() if container in (None, c["name"]) for e in c.get("env") or []}


def _sam_url(w: Wiring) -> dict:
    return _env(w, "declared", "Deployment", "sam-backend")["LABEL_STUDIO_URL"]


def _job_url(w: Wiring) -> dict:
    [job] = [job["metadata"]["name"] for job in of_kind(w.declared, "Job")
             if job["metadata"]["name"].startswith(RECONCILER_NAME)]
    return _env(w, "declared", "Job", job)["LABEL_STUDIO_URL"]


def _sam_policy_peer(w: Wiring) -> dict:
    return find(w.declared, "NetworkPolicy", "sam-backend")["spec"]["ingress"][0]


def _ml_backend_on_port(port: int):
    def mutate(w: Wiring) -> None:
        [config_map] = [c for c in of_kind(w.declared, "ConfigMap") if DESIRED_STATE_FILE in c["data"]]
        document = json.loads(config_map["data"][DESIRED_STATE_FILE])
        document["samUrl"] = document["samUrl"].rsplit(":", 1)[0] + f":{port}"
        config_map["data"][DESIRED_STATE_FILE] = json.dumps(document)
    return mutate


def _app_env(w: Wiring) -> dict:
    return _env(w, "rendered", "Deployment", f"{w.release}-ls-app", "app")


def _app_pod(w: Wiring) -> dict:
    return app_pods(w).spec


def _reads_subchart_secret(key: str, existing_secret: bool = False):
    """The app reads the subchart's own Secret, as it would with the chart's default password handling."""
    def mutate(w: Wiring) -> None:
        if not existing_secret:
            del w.values["postgresql"]["auth"]["existingSecret"]
        _app_env(w)["POSTGRE_PASSWORD"]["valueFrom"]["secretKeyRef"] = {"name": f"{w.release}-postgresql", "key": key}
    return mutate


def _sam_policy_admits_only_itself(w: Wiring) -> None:
    _sam_policy_peer(w)["from"] = [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "sam-backend"}}}]


# (check, how the copy is broken, a fragment of the problem it must report)
BREAKAGES = {
    "ingress to another Service": (
        ingress_problems, lambda w: _declared_ingress_backend(w).update(name="label-studio-app"),
        "Service labeling-dev/label-studio-app is not rendered"),
    "ingress to a port the Service lacks": (
        ingress_problems, lambda w: _declared_ingress_backend(w).update(port={"number": 8080}),
        "not port 8080"),
    "ingress to a Service that selects other pods": (
        ingress_problems, lambda w: _rendered_service(w)["spec"].update(selector={"app": "label-studio"}),
        "not the app pods' labels"),
    "ingress to a port no container serves": (
        ingress_problems, lambda w: _rendered_service(w)["spec"]["ports"][0].update(targetPort=8000 + 1),
        "targets 8001, which no container"),
    "SAM on a ClusterIP (the seed's manual step)": (
        label_studio_url_problems, lambda w: _sam_url(w).update(value="http://10.96.12.34:80"), "is an IP address"),
    "SAM on a wrong Service name": (
        label_studio_url_problems,
        lambda w: _sam_url(w).update(value="http://label-studio.labeling-dev.svc.cluster.local:80"),
        "Service labeling-dev/label-studio is not rendered"),
    "SAM on Label Studio's container port": (
        label_studio_url_problems,
        lambda w: _sam_url(w).update(value=f"http://{w.release}-ls-app.labeling-dev.svc.cluster.local:8085"),
        "not port 8085"),
    "the reconciler in another namespace": (
        label_studio_url_problems,
        lambda w: _job_url(w).update(value=f"http://{w.release}-ls-app.labeling.svc.cluster.local:80"),
        "Service labeling/label-studio-ls-app is not rendered"),
    "an address that is no Service": (
        label_studio_url_problems, lambda w: _job_url(w).update(value="http://label.internal.example.com"),
        "neither the public URL"),
    "the Service selecting other pods": (
        label_studio_url_problems,
        lambda w: _rendered_service(w)["spec"]["selector"].update({"app.kubernetes.io/name": "ls-web"}),
        "not the app pods' labels"),
    "SAM's policy naming other pods": (
        network_policy_problems,
        lambda w: _sam_policy_peer(w)["from"][0]["podSelector"]["matchLabels"].update(
            {"app.kubernetes.io/name": "label-studio"}),
        "selects no pod"),
    "SAM's policy admitting other pods only": (
        network_policy_problems, _sam_policy_admits_only_itself, "does not let the app pods"),
    "SAM's policy on another port": (
        network_policy_problems, lambda w: _sam_policy_peer(w)["ports"][0].update(port=8080),
        "does not let the app pods"),
    "Label Studio told to call SAM on a port its Service lacks": (
        network_policy_problems, _ml_backend_on_port(9091), "Service sam-backend exposes no port 9091"),
    "the app reading a key the Secret lacks": (
        secret_problems,
        lambda w: _app_env(w)["SECRET_KEY"]["valueFrom"]["secretKeyRef"].update(key="django-key"),
        "has no key 'django-key'"),
    "the app reading a Secret nobody makes": (
        secret_problems, lambda w: _app_pod(w)["containers"][0].setdefault("envFrom", []).append(
            {"secretRef": {"name": "label-studio-extra"}}),
        "Secret labeling-dev/label-studio-extra is neither declared nor rendered"),
    "a volume from a Secret nobody makes": (
        secret_problems, lambda w: _app_pod(w)["volumes"].append(
            {"name": "tls", "secret": {"secretName": "label-studio-tls"}}),
        "volume tls: Secret labeling-dev/label-studio-tls"),
    "the subchart reading a key our Secret lacks": (
        secret_problems, lambda w: w.values["postgresql"]["auth"]["secretKeys"].update(userPasswordKey="pg-password"),
        "the PostgreSQL subchart (userPasswordKey): Secret label-studio-platform-secrets has no key 'pg-password'"),
    "the subchart's own Secret, with a key it does not make": (
        secret_problems, _reads_subchart_secret("user-password"),
        "Secret label-studio-postgresql has no key 'user-password'"),
    "the subchart's Secret while existingSecret means it makes none": (
        secret_problems, _reads_subchart_secret("password", existing_secret=True),
        "Secret labeling-dev/label-studio-postgresql is neither declared nor rendered"),
}


@pytest.mark.parametrize("case", sorted(BREAKAGES))
def test_each_wiring_check_can_fail(case):
    check, mutate, fragment = BREAKAGES[case]
    intact = wiring_of("dev")
    assert check(intact) == []
    copy_ = broken(intact)
    mutate(copy_)
    problems = check(copy_)
    assert any(fragment in p for p in problems), problems
    assert check(intact) == [], "the check changed the cached objects"


def test_the_subchart_secret_is_the_only_exemption_and_only_without_existing_secret():
    wiring = broken(wiring_of("dev"))
    assert subchart_secret(wiring) == {}
    _reads_subchart_secret("password")(wiring)
    assert subchart_secret(wiring) == {("labeling-dev", "label-studio-postgresql"): set(SUBCHART_SECRET_KEYS)}
    assert secret_problems(wiring) == []
    assert subchart_secret(wiring_of("external-db")) == {}
