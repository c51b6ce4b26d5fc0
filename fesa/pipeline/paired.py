"""The report's paired statistics: every model against the baseline, the method against the acoustic reference and
each control, on the very test utterances both scored (predictions.tsv, and frame_level.tsv where segment truth
exists); and the alignment figures (fold by fold) of the method's CPT model against its controls', the TAPT model's
and the source model's. One family per report: Holm's adjustment over all of them (statistics.family_verdicts)."""

import logging
import re
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from fesa.pipeline.plan import REFERENCE, seed_suffix
from fesa.statistics import LEVEL, RESAMPLES, UTTERANCES, FoldOutcomes, compare, compare_folds
from fesa_fairseq.data.files import read_lines

logger = logging.getLogger(__name__)

BASELINE = "baseline"
# the method's cells (L9-K50-attention) and the controls of item cpt_targets: the same labels' frames labelled with
# the utterance's emotion or shuffled between utterances (L9-K50-utterance-attention), or the TAPT stage's units
METHOD = re.compile(r"^(?P<lk>L\d+-K\d+)-(?P<pooling>\w+)$")
CONTROL = re.compile(r"^(?:(?P<lk>L\d+-K\d+)-(?P<target>utterance|shuffled)|(?P<tapt>tapt-units))-(?P<pooling>\w+)$")
METRIC_NAMES = {"ua": "UA", "wa": "WA", "eder": "EDER"}
SHORT_NAMES = {REFERENCE: "acoustic reference", BASELINE: "baseline"}
# fesa alignment's models (plan._alignments): the method's CPT model cpt-L9-K50, its controls' cpt-L9-K50-shuffled,
# cpt-L9-K50-utterance and cpt-tapt-units-L9-K50, and the models before CPT, tapt-L9-K50 and source-L9-K50
ALIGNED_METHOD = re.compile(r"^cpt-(?P<lk>L\d+-K\d+)$")
ALIGNMENT_FIGURES = {"probe_ua": "probe frame UA", "purity": "purity", "nmi": "NMI"}
SEEDED = re.compile(r"^(?P<base>.+)-s(?P<seed>\d+)$")


def pairs(variants: Sequence[str]) -> List[Tuple[str, str]]:
    """(a, b) to compare: every model against the baseline, then each method cell against the acoustic reference
    (the floor it must clear) and against its controls."""
    out = [(v, BASELINE) for v in variants if v != BASELINE] if BASELINE in variants else []
    if REFERENCE in variants:
        out += [(method, REFERENCE) for method in variants if METHOD.match(method)]
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


def run_pairs(summaries: Dict[str, dict]) -> List[Tuple[str, str]]:
    """A/A: the result folders of each replicated model's first run against each of its other runs (the same
    procedure trained again), named as fesa run names them."""
    out = []
    for name, s in summaries.items():
        runs = [f"{name}{seed_suffix(seed)}" for seed in s.get("seeds", [])]
        out += [(runs[0], other) for other in runs[1:]]
    return out


def run_statistics(exp_dir: Path, summaries: Dict[str, dict], resamples: int = RESAMPLES) -> List[dict]:
    """Each pair of run_pairs compared as two fixed trained models (one run a side), UA: how far two runs of one
    procedure land apart on these test utterances. A calibration, not a claim: it is kept out of the Holm family."""
    results = []
    for a, b in run_pairs(summaries):
        model = next(name for name in summaries if a.startswith(name))
        outcomes = fold_outcomes(exp_dir, a, b, summaries[model]["folds"], "ua", {a: [], b: []})
        if outcomes:
            results.append({"a": a, "b": b, **compare(outcomes, "ua", resamples=resamples).as_dict()})
    return results


