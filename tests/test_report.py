import json
import math

import numpy as np
import pytest

from fesa.errors import FesaError
from fesa.pipeline.cell import StageCell, legacy_cell
from fesa.pipeline.report import make_report


def write_metrics(exp, fold, variant, ua, wa, confusion):
    out = exp / f"fold{fold}" / "evaluate" / variant
    out.mkdir(parents=True)
    (out / "metrics.json").write_text(json.dumps({"ua": ua, "wa": wa, "labels": ["neu", "hap"], "confusion": confusion}))


def test_mean_std_pooled_confusion_and_grid(tmp_path):
    write_metrics(tmp_path, 1, "baseline", 70.0, 72.0, [[5, 1], [2, 2]])
    write_metrics(tmp_path, 2, "baseline", 74.0, 76.0, [[4, 0], [1, 3]])
    for layer, k, ua in ((6, 50, 71.0), (9, 50, 75.0), (6, 100, 72.0), (9, 100, 74.0)):
        for fold, delta in ((1, -1.0), (2, 1.0)):
            write_metrics(tmp_path, fold, f"L{layer}-K{k}-attention", ua + delta, ua, [[3, 0], [0, 3]])
    report = make_report(tmp_path)
    base = report["summaries"]["baseline"]
    assert (base["ua_mean"], base["wa_mean"]) == (72.0, 74.0)
    assert base["ua_std"] == pytest.approx(2.83, abs=0.01)  # sample std of 70 and 74
    assert base["confusion"] == [[9, 1], [3, 5]]
    assert base["pooled_ua"] == pytest.approx(round(100 * (9 / 10 + 5 / 8) / 2, 2))
    text = report["markdown"]
    assert "| baseline (TAPT fine-tuned) | 70.0 / 72.0 | 74.0 / 76.0 | 72.0 ± 2.8 | 74.0 ± 2.8 |" in text
    assert "| layer | K=50 | K=100 |" in text
    assert "| 9 | 75.0 / 75.0 | 74.0 / 74.0 |" in text and "| 6 | 71.0 / 71.0 | 72.0 / 72.0 |" in text
    assert (tmp_path / "report" / "confusion_L9-K50-attention.png").is_file()
    assert json.loads((tmp_path / "report" / "report.json").read_text())["baseline"]["folds"] == [1, 2]


def test_nothing_to_report(tmp_path):
    with pytest.raises(FesaError, match="no fold\\*/evaluate/\\*/metrics.json"):
        make_report(tmp_path)


def test_reference_is_the_first_row_and_stale_results_are_not_models(tmp_path):
    write_metrics(tmp_path, 1, "L9-K50-attention", 75.0, 74.0, [[3, 1], [1, 3]])
    write_metrics(tmp_path, 1, "baseline", 70.0, 72.0, [[3, 1], [1, 3]])
    write_metrics(tmp_path, 1, "reference", 60.0, 61.0, [[3, 1], [2, 2]])
    write_metrics(tmp_path, 1, "baseline.stale-20260101-000000", 10.0, 10.0, [[0, 4], [4, 0]])
    report = make_report(tmp_path)
    rows = [line for line in report["markdown"].splitlines() if line.startswith("| ")][1:]
    assert [row.split(" | ")[0] for row in rows] == [
        "| acoustic reference (MFCC statistics + logistic regression; no SSL model)",
        "| baseline (TAPT fine-tuned)",
        "| L9-K50-attention",
    ]
    assert set(report["summaries"]) == {"reference", "baseline", "L9-K50-attention"}
    assert not list((tmp_path / "report").glob("*stale*"))


