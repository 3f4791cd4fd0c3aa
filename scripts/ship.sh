#!/usr/bin/env bash
# Ship a trained checkpoint, or find out that it does not ship: docs/training.md, "Shipping".
#
#   scripts/ship.sh [--ema] [--earlier-log LOG]... CHECKPOINT LOG [LOGNAME]
#
# --ema       ship the checkpoint's weight average (run --ema; what `validate --ema` scored), not its last weights
# --earlier-log LOG
#             the log of a run between the shipped weights and CHECKPOINT's run (each continued the one
#             before, --init CHECKPOINT), in run order; repeat for each. Their steps and hours join the
#             weights' training history under each log's file name, so the names must differ.
# CHECKPOINT  checkpoint.pt of a run that started from the shipped weights (--init shipped)
# LOG         that run's log.jsonl
# LOGNAME     the name the model card's training table gives the log (default: LOG's file name),
#             e.g. session13-fp32-crop256-cosine-texture.jsonl
#
# On a clean tree, with no training running (the benchmark's speed part needs a quiet machine):
#  1. exports the checkpoint, continuing the shipped weights' training history (sicc.train export --continues);
#  2. switches to a new branch ship-<model id> with the new weights, their training log and the
#     old results kept as bench/previous.json;
#  3. runs the full benchmark (python -m sicc.bench run; 84 minutes on 2 cores in session 13) and the README tables;
#  4. prints the shipping verdict (python -m sicc.bench compare). When it ships, re-makes the shipped-model
#     golden files and docs/montage.png, and lists what is left by hand.
# Before anything long it checks that the speed table's external codec tools are installed
# (python -m sicc.bench tools); SHIP_ALLOW_MISSING_TOOLS=1 ships without their rows.
# Exit status: 0 ships, 1 does not ship, 2 bad usage or a failed step. Nothing is committed.
set -euo pipefail

usage() { echo "usage: scripts/ship.sh [--ema] [--earlier-log LOG]... CHECKPOINT LOG [LOGNAME]" >&2; exit 2; }
fail() { echo "ship.sh: $*" >&2; exit 2; }
export_args=()
earlier=()
while [ $# -gt 0 ]; do
    case "$1" in
        --ema) export_args=(--ema); shift ;;
        --earlier-log)
            [ $# -ge 2 ] || usage
            [ -f "$2" ] || fail "no such log: $2"
            earlier+=("$(realpath "$2")"); shift 2 ;;
        *) break ;;
    esac
done
[ $# -ge 2 ] && [ $# -le 3 ] || usage
[ -f "$1" ] || fail "no such checkpoint: $1"
[ -f "$2" ] || fail "no such log: $2"
checkpoint=$(realpath "$1")
log=$(realpath "$2")
logname=${3:-$(basename "$log")}
case "$logname" in */*|"") fail "LOGNAME is a file name, not a path: $logname" ;; esac
PYTHON=${PYTHON:-python}

cd "$(dirname "$0")/.."
git diff --quiet && git diff --cached --quiet || fail "the working tree has changes: commit or stash them first"
# The speed table's end-to-end rows need cjxl/djxl and avifenc/avifdec: find out now, not after the benchmark.
tools_status=0
"$PYTHON" -m sicc.bench tools >&2 || tools_status=$?
if [ "$tools_status" = 1 ] && [ "${SHIP_ALLOW_MISSING_TOOLS:-0}" != 1 ]; then
    fail "install the missing codec tools first, or set SHIP_ALLOW_MISSING_TOOLS=1 to ship without their speed rows"
elif [ "$tools_status" != 0 ] && [ "$tools_status" != 1 ]; then
    fail "the codec tool check failed (python -m sicc.bench tools, exit $tools_status)"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
log_args=()
names=" "
for e in ${earlier[@]+"${earlier[@]}"} "$log"; do
    name=$(basename "$e")
    [ "$e" = "$log" ] && name=$logname
    case "$names" in *" $name "*) fail "two logs are named $name: each run's log needs its own file name" ;; esac
    names="$names$name "
    cp "$e" "$work/$name"
    log_args+=(--log "$work/$name")
done
mkdir "$work/weights"
"$PYTHON" -m sicc.train export "$checkpoint" ${export_args[@]+"${export_args[@]}"} -o "$work/weights/sicc-default.npz" \
    --continues sicc/weights/sicc-default.npz "${log_args[@]}" || fail "export failed"
model_id=$("$PYTHON" -c "import sys; from sicc.model.weights import load_weights; print(load_weights(sys.argv[1]).model_id.hex())" \
    "$work/weights/sicc-default.npz")

# The benchmark's speed part needs a quiet machine.
if pgrep -f "sicc.train run" >/dev/null; then
    fail "a training run is running: stop it first (pkill -TERM -f 'sicc.train run'); the speed part needs a quiet machine"
fi
git switch -c "ship-$model_id" || fail "cannot make branch ship-$model_id"
cp bench/results.json bench/previous.json
cp "$work/weights/sicc-default.npz" "$work/weights/training-log.jsonl" sicc/weights/

echo "benchmarking model $model_id from $(date -u +%H:%M) (load average $(cut -d' ' -f1-3 /proc/loadavg))"
"$PYTHON" -m sicc.bench run --no-progress || fail "the benchmark failed"
"$PYTHON" -m sicc.bench readme || fail "the README update failed"

if "$PYTHON" -m sicc.bench compare; then
    "$PYTHON" -m tests.make_golden --shipped || fail "make_golden failed"
    make montage PYTHON="$PYTHON" || fail "make montage failed"
    cat <<EOF

Model $model_id ships (branch ship-$model_id, nothing committed). By hand:
  - sicc/weights/MODEL_CARD.md: the runs' items in the schedule (logs:$names), the hardware line;
  - README.md: the "Where sicc stands today" paragraph, from the new tables;
  - bash .ci/run in a fresh clone, then commit and merge.
EOF
    exit 0
fi
cat <<EOF

Model $model_id does not ship. The branch ship-$model_id holds the benchmark; to discard it:
  git checkout -- . && git switch - && git branch -D ship-$model_id
EOF
exit 1
