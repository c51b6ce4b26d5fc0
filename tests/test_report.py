import json

import pytest

from fesa_fairseq.errors import FesaError
from fesa_fairseq.recipes.report import make_report


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
