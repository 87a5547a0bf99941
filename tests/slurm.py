"""A throwaway single-node Slurm cluster for the test run: slurmctld and slurmd on this machine.

Debian's ``slurm-wlm`` and ``munge`` (installed by ``scripts/system-packages.sh``) run from a
temporary directory: a munge daemon with a fresh key on a private socket, and a slurm.conf
with private ports, spool and state directories, and what a container allows: processes
tracked by parent id (``proctrack/linuxproc``) and no cgroups (``task/none``), no accounting.
Client commands (``sbatch``, ``squeue``, ``scancel``) find it through ``SLURM_CONF``.
Both daemons must run as root (slurmd starts jobs as their submitter).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

MUNGED = shutil.which("munged") or "/usr/sbin/munged"
SLURMCTLD = shutil.which("slurmctld") or "/usr/sbin/slurmctld"
SLURMD = shutil.which("slurmd") or "/usr/sbin/slurmd"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class SlurmCluster:
    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="hpsearch-slurm-"))
        self.conf = self.root / "slurm.conf"
        self.socket = self.root / "munge.socket"
        self.node = socket.gethostname()
        self.procs: list[subprocess.Popen[bytes]] = []
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}

    def start(self) -> SlurmCluster:
        for tool in (MUNGED, SLURMCTLD, SLURMD):
            if not Path(tool).exists():
                raise FileNotFoundError(
                    f"{tool} is missing: run scripts/system-packages.sh (installs Debian's "
                    "slurm-wlm and munge)"
                )
        if os.geteuid() != 0:
            raise PermissionError("slurmd runs jobs as their submitter: it needs root")
        self._munge()
        for sub in ("state", "spool"):
            (self.root / sub).mkdir()
        self.conf.write_text(self._config())
        self._daemon([SLURMCTLD, "-D", "-i", "-f", str(self.conf)], "slurmctld")
        self._daemon([SLURMD, "-D", "-f", str(self.conf)], "slurmd")
        self._wait_idle()
        return self

    def _munge(self) -> None:
        key = self.root / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        subprocess.run(
            [
                MUNGED,
                "--force",  # as root, in a directory munged would otherwise call insecure
                f"--key-file={key}",
                f"--socket={self.socket}",
                f"--pid-file={self.root / 'munged.pid'}",
                f"--log-file={self.root / 'munged.log'}",
                f"--seed-file={self.root / 'munged.seed'}",
            ],
            check=True,
            capture_output=True,
        )

    def _config(self) -> str:
        cpus = os.cpu_count() or 1
        r = self.root
        return f"""\
ClusterName=hpsearchtest
SlurmctldHost={self.node}
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.socket}
StateSaveLocation={r / "state"}
SlurmdSpoolDir={r / "spool"}
SlurmctldPidFile={r / "slurmctld.pid"}
SlurmdPidFile={r / "slurmd.pid"}
SlurmctldLogFile={r / "slurmctld.log"}
SlurmdLogFile={r / "slurmd.log"}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
KillWait=30
NodeName={self.node} CPUs={cpus} State=UNKNOWN
PartitionName=test Nodes={self.node} Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
"""

    def _daemon(self, cmd: list[str], name: str) -> None:
        log = open(self.root / f"{name}.out", "wb")  # noqa: SIM115  (closed with the process)
        self.procs.append(subprocess.Popen(cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT))

    def _wait_idle(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for proc in self.procs:
                if proc.poll() is not None:
                    raise RuntimeError(f"{proc.args[0]} exited: {self.logs()}")
            done = self.run("sinfo", "-h", "-o", "%T", check=False)
            if done.returncode == 0 and done.stdout.strip() in ("idle", "mixed"):
                return
            time.sleep(0.2)
        raise RuntimeError(f"the node never became idle: {self.logs()}")

    def logs(self) -> str:
        out = []
        for name in ("slurmctld.log", "slurmd.log", "slurmctld.out", "slurmd.out", "munged.log"):
            path = self.root / name
            if path.exists():
                out.append(f"--- {name}\n{path.read_text()[-3000:]}")
        return "\n".join(out)

    def run(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=30)
        if check and done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {done.stderr}\n{self.logs()}")
        return done

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        pid_file = self.root / "munged.pid"
        if pid_file.exists():
            with contextlib.suppress(ValueError, ProcessLookupError):
                os.kill(int(pid_file.read_text().strip()), 15)
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def slurm_cluster() -> Iterator[SlurmCluster]:
    cluster = SlurmCluster()
    try:
        cluster.start()
    except (FileNotFoundError, PermissionError, RuntimeError, subprocess.CalledProcessError) as e:
        cluster.stop()
        detail = e.stderr.decode() if isinstance(e, subprocess.CalledProcessError) else str(e)
        pytest.skip(f"no single-node Slurm cluster here: {detail}")
    yield cluster
    cluster.stop()