def test_frame_level_figures_get_their_own_table(tmp_path):
    for fold, (base, method) in enumerate([((45.0, 1.3), (36.0, 0.9)), ((47.0, 1.1), (40.0, None))], start=1):
        for variant, (e, focus) in (("baseline", base), ("L9-K50-attention", method)):
            write_metrics(tmp_path, fold, variant, 80.0, 80.0, [[3, 1], [1, 3]])
            path = tmp_path / f"fold{fold}" / "evaluate" / variant / "metrics.json"
            m = json.loads(path.read_text())
            path.write_text(json.dumps({**m, "frame_level": {"eder": e, "attention_focus": focus, "utterances": 8}}))
    write_metrics(tmp_path, 1, "reference", 60.0, 61.0, [[3, 1], [2, 2]])
    text = make_report(tmp_path)["markdown"]
    assert "Frame level, against the corpus's true emotion segments" in text
    assert "| baseline (TAPT fine-tuned) | 45.0 / 1.30 | 47.0 / 1.10 | 46.0 ± 1.4 | 1.20 ± 0.14 |" in text
    assert "| L9-K50-attention | 36.0 / 0.90 | 40.0 / - | 38.0 ± 2.8 | 0.90 ± 0.00 |" in text
    assert "| acoustic reference" not in text.split("Frame level")[1]  # no frames, no row


def hydra_log(run, train, valid, metric="ua"):
    """A hydra_train.log as fairseq-hydra-train writes it with common.log_format=json."""
    run.mkdir(parents=True)
    lines = ["[2026-01-01 00:00:00,000][fairseq_cli.train][INFO] - training"]
    lines += [f'[2026-01-01 00:00:01,000][train_inner][INFO] - {{"epoch": 1, "loss": "{loss}", "num_updates": "{u}"}}' for u, loss in train]
    lines += [
        f'[2026-01-01 00:00:02,000][valid][INFO] - {{"epoch": 1, "valid_loss": "1.0", "valid_{metric}": "{v}", "valid_num_updates": "{u}"}}'
        for u, v in valid
    ]
    lines.append('[2026-01-01 00:00:03,000][valid][INFO] - {"epoch": 2, "valid_lo')  # a line cut short by a crash
    (run / "hydra_train.log").write_text("\n".join(lines) + "\n")


def test_learning_curves_and_runs_stopped_while_improving(tmp_path):
    write_metrics(tmp_path, 1, "baseline", 70.0, 72.0, [[3, 1], [1, 3]])
    fold = tmp_path / "fold1"
    hydra_log(fold / "tapt-finetune", [(10, 1.3), (20, 0.9)], [(10, 40.0), (50, 60.0), (90, 70.0), (100, 70.0)])
    hydra_log(fold / "finetune" / "L9-K50-attention", [(10, 1.3)], [(10, 40.0), (50, 80.0), (100, 70.0)])
    hydra_log(fold / "cpt" / "L9-K50", [(10, 7.0)], [(10, 6.0), (20, 5.0)], metric="loss")
    hydra_log(fold / "tapt-finetune.stale-20260101-000000", [(10, 1.0)], [(10, 10.0), (20, 90.0)])
    text = make_report(tmp_path)["markdown"]
    assert (tmp_path / "report" / "curves_fold1.png").is_file()
    assert "- fold1/tapt-finetune: stopped at its maximum while still improving (valid UA 70.0 at update 100" in text
    assert "- fold1/cpt/L9-K50: stopped at its maximum while still improving (valid loss 5.000 at update 20" in text  # pretraining too
    assert "finetune/L9-K50-attention: stopped" not in text and "stale" not in text
    assert not (tmp_path / "report" / "curves_all.png").exists()
    hydra_log(tmp_path / "all" / "tapt", [(10, 7.0)], [(10, 6.0), (20, 5.0)], metric="loss")  # protocol: authors' one TAPT
    text = make_report(tmp_path)["markdown"]
    assert (tmp_path / "report" / "curves_all.png").is_file() and "- all/tapt: stopped at its maximum while still improving" in text
    plateau = fold / "cpt" / "L9-K50" / "hydra_train.log"  # fairseq stopped it on its validation plateau: not flagged
    plateau.write_text(
        plateau.read_text()
        + "[2026-01-01 00:00:04,000][fairseq_cli.train][INFO] - early stop since valid performance hasn't improved for last 4 runs\n"
    )
    assert "cpt/L9-K50: stopped" not in make_report(tmp_path)["markdown"]


def test_read_curve(tmp_path):
    from fesa.pipeline.curves import read_curve

    hydra_log(tmp_path / "run", [(10, 1.5), (20, 1.25)], [(15, 30.0), (30, 45.5)])
    curve = read_curve(tmp_path / "run" / "hydra_train.log", "run")
    assert curve.train == [(10, 1.5), (20, 1.25)] and curve.valid == [(15, 30.0), (30, 45.5)] and curve.metric == "ua"
    assert curve.best() == (30, 45.5) and curve.still_improving


