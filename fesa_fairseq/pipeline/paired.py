"""The report's paired statistics: every model against the baseline, and the method against each control, on the
very test utterances both scored (predictions.tsv, and frame_level.tsv where segment truth exists)."""

import logging
import re
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from fesa_fairseq.data.files import read_lines
from fesa_fairseq.pipeline.plan import REFERENCE
from fesa_fairseq.statistics import LEVEL, RESAMPLES, FoldOutcomes, compare

logger = logging.getLogger(__name__)

BASELINE = "baseline"
# the method's cells (L9-K50-attention) and the controls of item cpt_targets: the same labels' frames labelled with
# the utterance's emotion or shuffled between utterances (L9-K50-utterance-attention), or the TAPT stage's units
METHOD = re.compile(r"^(?P<lk>L\d+-K\d+)-(?P<pooling>\w+)$")
CONTROL = re.compile(r"^(?:(?P<lk>L\d+-K\d+)-(?P<target>utterance|shuffled)|(?P<tapt>tapt-units))-(?P<pooling>\w+)$")
METRIC_NAMES = {"ua": "UA", "wa": "WA", "eder": "EDER"}


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


def _frame_eder(run: Path) -> Optional[Dict[str, float]]:
    path = run / "frame_level.tsv"
    if not path.is_file():
        return None
    return {r[0]: float(r[1]) for r in (line.split("\t") for line in read_lines(path)[1:] if line)}


def fold_outcomes(exp_dir: Path, a: str, b: str, folds: Sequence[int], metric: str) -> Optional[List[FoldOutcomes]]:
    """Both systems' outcomes per fold, utterance by utterance; None where they did not score the same utterances."""
    out = []
    for k in folds:
        runs = [exp_dir / f"fold{k}" / "evaluate" / v for v in (a, b)]
        if metric == "eder":
            ea, eb = (_frame_eder(r) for r in runs)
            if ea is None or eb is None or set(ea) != set(eb):
                return None
            utts = sorted(ea)
            out.append(FoldOutcomes(np.zeros(len(utts)), np.array([ea[u] for u in utts]), np.array([eb[u] for u in utts])))
            continue
        if not all((r / "predictions.tsv").is_file() for r in runs):
            return None
        oa, ob = (_outcomes(r) for r in runs)
        if set(oa) != set(ob) or any(oa[u][0] != ob[u][0] for u in oa):
            logger.warning("fold %d: %s and %s scored different test utterances: not paired", k, a, b)
            return None
        utts, labels = sorted(oa), sorted({lab for pair in oa.values() for lab in pair} | {ob[u][1] for u in ob})
        index = {lab: i for i, lab in enumerate(labels)}
        t, pa, pb = (np.array([index[src[u][j]] for u in utts]) for src, j in ((oa, 0), (oa, 1), (ob, 1)))
        out.append(FoldOutcomes(t, pa, pb))
    return out


def paired_statistics(exp_dir: Path, summaries: Dict[str, dict], resamples: int = RESAMPLES) -> List[dict]:
    """One entry per pair and metric (UA, WA, and EDER where both have frame-level rows), on the folds both have."""
    results = []
    for a, b in pairs(list(summaries)):
        folds = sorted(set(summaries[a]["folds"]) & set(summaries[b]["folds"]))
        for metric in ("ua", "wa", "eder"):
            outcomes = fold_outcomes(exp_dir, a, b, folds, metric) if folds else None
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


SHORT_NAMES = {REFERENCE: "acoustic reference", BASELINE: "baseline"}
