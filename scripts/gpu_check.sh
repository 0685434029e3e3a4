#!/usr/bin/env bash
# The whole GPU check in one go (about 11 minutes; its timeouts add up to under 15), for a machine with one CUDA GPU
# and only torch + torchvision installed:
#   bash scripts/gpu_check.sh [OUTDIR]
# 1. bench:   scripts/benchmark_gpu.py --quick (issue 21: S eager and compiled, B and L compiled, compile times, then
#             S with model.attention=flex beside fused as far as the budget goes; <= 4.5 min);
# 2. compile: issue 21 through the real command line on generated Kinetics-sized videos (340x256, 10 s, 30 fps,
#             H.264), 12 loader workers: k400_s_16x4 compiled regionally, one short epoch + validation (the first
#             step's and the first validation's time, both compiling; clips/s and data wait of the compiled run), then
#             the same command with solver.max_epoch=2: the resumed process loads the saved compile cache (its first
#             step's time);
# 3. data:    scripts/benchmark_data.py --recipe: the k400_b_32x3 recipe's worker CPU-s per video and the device
#             augmentation time per batch on CUDA (issue 18);
# 4. train:   k400_b_32x3 eager through the real command line on the same videos, one short epoch: clips/s and the
#             share of step time waiting for data, from metrics.jsonl (S's figures come from part 2);
# 5. tests:   the CUDA tests (`pytest -m cuda tests/cuda tests/models/test_flex_attention.py`; flex last, so a
#             timeout cuts it, not the others).
# GPU_CHECK_PARTS=bench,compile,data,train,tests (default all) picks parts. GPU_CHECK_TINY=1 runs every part at tiny
# sizes on the CPU (aot_eager / inductor on a 3-block model, 2-s videos), which checks the script itself in a few
# minutes without a GPU.
# Wheels of missing packages (hydra-core, omegaconf, antlr4, fvcore, iopath, av, decord, ...) placed in .whl/ are
# installed first into /tmp/site. Everything is written to OUTDIR (default $OUT, else gpu_check_out).
set -u
out=${1:-${OUT:-gpu_check_out}}
mkdir -p "$out"
out=$(cd "$out" && pwd)
export PYTHONUNBUFFERED=1
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
py=${PYTHON:-python3}
tiny=${GPU_CHECK_TINY:-0}
start=$SECONDS
if [[ $tiny == 1 ]]; then
    echo "GPU_CHECK_TINY=1: tiny sizes on the CPU (checks the script, measures nothing)" | tee "$out/gpu.txt"
else
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/gpu.txt"
fi
$py -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)" \
    | tee -a "$out/gpu.txt"

parts=${GPU_CHECK_PARTS:-bench,compile,data,train,tests}
if [[ $parts == *bench* ]]; then
    echo "== benchmark (--quick) [$((SECONDS - start)) s]"
    if [[ $tiny == 1 ]]; then
        bench_args=(--smoke --device cpu --amp none --compile-backend aot_eager --budget-s 200)
    else
        bench_args=(--budget-s "${BENCH_BUDGET:-240}")
    fi
    timeout "${BENCH_TIMEOUT:-270}" $py scripts/benchmark_gpu.py --quick "${bench_args[@]}" \
        --out "$out/bench.jsonl" > "$out/bench.txt" 2> "$out/bench.err"
    rc=$?
    echo "benchmark exit $rc"
    cat "$out/bench.txt"
    if [[ $rc != 0 ]]; then  # cut short (timeout): the rows measured so far are in the JSON lines
        cat "$out/bench.jsonl" 2>/dev/null; tail -n 5 "$out/bench.err"
    fi
fi

# Kinetics-sized videos, generated once (cached under videos/ by benchmark_data.py's key) for the data and train parts.
videos="$out/videos"
if [[ $tiny == 1 ]]; then
    video_args=(--num-videos 2 --seconds 2 --size 170x128)
else
    video_args=(--num-videos 16 --seconds 10 --size 340x256)
fi
# Lists over the generated videos for the command-line parts: train repeats them (one short epoch of a few dozen
# steps), val has 4 lines.
lists=""
make_lists() {
    [[ -n $lists ]] && return
    lists=$($py - "$videos" "$tiny" "${video_args[@]}" <<'EOF'
import contextlib
import sys
from pathlib import Path

sys.path.insert(0, "scripts")
from benchmark_data import VideoSpec, ensure_videos  # the same generator and cache as the data part

root, tiny, args = Path(sys.argv[1]), sys.argv[2] == "1", sys.argv[3:]
n, seconds = int(args[1]), float(args[3])
width, height = (int(x) for x in args[5].split("x"))
with contextlib.redirect_stdout(sys.stderr):  # its progress lines; stdout is the lists folder alone
    lists = ensure_videos(root, VideoSpec(n, 24 if not tiny else 4, seconds, width, height))
val = (lists / "val.csv").read_text().splitlines()[:4]
(lists / "val.csv").write_text("".join(line + "\n" for line in val))
print(lists)
EOF
)
    echo "lists: $lists"
}
if [[ $tiny == 1 ]]; then
    extra=(data_loader.num_workers=2 data.num_frames=4 data.train_crop_size=32 data.test_crop_size=32
           "data.train_jitter_scales=[40,48]" mvit.depths=[1,2] mvit.embed_dim=16 train.batch_size=2)