def write_predictions(exp, fold, variant, truth, predicted, eder=None, cell=None):
    """metrics.json as the scorers write it, with the predictions.tsv (and frame_level.tsv) it came from; with a
    cell, as fesa run's evaluate writes it today, else as it did before cells were recorded."""
    from fesa.pipeline.evaluate import write_frame_rows, write_results

    labels = ["neu", "hap"]
    prob = np.eye(2)[[labels.index(p) for p in predicted]]
    out = exp / f"fold{fold}" / "evaluate" / variant
    ids = [f"/x/u{i}.wav" for i in range(len(truth))]
    if eder is not None:
        write_frame_rows(out, {f"u{i}": (e, None) for i, e in enumerate(eder)})
    about = {"split": "test", **({"cell": cell.record()} if cell else {})}
    write_results(out, ids, [labels.index(t) for t in truth], prob, labels, about)


def test_paired_statistics_against_the_baseline_and_the_controls(tmp_path):
    """The method right on every utterance, the baseline on 3 of 4 per fold, the control wrong wherever the method is
    right on fold 1 and equal to the baseline on fold 2; the reference is the baseline's twin."""
    truth = ["neu", "hap"] * 10
    wrong = ["hap", "neu"] * 10
    baseline = [t if i % 4 else w for i, (t, w) in enumerate(zip(truth, wrong))]
    for fold in (1, 2):
        write_predictions(tmp_path, fold, "reference", truth, baseline)
        write_predictions(tmp_path, fold, "baseline", truth, baseline, eder=[0.5] * 20)
        write_predictions(tmp_path, fold, "L9-K50-attention", truth, truth, eder=[0.2] * 20)
        write_predictions(tmp_path, fold, "L9-K50-shuffled-attention", truth, wrong if fold == 1 else baseline)
    report = make_report(tmp_path)
    got = {(r["a"], r["b"], r["metric"]): r for r in report["paired"]}
    assert set(got) == {
        ("reference", "baseline", "ua"),
        ("reference", "baseline", "wa"),
        ("L9-K50-attention", "baseline", "ua"),
        ("L9-K50-attention", "baseline", "wa"),
        ("L9-K50-attention", "baseline", "eder"),
        ("L9-K50-attention", "reference", "ua"),  # the floor, compared with the method itself
        ("L9-K50-attention", "reference", "wa"),
        ("L9-K50-shuffled-attention", "baseline", "ua"),
        ("L9-K50-shuffled-attention", "baseline", "wa"),
        ("L9-K50-attention", "L9-K50-shuffled-attention", "ua"),
        ("L9-K50-attention", "L9-K50-shuffled-attention", "wa"),
    }
    twin = got[("reference", "baseline", "ua")]
    assert (twin["difference"], twin["low"], twin["high"], twin["p_value"], twin["verdict"]) == (0, 0, 0, 1.0, "no difference shown")
    method = got[("L9-K50-attention", "baseline", "ua")]
    assert method["difference"] == 25.0 and method["low"] > 0 and method["verdict"] == "ahead" and method["folds_ahead"] == 2
    eder = got[("L9-K50-attention", "baseline", "eder")]
    assert eder["difference"] == pytest.approx(-0.3) and eder["verdict"] == "ahead"
    control = got[("L9-K50-attention", "L9-K50-shuffled-attention", "ua")]
    assert control["difference"] == pytest.approx((100 + 25) / 2) and control["folds_ahead"] == 2
    lines = report["markdown"].splitlines()
    assert "| L9-K50-attention vs baseline | UA | +25.0 | [" in "\n".join(lines)
    assert "| L9-K50-attention vs baseline | EDER | -30.0 | [-30.0, -30.0] | 2/2 |" in "\n".join(lines)
    assert json.loads((tmp_path / "report" / "report.json").read_text())["paired"] == report["paired"]
    assert report["paired"][0]["a"] == "reference"  # every table starts from the acoustic reference


