"""fesa run end to end on a reduced demo corpus, resuming, re-running what changed, refusing bad configs."""

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from tiny_hubert import TINY_RUN, run_fesa

PLUGIN_CONFIG = Path(__file__).resolve().parent.parent / "fesa_fairseq" / "config"


def ran(output: str):
    """Stage keys that fesa run executed (not skipped), in order."""
    return re.findall(r"\| (\S+): done in", output)


@pytest.fixture(scope="module")
def experiment(tmp_path_factory, demo_folds):
    base = tmp_path_factory.mktemp("run")
    corpus = demo_folds.parent / "corpus"
    config = base / "experiment.yaml"
    config.write_text(yaml.safe_dump({"corpus": str(corpus), **TINY_RUN}))
    return config, base / "exp"


REPORT_KEYS = ("protocol", "paired", "alignment", "alignment_paired", "run_pairs")  # report.json beside the models


@pytest.mark.slow
def test_all_stages_then_resume_then_rerun_from_a_deleted_stage(experiment):
    config, exp = experiment
    res = run_fesa("run", config, "--exp-dir", exp)
    assert res.returncode == 0, res.stderr[-5000:]
    assert ran(res.stderr) == [
        "all/prepare",
        "fold1/reference",
        "fold1/tapt-labels",
        "fold1/tapt",
        "fold1/tapt-finetune",
        "fold1/evaluate/baseline",
        "fold1/emotion-labels/L1-K6",
        "fold1/cpt/L1-K6",
        "fold1/finetune/L1-K6-attention",
        "fold1/evaluate/L1-K6-attention",
    ]
    rows = [line for line in res.stdout.splitlines() if line.startswith("| ")]
    assert rows[1].startswith("| acoustic reference") and rows[2].startswith("| baseline (TAPT fine-tuned, attention pooling) |")
    assert rows[3].startswith("| L1-K6-attention |")
    report = json.loads((exp / "report" / "report.json").read_text())
    assert set(report) == {"reference", "baseline", "L1-K6-attention", *REPORT_KEYS} and report["baseline"]["folds"] == [1]
    assert ("L1-K6-attention", "baseline", "ua") in {(r["a"], r["b"], r["metric"]) for r in report["paired"]}
    assert "| L1-K6-attention vs baseline | UA |" in res.stdout
    assert (exp / "report" / "confusion_baseline.png").is_file() and (exp / "report" / "confusion_reference.png").is_file()
    assert (exp / "report" / "curves_fold1.png").is_file()
    assert json.loads((exp / "fold1" / "tapt-labels" / "labels.json").read_text())["features"] == "mfcc"
    assert (exp / "fold1" / "tapt" / "tblog").is_dir()
    method = {"model": "cpt", "layer": 1, "clusters": 6, "targets": "clusters", "pooling": "attention", "seed": None}
    cells = {run: json.loads((exp / "fold1" / "evaluate" / run / "metrics.json").read_text())["cell"] for run in ("baseline", "L1-K6-attention")}
    assert cells["L1-K6-attention"] == {"stage": "evaluate", "fold": 1, **method}  # the result names its cell
    assert cells["baseline"] == {**dict.fromkeys(method), "stage": "evaluate", "fold": 1, "model": "baseline", "pooling": "attention"}
    assert report["L1-K6-attention"]["cell"] == {**cells["L1-K6-attention"], "fold": None}  # and the report reads it there
    stamp = json.loads((exp / "fold1" / "cpt" / "L1-K6" / ".fesa-stage.json").read_text())
    assert stamp["cell"] == {"stage": "cpt", "fold": 1, **method, "pooling": None}

    res = run_fesa("run", config, "--exp-dir", exp)
    assert res.returncode == 0, res.stderr[-3000:]
    assert ran(res.stderr) == [] and res.stderr.count("complete, skipped") == 10

    shutil.rmtree(exp / "fold1" / "cpt")
    res = run_fesa("run", config, "--exp-dir", exp)
    assert res.returncode == 0, res.stderr[-3000:]
    assert ran(res.stderr) == ["fold1/cpt/L1-K6", "fold1/finetune/L1-K6-attention", "fold1/evaluate/L1-K6-attention"]
    stale = list((exp / "fold1" / "finetune").glob("L1-K6-attention.stale-*"))
    assert len(stale) == 1 and (stale[0] / "checkpoints" / "checkpoint_best.pt").is_file()  # moved aside, not lost
    assert list((exp / "fold1" / "evaluate").glob("L1-K6-attention.stale-*"))
    report = json.loads((exp / "report" / "report.json").read_text())
    assert set(report) == {"reference", "baseline", "L1-K6-attention", *REPORT_KEYS}  # moved-aside results are not models

    cfg = yaml.safe_load(config.read_text())
    everything = config.with_name("everything.yaml")  # every stage's command changes: CPT is stale, not reused
    everything.write_text(config.read_text().replace("max_update=3", "max_update=2"))
    res = run_fesa("run", everything, "--exp-dir", exp, "--stages", "finetune:evaluate")
    assert res.returncode == 1 and "fold1/finetune/L1-K6-attention needs fold1/cpt/L1-K6 first" in res.stderr
    cfg["overrides"]["finetune"] = ["optimization.max_update=2"]
    changed = config.with_name("changed.yaml")
    changed.write_text(yaml.safe_dump(cfg))
    res = run_fesa("run", changed, "--exp-dir", exp, "--stages", "finetune:evaluate")
    assert res.returncode == 0, res.stderr[-3000:]
    assert ran(res.stderr) == ["fold1/finetune/L1-K6-attention", "fold1/evaluate/L1-K6-attention"]


