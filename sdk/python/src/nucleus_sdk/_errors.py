"""Errors the SDK raises."""

from __future__ import annotations

from typing import Optional


class NucleusError(Exception):
    """The API refused a request; ``status`` is the HTTP status, ``kind`` the API's error kind."""

    def __init__(self, message: str, status: Optional[int] = None, kind: Optional[str] = None):
        super().__init__(message)
        self.status = status
        self.kind = kind


class ExecError(NucleusError):
    """nucleus could not run the command at all (it never started)."""