def test_alignment_table_from_the_alignment_stages(tmp_path):
    write_metrics(tmp_path, 1, "baseline", 70.0, 72.0, [[3, 1], [1, 3]])
    figures = {"source-L9-K50": (0.5, 0.1, 40.0), "tapt-L9-K50": (0.6, 0.2, 50.0), "cpt-L9-K50": (0.7, 0.3, 60.0)}
    for fold, delta in ((1, -0.1), (2, 0.1)):
        for name, (purity, nmi, probe) in figures.items():
            out = tmp_path / f"fold{fold}" / "alignment" / name
            out.mkdir(parents=True)
            values = {"purity": purity + delta, "majority_share": 0.5, "nmi": nmi, "probe_ua": probe + 10 * delta, "chance_ua": 25.0}
            (out / "alignment.json").write_text(json.dumps(values))
    report = make_report(tmp_path)
    table = report["markdown"].split("Alignment of frames")[1].split("The alignment, paired by fold")[0]
    rows = [line for line in table.splitlines() if line.startswith("| ")][1:]
    assert [r.split(" | ")[0] for r in rows] == ["| source-L9-K50", "| tapt-L9-K50", "| cpt-L9-K50"]
    assert rows[2] == "| cpt-L9-K50 | 0.700 ± 0.141 | 0.500 ± 0.000 | 0.300 ± 0.000 | 60.0 ± 1.4 | 25.0 ± 0.0 |"
    assert set(json.loads((tmp_path / "report" / "report.json").read_text())["alignment"]) == set(figures)


def test_seeds_are_averaged_per_fold_and_their_spread_shown(tmp_path):
    """Seed 1 right on 16 of 20 utterances, seed 2 on 12: the fold's UA is their mean, 70; the method's seeds 90, 80."""
    truth = ["neu", "hap"] * 10
    wrong = ["hap", "neu"] * 10

    def right_on(n):
        return [t if i < n else w for i, (t, w) in enumerate(zip(truth, wrong))]

    for fold in (1, 2):
        write_predictions(tmp_path, fold, "reference", truth, right_on(10))
        write_predictions(tmp_path, fold, "baseline-s1", truth, right_on(16))
        write_predictions(tmp_path, fold, "baseline-s2", truth, right_on(12))
        write_predictions(tmp_path, fold, "L9-K50-attention-s1", truth, right_on(18))
        write_predictions(tmp_path, fold, "L9-K50-attention-s2", truth, right_on(16))
    report = make_report(tmp_path)
    base = report["summaries"]["baseline"]
    assert base["seeds"] == [1, 2] and base["ua"] == {1: 70.0, 2: 70.0} and base["ua_seed_std"] == pytest.approx(14.14, abs=0.01)
    assert report["summaries"]["reference"]["seeds"] == [] and report["summaries"]["reference"]["ua_seed_std"] is None
    assert "| baseline (TAPT fine-tuned) | 70.0 / 70.0 | 70.0 / 70.0 | 70.0 ± 0.0 | 70.0 ± 0.0 | 70.0 ± 0.0 | 2 | 14.1 |" in report["markdown"]
    method = next(r for r in report["paired"] if (r["a"], r["b"], r["metric"]) == ("L9-K50-attention", "baseline", "wa"))
    assert (method["a_mean"], method["b_mean"], method["difference"]) == (85.0, 70.0, 15.0) and method["verdict"] == "ahead"


def test_an_unseeded_run_beside_seeded_ones_is_one_more_replicate(tmp_path):
    """Seeds added to an experiment that already ran once: the first run (the yaml's seed) counts, and is counted."""
    truth = ["neu", "hap"] * 10
    for fold in (1, 2):
        write_predictions(tmp_path, fold, "reference", truth, truth)
        for run, n in (("baseline", 20), ("baseline-s1", 16), ("baseline-s2", 12)):
            write_predictions(tmp_path, fold, run, truth, [t if i < n else ("hap" if t == "neu" else "neu") for i, t in enumerate(truth)])
    report = make_report(tmp_path)
    base = report["summaries"]["baseline"]
    assert base["seeds"] == [None, 1, 2] and base["ua"] == {1: 80.0, 2: 80.0} and base["ua_seed_std"] == pytest.approx(20.0)
    paired = {(r["a"], r["b"], r["metric"]): r for r in report["paired"]}
    assert paired[("reference", "baseline", "ua")]["difference"] == pytest.approx(20.0)  # the three runs of the baseline, paired
    assert "| acoustic reference vs baseline | UA | +20.0 |" in report["markdown"]