@pytest.mark.slow
def test_an_edited_stage_yaml_makes_the_stage_stale(experiment, tmp_path):
    """The fingerprint covers the yaml a training stage reads, not only its command line."""
    config, _ = experiment
    cfg = yaml.safe_load(config.read_text())
    own = tmp_path / "my_finetune.yaml"
    own.write_text((PLUGIN_CONFIG / "finetune" / "tiny.yaml").read_text())
    cfg["configs"]["finetune"] = str(own)
    edited = tmp_path / "own.yaml"
    edited.write_text(yaml.safe_dump(cfg))
    exp = tmp_path / "exp"
    res = run_fesa("run", edited, "--exp-dir", exp, "--stages", "prepare:tapt-finetune")
    assert res.returncode == 0, res.stderr[-3000:]
    own.write_text(own.read_text().replace("lr: [1e-3]", "lr: [2e-3]"))
    res = run_fesa("run", edited, "--exp-dir", exp, "--stages", "prepare:tapt-finetune")
    assert res.returncode == 0, res.stderr[-3000:]
    assert ran(res.stderr) == ["fold1/tapt-finetune"] and list((exp / "fold1").glob("tapt-finetune.stale-*"))


def test_dry_run_prints_every_command(experiment):
    config, exp = experiment
    res = run_fesa("run", config, "--exp-dir", exp.parent / "dry", "--dry-run", "--grid", "layer=1,2", "pooling=attention,mean")
    assert res.returncode == 0, res.stderr[-3000:]
    script = res.stdout
    assert script.startswith("#!/usr/bin/env bash") and not (exp.parent / "dry").exists()
    assert script.count("fesa pseudo-labels") == 3  # tapt labels, then emotion labels of layers 1 and 2, shared by poolings
    assert script.count("--config-dir") == 1 + 1 + 2 + 4 and script.count("fesa -q evaluate") == 5
    assert script.count("fesa -q acoustic-baseline") == 1
    assert "model.pooling=mean" in script and "emotion-labels/L2-K6" in script
    cell = '{"stage":"evaluate","fold":1,"model":"cpt","layer":2,"clusters":6,"targets":"clusters","pooling":"mean"}'
    assert f"evaluate/L2-K6-mean --device cpu --cell '{cell}'" in script  # each result is told its cell
    commands = [line for line in script.splitlines() if line and not line.startswith("#") and line != "set -euo pipefail"]
    assert commands and all(line.startswith("CUDA_VISIBLE_DEVICES='' ") for line in commands)  # device: cpu hides GPUs


def _commands(script: str) -> dict:
    """Stage key -> its command, from a --dry-run script."""
    return dict(re.findall(r"^# (\S+)\n(?:.*\n)*?(?!#)(.+)$", script, flags=re.M))


