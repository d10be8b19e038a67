"""The failures the reconciler reports: one line each, never a traceback."""

from __future__ import annotations


class ReconcileError(Exception):
    """A failure the operator can act on; its text is the one-line reason printed on exit."""


class ApiError(ReconcileError):
    """An error status from Label Studio; `fields` names what its validation refused."""

    def __init__(self, method: str, path: str, status: int, detail: str, fields: tuple[str, ...] = ()):
        self.method, self.path, self.status, self.detail, self.fields = method, path, status, detail, fields
        super().__init__(f"{method} {path} answered {status}: {detail}")