def right_on(truth, n, shift=0):
    """The truth on n utterances of 20 (from ``shift`` on, cyclically), the other class elsewhere."""
    return [t if (i + shift) % 20 < n else ("hap" if t == "neu" else "neu") for i, t in enumerate(truth)]


def test_a_comparison_says_how_many_runs_it_rests_on_and_what_it_covers(tmp_path):
    """Three seeds of the baseline and of the method, one run of the reference: method vs baseline covers the
    training runs; anything against the reference only these trained models, and the report says so, and how."""
    truth = ["neu", "hap"] * 10
    for fold in (1, 2, 3):
        write_predictions(tmp_path, fold, "reference", truth, right_on(truth, 10))
        for seed, n in ((1, 16), (2, 12), (3, 14)):
            write_predictions(tmp_path, fold, f"baseline-s{seed}", truth, right_on(truth, n, seed))
            write_predictions(tmp_path, fold, f"L9-K50-attention-s{seed}", truth, right_on(truth, n + 3, seed))
    report = make_report(tmp_path)
    got = {(r["a"], r["b"], r["metric"]): r for r in report["paired"]}
    method = got[("L9-K50-attention", "baseline", "ua")]
    assert method["runs"] == {"a": 3, "b": 3} and method["covers"] == "test utterances and training runs"
    floor = got[("L9-K50-attention", "reference", "ua")]  # the method against the floor, explicitly
    assert floor["runs"] == {"a": 3, "b": 1} and floor["covers"] == "test utterances" and floor["difference"] == 35.0
    assert json.loads((tmp_path / "report" / "report.json").read_text())["paired"][0]["runs"] == {"a": 1, "b": 3}
    rows = {line.split(" | ")[0] + " | " + line.split(" | ")[1]: line for line in report["markdown"].splitlines() if " vs " in line}
    assert (
        "| 3 / 3 |" in rows["| L9-K50-attention vs baseline | UA"] and "these two trained models" not in rows["| L9-K50-attention vs baseline | UA"]
    )
    assert rows["| L9-K50-attention vs acoustic reference | UA"].endswith("| ahead; these two trained models, on these test utterances |")
    assert "`seeds: [1, 2, 3]` in the experiment yaml" in report["markdown"]
    ua = {
        run: [json.loads((tmp_path / f"fold{k}/evaluate/{run}/metrics.json").read_text())["ua"] for k in (1, 2, 3)]
        for run in ("baseline-s1", "baseline-s2")
    }
    aa = {(r["a"], r["b"]): r for r in report["run_pairs"]}  # A/A: a model's first run against each other run, one run a side
    assert set(aa) == {(f"{m}-s1", f"{m}-s{k}") for m in ("baseline", "L9-K50-attention") for k in (2, 3)}
    assert aa[("baseline-s1", "baseline-s2")]["difference"] == pytest.approx(np.mean(ua["baseline-s1"]) - np.mean(ua["baseline-s2"]), abs=1e-3)
    assert all(r["covers"] == "test utterances" and r["runs"] == {"a": 1, "b": 1} for r in aa.values())
    assert "| baseline-s1 vs baseline-s2 |" in report["markdown"] and all("p_holm" not in r for r in aa.values())  # not in the family


def test_the_report_is_one_family_under_holm(tmp_path):
    """One fold, the method right where the baseline is wrong on 6 of 20 utterances: each of UA and WA alone has
    p about 2/64 (two-sided permutation), an interval clear of 0 and the verdict ahead; Holm over the two doubles
    the smaller p, past 0.05, and the report says which rule decided."""
    truth = ["neu", "hap"] * 10
    write_predictions(tmp_path, 1, "baseline", truth, right_on(truth, 14))
    write_predictions(tmp_path, 1, "L9-K50-attention", truth, truth)
    report = make_report(tmp_path)
    ua, wa = report["paired"]
    assert ua["metric"] == "ua" and 0.02 < ua["p_value"] < 0.045 and ua["low"] > 0 and ua["verdict_alone"] == "ahead"
    assert ua["p_holm"] == pytest.approx(min(1.0, max(2 * min(ua["p_value"], wa["p_value"]), ua["p_value"])), abs=1e-4) and ua["p_holm"] > 0.05
    assert ua["verdict"] == wa["verdict"] == "no difference shown"
    assert "| no difference shown after Holm (ahead on its own); these two trained models, on these test utterances |" in report["markdown"]
    assert "Holm's adjustment over the report's 2 comparisons" in report["markdown"]


