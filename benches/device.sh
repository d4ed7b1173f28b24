#!/usr/bin/env bash
# The GPU tables of BENCHMARKS.md, and the GPU tests, in one run on a machine with a GPU and no
# network (the `device` tool's machine: NVIDIA driver, PyTorch with CUDA, scipy; no Rust, no
# Vulkan loader, no MONAI or smp). Two steps:
#
#   bash benches/device.sh prepare   # here, with network: the release tool and the stripped
#                                    # GPU test binaries in .bin/ (with EXPERIMENTS="x.patch"
#                                    # also HEAD + x.patch, .bin/segloss-x ...), the Vulkan
#                                    # loader's .deb in .gl/, MONAI and smp wheels in .whl/ (all
#                                    # three folders ignored through .git/info/exclude)
#   bash benches/device.sh run [NAME=BINARY...]
#                                    # there, carrying .bin .gl .whl: writes to $OUT (or
#                                    # /tmp/segloss-device) info.txt, check.txt (`segloss
#                                    # check`), tests.txt (the GPU test binaries),
#                                    # bench-full.jsonl (`segloss bench --json --passes`),
#                                    # edt-methods.jsonl (every distance-transform method) and
#                                    # compare.jsonl (`benches/compare.py --json`, every size);
#                                    # with builds named, ab.jsonl first (see `ab`, one round
#                                    # unless ROUNDS says otherwise), so one call does it all
#
# `run` works through its steps most valuable first, each under a timeout cut to what is left
# of DEADLINE seconds (default 480), so a slow machine still returns the first tables whole.
# It also works on a machine that has its own loader and packages (it installs nothing then);
# PYTHON picks the interpreter (default python3), SEGLOSS the tool (default .bin/segloss),
# REPEAT the timed repetitions (default 10), SIZES the compare sizes.
set -euo pipefail
cd "$(dirname "$0")/.."

prepare() {
    for d in .bin .gl .whl; do
        grep -qxF "/$d/" .git/info/exclude 2>/dev/null || echo "/$d/" >>.git/info/exclude
    done
    cargo build --release --example segloss
    mkdir -p .bin .gl .whl /tmp/amd64/partial
    cp target/release/examples/segloss .bin/
    # The test binaries that need an adapter (cli needs cargo's build tree; gradcheck and the
    # unit tests are CPU-only), stripped and packed. They find tests/fixtures under the
    # manifest directory compiled into them, which `run` links to the checkout there.
    local tb
    tb=$(mktemp -d)
    cargo test --release --no-run 2>&1 | grep -o 'target/release/deps/[a-z_]*-[0-9a-f]*' |
        while read -r f; do
            case $(basename "$f") in
                distance-* | fixtures-* | gpu_vs_cpu-* | lovasz-* | region-* | runtime-* | \
                    shaders-* | sort-* | topology-* | validation-*)
                    cp "$f" "$tb/$(basename "$f" | sed 's/-[0-9a-f]*$//')"
                    strip "$tb/$(basename "$f" | sed 's/-[0-9a-f]*$//')"
                    ;;
            esac
        done
    tar -C "$tb" -cJf .bin/tests.tar.xz .
    rm -rf "$tb"
    pwd >.bin/manifest_dir
    # EXPERIMENTS="benches/experiments/a.patch ...": HEAD with each patch applied, built in a
    # git worktree under /tmp (one shared target folder), as .bin/segloss-a ..., for `ab`.
    local patch name wt
    for patch in ${EXPERIMENTS:-}; do
        name=$(basename "$patch" .patch)
        wt=/tmp/segloss-wt-$name
        git worktree remove --force "$wt" 2>/dev/null || true
        git worktree add -q --detach "$wt" HEAD
        git -C "$wt" apply "$PWD/$patch"
        (cd "$wt" && CARGO_TARGET_DIR=/tmp/segloss-wt-target cargo build --release --example segloss)
        cp /tmp/segloss-wt-target/release/examples/segloss ".bin/segloss-$name"
        git worktree remove --force "$wt"
    done
    local o=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64)
    apt-get "${o[@]}" update
    # The loader alone is not enough: NVIDIA's Vulkan driver lives in libGLX_nvidia, which
    # hands out no vkCreateInstance without the GL vendor-neutral dispatch (glvnd) libraries.
    (cd .gl && apt-get "${o[@]}" download libvulkan1 libglvnd0 libglx0 libgl1 libegl1 libopengl0 libgles2)
    # Their dependencies (numpy, torch, timm, huggingface-hub, safetensors, pillow,
    # torchvision, tqdm) are on the device image already.
    "${PYTHON:-python3}" -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
        -d .whl monai==1.6.1 segmentation-models-pytorch==0.6.0
    du -sh .bin .gl .whl
}

