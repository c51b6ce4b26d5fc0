"""Results of an experiment folder: UA and WA per fold, mean and standard deviation over folds, confusion
matrices summed over folds (counts and PNG), and for a grid the paper's Table 1 layout (layer x K)."""

import json
import logging
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import yaml

from fesa.errors import FesaError
from fesa.files import atomic_write_json, atomic_write_text
from fesa.pipeline.cell import BASELINE, REFERENCE, StageCell
from fesa.pipeline.curves import fold_curves
from fesa.pipeline.paired import (
    SHORT_NAMES,
    alignment_paired_table,
    alignment_statistics,
    is_method,
    paired_statistics,
    paired_table,
    run_statistics,
    run_table,
)
from fesa.pipeline.results import Results, Runs, collect, model_cells, seed_order
from fesa.plots import plot_confusion, plot_curves
from fesa.statistics import family_verdicts
from fesa_fairseq.scoring import counts_of, macro_f1, unweighted_accuracy, weighted_accuracy

logger = logging.getLogger(__name__)

PAPER = "paper (IEMOCAP, 5 folds): TAPT 74.1 / 72.8; layer 9, K=50, attention 75.7 / 74.7 (UA / WA %)"


def _std(x: np.ndarray) -> float:
    return float(x.std(ddof=1)) if len(x) > 1 else 0.0


def summarize(runs_of: Dict[int, Runs]) -> dict:
    """Per fold the mean over its seeds; over folds the mean and spread; with seeds, the spread over seeds too
    (each seed's mean over folds). A run without a seed beside seeded ones (seeds added to an experiment later) is
    one more replicate, at its yaml's seed (null in report.json)."""
    folds = {k: {seed: r.content for seed, r in runs.items()} for k, runs in runs_of.items()}
    ua = {f: float(np.mean([m["ua"] for m in runs.values()])) for f, runs in sorted(folds.items())}
    wa = {f: float(np.mean([m["wa"] for m in runs.values()])) for f, runs in sorted(folds.items())}
    f1 = {f: float(np.mean([macro_f1(m["confusion"]) for m in runs.values()])) for f, runs in sorted(folds.items())}
    confusion = np.sum([np.array(m["confusion"]) for runs in folds.values() for m in runs.values()], axis=0)
    replicates = sorted({s for runs in folds.values() for s in runs}, key=seed_order)
    seeds = replicates if len(replicates) > 1 else [s for s in replicates if s is not None]
    per_seed = [np.mean([runs[s]["ua"] for runs in folds.values() if s in runs]) for s in seeds]
    pooled = counts_of(confusion)
    first = next(iter(next(iter(folds.values())).values()))
    return {
        "folds": sorted(folds),
        "seeds": seeds,
        "ua": {f: round(v, 2) for f, v in ua.items()},
        "wa": {f: round(v, 2) for f, v in wa.items()},
        "ua_mean": round(float(np.mean(list(ua.values()))), 2),
        "ua_std": round(_std(np.array(list(ua.values()))), 2),
        "ua_seed_std": round(_std(np.array(per_seed)), 2) if seeds else None,
        "wa_mean": round(float(np.mean(list(wa.values()))), 2),
        "wa_std": round(_std(np.array(list(wa.values()))), 2),
        "macro_f1": {f: round(v, 2) for f, v in f1.items()},
        "macro_f1_mean": round(float(np.mean(list(f1.values()))), 2),
        "macro_f1_std": round(_std(np.array(list(f1.values()))), 2),
        "pooled_ua": round(unweighted_accuracy(pooled), 2),
        "pooled_wa": round(weighted_accuracy(pooled), 2),
        "labels": first["labels"],
        "confusion": confusion.tolist(),
        "frame_level": {f: _frame_mean(runs) for f, runs in sorted(folds.items()) if all(m.get("frame_level") for m in runs.values())},
    }


