"""Result types."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional


@dataclass
class CommandResult:
    """How a command ended, with everything it wrote."""

    exit_code: int
    stdout_bytes: bytes = b""
    stderr_bytes: bytes = b""
    timed_out: bool = False

    @property
    def stdout(self) -> str:
        return self.stdout_bytes.decode("utf-8", errors="replace")

    @property
    def stderr(self) -> str:
        return self.stderr_bytes.decode("utf-8", errors="replace")


@dataclass
class FileInfo:
    """One directory entry (``type``: file, dir, symlink, fifo, socket, char, block)."""

    name: str
    type: str
    size: int
    mode: str
    uid: int
    gid: int
    mtime: int
    target: Optional[str] = field(default=None)

    @classmethod
    def from_json(cls, v: dict) -> "FileInfo":
        return cls(
            name=v["name"],
            type=v["type"],
            size=v["size"],
            mode=v["mode"],
            uid=v["uid"],
            gid=v["gid"],
            mtime=v["mtime"],
            target=v.get("target"),
        )
