"""fesa stage commands forked from a server that has imported torch, fairseq and the plugin once.

A ``fesa`` stage (evaluate, pseudo-labels, acoustic-baseline, ...) started as a new interpreter spends about
3.5 s importing torch and fairseq before its work, which on the demo is most of what such a stage costs. Here
it is a fork of multiprocessing's forkserver, a single-threaded process started on first use that has those
imports done: still a process of its own, as a subprocess would be (its own session, the stage's environment and
working folder, its output to the stage's log, its exit code, SIGTERM when the server, which lives as long as
fesa, goes), only without the imports. ``fairseq-hydra-train`` stages stay subprocesses.

The server lives exactly as long as fesa: multiprocessing ends it when every holder of its "alive" pipe is gone, and
a stage closes its copy at once; fesa run, when stopped, ends it itself (``stop_server``). It and its resource
tracker start with SIGINT blocked, so that a Ctrl-C to fesa's process group reaches fesa only (which stops the
stage); a stage unblocks it, and has a resource tracker of its own (its log gets what that says).
"""

import ctypes
import logging
import multiprocessing
import multiprocessing.forkserver
import multiprocessing.resource_tracker as resource_tracker
import os
import signal
import sys
from typing import Callable, Dict, List, Optional

logger = logging.getLogger(__name__)

# What the server imports before it forks: the plugin (torch, fairseq) and the modules most stage commands use.
PRELOAD = ["fesa.cli", "fesa_fairseq", "fesa.pipeline.evaluate", "fesa.pipeline.reference", "fesa.labels.pseudo_labels"]
PR_SET_PDEATHSIG = 1

_context: Optional[multiprocessing.context.BaseContext] = None


def _server() -> multiprocessing.context.BaseContext:
    global _context
    if _context is None:
        _context = multiprocessing.get_context("forkserver")
        _context.set_forkserver_preload(PRELOAD)
    # The tracker first: its own start blocks SIGINT and SIGTERM and then unblocks them, which would start the server unblocked
    resource_tracker.ensure_running()
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})  # inherited across exec, unlike a handler
    try:
        multiprocessing.forkserver.ensure_running()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)  # a SIGINT that came meanwhile is delivered to fesa now
    return _context


def stop_server() -> None:
    """End the server now (fesa run was stopped), rather than when fesa exits; a later fork starts a new one."""
    server = multiprocessing.forkserver._forkserver
    if server._forkserver_pid is None:
        return
    try:
        os.kill(server._forkserver_pid, signal.SIGTERM)  # it may be importing torch still: do not wait for that
    except ProcessLookupError:
        pass  # ended already; _stop reaps it
    server._stop()


def is_fesa_command(command: List[str]) -> bool:
    return bool(command) and os.path.basename(command[0]) == "fesa"


Entry = Callable[[List[str]], int]  # runs a fesa command's argv (without "fesa") and returns its exit code


def _stage(entry: Entry, argv: List[str], log_path: str, env: Dict[str, str], cwd: str, server_pid: int) -> None:
    """In the forked child: the stage's signals, SIGTERM when the server ends (it ends with fesa, once this process
    has closed its end of the server's alive pipe), its session, environment, folder and log, then the command."""
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != server_pid:  # the server ended before the line above: nothing would stop this stage with fesa
        os._exit(128 + signal.SIGTERM)
    os.setsid()
    server = multiprocessing.forkserver._forkserver
    os.close(server._forkserver_alive_fd)
    server._forkserver_alive_fd = None
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    fd = os.open(log_path, os.O_WRONLY | os.O_APPEND)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    # A stage stopped by SIGTERM leaves its semaphores (tqdm's lock) to the tracker, which cleans them up and says
    # so on its stderr: a tracker of the stage's own, started when needed, says it in the stage's log, not fesa's.
    tracker = resource_tracker._resource_tracker
    if tracker._fd is not None:
        os.close(tracker._fd)
        tracker._fd = None
    sys.exit(entry(argv))


class ForkedCommand:
    """Popen's pid and wait() for a fesa command run in a fork of the server, by ``entry`` (the command line's
    main, which the caller hands over: the pipeline does not import the command line)."""

    def __init__(self, entry: Entry, command: List[str], log_path: str, env: Dict[str, str]) -> None:
        context = _server()
        args = (entry, list(command[1:]), log_path, env, os.getcwd(), multiprocessing.forkserver._forkserver._forkserver_pid)
        self.process = context.Process(target=_stage, args=args, name=" ".join(command[:2]))
        self.process.start()
        self.pid = self.process.pid

    def wait(self) -> int:
        self.process.join()
        return int(self.process.exitcode)
