#!/usr/bin/env python3
"""Benchmarks of the sandbox API through the Python SDK, beside the CLI path,
in one run: create -> run("true") -> kill; run("true") in a live sandbox;
100 MB put/get; and `nucleus run -d` + `attach` + `rm -f` for comparison.

usage: sudo NUCLEUS_BIN=target/release/nucleus python3 bench/sdk.py [N]
Needs the SDK importable (pip install ./sdk/python). Prints a Markdown table.
"""
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "sdk", "python", "src"))
from nucleus_sdk import Sandbox  # noqa: E402


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    binary = os.path.abspath(os.environ.get("NUCLEUS_BIN", "target/release/nucleus"))
    root = tempfile.mkdtemp(prefix="nucleus-bench-sdk-")
    sock = os.path.join(root, "api.sock")
    srv = subprocess.Popen([binary, "--root", root, "serve", "--socket", sock])
    try:
        deadline = time.monotonic() + 10
        while not os.path.exists(sock) and time.monotonic() < deadline:
            time.sleep(0.01)
        rows = []
        # 1. create -> first output of run("true") -> kill.
        first, total = [], []
        for _ in range(n):
            t0 = time.perf_counter()
            sb = Sandbox.create(memory=None, timeout=None, socket=sock)
            sb.run("true")
            first.append(time.perf_counter() - t0)
            sb.kill()
            sb.close()
            total.append(time.perf_counter() - t0)
        rows.append(("SDK: create → run(\"true\") done", first))
        rows.append(("SDK: create → run(\"true\") → kill", total))
        # 2. exec round trip in a live sandbox.
        sb = Sandbox.create(memory=None, timeout=None, socket=sock)
        rt = []
        for _ in range(n):
            t0 = time.perf_counter()
            sb.run("true")
            rt.append(time.perf_counter() - t0)
        rows.append(("SDK: run(\"true\") in a live sandbox", rt))
        # 3. 100 MB put/get.
        blob = os.urandom(100 << 20)
        t0 = time.perf_counter()
        sb.files.write("/tmp/blob", blob)
        put = time.perf_counter() - t0
        t0 = time.perf_counter()
        got = sb.files.read("/tmp/blob")
        get = time.perf_counter() - t0
        assert got == blob
        sb.kill()
        sb.close()
        # 4. The CLI path: run -d, attach true, rm -f.
        cli_first, cli_rt = [], []
        for _ in range(max(20, n // 4)):
            t0 = time.perf_counter()
            cid = subprocess.run([binary, "--root", root, "run", "-d", "--", "sleep", "600"], capture_output=True, text=True, check=True).stdout.strip()
            subprocess.run([binary, "--root", root, "attach", cid, "--", "true"], check=True)
            cli_first.append(time.perf_counter() - t0)
            t1 = time.perf_counter()
            subprocess.run([binary, "--root", root, "attach", cid, "--", "true"], check=True)
            cli_rt.append(time.perf_counter() - t1)
            subprocess.run([binary, "--root", root, "rm", "-f", cid], capture_output=True, check=True)
        rows.append(("CLI: run -d → attach true", cli_first))
        rows.append(("CLI: attach true in a live container", cli_rt))
        print("| path | runs | p50 | p99 |")
        print("|---|---:|---:|---:|")
        for name, xs in rows:
            print("| %s | %d | %.2f ms | %.2f ms |" % (name, len(xs), statistics.median(xs) * 1e3, pct(xs, 99) * 1e3))
        print()
        print("| 100 MB file | MB/s |")
        print("|---|---:|")
        print("| put (`files.write`) | %.0f |" % (100 / put))
        print("| get (`files.read`) | %.0f |" % (100 / get))
    finally:
        srv.send_signal(signal.SIGTERM)
        srv.wait(10)
        for d in os.listdir(root):
            if not d.startswith(".") and os.path.isdir(os.path.join(root, d)):
                subprocess.run([binary, "--root", root, "rm", "-f", d], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