def _frame_mean(runs: Dict[Optional[int], dict]) -> dict:
    """The frame-level figures of a fold, averaged over its seeds (attention focus over those that have one)."""
    frames = [m["frame_level"] for m in runs.values()]
    focus = [f["attention_focus"] for f in frames if f.get("attention_focus") is not None]
    return {**frames[0], "eder": float(np.mean([f["eder"] for f in frames])), "attention_focus": float(np.mean(focus)) if focus else None}


ROW_NAMES = {
    REFERENCE: "acoustic reference (MFCC statistics + logistic regression; no SSL model)",
    "baseline": "baseline (TAPT fine-tuned)",
}


def row_name(name: str, cell: Optional[StageCell]) -> str:
    """A model's row; the baseline's names its pooling (baseline_pooling may set it apart from the method's)."""
    if name == BASELINE and cell is not None and cell.pooling:
        return f"baseline (TAPT fine-tuned, {cell.pooling} pooling)"
    return ROW_NAMES.get(name, name)


def _order(variants: List[str]) -> List[str]:
    """The acoustic reference first (the floor), then the baseline, then the method's cells."""
    return sorted(variants, key=lambda v: (v != REFERENCE, v != BASELINE, v))


def markdown(summaries: Dict[str, dict], cells: Dict[str, StageCell]) -> str:
    folds = sorted({f for s in summaries.values() for f in s["folds"]})
    seeded = any(len(s["seeds"]) > 1 for s in summaries.values())
    extra = " seeds | UA spread over seeds |" if seeded else ""
    lines = ["| model | " + " | ".join(f"fold {f} UA / WA" for f in folds) + " | mean UA | mean WA | mean macro-F1 |" + extra]
    lines.append("|---|" + "---|" * (len(folds) + 3 + 2 * seeded))
    for name in _order(list(summaries)):
        s = summaries[name]
        figures = [f"{s['ua'][f]:.1f} / {s['wa'][f]:.1f}" if f in s["ua"] else "-" for f in folds]
        label = row_name(name, cells.get(name))
        spread = f" {len(s['seeds']) or 1} | {'-' if s['ua_seed_std'] is None else format(s['ua_seed_std'], '.1f')} |" if seeded else ""
        means = "".join(f" | {s[f'{key}_mean']:.1f} ± {s[f'{key}_std']:.1f}" for key in ("ua", "wa", "macro_f1")) + " |"
        lines.append(f"| {label} | " + " | ".join(figures) + means + spread)
    lines += grid_tables(summaries, cells)
    lines += [
        "",
        f"Mean ± standard deviation over folds{' (each fold: the mean of its seeds)' if seeded else ''}. "
        f"The first row needs no self-supervised model: every model below it should clear it. {PAPER}.",
    ]
    return "\n".join(lines + frame_level_table(summaries, folds))


def grid_tables(summaries: Dict[str, dict], cells: Dict[str, StageCell]) -> List[str]:
    """For a grid of layers or K, the method's cells as the paper's Table 1 (layer x K), one table a pooling."""
    grid = {(c.layer, c.clusters, c.pooling): summaries[name] for name, c in cells.items() if is_method(c)}
    layers, ks = sorted({cell[0] for cell in grid}), sorted({cell[1] for cell in grid})
    if len(layers) < 2 and len(ks) < 2:
        return []
    lines = []
    for pooling in sorted({cell[2] for cell in grid}):
        lines += [
            "",
            f"Mean UA / WA over folds, {pooling} pooling (the paper's Table 1 layout):",
            "",
            "| layer | " + " | ".join(f"K={k}" for k in ks) + " |",
            "|---|" + "---|" * len(ks),
        ]
        for layer in layers:
            row = [grid.get((layer, k, pooling)) for k in ks]
            lines.append(f"| {layer} | " + " | ".join(f"{s['ua_mean']:.1f} / {s['wa_mean']:.1f}" if s else "-" for s in row) + " |")
    return lines


