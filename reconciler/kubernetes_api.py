"""The Kubernetes API as a pod reaches it: the API server from the pod's environment, the
service-account token and CA from their mounted files. Standard library only."""

from __future__ import annotations

import json
import os
import ssl
import urllib.request
from pathlib import Path

from reconciler.client import REQUEST_TIMEOUT_SECONDS, Opener, describe_error_body, urllib_opener
from reconciler.errors import ReconcileError

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
CONFLICT = 409
MERGE_PATCH = "application/merge-patch+json"


class WriteConflict(ReconcileError):
    """A conditional write lost against another writer."""


class KubernetesApi:
    """Requests to the API server with the pod's service-account token, in the pod's namespace."""

    def __init__(self, opener: Opener | None = None, service_account_dir: Path = SERVICE_ACCOUNT_DIR,
                 api_server: str | None = None):
        self.namespace = (service_account_dir / "namespace").read_text().strip()
        if api_server is None:
            host = os.environ.get("KUBERNETES_SERVICE_HOST", "kubernetes.default.svc")
            port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
            api_server = f"https://{host}:{port}"
        if opener is None:
            opener = urllib_opener(ssl.create_default_context(cafile=str(service_account_dir / "ca.crt")))
        self._open = opener
        self._server = api_server
        self._token = (service_account_dir / "token").read_text().strip()

    def send(self, method: str, path: str, label: str, body: dict | None = None, content_type: str = "") -> dict:
        """The answer's JSON; one-line ReconcileError naming `label` otherwise (WriteConflict on 409)."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self._server + path, data=data, method=method,
                                         headers={"Authorization": f"Bearer {self._token}", "Accept": "application/json"})
        if content_type:
            request.add_header("Content-Type", content_type)
        try:
            status, raw = self._open(request, REQUEST_TIMEOUT_SECONDS)
        except OSError as error:
            raise ReconcileError(f"{label}: Kubernetes API unreachable ({error})") from None
        if status == CONFLICT:
            raise WriteConflict(f"{label}: changed by someone else since it was read")
        if status >= 400:
            raise ReconcileError(f"{label}: {method} answered {status}: {describe_error_body(raw)}")
        return json.loads(raw) if raw else {}
