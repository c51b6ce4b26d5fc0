"""Every script in benchmarks/ runs in its --small mode and prints its figures, so that none rots unseen."""

import math
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import pytest
import torch

from fesa.devices import cpu_has_bf16

REPO = Path(__file__).resolve().parent.parent
BENCHMARKS = REPO / "benchmarks"
N = r"([-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?)"
ROW = r"\s+{N}"
# Per script, the lines that carry its figures; each {N} must be a number. A new script needs an entry here.
FIGURES: Dict[str, List[str]] = {
    "choose_finetune.py": [
        r"^\| frozen-560-lr1e-3 \| {N} \| {N} \|$",
        r"^\| unfrozen-400-lr1e-3 \| {N} \| {N} \|$",
        r"chosen on validation UA: \S+ \(mean {N}\)",
    ],
    "classifier_overhead.py": [
        r"hubert_emotion_classifier {N} s, HubertModel.extract_features {N} s",
        r"classifier overhead ratio: {N}",
        r"real-time factor of a training step: {N}",
        r"train, 6 s crops.*: length-sorted {N}, shuffled {N}",
        r"scoring, whole utterances.*: length-sorted {N}, shuffled {N}",
    ],
    "export.py": [
        r"^\| baseline \| {N} \| {N} \| {N} \| {N} \| {N} \(any fold\) \| {N}x \|$",
        r"^\| method \S+ \| {N} \| {N} \| {N} \| {N} \| {N} \(any fold\) \| {N}x \|$",
    ],
    "feature_dump_profile.py": [
        r"one utterance at a time: {N} s \({N} s of audio per second\)",
        r"transformer layer 2\s+{N} s\s+{N} %",
        r"1 thread: {N} s; \d+ threads are {N}x one thread",
        r"batch 1: {N} s, batch 4: {N} s, batch 8: {N} s, batch 16: {N} s",
    ],
    "hf_bridge.py": [r"import-hf, HuBERT tiny shape \({N} M parameters\): {N} s", r"max \|layer difference\| {N} \(per layer: {N}, {N}\)"],
    "kmeans.py": [r"^demo corpus training frames", r"^synthetic clusters"] + [r"faiss is {N}x faster; its inertia is {N}% of sklearn's"] * 2,
    "precision.py": [
        r"^\| stock fairseq dump_hubert_feature \(fp32, CPU\) \| {N} \| {N}x \|$",
        r"^\| fesa --precision fp32 \| {N} \| {N}x \|$",
        r"^\| fesa --precision bf16 \| {N} \| {N}x \|$",
        r"label agreement {N}, mean cosine {N}",
    ],
    "predict.py": [
        r"^\s+short" + ROW * 6 + "$",
        r"^\s+long" + ROW * 6 + "$",
        r"peak memory, long / short: {N}",
        r"fesa evaluate, \d+ utterances, {N} s of audio: {N} s, {N} audio s / s",
    ],
    "prepare_emobox.py": [r"first run \(all converted\): {N} s, peak {N} MB", r"rerun \(all reused\): {N} s, peak {N} MB"],
    "pseudo_labels.py": [
        r"dump \(train only\): {N} s, {N} s of audio per second",
        r"whole command: {N} s \(features {N} s, {N} s of audio per second\), k-means \+ labels {N} s, peak {N} MiB",
    ],
    "train_steps.py": [
        r"^stock hubert_pretraining \+ hubert" + ROW * 3 + "x",
        r"^fesa emotion_hubert \(TAPT/CPT\)" + ROW * 3 + "x",
        r"^fesa classifier fine-tuning" + ROW * 2 + r"\s+-",
    ],
}
NEEDS_BF16 = {"export.py", "precision.py"}  # they compare bf16 with fp32 and refuse a CPU that would emulate it


def scripts() -> List[str]:
    return sorted(p.name for p in BENCHMARKS.glob("*.py") if p.name != "common.py")


def env() -> Dict[str, str]:
    """The checkout on PYTHONPATH and this interpreter's scripts (fesa, fairseq-hydra-train) first on PATH."""
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    pythonpath = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PATH": path, "PYTHONPATH": pythonpath, "PYTHONUNBUFFERED": "1"}


def experiment(finetuned_classifier: Path, demo_folds: Path, base: Path) -> Path:
    """export.py's input: an experiment folder whose baseline and method are the shared tiny classifier (links)."""
    (base / "manifests").mkdir(parents=True)
    (base / "manifests" / "fold1").symlink_to(demo_folds / "fold1")
    (base / "fold1" / "finetune").mkdir(parents=True)
    (base / "fold1" / "tapt-finetune").symlink_to(finetuned_classifier)
    (base / "fold1" / "finetune" / "L1-K8").symlink_to(finetuned_classifier)
    return base


def inputs(script: str, request, tmp_path: Path) -> List[str]:
    """What a script reads besides its own --small settings, built from the session fixtures only where needed."""
    if script == "kmeans.py":
        return ["--fold", str(request.getfixturevalue("demo_folds") / "fold1")]
    if script == "export.py":
        return ["--exp", str(experiment(request.getfixturevalue("finetuned_classifier"), request.getfixturevalue("demo_folds"), tmp_path / "exp"))]
    if script == "choose_finetune.py":
        exp = tmp_path / "exp"
        (exp / "manifests").mkdir(parents=True)
        (exp / "manifests" / "fold1").symlink_to(request.getfixturevalue("demo_folds") / "fold1")
        return ["--exp", str(exp), "--init", str(REPO / "examples" / "demo" / "source_model.pt"), "--out", str(tmp_path / "choose")]
    if script == "hf_bridge.py":
        return ["--work", str(tmp_path / "work")]
    return []


def test_every_benchmark_has_a_small_mode_and_known_figures():
    assert scripts() == sorted(FIGURES), "each script in benchmarks/ needs its figure lines in FIGURES"
    for name in scripts():
        text = (BENCHMARKS / name).read_text()
        assert "SMALL = " in text and "parse_args(" in text, f"{name}: no --small settings (SMALL, common.parse_args)"


@pytest.mark.slow
@pytest.mark.parametrize("script", scripts())
def test_benchmark_runs_small_and_prints_its_figures(script, request, tmp_path):
    if script in NEEDS_BF16 and not cpu_has_bf16():
        pytest.skip(f"{script} compares bf16 with fp32: this CPU has no bf16 instructions")
    cmd = [sys.executable, str(BENCHMARKS / script), "--small", *inputs(script, request, tmp_path)]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env(), cwd=tmp_path, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    lines = res.stdout.splitlines()
    for pattern in set(FIGURES[script]):
        regex = re.compile(pattern.replace("{N}", N))
        found = [m for m in map(regex.search, lines) if m]
        assert len(found) >= FIGURES[script].count(pattern), f"{script}: no line like {pattern!r} in\n{res.stdout[-3000:]}"
        assert all(math.isfinite(float(g)) for m in found for g in m.groups()), [m.group(0) for m in found]


@pytest.mark.skipif(torch.cuda.is_available(), reason="with CUDA the script runs its checks: run it by hand (minutes)")
def test_gpu_check_says_in_one_line_that_there_is_no_cuda(tmp_path):
    res = subprocess.run(["bash", str(BENCHMARKS / "gpu_check.sh"), str(tmp_path / "out")], capture_output=True, text=True, env=env(), timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().splitlines() == ["gpu_check: torch sees no CUDA device here; nothing to check"]