def frame_level_table(summaries: Dict[str, dict], folds: List[int]) -> List[str]:
    """EDER and attention focus per fold, for the models scored against true segments (the demo corpus)."""
    rows = [name for name in _order(list(summaries)) if summaries[name].get("frame_level")]
    if not rows:
        return []
    lines = [
        "",
        "Frame level, against the corpus's true emotion segments: EDER % (lower is better; fesa predict's segments) / "
        "attention focus (pooling weight share on emotional segments over their share of time; 1 = no focus):",
        "",
        "| model | " + " | ".join(f"fold {f}" for f in folds) + " | mean EDER | mean focus |",
        "|---|" + "---|" * (len(folds) + 2),
    ]
    for name in rows:
        frame = summaries[name]["frame_level"]
        cells = [f"{frame[f]['eder']:.1f} / {_focus(frame[f]['attention_focus'])}" if f in frame else "-" for f in folds]
        eders = np.array([v["eder"] for v in frame.values()])
        focus = np.array([v["attention_focus"] for v in frame.values() if v["attention_focus"] is not None])
        lines.append(f"| {ROW_NAMES.get(name, name)} | " + " | ".join(cells) + f" | {_mean_std(eders, 1)} | {_mean_std(focus, 2)} |")
    return lines


def _focus(value) -> str:
    return "-" if value is None else f"{value:.2f}"


def _mean_std(x: np.ndarray, digits: int) -> str:
    if not len(x):
        return "-"
    return f"{x.mean():.{digits}f} ± {x.std(ddof=1) if len(x) > 1 else 0.0:.{digits}f}"


def collect_alignment(exp_dir: Path) -> Tuple[Dict[str, Dict[int, dict]], Dict[str, StageCell]]:
    """model -> fold -> alignment.json content (fesa alignment's stages: one a model and fold), and the models' cells."""
    results = collect(exp_dir, "alignment", "alignment.json")
    found = {name: {k: next(iter(runs.values())).content for k, runs in folds.items()} for name, folds in results.items()}
    return found, model_cells(results)


def alignment_table(found: Dict[str, Dict[int, dict]]) -> List[str]:
    """Purity, NMI and probe frame UA per model, mean ± std over folds: the mechanism, before and after CPT."""
    if not found:
        return []
    order = sorted(found, key=lambda v: (not v.startswith("source"), not v.startswith("tapt"), v))
    lines = [
        "",
        "Alignment of frames with their true state (emotional segment of its class, else neutral), test-split frames, "
        "k-means and probe fitted on training frames (fesa alignment); mean ± std over folds:",
        "",
        "| model, layer and K | purity | majority share | NMI | probe frame UA | chance UA |",
        "|---|---|---|---|---|---|",
    ]
    for name in order:
        folds = found[name].values()
        col = {
            key: _mean_std(np.array([f[key] for f in folds]), 1 if key.endswith("ua") else 3)
            for key in ("purity", "majority_share", "nmi", "probe_ua", "chance_ua")
        }
        lines.append(f"| {name} | {col['purity']} | {col['majority_share']} | {col['nmi']} | {col['probe_ua']} | {col['chance_ua']} |")
    return lines


def learning_curves(exp_dir: Path, out: Path) -> List[str]:
    """curves_fold{k}.png per fold (curves_all.png: the stages the folds share, protocol: authors); returns the report's
    lines about runs stopped while still improving."""
    lines = []
    folds = sorted(p for p in exp_dir.glob("fold*") if p.is_dir() and p.name[len("fold") :].isdigit())
    for fold_dir in [*folds, *[p for p in [exp_dir / "all"] if p.is_dir()]]:
        curves = fold_curves(fold_dir)
        if not curves:
            continue
        plot_curves(list(curves.values()), out / f"curves_{fold_dir.name}.png", title=f"{fold_dir.name}: training loss and validation")
        for run, curve in curves.items():
            if curve.still_improving:
                update, value = curve.valid[-1]
                figure = f"valid UA {value:.1f}" if curve.metric == "ua" else f"valid loss {value:.3f}"
                lines.append(
                    f"- {fold_dir.name}/{run}: stopped at its maximum while still improving ({figure} at update {update}, "
                    "its last validation and its best): a larger max_update would likely help"
                )
    return lines


