"""Stopping `fesa run` on SIGINT or SIGTERM, whenever the signal comes.

The command line holds the handlers for the whole of ``fesa run`` (``stoppable``), from before torch is imported,
which is why this module is in the torch-free ``fesa`` package. A signal only sets a flag and passes SIGTERM on to
the stage command running at that moment, or being started (its process, and its process group once it has made
one; SIGKILL after ``KILL_AFTER`` seconds, or at once on a second signal). The flag is checked before a stage and
around its command (``stage_command``), where ``Stopped`` is raised once nothing of the command runs any more: the
stage's lock is released by its ``with``, its stamp still says started (the next run resumes it), and the command
line prints one line and exits 128 + the signal's number (130 for SIGINT, 143 for SIGTERM).
"""

import logging
import os
import signal
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, List, Optional

from fesa.errors import Stopped

logger = logging.getLogger(__name__)

SIGNALS = (signal.SIGINT, signal.SIGTERM)
KILL_AFTER = 60.0  # seconds a stage's command has after SIGTERM before SIGKILL


class _State:
    """What a signal handler needs: whether a signal came, and the stage command running now."""

    def __init__(self) -> None:
        self.signum: Optional[int] = None
        self.child: Optional[int] = None
        self.timers: List[threading.Timer] = []


_state = _State()


def check() -> None:
    """Raise Stopped if fesa run got SIGINT or SIGTERM."""
    if _state.signum is not None:
        raise Stopped(_state.signum)


@contextmanager
def stoppable() -> Iterator[None]:
    """SIGINT and SIGTERM stop what runs in the block (``stage_command``) and raise Stopped, at the latest at its end."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield
        return
    _state.signum, _state.child = None, None
    previous = {s: signal.signal(s, _on_signal) for s in SIGNALS}
    try:
        yield
    finally:
        signum, _state.signum = _state.signum, None  # a stage_command outside a later block is not stopped by this one
        for s, handler in previous.items():
            signal.signal(s, handler if signum is None else _exiting)
    if signum is not None:
        raise Stopped(signum)


def _exiting(signum: int, frame: object) -> None:
    """Once stopped, fesa is on its way out: a second Ctrl-C would raise KeyboardInterrupt into an atexit callback
    (a traceback after the one line). A Python handler rather than SIG_IGN, which commands started later (by an
    in-process caller) would inherit; Python's last moments of exit, after the atexit callbacks, run no handler."""


@contextmanager
def stage_command(on_stop: Optional[Callable[[], None]] = None) -> Iterator[Callable[[int], None]]:
    """Around starting a stage's command and waiting for it; the block calls the function it gets with the pid as
    soon as the command started. Raises Stopped (before the start, or once the command's process group is gone,
    after `on_stop`) if a signal came; a failed start while stopping is the stop, not an error."""
    check()
    started: List[int] = []

    def register(pid: int) -> None:
        started.append(pid)
        _state.child = pid
        if _state.signum is not None:  # came while it was being started
            _terminate(pid, signal.SIGTERM)

    try:
        yield register
    except Exception:
        check()
        raise
    finally:
        _state.child = None
        if _state.signum is not None:
            if started:
                _wait_gone(started[0])
            if on_stop is not None:
                on_stop()
        for timer in _state.timers:
            timer.cancel()  # once waited for, its pid may be another process's
        _state.timers.clear()
    check()


def _on_signal(signum: int, frame: object) -> None:
    """Runs in the main thread between two bytecodes: it notes and signals, and never raises."""
    again = _state.signum is not None
    if not again:
        _state.signum = signum
    if _state.child is None:
        logger.info("got %s: stopping before the next stage", signal.Signals(signum).name)  # the cli's line says it too
        return
    how = signal.SIGKILL if again else signal.SIGTERM
    logger.warning("got %s: stopping the stage's command (pid %d) with %s and waiting for it", signal.Signals(signum).name, _state.child, how.name)
    _terminate(_state.child, how)


def _terminate(pid: int, signum: int) -> None:
    _signal_group(pid, signum)
    if signum == signal.SIGTERM:
        timer = threading.Timer(KILL_AFTER, _signal_group, (pid, signal.SIGKILL))
        timer.daemon = True
        timer.start()
        _state.timers.append(timer)


def _signal_group(pid: int, signum: int) -> None:
    """The process itself (a fork that has not made its own session yet) and its process group (once it has)."""
    for send in (os.kill, os.killpg):
        try:
            send(pid, signum)
        except ProcessLookupError:
            pass  # gone, or no group of its own yet


def _wait_gone(pid: int) -> None:
    """Until neither the process nor a member of its group runs; SIGKILL after KILL_AFTER seconds."""
    deadline = time.monotonic() + KILL_AFTER
    while running(pid):
        if time.monotonic() > deadline:
            _signal_group(pid, signal.SIGKILL)
            deadline = time.monotonic() + KILL_AFTER
        time.sleep(0.05)


def running(pid: int) -> bool:
    """Whether process `pid`, or a process of the group `pid`, runs (zombies have ended; init reaps them late)."""
    proc = Path("/proc")
    if not proc.is_dir():
        return alive(pid) or _exists(os.killpg, pid)
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue  # ended while we looked
        state, _, pgrp = stat.rsplit(")", 1)[1].split()[:3]
        if (int(entry.name) == pid or int(pgrp) == pid) and state not in ("Z", "X"):
            return True
    return False


def alive(pid: int) -> bool:
    """Whether a process `pid` exists (one of another user's included)."""
    return _exists(os.kill, pid)


def _exists(send: Callable[[int, int], None], pid: int) -> bool:
    try:
        send(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