# Seconds a step may take: its own limit, cut to what is left before the deadline.
budget() {
    local left=$((DEADLINE_AT - $(date +%s)))
    if ((left < $1)); then echo $((left > 1 ? left : 1)); else echo "$1"; fi
}

# The settings (globals: out, py, tool, repeat, DEADLINE_AT), the Vulkan loader and the Python
# packages where the machine lacks them, the environment, and info.txt (adapter, driver, GPU,
# versions).
setup() {
    out=${OUT:-/tmp/segloss-device}
    py=${PYTHON:-python3}
    tool=${SEGLOSS:-.bin/segloss}
    repeat=${REPEAT:-10}
    DEADLINE_AT=$(($(date +%s) + ${DEADLINE:-480}))
    mkdir -p "$out"
    if [ -d .gl ] && ! ldconfig -p | grep -q 'libGLdispatch\.so\.0'; then
        for f in .gl/*.deb; do dpkg -x "$f" /; done
        ldconfig
    fi
    if [ -d .whl ] && ! "$py" -c 'import monai, segmentation_models_pytorch' 2>/dev/null; then
        "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target /tmp/site .whl/*.whl
        export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
    fi
    export WGPU_BACKEND=vulkan PYTHONUNBUFFERED=1
    # The NVIDIA image keeps its Vulkan driver manifest outside the loader's search path.
    local icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
    if [ -f "$icd" ]; then export VK_DRIVER_FILES=$icd; fi
    "$tool" info >"$out/info.txt" 2>&1 || { cat "$out/info.txt"; exit 1; }
    cat "$out/info.txt"
    { nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem \
        --format=csv || true; } >>"$out/info.txt"
    "$py" -c 'import torch, monai, segmentation_models_pytorch as s, scipy; print("torch", torch.__version__, "cuda", torch.cuda.is_available(), "monai", monai.__version__, "smp", s.__version__, "scipy", scipy.__version__)' | tee -a "$out/info.txt"
}

run() {
    setup

    echo "== segloss check"
    timeout "$(budget 90)" "$tool" check 2>&1 | tee "$out/check.txt" || echo "check: failed or cut" | tee -a "$out/check.txt"

    # Builds to compare (`ab`'s arguments), right after the check: a device is lent for one
    # call's worth of minutes, so the experiments go before the long tables.
    if (($# > 0)); then
        ROUNDS=${ROUNDS:-1} ab_rounds "$@"
    fi

    echo "== segloss bench"
    # Exits 1 when a case does not fit the adapter's limits; that case's row says so.
    timeout "$(budget 200)" "$tool" bench --json --passes --repeat "$repeat" --cpu-repeat 1 \
        | tee "$out/bench-full.jsonl" || echo "bench: failed, cut, or some cases did not run (their rows say why)" >&2

    echo "== compare"
    local sizes=(${SIZES:-8,19,128,256 2,14,64,64,64 2,19,32,64 4,19,128,256 8,19,64,128})
    compare "${sizes[0]}"

    echo "== distance transform methods"
    edt_methods

    echo "== GPU tests"
    local tests=/tmp/segloss-tests manifest
    mkdir -p "$tests" && tar -C "$tests" -xJf .bin/tests.tar.xz
    manifest=$(cat .bin/manifest_dir)
    if [ ! -e "$manifest" ]; then mkdir -p "$(dirname "$manifest")" && ln -s "$PWD" "$manifest"; fi
    for t in "$tests"/*; do
        echo "-- $(basename "$t")"
        timeout "$(budget 90)" "$t" 2>&1 | grep -E '^test |test result|panicked|GPU tests on|FAILED|failures' \
            || echo "$(basename "$t"): failed or cut"
    done | tee "$out/tests.txt"

    for size in "${sizes[@]:1}"; do compare "$size"; done
    echo "== done with $((DEADLINE_AT - $(date +%s))) s to spare"
}

# Interleaved benches of several builds (or of one build's flags) on the same GPU, for
# before/after figures:
#   bash benches/device.sh ab old=.bin/segloss-old new=.bin/segloss "soft=.bin/segloss --tuning software"
#   bash benches/device.sh ab run1="SEGLOSS_EXPERIMENT_RUN=1 .bin/segloss-gpu-cldice-run"
# writes ab.jsonl: `segloss bench --json --passes --no-cpu` rows (plus the flags after the
# binary; VAR=VALUE words before it are its environment), each with "build" and "round" keys
# added; ROUNDS rounds (default 2) of every build in turn, LOSSES the losses (default all).
ab() {
    setup
    ab_rounds "$@"
}

ab_rounds() {
    local round spec words envs
    for round in $(seq "${ROUNDS:-2}"); do
        for spec in "$@"; do
            echo "== ab: ${spec%%=*}, round $round"
            read -r -a words <<<"${spec#*=}"
            envs=()
            while [[ ${words[0]} == *=* ]]; do
                envs+=("${words[0]}")
                words=("${words[@]:1}")
            done
            timeout "$(budget 120)" env "${envs[@]}" "${words[0]}" bench --json --passes --no-cpu \
                --repeat "$repeat" ${LOSSES:+--losses "$LOSSES"} "${words[@]:1}" \
                | sed "s/^{/{\"build\":\"${spec%%=*}\",\"round\":$round,/" | tee -a "$out/ab.jsonl" \
                || echo "ab ${spec%%=*}: failed, cut, or some cases did not run" >&2
        done
    done
}

# Every distance-transform method (`segloss edt --method`) on the same masks: 16 of 256×256 and
# one 128³ volume, random balls. Writes edt-methods.jsonl, one `segloss edt` row per method and
# size. Also on its own: `bash benches/device.sh edt`.
edt_methods() {
    local masks=/tmp/segloss-edt-masks mask method
    mkdir -p "$masks"
    "$py" - "$masks" <<'PY'
import sys
import numpy as np

rng = np.random.default_rng(0)
for name, shape, count in (("plane", (16, 256, 256), 6), ("cube", (1, 128, 128, 128), 12)):
    grid = np.indices(shape[1:], dtype=np.float32)
    mask = np.zeros(shape, dtype=bool)
    for m in range(shape[0]):
        for _ in range(count):
            centre = [rng.uniform(0, d) for d in shape[1:]]
            r = rng.uniform(min(shape[1:]) / 16, min(shape[1:]) / 4)
            mask[m] |= sum((g - c) ** 2 for g, c in zip(grid, centre)) <= r * r
    np.save(f"{sys.argv[1]}/{name}.npy", mask)
PY
    for mask in "$masks"/plane.npy "$masks"/cube.npy; do
        for method in exact jfa jfa+1 jfa+2 1+jfa; do
            timeout "$(budget 60)" "$tool" edt --mask "$mask" --method "$method" --repeat "$repeat" \
                | tee -a "$out/edt-methods.jsonl" || echo "edt $method $mask: failed or cut" >&2
        done
    done
}

compare() {
    timeout "$(budget 150)" "$py" benches/compare.py --size "$1" --repeat "$repeat" --segloss "$tool" \
        --json | tee -a "$out/compare.jsonl" || echo "compare $1: failed or cut" >&2
}

case "${1:-}" in
    prepare) prepare ;;
    run)
        shift
        run "$@"
        ;;
    edt)
        setup
        edt_methods
        ;;
    ab)
        shift
        ab "$@"
        ;;
    *)
        echo "usage: bash benches/device.sh prepare|run|edt|ab NAME=BINARY..." >&2
        exit 2
        ;;
esac