def test_the_alignment_compared_fold_by_fold(tmp_path):
    """Probe frame UA of the method's CPT model 61, 62, 63 against the TAPT model's 60 on three folds: differences
    1, 2, 3, t = sqrt 12 on 2 degrees of freedom, two-sided p = 1 - sqrt(6 / 7) = 0.0742 (by hand)."""
    write_metrics(tmp_path, 1, "baseline", 70.0, 72.0, [[3, 1], [1, 3]])
    figures = {"cpt-L9-K50": 60.0, "tapt-L9-K50": 60.0, "cpt-L9-K50-shuffled": 50.0, "source-L9-K50": 58.0, "cpt-L6-K50": 10.0}
    for fold in (1, 2, 3):
        for name, probe in figures.items():
            out = tmp_path / f"fold{fold}" / "alignment" / name
            out.mkdir(parents=True)
            value = probe + fold if name == "cpt-L9-K50" else probe + (fold % 2 if name == "cpt-L9-K50-shuffled" else 0)
            (out / "alignment.json").write_text(json.dumps({"purity": 0.5, "majority_share": 0.5, "nmi": 0.2, "probe_ua": value, "chance_ua": 25.0}))
    report = make_report(tmp_path)
    got = {(r["a"], r["b"], r["metric"]): r for r in report["alignment_paired"]}
    assert {(a, b) for a, b, _ in got} == {("cpt-L9-K50", "tapt-L9-K50"), ("cpt-L9-K50", "cpt-L9-K50-shuffled"), ("cpt-L9-K50", "source-L9-K50")}
    tapt = got[("cpt-L9-K50", "tapt-L9-K50", "probe_ua")]
    assert tapt["difference"] == 2.0 and tapt["p_value"] == pytest.approx(1 - math.sqrt(6 / 7), abs=1e-4) and tapt["folds_ahead"] == 3
    assert tapt["covers"] == "folds and their training runs" and tapt["runs"] == {"a": 1, "b": 1} and tapt["verdict"] == "no difference shown"
    shuffled = got[("cpt-L9-K50", "cpt-L9-K50-shuffled", "probe_ua")]  # 61, 62, 63 against 51, 50, 51
    assert shuffled["difference"] == pytest.approx(34 / 3, abs=1e-4) and shuffled["verdict_alone"] == "ahead"
    assert sorted(r["p_holm"] for r in report["alignment_paired"] + report["paired"])[-1] == 1.0  # purity, NMI: equal everywhere
    line = next(x for x in report["markdown"].splitlines() if x.startswith("| cpt-L9-K50 vs tapt-L9-K50 | probe frame UA"))
    assert line.startswith("| cpt-L9-K50 vs tapt-L9-K50 | probe frame UA | +2.0 | [-0.5, +4.5] | 3/3 | 1 / 1 | 0.0742 |")
    assert json.loads((tmp_path / "report" / "report.json").read_text())["alignment_paired"] == report["alignment_paired"]


def evaluated(fold, model, seed=None, layer=None, targets=None, pooling=None):
    """The cell fesa run gives an evaluate stage (a CPT model's: layer 9, K 50 unless the TAPT units)."""
    if model == "reference":
        return StageCell("reference", fold, model="reference")
    lk = {"layer": layer or 9, "clusters": 50} if model == "cpt" and targets != "tapt" else {}
    return StageCell("evaluate", fold, model=model, targets=targets, pooling=pooling or "attention", seed=seed, **lk)