def test_baseline_pooling_gets_its_own_folders_and_leaves_the_method_as_it_was(experiment):
    config, exp = experiment
    same = run_fesa("run", config, "--exp-dir", exp.parent / "same", "--dry-run")
    mean = run_fesa("run", config, "--exp-dir", exp.parent / "same", "--dry-run", "baseline_pooling=mean")
    assert same.returncode == 0 and mean.returncode == 0, mean.stderr[-3000:]
    before, after = _commands(same.stdout), _commands(mean.stdout)
    assert set(after) - set(before) == {"fold1/tapt-finetune/mean", "fold1/evaluate/baseline-mean"}
    assert set(before) - set(after) == {"fold1/evaluate/baseline"}  # the cells' pooling now only gives the labels
    assert all(after[key] == command for key, command in before.items() if key in after)  # the method's chain unchanged
    assert "model.pooling=mean" in after["fold1/tapt-finetune/mean"] and "/fold1/tapt-finetune-mean " in after["fold1/tapt-finetune/mean"]
    assert "tapt-finetune-mean/checkpoints/checkpoint_best.pt" in after["fold1/evaluate/baseline-mean"]
    assert '"pooling":"mean","named_pooling":true}' in after["fold1/evaluate/baseline-mean"]
    assert "/fold1/tapt-finetune/checkpoints" in after["fold1/emotion-labels/L1-K6"]
    attention = run_fesa("run", config, "--exp-dir", exp.parent / "same", "--dry-run", "baseline_pooling=attention")
    assert attention.stdout == same.stdout  # the cells' own pooling: the folders of today
    bad = run_fesa("run", config, "--exp-dir", exp.parent / "same", "--dry-run", "baseline_pooling=max")
    assert bad.returncode == 2 and "'baseline_pooling' (or same) must be attention or mean, got 'max'" in bad.stderr


def test_slurm_scripts_chain_stages(experiment):
    config, exp = experiment
    out = exp.parent / "slurm"
    res = run_fesa("run", config, "--exp-dir", out, "--slurm", "--dry-run", "slurm.partition=gpu", "slurm.gpus=2")
    assert res.returncode == 0, res.stderr[-3000:]
    scripts = {p.stem: p.read_text() for p in (out / "slurm").glob("*.sbatch")}
    assert len(scripts) == 10
    cpt = scripts["fold1__cpt__L1-K6"]
    assert "#SBATCH --gres=gpu:2" in cpt and "#SBATCH --partition=gpu" in cpt and "#SBATCH --time=24:00:00" in cpt
    assert f"fesa run {out / 'experiment.yaml'} --exp-dir {out} --only fold1/cpt/L1-K6" in cpt
    assert "#   fairseq-hydra-train --config-dir" in cpt
    lines = res.stdout.splitlines()
    cpt_submit = next(line for line in lines if line.endswith("fold1__cpt__L1-K6.sbatch"))
    assert "--dependency=afterok:<fold1/emotion-labels/L1-K6>:<fold1/tapt>" in cpt_submit
    assert next(line for line in lines if "all__prepare" in line).startswith("sbatch --parsable /")


@pytest.mark.parametrize(
    "change, message",
    [
        ({"colour": "red"}, "bad key 'colour'"),
        ({"emotion_labels": {"layers": 9}}, "bad key 'emotion_labels.layers'"),
        ({"source_checkpoint": "/nowhere/hubert.pt"}, "'source_checkpoint' /nowhere/hubert.pt does not exist"),
        ({"corpus": "/nowhere"}, "'corpus' is /nowhere, which is not a folder"),
        ({"pooling": "max"}, "'pooling' must be attention or mean"),
        ({"emotion_labels": {"layer": 3}}, "'emotion_labels.layer' is 3; layers are counted from 1, give 1..2: the TAPT model of"),
        ({"emotion_labels": {"layer": 0}}, "'emotion_labels.layer' is 0; layers are counted from 1"),
        ({"emotion_labels": {"layer": 1, "clusters": 1}}, "'emotion_labels.clusters' is 1; k-means needs K >= 2"),
        ({"tapt_labels": {"clusters": 8, "percent": 0}}, "'tapt_labels.percent' is 0.0; give a share in (0, 1], or -1"),
        ({"tapt_labels": {"clusters": 8, "percent": 1.5}}, "'tapt_labels.percent' is 1.5"),
    ],
)
def test_bad_config_fails_before_any_stage(experiment, tmp_path, change, message):
    config, _ = experiment
    cfg = {**yaml.safe_load(config.read_text()), **change}
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(cfg))
    res = run_fesa("run", bad, "--exp-dir", tmp_path / "exp")
    assert res.returncode == 2 and message in res.stderr, res.stderr[-2000:]
    assert not (tmp_path / "exp").exists()


