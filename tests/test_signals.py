"""SIGINT and SIGTERM to `fesa run` at any moment: before its stages, while a stage forks from the server, while a
stage or a trainer runs. fesa run ends with one line and 130 / 143; nothing it started runs on, no lock is left, no
stage is stamped complete that did not complete, and the same command then completes."""

import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Callable, List

import pytest
import yaml

from fesa.errors import Stopped
from fesa.pipeline.experiment import load_experiment, parse_grid
from fesa.pipeline.plan import Plan
from fesa.stop import SIGNALS, running, stage_command, stoppable

from cli_helpers import fesa_main
from tiny_hubert import TINY_RUN, run_fesa

MARKER = "FESA_SIGNALS_TEST"
LOG_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \| ")
CHEAP = "prepare,reference"  # two forked stages (fesa commands), no training


def marked(token: str) -> List[int]:
    """Processes whose environment carries MARKER=token: fesa run, its server, tracker, stages and trainers."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                environ = (entry / "environ").read_bytes()
            except (FileNotFoundError, ProcessLookupError, PermissionError):
                continue  # ended meanwhile, or not ours
            if f"{MARKER}={token}".encode() in environ.split(b"\0") and running(int(entry.name)):
                found.append(int(entry.name))
    return found


def start(config: Path, exp: Path, stages: str, token: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "fesa.cli", "run", str(config), "--exp-dir", str(exp), "--stages", stages]
    env = {**os.environ, MARKER: token}
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)


def signal_when(proc: subprocess.Popen, ready: Callable[[], bool], delay: float, signum: int, group: bool = False, timeout: float = 180) -> str:
    """`group`: to fesa run's process group, as Ctrl-C in a terminal does (the server and its tracker are in it)."""
    deadline = time.time() + timeout
    while not ready():
        assert proc.poll() is None, f"fesa run ended before the moment to signal it: {proc.stderr.read()[-3000:]}"
        assert time.time() < deadline, "the moment to signal fesa run never came"
        time.sleep(0.02)
    time.sleep(delay)
    os.killpg(proc.pid, signum) if group else proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    return err


def log_of(exp: Path, stage: str) -> Callable[[], bool]:
    """The stage's log is opened just before its command is started (the server, the fork)."""
    return lambda: any((exp / "logs").glob(f"*{stage}.log"))


def assert_stopped_cleanly(proc: subprocess.Popen, err: str, signum: int, exp: Path, config: Path, token: str) -> None:
    assert proc.returncode == 128 + signum, (proc.returncode, err[-3000:])
    assert "Traceback" not in err, err[-3000:]
    stops = [line for line in err.splitlines() if line.startswith("fesa run: ")]
    assert len(stops) == 1 and stops[0].startswith(f"fesa run: stopped by {signal.Signals(signum).name}"), err[-3000:]
    assert [line for line in err.splitlines() if not LOG_LINE.match(line)] == stops, err[-3000:]  # nor a tracker's warning
    deadline = time.time() + 10
    while marked(token) and time.time() < deadline:
        time.sleep(0.1)
    assert not marked(token), f"left running: {marked(token)}"
    assert not list(exp.rglob("*.lock")), list(exp.rglob("*.lock"))
    for stage in plan_of(config, exp).stages:
        stamp = stage.recorded() or {}
        assert stamp.get("state") != "complete" or stage.status() == "complete", f"{stage.key} stamped complete, output not"


def plan_of(config: Path, exp: Path) -> Plan:
    return Plan(load_experiment(config, []), exp, parse_grid([]))


@pytest.fixture(scope="module")
def config(tmp_path_factory, demo_folds):
    path = tmp_path_factory.mktemp("signals") / "experiment.yaml"
    path.write_text(yaml.safe_dump({"corpus": str(demo_folds.parent / "corpus"), **TINY_RUN}))
    return path


MOMENTS = [
    # signal, the stage whose log says the moment has come ("" = fesa run's start), seconds after it, to the group
    (signal.SIGTERM, "", 1.0, False),  # importing torch, nothing planned yet
    (signal.SIGTERM, "prepare", 0.0, False),  # the server is being started for the first forked stage
    (signal.SIGINT, "prepare", 0.0, False),
    (signal.SIGINT, "prepare", 0.0, True),  # Ctrl-C: the server, importing torch, gets it too
    (signal.SIGINT, "prepare", 0.8, False),  # the server importing, or the fork being made
    (signal.SIGTERM, "reference", 0.0, False),  # the server is up: the second stage is being forked
    (signal.SIGTERM, "reference", 0.0, True),  # ... and the server dies of it at once
    (signal.SIGINT, "reference", 0.5, False),  # the stage is running
]


