#!/usr/bin/env bash
# A GPU training burst, in commands of at most 10 minutes each (docs/training.md).
#
# On the GPU machine, from the repository root, with gpu-bundle/ carried
# (made here by `make gpu-bundle`):
#   scripts/gpu-burst.sh start MINUTES [TRAIN ARGS...]   train in the background (setsid) for MINUTES
#   scripts/gpu-burst.sh resume MINUTES [TRAIN ARGS...]  the same, continuing gpu-bundle/checkpoint.pt
#   scripts/gpu-burst.sh watch [SECONDS]                 wait (default 540 s) or until training ends
# start/resume watch too: until the run ends, at most 575 s (SICC_WATCH overrides), so that
# `start 9` returns the final checkpoint inside one 10-minute command. Every command ends by
# copying the latest checkpoint (split in 15 MB parts), the log and a status file
# to $OUT. Back here:
#   scripts/gpu-burst.sh join DIR [RUN]                  parts in DIR -> RUN/checkpoint.pt + log.jsonl
# While it watches, it samples the GPU's utilization and memory every 5 s (gpu-util.csv in $OUT, summed up
# in status.txt). Environment: SICC_DEVICE (default cuda), SICC_BUNDLE (default gpu-bundle),
# SICC_BURST_STATE (default /tmp/sicc-burst), OUT (default $SICC_BURST_STATE/out), SICC_NVIDIA_SMI, SICC_WATCH_POLL.
set -uo pipefail

