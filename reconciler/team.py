"""Team access: the invite link and the record of created accounts, kept in a Kubernetes Secret."""

from __future__ import annotations

import base64
import json
import os
import ssl
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Callable

from reconciler.client import REQUEST_TIMEOUT_SECONDS, LabelStudioClient, Opener, describe_error_body, urllib_opener
from reconciler.contract import INVITE_URL_KEY
from reconciler.errors import ReconcileError

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
CONFLICT = 409


class WriteConflict(ReconcileError):
    """A conditional write lost against another writer."""


def absolute_invite_url(base_url: str, invite_path: str) -> str:
    return urllib.parse.urljoin(base_url.rstrip("/") + "/", invite_path.lstrip("/"))


def fetch_invite(client: LabelStudioClient) -> dict:
    """GET /api/invite answers {"invite_url": "/user/signup/?token=<organization token>", "token": ...}."""
    return client.get("/api/invite")


class TeamSecret:
    """The existing Secret `name` of the pod's namespace, read and merge-patched through the
    Kubernetes API with the pod's service-account token. Values are never printed."""

    def __init__(self, name: str, opener: Opener | None = None, service_account_dir: Path = SERVICE_ACCOUNT_DIR,
                 api_server: str | None = None):
        namespace = (service_account_dir / "namespace").read_text().strip()
        if api_server is None:
            host = os.environ.get("KUBERNETES_SERVICE_HOST", "kubernetes.default.svc")
            port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
            api_server = f"https://{host}:{port}"
        if opener is None:
            opener = urllib_opener(ssl.create_default_context(cafile=str(service_account_dir / "ca.crt")))
        self._open = opener
        self._url = f"{api_server}/api/v1/namespaces/{namespace}/secrets/{urllib.parse.quote(name)}"
        self._token = (service_account_dir / "token").read_text().strip()
        self.label = f'team secret "{namespace}/{name}"'

    @classmethod
    def in_pod(cls, name: str, report: Callable[[str], None], opener: Opener | None = None,
               service_account_dir: Path = SERVICE_ACCOUNT_DIR, api_server: str | None = None) -> "TeamSecret | None":
        """None (with a line saying why) outside a pod: there is no token to reach the API with."""
        if not (service_account_dir / "token").exists():
            report(f'team secret "{name}": skipped (no service-account token at {service_account_dir})')
            return None
        return cls(name, opener, service_account_dir, api_server)

    def _send(self, method: str, body: dict | None = None, content_type: str = "") -> dict:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self._url, data=data, method=method,
                                         headers={"Authorization": f"Bearer {self._token}", "Accept": "application/json"})
        if content_type:
            request.add_header("Content-Type", content_type)
        try:
            status, raw = self._open(request, REQUEST_TIMEOUT_SECONDS)
        except OSError as error:
            raise ReconcileError(f"{self.label}: Kubernetes API unreachable ({error})") from None
        if status == CONFLICT:
            raise WriteConflict(f"{self.label}: changed by someone else since it was read")
        if status >= 400:
            raise ReconcileError(f"{self.label}: {method} answered {status}: {describe_error_body(raw)}")
        return json.loads(raw) if raw else {}

    def read(self) -> dict[str, str]:
        """The Secret's data, decoded."""
        return self.read_versioned()[0]

    def read_versioned(self) -> tuple[dict[str, str], str]:
        """The Secret's data, decoded, and the resourceVersion it was read at."""
        secret = self._send("GET")
        data = secret.get("data") or {}
        return ({key: base64.b64decode(value).decode() for key, value in data.items()},
                str((secret.get("metadata") or {}).get("resourceVersion") or ""))

    def write_if_unchanged(self, key: str, value: str | None, version: str) -> bool:
        """Set (or, with None, delete) `key` only if the Secret is still at `version`; False when
        another writer came first (the API server refuses a patch carrying an old resourceVersion)."""
        encoded = None if value is None else base64.b64encode(value.encode()).decode()
        try:
            self._send("PATCH", {"metadata": {"resourceVersion": version}, "data": {key: encoded}},
                       "application/merge-patch+json")
        except WriteConflict:
            return False
        return True

    def write(self, key: str, value: str) -> bool:
        """Store `value` under `key` unless it is there already; True when it was written."""
        if self.read().get(key) == value:
            return False
        encoded = base64.b64encode(value.encode()).decode()
        self._send("PATCH", {"data": {key: encoded}}, "application/merge-patch+json")
        return True


def store_invite_in_secret(invite_url: str, secret: TeamSecret, report: Callable[[str], None]) -> None:
    """Write the invite link into the team Secret (key invite-url). The link is never printed."""
    if secret.write(INVITE_URL_KEY, invite_url):
        report(f"{secret.label}: invite link stored under key {INVITE_URL_KEY}")
    else:
        report(f"{secret.label}: unchanged")
