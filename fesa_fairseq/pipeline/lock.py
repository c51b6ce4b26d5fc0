"""One writer at a time, and no orphaned trainers.

A lock is a file created with O_EXCL that holds its holder's pid, host and command. A lock whose holder ran on
this host and is gone (killed, crashed) is stale and taken over; one held by a live process, or by a process on
another host (a SLURM node: nothing here can tell whether it lives), is an error naming the holder.

Stage commands run in a session of their own and, where util-linux's ``setpriv`` exists (every Linux), get SIGTERM
from the kernel when the fesa process that started them dies, however it dies (SIGKILL included; fesa's own stage
commands are forks of a server that fesa's death ends, with the same signal: ``pipeline.forkserver``); SIGINT and
SIGTERM sent to fesa are passed on to the stage's whole process group, which is waited for before fesa exits.
"""

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterator, List, Optional

from fesa_fairseq.errors import FesaError
from fesa_fairseq.pipeline.forkserver import ForkedCommand, is_fesa_command

logger = logging.getLogger(__name__)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _holder(path: Path) -> Optional[Dict[str, object]]:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}  # being written, or not ours: treat as held


def lock_holder(path: Path) -> Optional[Dict[str, object]]:
    """Who holds the lock at `path`, if a live process does (one on another host is taken as live)."""
    holder = _holder(path)
    if holder and holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int) and not _alive(holder["pid"]):
        return None
    return holder


@contextmanager
def exclusive(path: Path, what: str) -> Iterator[None]:
    """Hold `path` as a lock for `what` (words for the error) while the block runs."""
    me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S"), "command": " ".join(sys.argv)}
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _holder(path)
            if holder is not None and holder.get("host") == me["host"] and isinstance(holder.get("pid"), int) and not _alive(holder["pid"]):
                logger.warning("taking over the lock %s of process %s, which is gone", path, holder["pid"])
                path.unlink(missing_ok=True)
                continue
            if holder is None:
                continue
            raise FesaError(
                f"{what} is in use by pid {holder.get('pid', '?')} on {holder.get('host', '?')} since "
                f"{holder.get('since', '?')} ({holder.get('command', '?')}); wait for it to end, or, if that "
                f"process is gone, delete {path}"
            )
        with os.fdopen(fd, "w") as f:
            json.dump(me, f)
        break
    else:
        raise FesaError(f"could not take the lock {path}; try again")
    try:
        yield
    finally:
        path.unlink(missing_ok=True)


def dies_with_parent(command: List[str]) -> List[str]:
    """The command under ``setpriv --pdeathsig TERM`` where there is one (no preexec_fn: fesa has threads)."""
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        logger.warning("setpriv not found: a stage's command outlives fesa if fesa is killed with SIGKILL")
        return list(command)
    return [setpriv, "--pdeathsig", "TERM", "--", *command]


def run_child(command: List[str], log, env: Dict[str, str]) -> int:
    """Run a stage's command, its output to `log`; SIGINT/SIGTERM to fesa stop the command's process group first."""
    if is_fesa_command(command):  # a fork of a server with torch and fairseq imported (pipeline.forkserver)
        proc = ForkedCommand(command, log.name, env)
    else:
        proc = subprocess.Popen(dies_with_parent(command), stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)

    stopping: List[int] = []

    def stop(signum, frame) -> None:
        """Only signals here (the main thread is inside proc.wait()); the command gets 60 s before SIGKILL."""
        logger.warning("got signal %d: stopping %s (pid %d) and waiting for it", signum, command[0], proc.pid)
        stopping.append(signum)
        _signal_group(proc.pid, signal.SIGTERM)
        timer = threading.Timer(60, _signal_group, (proc.pid, signal.SIGKILL))
        timer.daemon = True
        timer.start()

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        returncode = proc.wait()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if stopping:
        raise KeyboardInterrupt if stopping[0] == signal.SIGINT else SystemExit(128 + stopping[0])
    return returncode


def _signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        pass  # already gone
