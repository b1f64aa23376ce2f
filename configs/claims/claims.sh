#!/usr/bin/env bash
# Runs the experiments of docs/claims.md and prints their tables:
#   (a) single-task vs multi-task (EW, UW) on five Omniglot alphabets as the training
#       drawings per character shrink (15, 10, 5, 2);
#   (b) meta-learning vs fine-tuning baselines on the same Omniglot 5-way 1-shot test episodes;
#   (c) task-gradient conflicts, and PCGrad / CAGrad / Nash-MTL vs EW over three seeds
#       (5 drawings, 600 steps: the gradient-surgery methods cost T backward passes each).
# Usage: configs/claims/claims.sh [a|b|c|tables]... (default: all, then the tables).
# Runs go to runs/claims (existing runs are kept: delete a folder to redo it); two at a time.
set -euo pipefail
cd "$(dirname "$0")/../.."
METL=${METL:-target/release/metl}
OUT=${OUT:-runs/claims}
JOBS=${JOBS:-2}
[ -x "$METL" ] || cargo build --release -p metl-runner
mkdir -p "$OUT"

# One job per line: NAME CONFIG [--set KEY=VALUE]...; skipped when NAME has an eval.json.
run_jobs() {
  while read -r name config sets; do
    [ -f "$OUT/$name/eval.json" ] && continue
    echo "$name $config${sets:+ $sets}"   # no trailing blank: xargs -L would join lines
  done | xargs -P "$JOBS" -L 1 bash -c '
    name=$1; config=$2; shift 2
    args=(); for s in "$@"; do args+=(--set "$s"); done
    rm -rf "'"$OUT"'/$name"
    if "'"$METL"'" train "$config" --set "name=\"$name\"" "${args[@]}" --out "'"$OUT"'" --progress quiet > "'"$OUT"'/$name.log" 2>&1
    then echo "done $name"; else echo "FAILED $name (see '"$OUT"'/$name.log)"; fi' _
}

claim_a() {
  for d in 15 10 5 2; do
    drawings="data.omniglot50.drawings=[$d,2,3]"
    for a in 0 6 12 18 24; do
      echo "a-d$d-single-$a configs/claims/omniglot5.toml $drawings data.omniglot50.alphabets=[$a] train.iterations=600 train.batch_size=32"
    done
    for s in ew uw; do
      echo "a-d$d-$s configs/claims/omniglot5.toml $drawings mtl.strategy.name=\"$s\""
    done
  done | run_jobs
}

claim_b() {
  for algo in protonet fomaml maml baseline baseline_plus_plus; do
    echo "b-$algo configs/claims/fewshot-$algo.toml"
  done | run_jobs
}

claim_c() {
  for seed in 0 1 2; do
    for s in ew pcgrad cagrad nash_mtl; do
      echo "c-s$seed-$s configs/claims/omniglot5.toml data.omniglot50.drawings=[5,2,3] seed=$seed mtl.strategy.name=\"$s\" train.iterations=600 train.checkpoint_every=600"
    done
  done | run_jobs
}

tables() { "${METL_PYTHON:-python3}" configs/claims/tables.py "$OUT"; }

[ $# -eq 0 ] && set -- a b c tables
for part in "$@"; do
  case $part in
    a) claim_a ;; b) claim_b ;; c) claim_c ;; tables) tables ;;
    *) echo "unknown part $part (a, b, c or tables)" >&2; exit 2 ;;
  esac
done
