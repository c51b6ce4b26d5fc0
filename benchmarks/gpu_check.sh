#!/usr/bin/env bash
# The checks a GPU machine runs, in at most 8 minutes (the steps' timeouts add up to 470 s):  benchmarks/gpu_check.sh OUT
#   01-cuda-tests.log    tests/test_cuda.py
#   02-smoke.log/.json   fesa run examples/iemocap/experiment.yaml --smoke --folds 1 on a generated corpus in
#                        IEMOCAP's layout (fesa make-demo-corpus) with a random HuBERT base
#   03-train-steps.log   benchmarks/train_steps.py: HuBERT-base training steps, stock fairseq against fesa
#   04-predict.log       benchmarks/predict.py --device cuda: predict and evaluate throughput, memory (HuBERT-base classifier)
#   summary.txt          the machine, then each step's exit status, seconds and last lines, as each step ends
# Each step writes its log as it goes and has its own timeout, so a run cut short still shows where it was.
# Needs no install and no network: python3 from PATH (or $PYTHON) with this checkout on PYTHONPATH.
# Without CUDA it says so in one line and exits 0.
set -u
if [ $# -ne 1 ]; then
  echo "usage: $0 OUT" >&2
  exit 2
fi
REPO="$(cd "$(dirname "$0")/.." && pwd)"
PY="${PYTHON:-python3}"
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
"$PY" -c "import sys, torch; sys.exit(3 * (not torch.cuda.is_available()))"
case $? in
  0) ;;
  3)
    echo "gpu_check: torch sees no CUDA device here; nothing to check"
    exit 0
    ;;
  *)
    echo "gpu_check: $PY cannot import torch (PYTHONPATH=$PYTHONPATH)" >&2
    exit 1
    ;;
esac
mkdir -p "$1"
OUT="$(cd "$1" && pwd)"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
cd "$REPO" || exit 1
SUMMARY="$OUT/summary.txt"
{
  date -u
  "$PY" -c "import torch, fairseq; print('torch', torch.__version__, 'cuda', torch.version.cuda, '|', torch.cuda.get_device_name(), '| fairseq', fairseq.__version__)"
} >"$SUMMARY" 2>&1

# step NAME SECONDS COMMAND...: runs COMMAND under a timeout, its output into OUT/NAME.log as it goes
step() {
  local name=$1 limit=$2 start rc
  shift 2
  start=$(date +%s)
  echo "\$ $*" >>"$OUT/$name.log"
  timeout -k 10 "$limit" "$@" 2>&1 | tee -a "$OUT/$name.log"
  rc=${PIPESTATUS[0]}
  {
    echo
    echo "== $name: exit $rc$([ "$rc" = 124 ] && echo " (timed out after $limit s)") in $(($(date +%s) - start)) s"
    tail -n 12 "$OUT/$name.log"
  } >>"$SUMMARY"
}

step 01-cuda-tests 90 "$PY" -m pytest -q -p no:cacheprovider tests/test_cuda.py

SETUP='
import sys
from pathlib import Path
import yaml
sys.path.insert(0, "benchmarks")
from common import random_hubert
work = Path(sys.argv[1])
cfg = yaml.safe_load(Path("examples/iemocap/experiment.yaml").read_text())
cfg["corpus"] = str(work / "corpus")
cfg["source_checkpoint"] = str(random_hubert(work / "hubert_base.pt", "base"))
cfg["tapt_labels"].pop("kmeans_model", None)  # no released k-means here: learned on the fold
(work / "experiment.yaml").write_text(yaml.safe_dump(cfg))
'
step 02-smoke 20 "$PY" -m fesa.cli make-demo-corpus "$WORK/corpus"
step 02-smoke 30 "$PY" -c "$SETUP" "$WORK"
step 02-smoke 130 "$PY" -m fesa.cli run "$WORK/experiment.yaml" --smoke --folds 1 --exp-dir "$WORK/exp"
if [ -f "$WORK/exp/smoke/smoke.json" ]; then cp "$WORK/exp/smoke/smoke.json" "$OUT/02-smoke.json"; fi

step 03-train-steps 110 "$PY" benchmarks/train_steps.py --updates 20 --utterances 200
step 04-predict 90 "$PY" benchmarks/predict.py --device cuda --size base --short 60 --long 300 --evaluate 50
echo "gpu_check: done; $SUMMARY"
