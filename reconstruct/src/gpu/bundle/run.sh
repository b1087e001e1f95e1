#!/bin/bash
# The GPU check bundle's one call: run.sh OUTDIR. See README.md next to this file.
#
# Runs, writing every result as files under OUTDIR: `beamline gpu check`; a simulated NXtomo series written
# to local disk and reconstructed on the CPU (and on CUDA when a GPU is there) with a timeline HTML of the
# run (and on CUDA again with `recon --gpu-dtype f16`); CUDA against the CPU on the same slabs (512^2 x 720
# and 2048^2 x 1500, 4 slices) with the maximum absolute and relative difference against a stated bound, for
# cuFFT/convolution and f32/f16; `beamline gpu bench` at both sizes and `beamline bench recon --backend cuda`
# (1..N devices, G updates/s per device, per-stage device times: upload, normalise, filter, backprojection,
# download, overlap share); and one summary.json. Without a CUDA driver it says "no CUDA driver" and still
# runs the CPU half. Needs no network, no pip, no Rust, no HDF5 library.
#
# Environment: BEAMLINE_NVRTC_LIB (a folder holding libnvrtc.so.*) overrides the NVRTC search;
# BEAMLINE_BUNDLE_QUICK=1 shrinks every shape (for the bundle's own test on machines without a GPU).
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${1:?usage: run.sh OUTDIR}
mkdir -p "$OUT" || exit 2
OUT=$(cd "$OUT" && pwd)
BL="$HERE/beamline"
export LD_LIBRARY_PATH="$HERE/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export BEAMLINE_RUN_DIR="$OUT/runs"
mkdir -p "$OUT/runs" "$OUT/data"
QUICK=${BEAMLINE_BUNDLE_QUICK:-0}
T0=$(date +%s)

say() { echo "run.sh: $*" | tee -a "$OUT/run.log"; }