else
    extra=(data_loader.num_workers=12)
fi

# The figures of one run: from its train.log (compile cache, first step, validations) and metrics.jsonl.
report_run() {
    $py - "$1" "$2" <<'EOF'
import json, re, sys
from pathlib import Path

run, label = Path(sys.argv[1]), sys.argv[2]
log = (run / "train.log").read_text() if (run / "train.log").is_file() else ""
for pattern in (r"compile cache: .*", r"torch.compile: first step took .*", r"epoch \d+: val top1 .*"):
    for m in re.finditer(pattern, log):
        print(f"{label}: {m.group(0)}")
path = run / "metrics.jsonl"
lines = [json.loads(x) for x in path.read_text().splitlines()] if path.is_file() else []
for m in (m for m in lines if m.get("split") == "train"):
    mfu = "n/a" if m.get("mfu") is None else f"{100 * m['mfu']:.1f}%"
    print(f"{label}: epoch {m['epoch']} {m['clips_per_s']:.1f} clips/s end to end, {100 * m['data_wait_frac']:.0f}% "
          f"of step time waiting for data, MFU {mfu}")
if not lines:
    print(f"{label}: no metrics in {path}")
EOF
}

train_args=(model.num_classes=4 test.enable=false)
if [[ $parts == *compile* ]]; then
    echo "== compile: k400_s_16x4 regional through python -m mvit_video.train, then resumed [$((SECONDS - start)) s]"
    make_lists
    dir="$out/compile_k400_s_16x4"
    rm -rf "$dir"
    # The second run resumes after epoch 1 and loads the compile cache saved with it. Each run gets empty local
    # compiler caches, as on a node the job has not run on (and so that part 1's compile of S does not help run 1).
    caches=$(mktemp -d)  # not under OUTDIR: tens of MB that nobody reads
    for epochs in 1 2; do
        TORCHINDUCTOR_CACHE_DIR="$caches/inductor$epochs" TRITON_CACHE_DIR="$caches/triton$epochs" \
        timeout "${COMPILE_TIMEOUT:-140}" $py -m mvit_video.train +experiment=k400_s_16x4 \
            data.path_to_data_dir="$lists" "${train_args[@]}" train.batch_size=16 train.compile=true \
            train.compile_mode=regional solver.max_epoch=$epochs output_dir="$dir" "${extra[@]}" \
            > "$out/compile_s_run$epochs.txt" 2>&1
        echo "run $epochs exit $?"
    done
    rm -rf "$caches"
    report_run "$dir" k400_s_16x4_compiled
    tail -n 3 "$out/compile_s_run2.txt"
fi

if [[ $parts == *data* ]]; then
    echo "== data: the k400_b_32x3 recipe, device augmentation per batch [$((SECONDS - start)) s]"
    if [[ $tiny == 1 ]]; then
        data_args=(--recipe-videos 1 --recipe-batches 1 --rounds 1)
    else
        data_args=(--recipe-videos 4 --recipe-batches 5 --rounds 1)
    fi
    timeout "${DATA_TIMEOUT:-70}" $py scripts/benchmark_data.py --recipe --workers "${video_args[@]}" \
        --cache-dir "$videos" "${data_args[@]}" > "$out/data.txt" 2> "$out/data.err"
    echo "data benchmark exit $?"
    cat "$out/data.txt"
fi

if [[ $parts == *train* ]]; then
    echo "== train: k400_b_32x3 eager through python -m mvit_video.train, 12 workers [$((SECONDS - start)) s]"
    make_lists
    dir="$out/train_k400_b_32x3"
    rm -rf "$dir"
    timeout "${TRAIN_TIMEOUT:-110}" $py -m mvit_video.train +experiment=k400_b_32x3 data.path_to_data_dir="$lists" \
        "${train_args[@]}" train.batch_size=8 solver.max_epoch=1 train.compile=false train.auto_resume=false \
        output_dir="$dir" "${extra[@]}" > "$out/train_k400_b_32x3.txt" 2>&1
    echo "k400_b_32x3 exit $?"
    report_run "$dir" k400_b_32x3_eager
    tail -n 4 "$out/train_k400_b_32x3.txt"
fi

if [[ $parts == *tests* && $tiny != 1 ]]; then
    echo "== CUDA tests [$((SECONDS - start)) s]"
    timeout "${TEST_TIMEOUT:-130}" $py -m pytest -q -m cuda tests/cuda tests/models/test_flex_attention.py \
        -p no:cacheprovider 2>&1 \
        | tee "$out/cuda_tests.txt" | tail -25
    echo "tests exit ${PIPESTATUS[0]}"
fi
echo "== done in $((SECONDS - start)) s"
