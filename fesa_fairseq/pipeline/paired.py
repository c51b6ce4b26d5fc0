"""The report's paired statistics: every model against the baseline, and the method against each control, on the
very test utterances both scored (predictions.tsv, and frame_level.tsv where segment truth exists)."""

import logging
import re
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from fesa_fairseq.data.files import read_lines
from fesa_fairseq.pipeline.plan import REFERENCE, seed_suffix
from fesa_fairseq.statistics import LEVEL, RESAMPLES, FoldOutcomes, compare

logger = logging.getLogger(__name__)

BASELINE = "baseline"
# the method's cells (L9-K50-attention) and the controls of item cpt_targets: the same labels' frames labelled with
# the utterance's emotion or shuffled between utterances (L9-K50-utterance-attention), or the TAPT stage's units
METHOD = re.compile(r"^(?P<lk>L\d+-K\d+)-(?P<pooling>\w+)$")
CONTROL = re.compile(r"^(?:(?P<lk>L\d+-K\d+)-(?P<target>utterance|shuffled)|(?P<tapt>tapt-units))-(?P<pooling>\w+)$")
METRIC_NAMES = {"ua": "UA", "wa": "WA", "eder": "EDER"}
SHORT_NAMES = {REFERENCE: "acoustic reference", BASELINE: "baseline"}


def pairs(variants: Sequence[str]) -> List[Tuple[str, str]]:
    """(a, b) to compare: every model against the baseline, then each method cell against its controls."""
    out = [(v, BASELINE) for v in variants if v != BASELINE] if BASELINE in variants else []
    for control in variants:
        m = CONTROL.match(control)
        if not m:
            continue
        for method in variants:
            cell = METHOD.match(method)
            if cell and cell["pooling"] == m["pooling"] and (m["tapt"] or cell["lk"] == m["lk"]):
                out.append((method, control))
    return out


def _outcomes(run: Path) -> Dict[str, Tuple[str, str]]:
    """utt_id -> (true label, predicted label) from a scorer's predictions.tsv."""
    rows = [line.split("\t") for line in read_lines(run / "predictions.tsv")[1:] if line]
    return {r[0]: (r[1], r[2]) for r in rows}


def _frame_eder(run: Path) -> Dict[str, float]:
    """utt_id -> EDER (a fraction) from evaluate's frame_level.tsv."""
    return {r[0]: float(r[1]) for r in (line.split("\t") for line in read_lines(run / "frame_level.tsv")[1:] if line)}


def _runs(exp_dir: Path, k: int, variant: str, seeds: Sequence[int]) -> List[Path]:
    """The evaluate folders of a model on fold k: one, or one per seed (an unseeded run among them has no suffix)."""
    folder = exp_dir / f"fold{k}" / "evaluate"
    return [folder / f"{variant}{seed_suffix(s)}" for s in seeds] if seeds else [folder / variant]


def fold_outcomes(exp_dir: Path, a: str, b: str, folds: Sequence[int], metric: str, seeds: Dict[str, List[int]]) -> Optional[List[FoldOutcomes]]:
    """Both systems' outcomes per fold, utterance by utterance (a row per seed); None where they did not score the
    same utterances against the same labels."""
    name, read = ("frame_level.tsv", _frame_eder) if metric == "eder" else ("predictions.tsv", _outcomes)
    out = []
    for k in folds:
        ra, rb = _runs(exp_dir, k, a, seeds[a]), _runs(exp_dir, k, b, seeds[b])
        if not all((r / name).is_file() for r in ra + rb):
            return None
        every = [read(r) for r in ra + rb]
        utts = sorted(every[0])
        if any(set(e) != set(utts) for e in every) or (metric != "eder" and any(e[u][0] != every[0][u][0] for e in every for u in utts)):
            logger.warning("fold %d: %s and %s scored different test utterances or labels: not paired", k, a, b)
            return None
        if metric == "eder":
            value = lambda row, u: row[u]  # noqa: E731
            targets = np.zeros(len(utts))
        else:
            labels = sorted({lab for e in every for pair in e.values() for lab in pair})
            index = {lab: i for i, lab in enumerate(labels)}
            value = lambda row, u: index[row[u][1]]  # noqa: E731
            targets = np.array([index[every[0][u][0]] for u in utts])
        table = np.array([[value(row, u) for u in utts] for row in every])
        out.append(FoldOutcomes(targets, table[: len(ra)], table[len(ra) :]))
    return out


def paired_statistics(exp_dir: Path, summaries: Dict[str, dict], resamples: int = RESAMPLES) -> List[dict]:
    """One entry per pair and metric (UA, WA, and EDER where both have frame-level rows), on the folds both have."""
    results = []
    for a, b in pairs(list(summaries)):
        folds = sorted(set(summaries[a]["folds"]) & set(summaries[b]["folds"]))
        for metric in ("ua", "wa", "eder"):
            seeds = {a: summaries[a].get("seeds", []), b: summaries[b].get("seeds", [])}
            outcomes = fold_outcomes(exp_dir, a, b, folds, metric, seeds) if folds else None
            if outcomes:
                results.append({"a": a, "b": b, **compare(outcomes, metric, resamples=resamples).as_dict()})
    return results


def paired_table(results: Sequence[dict], names: Dict[str, str]) -> List[str]:
    if not results:
        return []
    lines = [
        "",
        f"Paired against the same test utterances ({int(LEVEL * 100)} % interval of the difference from a paired bootstrap of each fold's "
        f"utterances, {RESAMPLES:,} resamples; p: one-sided paired permutation test that the first is better; EDER: lower is better):",
        "",
        "| comparison | metric | difference | interval | folds ahead | p | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        name = f"{names.get(r['a'], r['a'])} vs {names.get(r['b'], r['b'])}"
        scale = 100.0 if r["metric"] == "eder" else 1.0  # EDER per utterance is a fraction; the tables show percent
        interval = f"[{r['low'] * scale:+.1f}, {r['high'] * scale:+.1f}]"
        lines.append(
            f"| {name} | {METRIC_NAMES[r['metric']]} | {r['difference'] * scale:+.1f} | {interval} | {r['folds_ahead']}/{r['folds']} "
            f"| {r['p_value']:.3g} | {r['verdict']} |"
        )
    return lines
