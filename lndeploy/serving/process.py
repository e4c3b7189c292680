"""``lndeploy serve`` as a child process: started in the serve environment, waited for (bounded), stopped
with SIGTERM, and checked to leave no process behind. Used by the tests and the load benchmark.

The serve environment is its own venv (docs/serving.md, "Two environments"): its interpreter is
``$LNDEPLOY_SERVE_PYTHON`` or ``.venv-serve/bin/python`` of the working tree (``make serve-env``).
Process trees are read from ``/proc`` (Linux, where Triton's server binary runs).
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import time
from pathlib import Path

from lndeploy.errors import UnavailableError


def serve_python(root=None) -> Path:
    """The serve environment's interpreter; UnavailableError (with the fix) when there is none."""
    given = os.environ.get("LNDEPLOY_SERVE_PYTHON")
    path = Path(given) if given else Path(root or Path.cwd()) / ".venv-serve" / "bin" / "python"
    if not path.is_file():
        raise UnavailableError(f"no serve environment at {path}: run `make serve-env` in the repository (or set "
                               "LNDEPLOY_SERVE_PYTHON to the python of a venv with lndeploy[serve])")
    return path


def free_ports(host: str = "127.0.0.1", count: int = 3, tries: int = 50) -> int:
    """A port P with P..P+count-1 all free on ``host`` (serve uses HTTP, gRPC and metrics ports)."""
    rng = random.Random()
    for _ in range(tries):
        first = rng.randrange(20000, 40000)
        if all(port_free(host, first + k) for k in range(count)):
            return first
    raise UnavailableError(f"found no {count} consecutive free ports on {host} in {tries} tries")


def port_free(host: str, port: int) -> bool:
    """Whether a listening socket could bind ``host:port`` now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
            return True
        except OSError:
            return False


class ServerProcess:
    """``with ServerProcess(["m.onnx"], port) as server:`` -> a ready server at ``server.url``."""

    def __init__(self, artifacts, port: int, *, python=None, args=(), log_path=None, ready_timeout_s: float = 180):
        self.artifacts = [str(a) for a in artifacts]
        self.port, self.args = port, [str(a) for a in args]
        self.python = Path(python) if python else serve_python()
        self.log_path = Path(log_path) if log_path else Path(os.devnull)
        self.ready_timeout_s = ready_timeout_s
        self.url = f"http://127.0.0.1:{port}"
        self.process = None

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.process is not None and self.process.poll() is None:
            self.stop()

    def start(self) -> None:
        command = [str(self.python), "-m", "lndeploy", "serve", *self.artifacts, "--host", "127.0.0.1",
                   "--port", str(self.port), *self.args]
        self._log = open(self.log_path, "ab")
        # its own session: a signal for the caller's group (Ctrl-C in a terminal) is not also the server's
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            self._wait_ready()
        except BaseException:
            self.kill()
            raise

    def _wait_ready(self) -> None:
        import tritonclient.http as http

        names = [Path(a).stem for a in self.artifacts]
        deadline = time.monotonic() + self.ready_timeout_s
        client = http.InferenceServerClient(f"127.0.0.1:{self.port}", connection_timeout=5, network_timeout=5)
        try:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise UnavailableError(f"lndeploy serve exited with {self.process.returncode} before it was "
                                           f"ready: {self.log_tail()}")
                try:
                    if client.is_server_ready() and all(client.is_model_ready(n) for n in names):
                        return
                except Exception:  # noqa: BLE001 - not listening yet: connection refused, reset, timeout
                    pass
                time.sleep(0.5)
        finally:
            client.close()
        raise UnavailableError(f"lndeploy serve was not ready after {self.ready_timeout_s:.0f} s: {self.log_tail()}")

    def stop(self, timeout_s: float = 60, signal_number: int = signal.SIGTERM) -> tuple[int, list[int]]:
        """Signal the serve process (SIGTERM, or SIGINT as Ctrl-C would), wait for it; returns (exit code,
        descendants still alive). On a timeout the whole process group is killed and UnavailableError raised."""
        tree = descendants(self.process.pid)
        self.process.send_signal(signal_number)
        try:
            code = self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise UnavailableError(f"lndeploy serve did not stop within {timeout_s:.0f} s of the signal: "
                                   f"{self.log_tail()}") from None
        finally:
            self._log.close()
        deadline = time.monotonic() + 10  # children reaped by init may take a moment to go
        while any(map(alive, tree)) and time.monotonic() < deadline:
            time.sleep(0.2)
        return code, [pid for pid in tree if alive(pid)]

    def kill(self) -> None:
        """The whole group, at once: for failures and timeouts only."""
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=30)

    def log_tail(self, chars: int = 2000) -> str:
        if str(self.log_path) == os.devnull or not self.log_path.is_file():
            return "(no log kept)"
        return self.log_path.read_text(errors="replace")[-chars:]


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` now (children, their children, ...), read from /proc."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            parent = _stat(int(entry))
            if parent is not None:
                children.setdefault(parent[1], []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    """Running, sleeping or stopped; a zombie (exited, not yet reaped) does not count."""
    stat = _stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def _stat(pid: int):
    """(state, ppid) of ``pid`` from /proc/PID/stat, or None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()  # the command name may hold spaces and parentheses
    return fields[0], int(fields[1])