def run_table(results: Sequence[dict]) -> List[str]:
    if not results:
        return []
    lines = [
        "",
        "Two training runs of the same procedure (A/A), each as one trained model on the same test utterances, by the one-run "
        "comparison above (not in the Holm family): what a one-run verdict between two procedures could be made of.",
        "",
        "| runs | difference | interval | folds ahead | p | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        interval = f"[{r['low']:+.1f}, {r['high']:+.1f}]"
        lines.append(
            f"| {r['a']} vs {r['b']} | {r['difference']:+.1f} | {interval} | {r['folds_ahead']}/{r['folds']} | {r['p_value']:.3g} | {r['verdict']} |"
        )
    return lines


def alignment_pairs(names: Sequence[str]) -> List[Tuple[str, str]]:
    """(the method's CPT model, another at its layer and K): its controls' CPT models, the TAPT model, the source."""
    out = []
    for method in names:
        m = ALIGNED_METHOD.match(method)
        if m:
            lk = m["lk"]
            others = (f"cpt-{lk}-utterance", f"cpt-{lk}-shuffled", f"cpt-tapt-units-{lk}", f"tapt-{lk}", f"source-{lk}")
            out += [(method, other) for other in others if other in names]
    return out


def _alignment_runs(found: Dict[str, Dict[int, dict]]) -> Dict[str, Dict[int, List[dict]]]:
    """model -> fold -> its runs' alignment.json (a name ending in -s{seed} is one seed of its model)."""
    runs: Dict[str, Dict[int, List[dict]]] = {}
    for name, folds in found.items():
        seeded = SEEDED.match(name)
        for k, content in folds.items():
            runs.setdefault(seeded["base"] if seeded else name, {}).setdefault(k, []).append(content)
    return runs


def alignment_statistics(found: Dict[str, Dict[int, dict]]) -> List[dict]:
    """One entry per pair and figure (probe frame UA, purity, NMI), paired by fold over the folds both have."""
    runs = _alignment_runs(found)
    results = []
    for a, b in alignment_pairs(sorted(runs)):
        folds = sorted(set(runs[a]) & set(runs[b]))
        for figure in ALIGNMENT_FIGURES:
            values = [[[r[figure] for r in runs[x][k]] for k in folds] for x in (a, b)]
            c = compare_folds(values[0], values[1], figure)
            if c is not None:
                results.append({"a": a, "b": b, **c.as_dict()})
    return results


def verdict_cell(r: dict) -> str:
    """The verdict, the rule that made it where Holm's adjustment overturned the comparison's own, and what it
    holds for where a side has one training run."""
    word = str(r["verdict"])
    alone = r.get("verdict_alone", word)
    if alone != word:
        word += f" after Holm ({alone} on its own)"
    if r["covers"] == UTTERANCES:
        word += "; these two trained models, on these test utterances"
    return word


def _holm(r: dict) -> str:
    return "-" if r.get("p_holm") is None else f"{r['p_holm']:.3g}"


def paired_table(results: Sequence[dict], names: Dict[str, str], family: Optional[int] = None) -> List[str]:
    if not results:
        return []
    lines = [
        "",
        f"Paired against the same test utterances ({int(LEVEL * 100)} % interval of the difference from a paired bootstrap, "
        f"{RESAMPLES:,} resamples: in each fold, each system's training runs drawn with replacement where it has several, then the "
        "fold's utterances, the same draw for both; runs: training runs a fold; p: two-sided, a paired permutation test of utterances "
        f"with one run a side, else the bootstrap's; Holm p: Holm's adjustment over the report's {family or len(results)} comparisons; "
        f"verdict: ahead or behind where the interval leaves out 0 and Holm p < {1 - LEVEL:.2g}; EDER: lower is better):",
        "",
        "| comparison | metric | difference | interval | folds ahead | runs | p | Holm p | verdict |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        name = f"{names.get(r['a'], r['a'])} vs {names.get(r['b'], r['b'])}"
        scale = 100.0 if r["metric"] == "eder" else 1.0  # EDER per utterance is a fraction; the tables show percent
        interval = f"[{r['low'] * scale:+.1f}, {r['high'] * scale:+.1f}]"
        lines.append(
            f"| {name} | {METRIC_NAMES[r['metric']]} | {r['difference'] * scale:+.1f} | {interval} | {r['folds_ahead']}/{r['folds']} "
            f"| {r['runs']['a']} / {r['runs']['b']} | {r['p_value']:.3g} | {_holm(r)} | {verdict_cell(r)} |"
        )
    if any(r["covers"] == UTTERANCES for r in results):
        lines += [
            "",
            "A comparison with one training run on a side holds for those two trained models, on these test utterances: another "
            "training run could come out otherwise (a fold's UA moves by several points from seed to seed). `seeds: [1, 2, 3]` in the "
            "experiment yaml trains every model three times a fold, and its comparisons then cover the training runs too.",
        ]
    return lines


def alignment_paired_table(results: Sequence[dict], family: Optional[int] = None) -> List[str]:
    if not results:
        return []
    lines = [
        "",
        "The alignment, paired by fold: the method's CPT model against the others at its layer and K, each fold's figure (its runs "
        f"averaged) against the other's on the same fold; {int(LEVEL * 100)} % t-interval and two-sided p of a paired t-test over the "
        "folds' differences, whose spread holds each fold's own training runs (so it covers folds and training runs, with few degrees "
        f"of freedom: folds - 1); Holm p over the report's {family or len(results)} comparisons; verdict as above:",
        "",
        "| comparison | figure | difference | interval | folds ahead | runs | p | Holm p | verdict |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        digits = 1 if r["metric"] == "probe_ua" else 3
        interval = f"[{r['low']:+.{digits}f}, {r['high']:+.{digits}f}]"
        lines.append(
            f"| {r['a']} vs {r['b']} | {ALIGNMENT_FIGURES[r['metric']]} | {r['difference']:+.{digits}f} | {interval} | "
            f"{r['folds_ahead']}/{r['folds']} | {r['runs']['a']} / {r['runs']['b']} | {r['p_value']:.3g} | {_holm(r)} | {verdict_cell(r)} |"
        )
    return lines