@pytest.mark.parametrize(
    "folder, fields",
    [
        ("fold2/evaluate/reference", {"stage": "reference", "model": "reference"}),
        ("fold2/evaluate/baseline", {"stage": "evaluate", "model": "baseline"}),
        ("fold2/evaluate/baseline-s3", {"stage": "evaluate", "model": "baseline", "seed": 3}),
        (
            "fold2/evaluate/L9-K50-attention",
            {"stage": "evaluate", "model": "cpt", "layer": 9, "clusters": 50, "targets": "clusters", "pooling": "attention"},
        ),
        (
            "fold2/evaluate/L12-K100-shuffled-mean-s2",
            {"stage": "evaluate", "model": "cpt", "layer": 12, "clusters": 100, "targets": "shuffled", "pooling": "mean", "seed": 2},
        ),
        ("fold2/evaluate/tapt-units-attention", {"stage": "evaluate", "model": "cpt", "targets": "tapt", "pooling": "attention"}),
        ("fold2/evaluate/my-own-run", {"stage": "evaluate", "model": "my-own-run"}),  # a folder of the user's: a model of that name
        ("fold2/alignment/cpt-L9-K50", {"stage": "alignment", "model": "cpt", "layer": 9, "clusters": 50, "targets": "clusters"}),
        ("fold2/alignment/cpt-L9-K50-utterance", {"stage": "alignment", "model": "cpt", "layer": 9, "clusters": 50, "targets": "utterance"}),
        ("fold2/alignment/cpt-tapt-units-L9-K50", {"stage": "alignment", "model": "cpt", "layer": 9, "clusters": 50, "targets": "tapt"}),
        ("fold2/alignment/source-L6-K20", {"stage": "alignment", "model": "source", "layer": 6, "clusters": 20}),
    ],
)
def test_the_legacy_reader_reads_the_folder_names_fesa_run_gave(tmp_path, folder, fields):
    """Results scored before cells were recorded: their cell, read back from their folder, names that folder again."""
    cell = legacy_cell(tmp_path / folder)
    assert cell == StageCell(fold=2, **fields) and cell.folder.as_posix() == folder
    assert legacy_cell(tmp_path / "fold2" / "cpt" / "L9-K50") is None and legacy_cell(tmp_path / "foldx" / "evaluate" / "baseline") is None


def write_experiment(exp, cells):
    """Two folds of the reference, a baseline trained without a seed and with seeds 1 and 2 (seeds added to an
    experiment later), the method with seeds 1 and 2, and its shuffled control; recorded cells or today's layout."""
    truth = ["neu", "hap"] * 10
    runs = [("reference", None, None, 10), ("baseline", None, None, 20), ("baseline", 1, None, 16), ("baseline", 2, None, 12)]
    runs += [("cpt", 1, "clusters", 18), ("cpt", 2, "clusters", 17), ("cpt", None, "shuffled", 11)]
    for fold in (1, 2):
        for model, seed, targets, n in runs:
            cell = evaluated(fold, model, seed, targets=targets)
            write_predictions(exp, fold, cell.run_name, truth, right_on(truth, n, seed or 0), cell=cell if cells else None)


def test_results_in_todays_layout_report_as_those_that_record_their_cell(tmp_path):
    write_experiment(tmp_path / "new", cells=True)
    write_experiment(tmp_path / "old", cells=False)
    metrics = json.loads((tmp_path / "new" / "fold1" / "evaluate" / "L9-K50-attention-s2" / "metrics.json").read_text())
    assert metrics["cell"] == {
        "stage": "evaluate",
        "fold": 1,
        "model": "cpt",
        "layer": 9,
        "clusters": 50,
        "targets": "clusters",
        "pooling": "attention",
        "seed": 2,
    }
    new, old = make_report(tmp_path / "new"), make_report(tmp_path / "old")
    named = new["markdown"].replace("(TAPT fine-tuned, attention pooling)", "(TAPT fine-tuned)")  # the recorded cell names it
    assert named == old["markdown"] and new["paired"] == old["paired"] and new["run_pairs"] == old["run_pairs"]
    assert {k: {**s, "cell": None} for k, s in new["summaries"].items()} == {k: {**s, "cell": None} for k, s in old["summaries"].items()}
    assert new["summaries"]["L9-K50-attention"]["cell"] == old["summaries"]["L9-K50-attention"]["cell"]
    assert new["summaries"]["baseline"]["cell"] == {**old["summaries"]["baseline"]["cell"], "pooling": "attention"}  # no name said it
    assert new["summaries"]["baseline"]["seeds"] == [None, 1, 2]
    assert ("L9-K50-attention", "L9-K50-shuffled-attention", "ua") in {(r["a"], r["b"], r["metric"]) for r in new["paired"]}
    assert {(r["a"], r["b"]) for r in new["run_pairs"]} == {
        ("baseline", "baseline-s1"),
        ("baseline", "baseline-s2"),
        ("L9-K50-attention-s1", "L9-K50-attention-s2"),
    }