@pytest.mark.parametrize(
    "grid, message",
    [
        (["layer=x"], "--grid layer=x: 'x' is not a whole number"),
        (["layer=1,7"], "'--grid layer' is 7; layers are counted from 1, give 1..2"),
        (["K=6,1"], "'--grid K' is 1; k-means needs K >= 2"),
        (["pooling=attention,max"], "--grid pooling=max: must be attention or mean, got 'max'"),
        (["colour=red"], "--grid takes NAME=v1,v2 with NAME in layer, K, pooling"),
    ],
)
def test_bad_grid_fails_before_any_stage(experiment, tmp_path, grid, message):
    config, _ = experiment
    res = run_fesa("run", config, "--exp-dir", tmp_path / "exp", "--grid", *grid)
    assert res.returncode == 2 and message in res.stderr and "Traceback" not in res.stderr, res.stderr[-2000:]
    assert not (tmp_path / "exp").exists()


def test_layer_beyond_the_source_checkpoint_fails_before_any_stage(experiment, stock_hubert, tmp_path):
    """The depth is read from the checkpoint's config (its weights stay on disk)."""
    config, _ = experiment
    cfg = {
        **yaml.safe_load(config.read_text()),
        "source_checkpoint": str(stock_hubert),
        "cpt_init": "source",
        "tapt_labels": {"layer": 9, "clusters": 8},
    }
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(cfg))
    res = run_fesa("run", bad, "--exp-dir", tmp_path / "exp")
    assert res.returncode == 2, res.stderr[-2000:]
    assert f"'tapt_labels.layer' is 9; layers are counted from 1, give 1..2: source_checkpoint {stock_hubert} has 2" in res.stderr
    assert not (tmp_path / "exp").exists()


def test_failed_stage_names_command_and_log(experiment, tmp_path):
    config, _ = experiment
    cfg = yaml.safe_load(config.read_text())
    cfg["overrides"]["tapt"] = ["optimization.no_such_key=1"]
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(cfg))
    res = run_fesa("run", bad, "--exp-dir", tmp_path / "exp", "--stages", "prepare:tapt")
    assert res.returncode == 1
    assert "stage fold1/tapt failed (exit 1): fairseq-hydra-train" in res.stderr
    assert f"last lines of {tmp_path / 'exp' / 'logs' / 'fold1__tapt.log'}" in res.stderr
    assert (tmp_path / "exp" / "fold1" / "tapt-labels" / ".fesa-stage.json").is_file()  # earlier work kept


def test_status_of_a_run_not_started(experiment):
    config, exp = experiment
    out = exp.parent / "status"
    assert run_fesa("run", config, "--exp-dir", out, "--slurm", "--dry-run").returncode == 0  # writes experiment.yaml and scripts
    res = run_fesa("status", out)
    assert res.returncode == 0, res.stderr[-2000:]
    rows = [line.split()[:3] for line in res.stdout.splitlines() if "/" in line.split()[0]]
    assert len(rows) == 10 and all(row[1:] == ["to", "do"] for row in rows) and res.stdout.strip().endswith("10 to do")
    res = run_fesa("status", exp.parent / "nowhere")
    assert res.returncode == 2 and "holds no experiment.yaml" in res.stderr