def corpus_line(exp_dir: Path, summaries: Dict[str, dict]) -> str:
    """Which corpus and which classes: from the prepared manifests' prepare.json, else the experiment's yaml."""
    classes = next(iter(summaries.values()))["labels"]
    prepared = exp_dir / "manifests" / "prepare.json"
    corpus = "?"
    if prepared.is_file():
        info = json.loads(prepared.read_text())
        corpus = f"{info.get('format', 'iemocap')} {info.get('corpus') or info.get('table') or info.get('root')}"
    elif (exp_dir / "experiment.yaml").is_file():
        corpus = f"manifests {(yaml.safe_load((exp_dir / 'experiment.yaml').read_text()) or {}).get('manifests')}"
    return f"Corpus: {corpus}; {len(classes)} classes: {', '.join(classes)}."


FOLD_PROTOCOL = "fold (TAPT, k-means and CPT saw only each fold's training sessions)"
AUTHORS_PROTOCOL = "authors (transductive: the test session's audio was seen by TAPT, k-means and CPT)"


def protocol_of(results: Results) -> str:
    """What the scored models' pretraining and k-means saw, as each result records it (its cell's protocol), not what
    the experiment yaml says now: a later run with another protocol rewrites the yaml before it has scored anything."""
    seen = {run.cell.protocol for folds in results.values() for runs in folds.values() for run in runs.values()}
    return AUTHORS_PROTOCOL if "authors" in seen else FOLD_PROTOCOL


def make_report(exp_dir: Path) -> Dict[str, object]:
    exp_dir = Path(exp_dir)
    results = collect(exp_dir)
    if not results:
        raise FesaError(f"no fold*/evaluate/*/metrics.json under {exp_dir}: has fesa run evaluated anything yet?")
    cells = model_cells(results)
    summaries = {name: {**summarize(folds), "cell": cells[name].record()} for name, folds in results.items()}
    out = exp_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    for variant, s in summaries.items():
        plot_confusion(
            np.array(s["confusion"]),
            s["labels"],
            out / f"confusion_{variant}.png",
            title=f"{variant}, {len(s['folds'])} folds: UA {s['ua_mean']:.1f}%  WA {s['wa_mean']:.1f}%",
        )
    protocol = protocol_of(results)
    text = corpus_line(exp_dir, summaries) + (f"\nProtocol: {protocol}." if protocol != FOLD_PROTOCOL else "") + "\n\n" + markdown(summaries, cells)
    improving = learning_curves(exp_dir, out)
    shared = " and curves_all.png (the stages the folds share)" if (out / "curves_all.png").is_file() else ""
    text += f"\n\nLearning curves: curves_fold*.png{shared} (training loss and validation, against updates, every training stage)."
    if improving:
        text += "\n" + "\n".join(improving)
    alignment, aligned_cells = collect_alignment(exp_dir)
    paired, aligned = compared(results, alignment, aligned_cells)
    text += "\n" + "\n".join(alignment_table(alignment) + alignment_paired_table(aligned, len(paired) + len(aligned))) if alignment else ""
    text += "\n" + "\n".join(paired_table(paired, SHORT_NAMES, len(paired) + len(aligned))) if paired else ""
    runs = run_statistics(results)
    text += "\n" + "\n".join(run_table(runs)) if runs else ""
    atomic_write_text(out / "report.md", text + "\n")
    atomic_write_json(
        out / "report.json",
        {**summaries, "protocol": protocol, "paired": paired, "alignment": alignment, "alignment_paired": aligned, "run_pairs": runs},
    )
    return {"markdown": text, "summaries": summaries, "paired": paired, "alignment_paired": aligned, "run_pairs": runs, "dir": out}


def compared(results: Results, alignment: Dict[str, Dict[int, dict]], aligned_cells: Dict[str, StageCell]) -> Tuple[List[dict], List[dict]]:
    """The report's comparisons, paired over utterances and over folds: one family, Holm-adjusted together."""
    cells = model_cells(results)
    paired = paired_statistics(results, {v: cells[v] for v in _order(list(cells))})  # the reference first
    aligned = alignment_statistics(alignment, aligned_cells)
    family = family_verdicts(paired + aligned)
    return family[: len(paired)], family[len(paired) :]