# --- NVRTC (and cuFFT): the driver's CUDA 13 NVRTC lives in the image's Python environment --------------
# cudarc (built for CUDA 12.8) looks for libnvrtc.so, libnvrtc.so.12, ...; a CUDA 13 wheel ships
# libnvrtc.so.13, so an unversioned link to whatever is found goes into a private folder on the path.
LIBDIRS=()
[ -n "${BEAMLINE_NVRTC_LIB:-}" ] && LIBDIRS+=("$BEAMLINE_NVRTC_LIB")
for py in python3 python; do
    if command -v "$py" >/dev/null 2>&1; then
        while IFS= read -r d; do LIBDIRS+=("$d"/nvidia/*/lib); done < <("$py" -c \
            'import site,sys; print("\n".join(site.getsitepackages()+[site.getusersitepackages()]+sys.path))' 2>/dev/null)
    fi
done
LIBDIRS+=(/usr/local/lib/python3*/dist-packages/nvidia/*/lib /usr/lib/python3/dist-packages/nvidia/*/lib
          /opt/conda/lib/python3*/site-packages/nvidia/*/lib /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib)
SHIM="$OUT/.cuda-libs"
mkdir -p "$SHIM"
find_lib() { # NAME: newest libNAME.so.* in the candidate folders
    local d f
    for d in "${LIBDIRS[@]}"; do
        for f in $(ls -1 "$d"/lib"$1".so.* 2>/dev/null | grep -v -e builtins -e '\.alt\.' | sort -rV); do
            echo "$f"; return 0
        done
    done
    return 1
}
NVRTC=$(find_lib nvrtc) && ln -sf "$NVRTC" "$SHIM/libnvrtc.so" && LD_LIBRARY_PATH="$SHIM:$(dirname "$NVRTC"):$LD_LIBRARY_PATH"
CUFFT=$(find_lib cufft) && ln -sf "$CUFFT" "$SHIM/libcufft.so" && LD_LIBRARY_PATH="$SHIM:$(dirname "$CUFFT"):$LD_LIBRARY_PATH"
export LD_LIBRARY_PATH
say "NVRTC: ${NVRTC:-not found}; cuFFT: ${CUFFT:-not found (the direct-convolution filter is used)}"

# --- steps ---------------------------------------------------------------------------------------------
STEPS=()
step() { # NAME CMD...: stdout to NAME.txt (its last line to NAME.json when JSON), stderr to NAME.err
    local name=$1; shift
    local t=$(date +%s.%N)
    "$@" > "$OUT/$name.txt" 2> "$OUT/$name.err"
    local rc=$?
    local dt=$(awk "BEGIN { printf \"%.2f\", $(date +%s.%N) - $t }")
    local last=$(tail -n 1 "$OUT/$name.txt")
    case "$last" in
        "{"*"}") echo "$last" > "$OUT/$name.json" ;;                                  # one JSON line last
        "}") [ "$(head -c 1 "$OUT/$name.txt")" = "{" ] && cp "$OUT/$name.txt" "$OUT/$name.json" ;;  # pretty JSON
    esac
    STEPS+=("{\"step\":\"$name\",\"rc\":$rc,\"seconds\":${dt:-0}}")
    say "$name: exit $rc (${dt}s) -> $name.txt"
    return $rc
}

step gpu_check "$BL" gpu check --json
if grep -q '"driver":null' "$OUT/gpu_check.json" 2>/dev/null || grep -q '^CUDA driver: not found' "$OUT/gpu_check.txt"; then
    GPU=0; say "no CUDA driver: the GPU steps are skipped, the CPU half runs"
elif ! [ -s "$OUT/gpu_check.json" ]; then
    GPU=0; say "gpu check gave no report (see gpu_check.txt/.err): the GPU steps are skipped, the CPU half runs"
elif grep -q '"devices":\[\]' "$OUT/gpu_check.json"; then
    GPU=0; say "CUDA driver found but no GPU listed: the GPU steps are skipped, the CPU half runs"
else
    GPU=1; say "GPU(s): $(grep '^  cuda:' "$OUT/gpu_check.txt" | tr -s ' ' | paste -sd ';')"
fi

# A simulated NXtomo series, over ZeroMQ (ipc) into an HDF5 file on local disk.
if [ "$QUICK" = 1 ]; then SIM=(--rows 8 --cols 64 --angles 60 --flats 4 --darks 4); else SIM=(--rows 16 --cols 512 --angles 720 --flats 10 --darks 10); fi
# With acknowledgements: over ipc://, libzmq drops what a lagging receiver has not read yet when the sender
# hangs up (tcp:// keeps it), so the sender waits until the receiver confirms every frame on disk.
EP="ipc://$OUT/.sim.ipc"; ACK="ipc://$OUT/.ack.ipc"
"$BL" receive --bind "$EP" --ack "$ACK" --output "$OUT/data/scan.h5" -q > "$OUT/receive.txt" 2> "$OUT/receive.err" &
RX=$!
sleep 1
step simulate "$BL" simulate --connect "$EP" --ack "$ACK" -q "${SIM[@]}" --series gpu-bundle --seed 1
wait $RX; RXRC=$?
STEPS+=("{\"step\":\"receive\",\"rc\":$RXRC}")
say "receive: exit $RXRC -> receive.txt"

step recon_cpu "$BL" --log "$OUT/runs/recon_cpu.jsonl" recon "$OUT/data/scan.h5" -o "$OUT/recon_cpu.h5" --format h5 --backend cpu -q
TIMELINE_LOG="$OUT/runs/recon_cpu.jsonl"
if [ "$GPU" = 1 ]; then
    step recon_cuda "$BL" --log "$OUT/runs/recon_cuda.jsonl" recon "$OUT/data/scan.h5" -o "$OUT/recon_cuda.h5" --format h5 --backend cuda -q
    TIMELINE_LOG="$OUT/runs/recon_cuda.jsonl"
    # Half-precision storage through `recon` itself (recorded in the volume's provenance).
    step recon_cuda_f16 "$BL" recon "$OUT/data/scan.h5" -o "$OUT/recon_cuda_f16.h5" --format h5 --backend cuda --gpu-dtype f16 -q
fi
step timeline "$BL" timeline "$TIMELINE_LOG" -o "$OUT/timeline.html"
step timeline_summary "$BL" timeline "$TIMELINE_LOG" --summary --json

if [ "$QUICK" = 1 ]; then SMALL=(--size 64 --angles 60); LARGE=(--size 128 --angles 90); S_SL=2; L_SL=2
else SMALL=(--size 512 --angles 720); LARGE=(--size 2048 --angles 1500); S_SL=64; L_SL=16; fi
if [ "$GPU" = 1 ]; then
    step compare_512 "$BL" gpu compare "${SMALL[@]}" --slices 4 --json
    step compare_2048 "$BL" gpu compare "${LARGE[@]}" --slices 4 --json
    step bench_512_f32 "$BL" gpu bench "${SMALL[@]}" --slices $S_SL --gpu-dtype f32 --json
    step bench_512_f16 "$BL" gpu bench "${SMALL[@]}" --slices $S_SL --gpu-dtype f16 --json
    step bench_512_convolve "$BL" gpu bench "${SMALL[@]}" --slices $S_SL --gpu-filter convolve --json
    step bench_2048_f32 "$BL" gpu bench "${LARGE[@]}" --slices $L_SL --gpu-dtype f32 --json
    step bench_2048_f16 "$BL" gpu bench "${LARGE[@]}" --slices $L_SL --gpu-dtype f16 --json
    step bench_recon_cuda "$BL" bench recon --backend cuda --json
else
    # The same scheduler path on the CPU, as the reference the GPU figures are read against.
    step bench_cpu "$BL" gpu bench --backend cpu "${SMALL[@]}" --slices 2 --json
fi

# --- summary -------------------------------------------------------------------------------------------
json_or_null() { [ -s "$OUT/$1.json" ] && cat "$OUT/$1.json" || echo null; }
{
    echo "{"
    echo "\"bundle\": \"beamline gpu check bundle\", \"date\": \"$(date -u +%Y-%m-%dT%H:%M:%SZ)\","
    echo "\"host\": \"$(uname -n)\", \"gpu\": $([ "$GPU" = 1 ] && echo true || echo false),"
    echo "\"nvrtc\": \"${NVRTC:-}\", \"cufft\": \"${CUFFT:-}\", \"quick\": $([ "$QUICK" = 1 ] && echo true || echo false),"
    echo "\"seconds\": $(( $(date +%s) - T0 )),"
    echo "\"steps\": [$(IFS=,; echo "${STEPS[*]}")],"
    echo "\"gpu_check\": $(json_or_null gpu_check),"
    echo "\"timeline\": $(json_or_null timeline_summary),"
    for k in compare_512 compare_2048 bench_512_f32 bench_512_f16 bench_512_convolve bench_2048_f32 bench_2048_f16 bench_recon_cuda bench_cpu; do
        echo "\"$k\": $(json_or_null $k),"
    done
    echo "\"files\": \"$OUT\""
    echo "}"
} > "$OUT/summary.json"
# Without a GPU, `gpu check` may fail (no NVRTC either): that is what it reports, not a failure of the run.
FAILED=$(printf '%s\n' "${STEPS[@]}" | { [ "$GPU" = 1 ] && cat || grep -v '"step":"gpu_check"'; } | grep -vc '"rc":0')
say "summary: $OUT/summary.json ($FAILED step(s) failed, $(( $(date +%s) - T0 )) s)"
[ "$FAILED" = 0 ]
