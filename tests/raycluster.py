"""A local Ray cluster for tests: a head started with ``ray start --head --block`` in a
process of its own, which any process on the machine can join by its address.

Tests in this process join it with ``ray.init(address=...)``; server processes they start
join it through ``STEPLINE_RAY_ADDRESS``, as drivers on this machine (``address``) or as Ray
clients (``client_address``, ``ray://``: a driver on a machine without a raylet, as in
deploy/compose.yaml). Each process that joins is a Ray job of its own,
and Ray puts the job's working directory on the ``sys.path`` of the job's workers, so a
driver started in this checkout has its runs execute this checkout's code.

Stopping the head (SIGTERM to ``ray start --block``) stops every process of this cluster and
no other: ``ray stop`` would stop every Ray on the machine.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from tests.app.processes import ROOT, free_port

__all__ = ["RayHead", "ray_head"]

START_SECONDS = 60.0  # the head is up within this, even on a busy machine
STOP_SECONDS = 60.0  # it drains running tasks for up to 30 s before it stops
POLL_SECONDS = 0.05  # between two reads of the head's output while it starts
OBJECT_STORE_BYTES = 200 * 1024 * 1024
# The head's Ray Client server forks a server process for each client while its gRPC threads
# run; with gRPC's fork support on, that process now and then dies as it starts (see
# app/runs/ray_executor.py). It execs at once and needs no fork support: off, as in
# deploy/compose.yaml.
HEAD_ENV = {"GRPC_ENABLE_FORK_SUPPORT": "false"}
STARTED = "Ray runtime started."
CURRENT_CLUSTER = Path("/tmp/ray/ray_current_cluster")  # where Ray notes the last head


@dataclass(frozen=True)
class RayHead:
    """A running head: its GCS address, the address of its Ray Client server and the
    process of ``ray start``."""

    address: str
    client_address: str
    pid: int
    cpus: int


def _ray_command() -> str:
    return str(Path(sys.executable).with_name("ray"))


@contextlib.contextmanager
def ray_head(directory: Path, *, cpus: int, env: Mapping[str, str] = {}) -> Iterator[RayHead]:
    """A Ray head of ``cpus`` logical CPUs, its output in ``directory``; stopped, with all
    its processes, when the block ends."""
    port, client_port = free_port(), free_port()
    log = directory / f"ray-head-{port}.log"
    command = [
        _ray_command(), "start", "--head", "--block", f"--port={port}", f"--num-cpus={cpus}",
        "--num-gpus=0", "--include-dashboard=false", "--disable-usage-stats",
        f"--object-store-memory={OBJECT_STORE_BYTES}",
        # Ports of its own, so that it does not depend on the defaults being free.
        f"--dashboard-port={free_port()}",
        f"--dashboard-agent-listen-port={free_port()}",
        # Ray Client's server: started on 10001 by default wherever grpcio is installed,
        # where two heads on one machine would clash.
        f"--ray-client-server-port={client_port}",
    ]  # fmt: skip
    with log.open("ab") as out:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT), **HEAD_ENV, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its processes can be stopped as a group if need be
        )
    try:
        _wait_until_started(process, log)
        address = f"{_node_address(log)}:{port}"
        yield RayHead(address, f"ray://127.0.0.1:{client_port}", process.pid, cpus)
    finally:
        _stop(process)
        with contextlib.suppress(OSError):
            if CURRENT_CLUSTER.read_text().strip().endswith(f":{port}"):
                CURRENT_CLUSTER.unlink()  # a plain ray.init() must not find a head now gone


def _wait_until_started(process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_SECONDS
    while STARTED not in log.read_text(errors="replace"):
        if process.poll() is not None:
            raise AssertionError(f"ray start exited with {process.returncode}:\n{log.read_text()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"Ray did not start within {START_SECONDS}s:\n{log.read_text()}")
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(POLL_SECONDS)


def _node_address(log: Path) -> str:
    """The address the head listens on, as ``ray start`` tells others to join it."""
    for line in log.read_text(errors="replace").splitlines():
        if "ray start --address=" in line:
            return line.split("--address=")[1].strip("'\" ").rsplit(":", 1)[0]
    raise AssertionError(f"ray start did not say its address:\n{log.read_text()}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(STOP_SECONDS)
    except subprocess.TimeoutExpired:
        # Its group still exists while it is not reaped: nothing else can have its id.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
