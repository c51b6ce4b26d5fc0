"""One writer at a time, and no orphaned trainers.

A lock is a file created with O_EXCL that holds its holder's pid, host and command. A lock whose holder ran on
this host and is gone (killed, crashed) is stale and taken over; one held by a live process, or by a process on
another host (a SLURM node: nothing here can tell whether it lives), is an error naming the holder.

Stage commands run in a session of their own and, where util-linux's ``setpriv`` exists (every Linux), get SIGTERM
from the kernel when the fesa process that started them dies, however it dies (SIGKILL included; fesa's own stage
commands are forks of a server that fesa's death ends, with the same signal: ``pipeline.forkserver``); SIGINT and
SIGTERM sent to fesa run, whenever they come, are passed on to the stage's whole process group, which is waited for
before fesa exits (``fesa.stop``).
"""

import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterator, List, Optional

from fesa.errors import FesaError
from fesa.pipeline.forkserver import Entry, ForkedCommand, is_fesa_command, stop_server
from fesa.stop import alive, stage_command

logger = logging.getLogger(__name__)


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
    if holder and holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int) and not alive(holder["pid"]):
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
            if holder is not None and holder.get("host") == me["host"] and isinstance(holder.get("pid"), int) and not alive(holder["pid"]):
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


def run_child(command: List[str], log, env: Dict[str, str], entry: Optional[Entry] = None) -> int:
    """Run a stage's command, its output to `log`, unless fesa run is stopping; a stop (``fesa.stop``) ends the
    command's whole process group, and the server it was forked from, and raises Stopped. A fesa command is forked
    and run by ``entry`` when one is given, else run as a subprocess like any other."""
    forked = entry is not None and is_fesa_command(command)  # a fork of a server with torch and fairseq imported (pipeline.forkserver)
    with stage_command(on_stop=stop_server if forked else None) as started:
        if forked:
            proc = ForkedCommand(entry, command, log.name, env)
        else:
            proc = subprocess.Popen(dies_with_parent(command), stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        started(proc.pid)
        return proc.wait()
