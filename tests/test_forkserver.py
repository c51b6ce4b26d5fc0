"""fesa run's own stage commands: forks of a server that has torch and fairseq imported, still processes apart."""

import os

from fesa.cli import main
from fesa.pipeline.forkserver import is_fesa_command
from fesa.pipeline.lock import run_child


def run(tmp_path, command, env):
    with open(tmp_path / "stage.log", "w") as log:
        code = run_child(command, log, {**os.environ, **env}, entry=main)
    return code, (tmp_path / "stage.log").read_text()


def test_a_forked_stage_has_its_folder_environment_log_and_exit_code(demo_folds, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the stage's relative --out lands here, not in the server's folder
    command = ["fesa", "acoustic-baseline", str(demo_folds / "fold1"), "--split", "test", "--out", "ref"]
    code, log = run(tmp_path, command, {"LOGLEVEL": "INFO"})
    assert code == 0, log
    assert (tmp_path / "ref" / "metrics.json").is_file() and "UA " in log and "| INFO |" in log
    code, log = run(tmp_path, [*command[:-1], "ref2"], {"LOGLEVEL": "WARNING"})  # the stage's own environment
    assert code == 0 and "| INFO |" not in log and (tmp_path / "ref2" / "metrics.json").is_file()
    code, log = run(tmp_path, ["fesa", "acoustic-baseline", str(tmp_path / "nowhere"), "--out", "x"], {})
    assert code == 2 and "fesa acoustic-baseline: error:" in log


def test_only_fesa_commands_are_forked():
    assert is_fesa_command(["fesa", "-q", "evaluate"]) and is_fesa_command(["/venv/bin/fesa", "report"])
    assert not is_fesa_command(["fairseq-hydra-train", "--config-dir", "x"]) and not is_fesa_command([])