@pytest.mark.parametrize(
    "signum, stage, delay, group", MOMENTS, ids=[f"{s.name}-{st or 'start'}-{d}s{'-group' if g else ''}" for s, st, d, g in MOMENTS]
)
def test_a_signal_at_any_moment_stops_everything_and_the_rerun_completes(config, tmp_path, signum, stage, delay, group):
    exp, token = tmp_path / "exp", uuid.uuid4().hex
    proc = start(config, exp, CHEAP, token)
    err = signal_when(proc, log_of(exp, stage) if stage else lambda: True, delay, signum, group)
    assert_stopped_cleanly(proc, err, signum, exp, config, token)
    if stage and delay == 0.0:  # its command had not even begun: it must not have been stamped complete
        key = "all/prepare" if stage == "prepare" else f"fold1/{stage}"
        assert next(s for s in plan_of(config, exp).stages if s.key == key).status() != "complete"
    res = run_fesa("run", config, "--exp-dir", exp, "--stages", CHEAP)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "complete" in (exp / "fold1" / "evaluate" / "reference" / ".fesa-stage.json").read_text()


@pytest.mark.slow
def test_sigint_during_training_stops_the_trainer_in_one_line(config, tmp_path):
    exp, token = tmp_path / "exp", uuid.uuid4().hex
    stages = "prepare:tapt"
    proc = start(config, exp, stages, token)
    err = signal_when(proc, lambda: any((exp / "fold1" / "tapt").glob("**/hydra_train.log")), 1.0, signal.SIGINT)
    assert_stopped_cleanly(proc, err, signal.SIGINT, exp, config, token)
    assert "KeyboardInterrupt" not in err
    res = run_fesa("run", config, "--exp-dir", exp, "--stages", stages)
    assert res.returncode == 0, res.stderr[-3000:]


def test_after_a_stop_a_second_signal_changes_nothing_and_the_stop_is_not_carried_over():
    """Ctrl-C twice: the second comes while fesa exits, where Python's own handler, restored, raised KeyboardInterrupt
    into an atexit callback (a traceback after the one line) and SIGTERM's default killed it (-15, not 143). And a
    later stage command of the same process (run_child outside fesa run: tests, library callers) is not stopped."""
    previous = {s: signal.getsignal(s) for s in SIGNALS}
    try:
        with pytest.raises(Stopped) as stopped, stoppable():
            os.kill(os.getpid(), signal.SIGINT)  # noted by fesa's handler, raised at the block's end
            time.sleep(0.01)
        assert stopped.value.exit_code == 130
        assert all(signal.getsignal(s) not in (signal.SIG_DFL, signal.default_int_handler) for s in SIGNALS)
        for s in SIGNALS:
            os.kill(os.getpid(), s)
        time.sleep(0.01)
        with stage_command():
            pass
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def test_a_second_signal_kills_a_command_that_ignores_sigterm(tmp_path):
    """In this process: fesa run's handlers, a stage command deaf to SIGTERM, SIGTERM twice: SIGKILL at once, not
    after KILL_AFTER seconds."""
    from fesa.pipeline.lock import run_child

    previous = {s: signal.getsignal(s) for s in SIGNALS}
    timers = [threading.Timer(t, os.kill, (os.getpid(), signal.SIGTERM)) for t in (1.0, 1.5)]
    begin = time.monotonic()
    try:
        with pytest.raises(Stopped) as stopped, stoppable(), open(tmp_path / "stage.log", "w") as log:
            for timer in timers:
                timer.start()
            run_child(["sh", "-c", "trap '' TERM; sleep 60 & wait"], log, {**os.environ})
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    assert stopped.value.exit_code == 143 and time.monotonic() - begin < 10


def test_ctrl_c_outside_fesa_run_is_one_line_and_130(capsys, monkeypatch):
    import fesa.cli

    def interrupted(quiet: bool) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(fesa.cli, "_configure_logging", interrupted)
    res = fesa_main(capsys, "status", "nowhere")
    assert res.returncode == 130 and "Traceback" not in res.stderr
    assert res.stderr.strip() == "fesa status: interrupted (SIGINT)"
