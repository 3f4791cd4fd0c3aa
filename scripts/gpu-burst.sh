#!/usr/bin/env bash
# A GPU training burst, in commands of at most 10 minutes each (docs/training.md).
#
# On the GPU machine, from the repository root. `make gpu-bundle` makes gpu-bundle/ here, in two parts
# that each travel with the repository in their own device command (one would exceed the 64 MiB):
#   scripts/gpu-burst.sh stage                           check the parts that arrived (carry gpu-bundle/photos)
#   scripts/gpu-burst.sh start MINUTES [TRAIN ARGS...]   train in the background (setsid) for MINUTES
#                                                        (carry gpu-bundle/weights; photos must be there)
#   scripts/gpu-burst.sh resume MINUTES [TRAIN ARGS...]  the same, continuing a returned checkpoint: the parts
#                                                        in gpu-bundle/resume-*/ (each carried by one command)
#   scripts/gpu-burst.sh watch [SECONDS]                 wait (default 540 s) or until training ends
# start/resume watch too: until the run ends, at most 575 s (SICC_WATCH overrides), so that
# `start 9` returns the final checkpoint inside one 10-minute command. Every command ends by
# copying the latest checkpoint (split in 15 MB parts), the log and a status file
# to $OUT. Back here:
#   scripts/gpu-burst.sh join DIR [RUN]                  parts in DIR -> RUN/checkpoint.pt + log.jsonl
#   scripts/gpu-burst.sh carry DIR                       parts in DIR -> gpu-bundle/resume-1/, -2/, ... (each
#                                                        under SICC_CARRY_BYTES, default 40 MB), for `resume`
# While it watches, it samples the GPU's utilization and memory every 5 s (gpu-util.csv in $OUT, summed up
# in status.txt). Environment: SICC_DEVICE (default cuda), SICC_BUNDLE (default gpu-bundle),
# SICC_BURST_STATE (default /tmp/sicc-burst), OUT (default $SICC_BURST_STATE/out), SICC_NVIDIA_SMI, SICC_WATCH_POLL,
# SICC_PART_BYTES (default 15000000), SICC_CARRY_BYTES.
# Exit status: 0 done; 2 usage, or a part of the bundle absent or corrupt (nothing started).
set -uo pipefail

usage() { sed -n '2,23p' "$0" >&2; exit 2; }
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

# A part of the bundle (photos, weights) is here when its folder holds every file its SHA256SUMS lists, intact.
part_ok() {
    local dir=$BUNDLE/$1
    [ -f "$dir/SHA256SUMS" ] && (cd "$dir" && sha256sum --quiet --check --strict SHA256SUMS >/dev/null 2>&1)
}

part_state() {
    if part_ok "$1"; then echo "$1: here, checked"
    elif [ -e "$BUNDLE/$1" ]; then echo "$1: CORRUPT or incomplete (its SHA256SUMS does not check)"
    else echo "$1: absent"; fi
}

# Every part there, or a one-line reason and exit 2 before anything starts.
need_parts() {
    local part
    for part in photos weights; do
        part_ok "$part" && continue
        echo "gpu-bundle/$part is not on this machine ($(part_state "$part" | cut -d' ' -f2-)): carry it" \
             "in its own command (scripts/gpu-burst.sh stage), then start again; a fresh machine has neither" >&2
        exit 2
    done
}

# Back here: a returned checkpoint's parts into folders that each travel with the repository in one command.
# Every folder lists all the parts (ALL_PARTS), so the machine knows when one has not arrived.
carry_parts() {
    local dir=$1 max=${SICC_CARRY_BYTES:-40000000} n=0 size=0 part bytes
    local parts=("$dir"/checkpoint.pt.part*)
    [ -f "${parts[0]}" ] || { echo "no checkpoint.pt.part* in $dir" >&2; exit 2; }
    rm -rf "$BUNDLE"/resume-*
    for part in "${parts[@]}"; do
        bytes=$(stat -c %s "$part")
        if [ "$n" -eq 0 ] || [ $((size + bytes)) -gt "$max" ]; then n=$((n + 1)); size=0; mkdir -p "$BUNDLE/resume-$n"; fi
        cp "$part" "$BUNDLE/resume-$n/"; size=$((size + bytes))
    done
    for part in "$BUNDLE"/resume-*; do
        (cd "$part" && sha256sum checkpoint.pt.part* > SHA256SUMS && basename -a "${parts[@]}" > ALL_PARTS)
    done
    echo "carry each in its own command (stage; the last one with resume):"
    for part in "$BUNDLE"/resume-*; do echo "  ${part#"$PWD"/}"; done
}

