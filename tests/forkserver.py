"""A fork server for `semwh` commands: real, separate processes without the import cost.

The server is a Python process that imports `semwh.cli` once and then forks one child per
command; each child runs the console script's entry point (`semwh.cli.main`) with its own
argv, environment, working folder and output files, and exits with the command's code. A
child is a real, separate `semwh` process (the reliability tests SIGKILL them at many kill
points) that skips the ~3 s import of torch every fresh interpreter pays. Tests that need
the installed console script itself (its start-up, a changed PYTHONPATH) run it directly.
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

_SERVER = r"""
import json, os, sys, time
import semwh.cli
import semwh.extract, semwh.runs, semwh.ingest  # the heavy imports, done once

def child(req):
    os.environ.clear()
    os.environ.update(req["env"])
    os.chdir(req["cwd"])
    out = os.open(req["out"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    err = os.open(req["err"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)  # never the server's request pipe
    os.dup2(out, 1)
    os.dup2(err, 2)
    sys.argv = ["semwh", *req["args"]]
    code = 0
    try:
        semwh.cli.main()
    except SystemExit as exc:  # what the interpreter does with it at exit
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:
            print(exc.code, file=sys.stderr)
            code = 1
    except BaseException:
        sys.excepthook(*sys.exc_info())
        code = 1
    # A normal exit runs the atexit handlers (Ray's shutdown, temporary folders' cleanup);
    # os._exit then leaves without unwinding into the server's loop.
    import atexit
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)

for line in sys.stdin:
    req = json.loads(line)
    if req["op"] == "spawn":
        pid = os.fork()
        if pid == 0:
            child(req)
        reply = {"pid": pid}
    else:  # wait: reap the child, or say it still runs after the timeout
        deadline = time.monotonic() + req["timeout"]
        while True:
            done, status = os.waitpid(req["pid"], os.WNOHANG)
            if done:
                sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0
                reply = {"code": -sig if sig else os.WEXITSTATUS(status)}
                break
            if time.monotonic() >= deadline:
                reply = {"code": None}
                break
            time.sleep(0.02)
    sys.stdout.write(json.dumps(reply) + "\n")
    sys.stdout.flush()
"""


@dataclass
class Child:
    """One forked `semwh` process."""

    pid: int
    out: Path
    err: Path
    code: int | None = None

    @property
    def stderr(self) -> str:
        return self.err.read_text(errors="replace")

    @property
    def stdout(self) -> str:
        return self.out.read_text(errors="replace")

    def outputs(self) -> tuple[str, str]:
        """stdout and stderr decoded strictly (as ``subprocess.run(text=True)`` does)."""
        return self.out.read_text(), self.err.read_text()


class ForkServer:
    """Starts `semwh` commands as forked children of one pre-imported process."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.count = 0
        workdir.mkdir(parents=True, exist_ok=True)
        # -P: the children import from the installed package only, never from their working
        # folder; stderr to a file: the consoles semwh builds at import see no terminal, as
        # in a captured fresh process.
        with open(workdir / "server.log", "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-P", "-c", _SERVER],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                bufsize=1,
            )

    def _ask(self, request: dict) -> dict:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the fork server died")
        return json.loads(line)

    def spawn(self, *args: str, env: dict[str, str] | None = None) -> Child:
        self.count += 1
        out = self.workdir / f"child-{self.count}.out"
        err = self.workdir / f"child-{self.count}.err"
        full_env = {k: v for k, v in os.environ.items() if k != "SEMWH_FAULT"}
        full_env.update(env or {})
        reply = self._ask(
            {
                "op": "spawn",
                "args": list(args),
                "env": full_env,
                "cwd": os.getcwd(),
                "out": str(out),
                "err": str(err),
            }
        )
        return Child(reply["pid"], out, err)

    def wait(self, child: Child, timeout: float = 120.0) -> int | None:
        """Reap ``child``; its exit code (negative: killed by that signal) or None if running."""
        if child.code is None:
            child.code = self._ask({"op": "wait", "pid": child.pid, "timeout": timeout})["code"]
        return child.code

    def kill(self, child: Child) -> int:
        """SIGKILL ``child`` unless it has already exited; returns its final code."""
        code = self.wait(child, timeout=0)
        if code is None:
            os.kill(child.pid, signal.SIGKILL)
            code = self.wait(child, timeout=60)
        assert code is not None
        return code

    def run(self, *args: str, env: dict[str, str] | None = None, timeout: float = 300) -> Child:
        child = self.spawn(*args, env=env)
        if self.wait(child, timeout) is None:
            self.kill(child)
            raise AssertionError(f"semwh {' '.join(args)} did not finish in {timeout} s")
        return child

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(timeout=30)


_shared: ForkServer | None = None


def shared_server(workdir: Path) -> ForkServer:
    """The one fork server of this test process, started on first use (closed at exit)."""
    global _shared
    if _shared is None or _shared.proc.poll() is not None:
        _shared = ForkServer(workdir)
        atexit.register(_shared.close)
    return _shared
