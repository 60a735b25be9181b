"""nucleus_sdk: drive nucleus sandboxes from Python.

    from nucleus_sdk import Sandbox
    with Sandbox.create(memory="512m", timeout=60) as sb:
        r = sb.run("echo hello from $(hostname)")
        print(r.stdout, r.exit_code)
        sb.files.write("/tmp/data.bin", b"\\x00\\x01")

The SDK talks to `nucleus serve` over its unix socket; with ``socket=None``
it finds the default one and starts the server if none is running.
"""

from ._errors import NucleusError, ExecError
from ._types import CommandResult, FileInfo
from .sandbox import Sandbox, Files
from .aio import AsyncSandbox, AsyncFiles

__all__ = [
    "Sandbox",
    "Files",
    "AsyncSandbox",
    "AsyncFiles",
    "CommandResult",
    "FileInfo",
    "NucleusError",
    "ExecError",
]