# On the machine: the checkpoint to resume, joined from gpu-bundle/resume-*/ into $STATE/resume.pt (or
# gpu-bundle/checkpoint.pt where one was carried whole). Sets RESUME; a missing or damaged folder: exit 2.
join_resume() {
    RESUME=$BUNDLE/checkpoint.pt
    [ -f "$RESUME" ] && return 0
    local folders=("$BUNDLE"/resume-*) d name found
    [ -d "${folders[0]}" ] || { echo "nothing to resume: carry gpu-bundle/resume-*/ (scripts/gpu-burst.sh carry DIR)" >&2; exit 2; }
    for d in "${folders[@]}"; do
        part_ok "${d#"$BUNDLE"/}" || { echo "${d#"$BUNDLE"/} arrived damaged or incomplete: carry it again" >&2; exit 2; }
    done
    mkdir -p "$STATE"
    : > "$STATE/resume.pt.tmp"
    while read -r name; do
        found=
        for d in "${folders[@]}"; do [ -f "$d/$name" ] && found=$d/$name; done
        [ -n "$found" ] || { echo "$name is not here: carry every gpu-bundle/resume-* folder (${#folders[@]} here)" >&2; exit 2; }
        cat "$found" >> "$STATE/resume.pt.tmp"
    done < "${folders[0]}/ALL_PARTS"
    mv "$STATE/resume.pt.tmp" "$STATE/resume.pt"
    RESUME=$STATE/resume.pt
}

stage() {
    "$PYTHON" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"
    local part any=no bad=no
    local extra=()
    for part in "$BUNDLE"/resume-*; do [ -d "$part" ] && extra+=("${part#"$BUNDLE"/}"); done
    for part in photos weights "${extra[@]}"; do
        part_state "$part"
        part_ok "$part" && any=yes
        [ -e "$BUNDLE/$part" ] && ! part_ok "$part" && bad=yes
    done
    [ "$any" = yes ] && [ "$bad" = no ] || exit 2
}

collect() {
    mkdir -p "$OUT"
    if [ -f "$RUN/checkpoint.pt" ]; then
        cp "$RUN/checkpoint.pt" "$STATE/snapshot.pt"  # the trainer replaces the file atomically
        rm -f "$OUT"/checkpoint.pt.part*
        split -b "${SICC_PART_BYTES:-15000000}" -d "$STATE/snapshot.pt" "$OUT/checkpoint.pt.part"
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
# batch, crop and rate, with the objective of the shipped model's CPU runs (W3-W5, docs/training.md): DISTS
# itself and the texture term in the loss, the MSE weight of levels 1-8 raised 8 times and of 9-16 twice, the
# spread-0 decode trained from level 1; a weight average, and no re-warming: AdamW's moments are filled at
# rate 0 first (--moment-steps, 50 by default when no optimizer state is continued). The whole network
# trains (the CPU runs train g_s alone: --decoder-only).
START_SETTINGS=(--batch 64 --crop 256 --channels-last --lr 2e-4 --lr-warmup 0 --lr-min 5e-6
                --texture 1.5 --dists 2 --low-mse 8 --high-mse 2
                --deterministic-share 0.25 --deterministic-from 1 --low-levels 0.5 --full-weight 0.5
                --level-film --level-film-lr 5 --ema 0.999)

launch() {
    local minutes=${1:?minutes} steps=$2; shift 2
    mkdir -p "$STATE" "$RUN"
    if running; then echo "a burst is already running (pid $(cat "$STATE/pid"))" >&2; watch; exit 0; fi
    need_parts
    "$PYTHON" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"
    local data_on_device=()
    [ "$DEVICE" != cpu ] && data_on_device=(--data-on-device)
    setsid nohup "$PYTHON" -m sicc.train run --pack "$BUNDLE/photos/photos.npz" --device "$DEVICE" "${data_on_device[@]}" \
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
        minutes=${1:?minutes}; shift
        need_parts
        join_resume
        launch "$minutes" "${SICC_HORIZON:-}" --resume "$RESUME" "$@" ;;
    carry) carry_parts "${1:?folder with checkpoint.pt.part* from the GPU machine}" ;;
    stage) stage ;;
    watch) watch "$@" ;;
    join)
        dir=${1:?folder with checkpoint.pt.part* from the GPU machine}; run=${2:-runs/gpu}
        mkdir -p "$run"
        cat "$dir"/checkpoint.pt.part* > "$run/checkpoint.pt.tmp" && mv "$run/checkpoint.pt.tmp" "$run/checkpoint.pt"
        [ -f "$dir/log.jsonl.gz" ] && gunzip -c "$dir/log.jsonl.gz" > "$run/log.jsonl"
        echo "$run/checkpoint.pt: $(stat -c %s "$run/checkpoint.pt") bytes" ;;
    *) usage ;;
esac