def test_seeds_repeat_fine_tuning_and_cpt_and_share_the_rest(experiment):
    config, exp = experiment
    res = run_fesa("run", config, "--exp-dir", exp.parent / "seeds", "--dry-run", "seeds=[1,2]")
    assert res.returncode == 0, res.stderr[-3000:]
    keys = re.findall(r"^# (\S+)", res.stdout, flags=re.M)[1:]
    assert keys.count("fold1/tapt") == 1 and keys.count("fold1/tapt-labels") == 1 and keys.count("fold1/emotion-labels/L1-K6") == 1
    assert [k for k in keys if "finetune" in k or "/cpt/" in k] == [
        "fold1/tapt-finetune/s1",
        "fold1/tapt-finetune/s2",
        "fold1/cpt/L1-K6-s1",
        "fold1/finetune/L1-K6-attention-s1",
        "fold1/cpt/L1-K6-s2",
        "fold1/finetune/L1-K6-attention-s2",
    ]
    lines = [line for line in res.stdout.splitlines() if "fairseq-hydra-train" in line]
    assert [line.endswith(" common.seed=2") for line in lines] == [False, False, True, False, False, True, True]
    labels = next(line for line in res.stdout.splitlines() if "fesa pseudo-labels" in line and "emotion-labels" in line)
    assert "tapt-finetune-s1/checkpoints/checkpoint_best.pt" in labels  # the first seed's baseline gives the shared labels
    bad = run_fesa("run", config, "--exp-dir", exp.parent / "seeds", "--dry-run", "seeds=[1,1]")
    assert bad.returncode == 2 and "'seeds' must be a list of different whole numbers" in bad.stderr


def test_a_stage_stamps_its_cell_and_its_fingerprint_leaves_the_cell_out(tmp_path):
    """Stamps and metrics.json written before cells were recorded stay valid: the cell is no part of the fingerprint."""
    from fesa.pipeline.cell import StageCell
    from fesa.pipeline.stage import Stage

    cell = StageCell("evaluate", 1, model="baseline", pooling="attention", seed=2)
    command = ["fesa", "-q", "evaluate", "ckpt.pt", "fold1", "--out", str(tmp_path / "out")]
    before = Stage(cell=cell, out_dir=tmp_path / "out", command=command, done=tmp_path / "out" / "metrics.json")
    now = Stage(cell=cell, out_dir=tmp_path / "out", command=[*command, *cell.option()], done=before.done)
    assert now.command[-2:] == ["--cell", '{"stage":"evaluate","fold":1,"model":"baseline","pooling":"attention","seed":2}']
    assert now.fingerprint() == before.fingerprint() and (now.key, now.name, now.fold, now.variant) == (
        "fold1/evaluate/baseline-s2",
        "evaluate",
        1,
        "baseline-s2",
    )
    before.out_dir.mkdir()
    before.mark_started()  # as a release without cells would have, less the cell
    stamp = json.loads(before.stamp.read_text())
    del stamp["cell"]
    before.stamp.write_text(json.dumps({**stamp, "state": "complete"}))
    before.done.write_text("{}")
    assert now.status() == "complete"
    now.mark_complete(1.0)
    assert json.loads(now.stamp.read_text())["cell"] == cell.record()


def test_validation_by_speakers_reaches_the_prepare_command(experiment, demo_folds, tmp_path):
    config, exp = experiment
    default = run_fesa("run", config, "--exp-dir", tmp_path / "exp", "--dry-run")
    speakers = run_fesa("run", config, "--exp-dir", tmp_path / "exp", "--dry-run", "validation=speakers")
    assert default.returncode == 0 and speakers.returncode == 0, speakers.stderr[-2000:]
    assert "--validation" not in default.stdout  # the prepare command (and its fingerprint) of existing experiments
    assert _commands(speakers.stdout)["all/prepare"].endswith("--overwrite --validation speakers")
    bad = run_fesa("run", config, "--exp-dir", tmp_path / "exp", "--dry-run", "validation=sessions")
    assert bad.returncode == 2 and "'validation' must be utterances or speakers, got 'sessions'" in bad.stderr
    prepared = run_fesa("run", config, "--exp-dir", tmp_path / "exp", "--dry-run", "corpus=null", f"manifests={demo_folds}", "validation=speakers")
    assert prepared.returncode == 2 and "validation: speakers needs each utterance's speaker, and prepared manifests" in prepared.stderr