def test_paired_statistics_find_runs_by_their_cell_not_their_folder(tmp_path):
    """Runs in folders whose names say nothing: the cells recorded in metrics.json make the models, their seeds (one
    without a seed beside seeded ones: no -sNone folder is looked for) and the pairs."""
    truth = ["neu", "hap"] * 10
    for fold in (1, 2):
        for i, (model, seed, n) in enumerate([("baseline", None, 12), ("baseline", 1, 14), ("baseline", 2, 16), ("cpt", None, 20)]):
            write_predictions(tmp_path, fold, f"run{i}", truth, right_on(truth, n), cell=evaluated(fold, model, seed, targets="clusters"))
    report = make_report(tmp_path)
    assert set(report["summaries"]) == {"baseline", "L9-K50-attention"} and report["summaries"]["baseline"]["seeds"] == [None, 1, 2]
    method = next(r for r in report["paired"] if (r["a"], r["b"], r["metric"]) == ("L9-K50-attention", "baseline", "ua"))
    assert method["runs"] == {"a": 1, "b": 3} and method["difference"] == pytest.approx(100 - (60 + 70 + 80) / 3)
    assert [(r["a"], r["b"], r["difference"]) for r in report["run_pairs"]] == [
        ("baseline", "baseline-s1", -10.0),
        ("baseline", "baseline-s2", -20.0),
    ]
    assert "| baseline (TAPT fine-tuned, attention pooling) | 70.0 / 70.0 | 70.0 / 70.0 |" in report["markdown"]


def test_curves_come_in_the_order_the_stages_ran(tmp_path):
    """Columns of curves_fold{k}.png follow the pipeline (the cell in each run's stamp), not the folders' names."""
    from fesa.pipeline.curves import fold_curves

    for run, stage in (("cpt/L9-K50", "cpt"), ("finetune/L9-K50-attention", "finetune"), ("tapt", "tapt"), ("tapt-finetune-s2", "tapt-finetune")):
        hydra_log(tmp_path / run, [(10, 1.0)], [(10, 50.0)])
        (tmp_path / run / ".fesa-stage.json").write_text(json.dumps({"cell": {"stage": stage, "fold": 1}}))
    hydra_log(tmp_path / "unstamped", [(10, 1.0)], [(10, 50.0)])
    assert list(fold_curves(tmp_path)) == ["tapt", "tapt-finetune-s2", "cpt/L9-K50", "finetune/L9-K50-attention", "unstamped"]


def test_the_report_says_the_protocol_and_marks_the_authors_as_transductive(tmp_path):
    write_metrics(tmp_path, 1, "baseline", 70.0, 72.0, [[5, 1], [2, 2]])
    report = make_report(tmp_path)
    assert "Protocol" not in report["markdown"]  # the default's report as it was
    assert json.loads((tmp_path / "report" / "report.json").read_text())["protocol"].startswith("fold (")
    (tmp_path / "experiment.yaml").write_text("protocol: fold\n")  # the yaml a later run rewrote: the results say
    metrics = tmp_path / "fold1" / "evaluate" / "baseline" / "metrics.json"
    cell = {"stage": "evaluate", "fold": 1, "model": "baseline", "pooling": "attention", "protocol": "authors"}
    metrics.write_text(json.dumps({**json.loads(metrics.read_text()), "cell": cell}))
    report = make_report(tmp_path)
    said = "protocol: authors (transductive: the test session's audio was seen by TAPT, k-means and CPT)"
    assert report["markdown"].splitlines()[1] == f"Protocol: {said.split(': ', 1)[1]}."
    assert "protocol: " + json.loads((tmp_path / "report" / "report.json").read_text())["protocol"] == said
