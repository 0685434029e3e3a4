#!/usr/bin/env bash
# The whole GPU check in one go (about 10 minutes; its timeouts add up to under 13), for a machine with one CUDA GPU
# and only torch + torchvision installed:
#   bash scripts/gpu_check.sh [OUTDIR]
# 1. bench: scripts/benchmark_gpu.py --quick (issue 21: S eager and compiled, B and L compiled, compile times, then
#           S with model.attention=flex beside fused as far as the budget goes; <= 5 min);
# 2. data:  scripts/benchmark_data.py --recipe: the k400_b_32x3 recipe's worker CPU-s per video and the device
#           augmentation time per batch on CUDA (issue 18);
# 3. train: end to end through the real command line (python -m mvit_video.train) on generated Kinetics-sized videos
#           (340x256, 10 s, 30 fps, H.264), 12 loader workers, k400_s_16x4 and k400_b_32x3 eager, one short epoch
#           each: clips/s and the share of step time waiting for data, from metrics.jsonl;
# 4. tests: the CUDA tests (`pytest -m cuda tests/cuda tests/models/test_flex_attention.py`; flex last, so a
#           timeout cuts it, not the others).
# GPU_CHECK_PARTS=bench,data,train,tests (default all) picks parts. GPU_CHECK_TINY=1 runs every part at tiny sizes on
# the CPU (aot_eager, 2-s videos, a 3-block model), which checks the script itself in a few minutes without a GPU.
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

parts=${GPU_CHECK_PARTS:-bench,data,train,tests}
if [[ $parts == *bench* ]]; then
    echo "== benchmark (--quick) [$((SECONDS - start)) s]"
    if [[ $tiny == 1 ]]; then
        bench_args=(--smoke --device cpu --amp none --compile-backend aot_eager --budget-s 200)
    else
        bench_args=(--budget-s "${BENCH_BUDGET:-265}")
    fi
    timeout "${BENCH_TIMEOUT:-300}" $py scripts/benchmark_gpu.py --quick "${bench_args[@]}" \
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
    echo "== train: end to end through python -m mvit_video.train, eager, 12 workers [$((SECONDS - start)) s]"
    # lists over the generated videos: train repeats them (one short epoch of a few dozen steps), val has 4 lines
    lists=$($py - "$videos" "$tiny" "${video_args[@]}" <<'EOF'
import sys
from pathlib import Path

sys.path.insert(0, "scripts")
from benchmark_data import VideoSpec, ensure_videos  # the same generator and cache as the data part

root, tiny, args = Path(sys.argv[1]), sys.argv[2] == "1", sys.argv[3:]
n, seconds = int(args[1]), float(args[3])
width, height = (int(x) for x in args[5].split("x"))
lists = ensure_videos(root, VideoSpec(n, 24 if not tiny else 4, seconds, width, height))
val = (lists / "val.csv").read_text().splitlines()[:4]
(lists / "val.csv").write_text("".join(line + "\n" for line in val))
print(lists)
EOF
)
    echo "lists: $lists"
    if [[ $tiny == 1 ]]; then
        runs=("k400_s_16x4 16" "k400_b_32x3 8")
        extra=(data_loader.num_workers=2 data.num_frames=4 data.train_crop_size=32 data.test_crop_size=32
               "data.train_jitter_scales=[40,48]" mvit.depths=[1,2] mvit.embed_dim=16 train.batch_size=2)
    else
        runs=("k400_s_16x4 16" "k400_b_32x3 8")
        extra=(data_loader.num_workers=12)
    fi
    for run in "${runs[@]}"; do
        read -r exp batch <<< "$run"
        dir="$out/train_$exp"
        rm -rf "$dir"
        timeout "${TRAIN_TIMEOUT:-110}" $py -m mvit_video.train +experiment="$exp" data.path_to_data_dir="$lists" \
            model.num_classes=4 train.batch_size="$batch" solver.max_epoch=1 train.compile=false \
            test.enable=false train.auto_resume=false output_dir="$dir" "${extra[@]}" \
            > "$out/train_$exp.txt" 2>&1
        echo "$exp exit $?"
        $py - "$dir/metrics.jsonl" "$exp" <<'EOF'
import json, sys
from pathlib import Path

path, exp = Path(sys.argv[1]), sys.argv[2]
lines = [json.loads(x) for x in path.read_text().splitlines()] if path.is_file() else []
train = [m for m in lines if m.get("split") == "train"]
if not train:
    print(f"{exp}: no train line in {path}")
else:
    m = train[-1]
    mfu = "n/a" if m.get("mfu") is None else f"{100 * m['mfu']:.1f}%"
    print(f"{exp}: {m['clips_per_s']:.1f} clips/s end to end, {100 * m['data_wait_frac']:.0f}% of step time "
          f"waiting for data, MFU {mfu}")
EOF
        tail -n 4 "$out/train_$exp.txt"
    done
fi

if [[ $parts == *tests* && $tiny != 1 ]]; then
    echo "== CUDA tests [$((SECONDS - start)) s]"
    timeout "${TEST_TIMEOUT:-170}" $py -m pytest -q -m cuda tests/cuda tests/models/test_flex_attention.py \
        -p no:cacheprovider 2>&1 \
        | tee "$out/cuda_tests.txt" | tail -25
    echo "tests exit ${PIPESTATUS[0]}"
fi
echo "== done in $((SECONDS - start)) s"
