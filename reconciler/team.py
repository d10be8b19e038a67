"""Team access: the invite link and the record of created accounts, kept in a Kubernetes Secret."""

from __future__ import annotations

import base64
import urllib.parse
from pathlib import Path
from typing import Callable

from reconciler.client import LabelStudioClient, Opener
from reconciler.contract import INVITE_URL_KEY
from reconciler.kubernetes_api import MERGE_PATCH, SERVICE_ACCOUNT_DIR, KubernetesApi, WriteConflict


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
        self._api = KubernetesApi(opener, service_account_dir, api_server)
        self._path = f"/api/v1/namespaces/{self._api.namespace}/secrets/{urllib.parse.quote(name)}"
        self.label = f'team secret "{self._api.namespace}/{name}"'

    @classmethod
    def in_pod(cls, name: str, report: Callable[[str], None], opener: Opener | None = None,
               service_account_dir: Path = SERVICE_ACCOUNT_DIR, api_server: str | None = None) -> "TeamSecret | None":
        """None (with a line saying why) outside a pod: there is no token to reach the API with."""
        if not (service_account_dir / "token").exists():
            report(f'team secret "{name}": skipped (no service-account token at {service_account_dir})')
            return None
        return cls(name, opener, service_account_dir, api_server)

    def _send(self, method: str, body: dict | None = None, content_type: str = "") -> dict:
        return self._api.send(method, self._path, self.label, body, content_type)

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
                       MERGE_PATCH)
        except WriteConflict:
            return False
        return True

    def write(self, key: str, value: str) -> bool:
        """Store `value` under `key` unless it is there already; True when it was written."""
        if self.read().get(key) == value:
            return False
        encoded = base64.b64encode(value.encode()).decode()
        self._send("PATCH", {"data": {key: encoded}}, MERGE_PATCH)
        return True


def store_invite_in_secret(invite_url: str, secret: TeamSecret, report: Callable[[str], None]) -> None:
    """Write the invite link into the team Secret (key invite-url). The link is never printed."""
    if secret.write(INVITE_URL_KEY, invite_url):
        report(f"{secret.label}: invite link stored under key {INVITE_URL_KEY}")
    else:
        report(f"{secret.label}: unchanged")
