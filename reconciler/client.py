"""A small Label Studio API client on the standard library: token auth, JSON, pagination."""

from __future__ import annotations

import json
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Callable

from reconciler import contract
from reconciler.errors import ApiError, ReconcileError

REQUEST_TIMEOUT_SECONDS = 60


class Deadline:
    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._ends_at = clock() + seconds
        self.seconds = seconds

    def remaining(self) -> float:
        return max(0.0, self._ends_at - self._clock())

    def expired(self) -> bool:
        return self.remaining() <= 0


def _error_document(body: bytes):
    try:
        return json.loads(body.decode("utf-8", errors="replace"))
    except ValueError:
        return None


def refused_fields(body: bytes) -> tuple[str, ...]:
    """The fields a 400 names in `validation_errors` (e.g. title, label_config)."""
    document = _error_document(body)
    validation = document.get("validation_errors") if isinstance(document, dict) else None
    return tuple(validation) if isinstance(validation, dict) else ()


def describe_error_body(body: bytes) -> str:
    """The human part of a Label Studio error answer: validation texts first, then detail."""
    text = body.decode("utf-8", errors="replace").strip()
    document = _error_document(body)
    if document is None:
        return one_line(text)[:300] or "(empty answer)"
    if isinstance(document, dict):
        validation = document.get("validation_errors")
        if validation:
            return one_line(_flatten_messages(validation))
        for key in ("detail", "error", "message"):
            if document.get(key):
                return one_line(str(document[key]))
    return one_line(_flatten_messages(document))[:300]


def _flatten_messages(value) -> str:
    if isinstance(value, dict):
        return "; ".join(f"{key}: {_flatten_messages(item)}" for key, item in value.items())
    if isinstance(value, list):
        return "; ".join(_flatten_messages(item) for item in value)
    return str(value)


def one_line(text: str) -> str:
    return " ".join(text.split())


def relative_api_path(next_url: str) -> str:
    """Pagination links are absolute and may carry Label Studio's own host name: keep path+query."""
    parts = urllib.parse.urlsplit(next_url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


# An opener takes a prepared request and a timeout and returns (status, body); HTTP error
# statuses are returned, not raised, and network failures raise OSError.
Opener = Callable[[urllib.request.Request, float], tuple[int, bytes]]


def urllib_opener(context: ssl.SSLContext | None = None) -> Opener:
    def open_request(request: urllib.request.Request, timeout: float) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()
    return open_request


class LabelStudioClient:
    def __init__(self, base_url: str, token: str, opener: Opener | None = None):
        self.base_url = base_url.rstrip("/")
        self._token = token
        self._open = opener or urllib_opener()

    @property
    def authorization(self) -> str:
        """The Authorization header value, for requests the client does not send itself (downloads)."""
        return f"Token {self._token}"

    def call(self, method: str, path: str, body: dict | None = None,
             timeout: float = REQUEST_TIMEOUT_SECONDS) -> tuple[int, object]:
        """Send one request; returns (status, decoded JSON or None). Network errors raise OSError."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base_url + path, data=data, method=method)
        request.add_header("Authorization", self.authorization)
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        status, raw = self._open(request, timeout)
        if status >= 400:
            raise ApiError(method, path.split("?")[0], status, describe_error_body(raw), refused_fields(raw))
        try:
            return status, (json.loads(raw) if raw else None)
        except ValueError:
            return status, None

    def get(self, path: str, timeout: float = REQUEST_TIMEOUT_SECONDS):
        return self.call("GET", path, timeout=timeout)[1]

    def post(self, path: str, body: dict | None = None, timeout: float = REQUEST_TIMEOUT_SECONDS):
        return self.call("POST", path, body if body is not None else {}, timeout=timeout)[1]

    def patch(self, path: str, body: dict, timeout: float = REQUEST_TIMEOUT_SECONDS):
        return self.call("PATCH", path, body, timeout=timeout)[1]

    def get_all_pages(self, path: str) -> list[dict]:
        """Follow `next` links of a paginated list; accepts a plain list too."""
        items: list[dict] = []
        next_path: str | None = path
        while next_path:
            page = self.get(next_path)
            if isinstance(page, list):
                return items + page
            items.extend(page.get("results", []))
            next_path = relative_api_path(page["next"]) if page.get("next") else None
        return items


def client_from_environment(environ: dict[str, str]) -> LabelStudioClient:
    """The client a Job or CronJob builds from its environment: the URL and the API token
    (or the file that holds it)."""
    url = environ.get(contract.LABEL_STUDIO_URL)
    token = contract.credential(environ, contract.API_TOKEN)
    if not url or not token:
        raise ReconcileError(f"{contract.LABEL_STUDIO_URL} and {contract.API_TOKEN} "
                             f"(or {contract.API_TOKEN}{contract.FILE_SUFFIX}) must be set")
    return LabelStudioClient(url, token)
