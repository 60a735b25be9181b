"""`nucleus mcp` driven by the official MCP Python SDK as the client: the
server runs on stdio as an agent would start it, on a private state root,
and every sandbox is a real container."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import subprocess
import tempfile

import pytest

from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

from conftest import containers_under, nucleus_bin, require_root


@pytest.fixture
def state_root():
    require_root()
    root = tempfile.mkdtemp(prefix="nucleus-mcp-test-")
    os.chmod(root, 0o755)
    try:
        yield root
    finally:
        for cid in containers_under(root):
            subprocess.run([nucleus_bin(), "--root", root, "rm", "-f", cid], capture_output=True)
        leftovers = containers_under(root)
        shutil.rmtree(root, ignore_errors=True)
        assert not leftovers, "sandboxes left behind: %s" % leftovers


def session(root: str):
    params = StdioServerParameters(command=nucleus_bin(), args=["--root", root, "mcp"])
    return stdio_client(params)


def result(r) -> dict:
    """The structured result of a successful tool call."""
    assert not r.is_error, r.content
    # The text content carries the same JSON as the structured content.
    assert json.loads(r.content[0].text) == r.structured_content
    return r.structured_content


def error_text(r) -> str:
    assert r.is_error, r.structured_content
    return r.content[0].text


async def drive(root: str) -> None:
    async with session(root) as (read, write):
        async with ClientSession(read, write) as s:
            await s.initialize()
            names = {t.name for t in (await s.list_tools()).tools}
            assert {
                "create_sandbox",
                "run_command",
                "write_file",
                "read_file",
                "list_files",
                "destroy_sandbox",
                "list_sandboxes",
            } <= names, names

            sb = result(await s.call_tool("create_sandbox", {"memory": "256m", "timeout": 120, "env": {"GREETING": "hi"}}))
            sid = sb["id"]
            assert sid and sb["state"] == "running", sb
            listed = result(await s.call_tool("list_sandboxes", {}))["sandboxes"]
            assert any(x["Id"] == sid for x in listed), listed

            # What the command printed comes back inside the tool result,
            # never on the server's stdout (the client would fail to parse it).
            r = result(await s.call_tool("run_command", {"sandbox": sid, "command": "echo $GREETING; echo oops >&2; exit 3"}))
            assert r == {"stdout": "hi\n", "stderr": "oops\n", "exit_code": 3, "timed_out": False}, r
            r = result(await s.call_tool("run_command", {"sandbox": sid, "argv": ["cat", "/proc/self/status"]}))
            assert "CapEff:\t0000000000000000" in r["stdout"] and "NoNewPrivs:\t1" in r["stdout"]
            r = result(await s.call_tool("run_command", {"sandbox": sid, "command": "cat", "stdin": "fed in"}))
            assert r["stdout"] == "fed in"
            r = result(await s.call_tool("run_command", {"sandbox": sid, "command": "sleep 30", "timeout": 0.5}))
            assert r["timed_out"] is True and r["exit_code"] != 0, r

            # A binary file in, seen by the sandbox, and out again.
            blob = bytes(range(256)) * 64
            w = result(await s.call_tool("write_file", {
                "sandbox": sid, "path": "/tmp/work/blob.bin", "parents": True,
                "content_base64": base64.b64encode(blob).decode(),
            }))
            assert w["size"] == len(blob)
            r = result(await s.call_tool("run_command", {"sandbox": sid, "command": "wc -c < /tmp/work/blob.bin"}))
            assert r["stdout"].strip() == str(len(blob))
            got = result(await s.call_tool("read_file", {"sandbox": sid, "path": "/tmp/work/blob.bin"}))
            assert got["encoding"] == "base64" and base64.b64decode(got["content"]) == blob
            result(await s.call_tool("write_file", {"sandbox": sid, "path": "/tmp/work/note.txt", "content": "héllo\n"}))
            got = result(await s.call_tool("read_file", {"sandbox": sid, "path": "/tmp/work/note.txt"}))
            assert got == {"encoding": "utf-8", "content": "héllo\n", "path": "/tmp/work/note.txt", "size": 7}, got

            entries = result(await s.call_tool("list_files", {"sandbox": sid, "path": "/tmp/work"}))["entries"]
            assert [(e["name"], e["type"], e["size"]) for e in entries] == [
                ("blob.bin", "file", len(blob)),
                ("note.txt", "file", 7),
            ], entries

            # Errors are tool errors that say what is wrong; the session goes on.
            msg = error_text(await s.call_tool("read_file", {"sandbox": sid, "path": "/tmp/work/missing"}))
            assert "/tmp/work/missing" in msg, msg
            msg = error_text(await s.call_tool("run_command", {"sandbox": sid}))
            assert "command" in msg, msg

            result(await s.call_tool("destroy_sandbox", {"sandbox": sid}))
            assert containers_under(root) == []
            listed = result(await s.call_tool("list_sandboxes", {}))["sandboxes"]
            assert not any(x["Id"] == sid for x in listed)


def test_mcp_session_drives_a_sandbox(state_root):
    asyncio.run(asyncio.wait_for(drive(state_root), 120))


async def unknown_sandbox(root: str) -> None:
    async with session(root) as (read, write):
        async with ClientSession(read, write) as s:
            await s.initialize()
            for tool, args in [
                ("run_command", {"sandbox": "no-such-box", "command": "true"}),
                ("read_file", {"sandbox": "no-such-box", "path": "/etc/hostname"}),
                ("destroy_sandbox", {"sandbox": "no-such-box"}),
            ]:
                msg = error_text(await s.call_tool(tool, args))
                assert "no-such-box" in msg, (tool, msg)
            msg = error_text(await s.call_tool("create_sandbox", {"memory": "lots"}))
            assert "memory" in msg and "lots" in msg, msg
            # The server is still there after the errors.
            assert result(await s.call_tool("list_sandboxes", {}))["sandboxes"] == []


def test_mcp_errors_are_tool_errors(state_root):
    asyncio.run(asyncio.wait_for(unknown_sandbox(state_root), 60))
