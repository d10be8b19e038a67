"""The failures the reconciler reports: one line each, never a traceback."""

from __future__ import annotations


class ReconcileError(Exception):
    """A failure the operator can act on; its text is the one-line reason printed on exit."""


class ApiError(ReconcileError):
    def __init__(self, method: str, path: str, status: int, detail: str):
        self.method, self.path, self.status, self.detail = method, path, status, detail
        super().__init__(f"{method} {path} answered {status}: {detail}")
