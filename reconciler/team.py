"""Team access: the invite link, kept in a Kubernetes Secret, and who has joined."""

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


def absolute_invite_url(base_url: str, invite_path: str) -> str:
    return urllib.parse.urljoin(base_url.rstrip("/") + "/", invite_path.lstrip("/"))


def fetch_invite_url(client: LabelStudioClient, public_base_url: str) -> str:
    """GET /api/invite answers {"invite_url": "/user/signup/?token=<organization token>", "token": ...}."""
    invite = client.get("/api/invite")
    return absolute_invite_url(public_base_url, invite["invite_url"])


def report_members(client: LabelStudioClient, members: tuple[str, ...], report: Callable[[str], None]) -> None:
    """Label Studio 1.23.2's open-source API can add a user record (POST /api/users/) but not
    give it a password, and sign-up refuses an e-mail that already exists: creating members
    would lock them out. So members join through the invite link; this only reports who has."""
    if not members:
        return
    joined = {str(user.get("email", "")).lower() for user in client.get_all_pages("/api/users/")}
    for email in members:
        if email.lower() in joined:
            report(f'member "{email}": has joined')
        else:
            report(f'member "{email}": not joined yet (send them the invite link from the team Secret)')


def store_invite_in_secret(invite_url: str, secret_name: str, report: Callable[[str], None],
                           opener: Opener | None = None,
                           service_account_dir: Path = SERVICE_ACCOUNT_DIR,
                           api_server: str | None = None) -> None:
    """Write the invite link into the existing Secret `secret_name` (key invite-url) of the pod's
    namespace, with the pod's service-account token. The link is never printed."""
    token_path = service_account_dir / "token"
    if not token_path.exists():
        report(f'team secret "{secret_name}": skipped (no service-account token at {service_account_dir})')
        return
    namespace = (service_account_dir / "namespace").read_text().strip()
    if api_server is None:
        host = os.environ.get("KUBERNETES_SERVICE_HOST", "kubernetes.default.svc")
        port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        api_server = f"https://{host}:{port}"
    if opener is None:
        opener = urllib_opener(ssl.create_default_context(cafile=str(service_account_dir / "ca.crt")))
    url = f"{api_server}/api/v1/namespaces/{namespace}/secrets/{urllib.parse.quote(secret_name)}"
    headers = {"Authorization": f"Bearer {token_path.read_text().strip()}", "Accept": "application/json"}
    label = f'team secret "{namespace}/{secret_name}"'

    def send(method: str, body: dict | None = None, content_type: str = "") -> dict:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method=method, headers=dict(headers))
        if content_type:
            request.add_header("Content-Type", content_type)
        try:
            status, raw = opener(request, REQUEST_TIMEOUT_SECONDS)
        except OSError as error:
            raise ReconcileError(f"{label}: Kubernetes API unreachable ({error})") from None
        if status >= 400:
            raise ReconcileError(f"{label}: {method} answered {status}: {describe_error_body(raw)}")
        return json.loads(raw) if raw else {}

    stored = (send("GET").get("data") or {}).get(INVITE_URL_KEY)
    wanted = base64.b64encode(invite_url.encode()).decode()
    if stored == wanted:
        report(f"{label}: unchanged")
        return
    send("PATCH", {"data": {INVITE_URL_KEY: wanted}}, "application/merge-patch+json")
    report(f"{label}: invite link stored under key {INVITE_URL_KEY}")
