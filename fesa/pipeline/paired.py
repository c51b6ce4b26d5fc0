"""The report's paired statistics: every model against the baseline, the method against the acoustic reference and
each control, on the very test utterances both scored (predictions.tsv, and frame_level.tsv where segment truth
exists); and the alignment figures (fold by fold) of the method's CPT model against its controls', the TAPT model's
and the source model's. One family per report: Holm's adjustment over all of them (statistics.family_verdicts)."""

import logging
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from fesa.pipeline.cell import BASELINE, CONTROLS, CPT, REFERENCE, StageCell
from fesa.pipeline.results import Results, Runs, ordered, seed_order
from fesa.statistics import LEVEL, RESAMPLES, UTTERANCES, FoldOutcomes, compare, compare_folds
from fesa_fairseq.data.files import read_lines

logger = logging.getLogger(__name__)

METRIC_NAMES = {"ua": "UA", "wa": "WA", "eder": "EDER"}
SHORT_NAMES = {REFERENCE: "acoustic reference", BASELINE: "baseline"}
ALIGNMENT_FIGURES = {"probe_ua": "probe frame UA", "purity": "purity", "nmi": "NMI"}
# what the method's CPT model is aligned against at its layer and K (plan._alignments), in the report's order: its
# controls' CPT models, then the models before CPT
ALIGNED_AGAINST = ((CPT, "utterance"), (CPT, "shuffled"), (CPT, "tapt"), ("tapt", None), ("source", None))


def is_method(cell: StageCell) -> bool:
    """The method's own cells: CPT on the clusters of a layer (L9-K50-attention)."""
    return cell.model == CPT and cell.targets == "clusters"


def controls(control: StageCell, method: StageCell) -> bool:
    """Whether a model is a control of a method cell: CPT on the same labels' frames labelled with the utterance's
    emotion or shuffled between utterances, or on the TAPT stage's units; fine-tuned with the same pooling."""
    same_labels = control.targets == "tapt" or (control.layer, control.clusters) == (method.layer, method.clusters)
    return control.model == CPT and control.targets in CONTROLS and control.pooling == method.pooling and same_labels


def pairs(cells: Dict[str, StageCell]) -> List[Tuple[str, str]]:
    """(a, b) to compare, of the models named in ``cells``: every model against the baseline, then each method cell
    against the acoustic reference (the floor it must clear) and against its controls."""
    names = list(cells)
    out = [(v, BASELINE) for v in names if v != BASELINE] if BASELINE in cells else []
    if REFERENCE in cells:
        out += [(method, REFERENCE) for method in names if is_method(cells[method])]
    for control in names:
        out += [(method, control) for method in names if is_method(cells[method]) and controls(cells[control], cells[method])]
    return out


def _outcomes(run: Path) -> Dict[str, Tuple[str, str]]:
    """utt_id -> (true label, predicted label) from a scorer's predictions.tsv."""
    rows = [line.split("\t") for line in read_lines(run / "predictions.tsv")[1:] if line]
    return {r[0]: (r[1], r[2]) for r in rows}


def _frame_eder(run: Path) -> Dict[str, float]:
    """utt_id -> EDER (a fraction) from evaluate's frame_level.tsv."""
    return {r[0]: float(r[1]) for r in (line.split("\t") for line in read_lines(run / "frame_level.tsv")[1:] if line)}


def fold_outcomes(a: Dict[int, Runs], b: Dict[int, Runs], folds: Sequence[int], metric: str) -> Optional[List[FoldOutcomes]]:
    """Both systems' outcomes per fold, utterance by utterance (a row per run); None where a fold lacks one of a
    system's runs, or they did not score the same utterances against the same labels."""
    name, read = ("frame_level.tsv", _frame_eder) if metric == "eder" else ("predictions.tsv", _outcomes)
    seeds = [sorted({s for k in folds for s in side[k]}, key=seed_order) for side in (a, b)]
    out = []
    for k in folds:
        if any(s not in side[k] for side, wanted in zip((a, b), seeds) for s in wanted):
            return None
        ra, rb = ([side[k][s].folder for s in wanted] for side, wanted in zip((a, b), seeds))
        if not all((r / name).is_file() for r in ra + rb):
            return None
        every = [read(r) for r in ra + rb]
        utts = sorted(every[0])
        if any(set(e) != set(utts) for e in every) or (metric != "eder" and any(e[u][0] != every[0][u][0] for e in every for u in utts)):
            logger.warning("fold %d: %s and %s scored different test utterances or labels: not paired", k, ra[0].name, rb[0].name)
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


def paired_statistics(results: Results, cells: Dict[str, StageCell], resamples: int = RESAMPLES) -> List[dict]:
    """One entry per pair and metric (UA, WA, and EDER where both have frame-level rows), on the folds both have;
    ``cells`` names the models in the report's order."""
    out = []
    for a, b in pairs(cells):
        folds = sorted(set(results[a]) & set(results[b]))
        for metric in ("ua", "wa", "eder"):
            outcomes = fold_outcomes(results[a], results[b], folds, metric) if folds else None
            if outcomes:
                out.append({"a": a, "b": b, **compare(outcomes, metric, resamples=resamples).as_dict()})
    return out


def run_pairs(results: Results) -> List[Tuple[Dict[int, Runs], Dict[int, Runs]]]:
    """A/A: each replicated model's first run against each of its other runs (the same procedure trained again),
    the runs of one seed as one system, on every fold of the model (a fold without that seed's run: no comparison)."""
    out = []
    for folds in results.values():
        seeds = [r.cell.seed for r in ordered({s: r for runs in folds.values() for s, r in runs.items()})]
        one = [{k: {s: runs[s] for s in [seed] if s in runs} for k, runs in folds.items()} for seed in seeds]
        out += [(one[0], other) for other in one[1:]]
    return out


def run_statistics(results: Results, resamples: int = RESAMPLES) -> List[dict]:
    """Each pair of run_pairs compared as two fixed trained models (one run a side), UA: how far two runs of one
    procedure land apart on these test utterances. A calibration, not a claim: it is kept out of the Holm family."""
    out = []
    for a, b in run_pairs(results):
        outcomes = fold_outcomes(a, b, sorted(a), "ua")
        if outcomes:
            names = [next(r for runs in side.values() for r in runs.values()).cell.run_name for side in (a, b)]
            out.append({"a": names[0], "b": names[1], **compare(outcomes, "ua", resamples=resamples).as_dict()})
    return out


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


def alignment_pairs(cells: Dict[str, StageCell]) -> List[Tuple[str, str]]:
    """(the method's CPT model, another at its layer and K): its controls' CPT models, the TAPT model, the source."""
    out = []
    for method in sorted(cells):
        m = cells[method]
        if is_method(m):
            at = {(c.model, c.targets): name for name, c in cells.items() if (c.layer, c.clusters) == (m.layer, m.clusters)}
            out += [(method, at[kind]) for kind in ALIGNED_AGAINST if kind in at]
    return out


def alignment_statistics(found: Dict[str, Dict[int, dict]], cells: Dict[str, StageCell]) -> List[dict]:
    """One entry per pair and figure (probe frame UA, purity, NMI), paired by fold over the folds both have."""
    results = []
    for a, b in alignment_pairs(cells):
        folds = sorted(set(found[a]) & set(found[b]))
        for figure in ALIGNMENT_FIGURES:
            values = [[[found[x][k][figure]] for k in folds] for x in (a, b)]
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