usage() { sed -n '2,16p' "$0" >&2; exit 2; }
[ $# -ge 1 ] || usage
cmd=$1; shift

BUNDLE=${SICC_BUNDLE:-gpu-bundle}
case $BUNDLE in /*) ;; *) BUNDLE=$PWD/$BUNDLE ;; esac
STATE=${SICC_BURST_STATE:-/tmp/sicc-burst}
OUT=${OUT:-$STATE/out}
DEVICE=${SICC_DEVICE:-cuda}
PYTHON=${PYTHON:-python3}
RUN=$STATE/run
SMI=${SICC_NVIDIA_SMI:-nvidia-smi}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
export SICC_METRIC_WEIGHTS=${SICC_METRIC_WEIGHTS:-$BUNDLE/weights}
export PYTHONUNBUFFERED=1

running() { [ -f "$STATE/pid" ] && kill -0 "$(cat "$STATE/pid")" 2>/dev/null; }

collect() {
    mkdir -p "$OUT"
    if [ -f "$RUN/checkpoint.pt" ]; then
        cp "$RUN/checkpoint.pt" "$STATE/snapshot.pt"  # the trainer replaces the file atomically
        split -b 15000000 -d "$STATE/snapshot.pt" "$OUT/checkpoint.pt.part"
    fi
    [ -f "$RUN/log.jsonl" ] && gzip -c "$RUN/log.jsonl" > "$OUT/log.jsonl.gz"
    [ -s "$STATE/gpu-util.csv" ] && cp "$STATE/gpu-util.csv" "$OUT/gpu-util.csv"
    {
        echo "running: $(running && echo yes || echo no)"
        echo "last log line: $(tail -n 1 "$RUN/log.jsonl" 2>/dev/null | cut -c1-400)"
        echo "--- train.out (tail)"; tail -n 15 "$STATE/train.out" 2>/dev/null
        gpu_summary
    } | tee "$OUT/status.txt"
    return 0
}

# One line of GPU utilization (%) and memory used (MiB) per sample, once the run logs steps.
sample_gpu() {
    command -v "$SMI" >/dev/null && [ -s "$RUN/log.jsonl" ] || return 0
    "$SMI" --query-gpu=utilization.gpu,memory.used --format=csv,noheader,nounits 2>/dev/null \
        | head -n 1 | tr -d ' ' >> "$STATE/gpu-util.csv"
}

gpu_summary() {
    [ -s "$STATE/gpu-util.csv" ] || return 0
    sort -t, -k1,1n "$STATE/gpu-util.csv" | awk -F, '
        { u[NR] = $1; if ($2 > mem) mem = $2 }
        END { printf "GPU while training: %d samples, utilization median %s %% (range %s to %s), memory up to %s MiB\n",
                     NR, u[int((NR + 1) / 2)], u[1], u[NR], mem }'
}

watch() {
    local seconds=${1:-${SICC_WATCH:-540}} waited=0
    local poll=${SICC_WATCH_POLL:-5}
    while [ "$waited" -lt "$seconds" ] && running; do
        sleep "$poll"; waited=$((waited + poll))
        running && sample_gpu
    done
    collect
}

# A new run's settings (a resumed run takes them from its checkpoint; arguments given win): session 25's
# batch, crop and rate, with issue 48's objective aimed at levels 1-8 and the spread-0 decode (the arm that
# won the A/B on the validation split, docs/training.md), a weight average, and no re-warming: AdamW's
# moments are filled at rate 0 first (--moment-steps, 50 by default when no optimizer state is continued).
START_SETTINGS=(--batch 64 --crop 256 --channels-last --texture 0.5 --lr 2e-4 --lr-warmup 0 --lr-min 5e-6
                --deterministic-share 0.25 --deterministic-from 4 --low-levels 0.5 --full-weight 0.5 --low-mse 2
                --level-film --level-film-lr 5 --ema 0.999)

launch() {
    local minutes=${1:?minutes} steps=$2; shift 2
    mkdir -p "$STATE" "$RUN"
    if running; then echo "a burst is already running (pid $(cat "$STATE/pid"))" >&2; watch; exit 0; fi
    "$PYTHON" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"
    [ -f "$BUNDLE/photos.npz" ] || { echo "no $BUNDLE/photos.npz: make gpu-bundle, and carry it" >&2; exit 2; }
    local data_on_device=()
    [ "$DEVICE" != cpu ] && data_on_device=(--data-on-device)
    setsid nohup "$PYTHON" -m sicc.train run --pack "$BUNDLE/photos.npz" --device "$DEVICE" "${data_on_device[@]}" \
        --precision bf16 ${steps:+--steps "$steps"} --minutes "$minutes" --checkpoint-minutes 2 \
        --no-progress --out "$RUN" "$@" > "$STATE/train.out" 2>&1 < /dev/null &
    echo $! > "$STATE/pid"
    echo "started pid $(cat "$STATE/pid") for $minutes minutes on $DEVICE"
    # Watch to the run's end (its budget, the start-up before it and the last checkpoint), within one command.
    local until_end
    until_end=$(awk -v m="$minutes" 'BEGIN { s = int(m * 60 + 30); print (s < 575 ? s : 575) }')
    watch "${SICC_WATCH:-$until_end}"
}

case $cmd in
    start) minutes=${1:?minutes}; shift; launch "$minutes" 0 "${START_SETTINGS[@]}" "$@" ;;  # horizon from the measured speed
    resume)  # the checkpoint's horizon (SICC_HORIZON overrides)
        [ -f "$BUNDLE/checkpoint.pt" ] || { echo "no $BUNDLE/checkpoint.pt to resume (join the parts first)" >&2; exit 2; }
        minutes=${1:?minutes}; shift
        launch "$minutes" "${SICC_HORIZON:-}" --resume "$BUNDLE/checkpoint.pt" "$@" ;;
    watch) watch "$@" ;;
    join)
        dir=${1:?folder with checkpoint.pt.part* from the GPU machine}; run=${2:-runs/gpu}
        mkdir -p "$run"
        cat "$dir"/checkpoint.pt.part* > "$run/checkpoint.pt.tmp" && mv "$run/checkpoint.pt.tmp" "$run/checkpoint.pt"
        [ -f "$dir/log.jsonl.gz" ] && gunzip -c "$dir/log.jsonl.gz" > "$run/log.jsonl"
        echo "$run/checkpoint.pt: $(stat -c %s "$run/checkpoint.pt") bytes" ;;
    *) usage ;;
esac
