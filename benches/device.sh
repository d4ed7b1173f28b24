#!/usr/bin/env bash
# The GPU tables of BENCHMARKS.md in one run on a machine with a GPU and no network (the
# `device` tool's machine: NVIDIA driver, PyTorch with CUDA, scipy; no Rust, no Vulkan loader,
# no MONAI or smp). Two steps:
#
#   bash benches/device.sh prepare   # here, with network: the release tool in .bin/, the
#                                    # Vulkan loader's .debs in .gl/, MONAI and smp wheels in
#                                    # .whl/ (all three folders ignored through .git/info/exclude)
#   bash benches/device.sh run       # there, carrying .bin .gl .whl: writes to $OUT (or
#                                    # /tmp/segloss-device) info.txt, bench-full.jsonl and
#                                    # compare-*.jsonl, as `segloss bench --json --passes` and
#                                    # `benches/compare.py --json` print them
#
# `run` also works on a machine that has its own loader and packages (it installs nothing
# then); PYTHON picks the interpreter (default python3), SEGLOSS the tool (default
# .bin/segloss), REPEAT the timed repetitions (default 10), SIZES the compare sizes.
set -euo pipefail
cd "$(dirname "$0")/.."

prepare() {
    for d in .bin .gl .whl; do
        grep -qxF "/$d/" .git/info/exclude 2>/dev/null || echo "/$d/" >>.git/info/exclude
    done
    cargo build --release --example segloss
    mkdir -p .bin .gl .whl /tmp/amd64/partial
    cp target/release/examples/segloss .bin/
    local o=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64)
    apt-get "${o[@]}" update
    (cd .gl && apt-get "${o[@]}" download libvulkan1)
    # Their dependencies (numpy, torch, timm, huggingface-hub, safetensors, pillow,
    # torchvision, tqdm) are on the device image already.
    "${PYTHON:-python3}" -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
        -d .whl monai==1.6.1 segmentation-models-pytorch==0.6.0
    du -sh .bin .gl .whl
}

run() {
    local out=${OUT:-/tmp/segloss-device}
    local py=${PYTHON:-python3}
    local tool=${SEGLOSS:-.bin/segloss}
    local repeat=${REPEAT:-10}
    mkdir -p "$out"
    if ! ldconfig -p | grep -q 'libvulkan\.so\.1' && [ -d .gl ]; then
        for f in .gl/*.deb; do dpkg -x "$f" /; done
        ldconfig
    fi
    if [ -d .whl ] && ! "$py" -c 'import monai, segmentation_models_pytorch' 2>/dev/null; then
        "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target /tmp/site .whl/*.whl
        export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
    fi
    export WGPU_BACKEND=vulkan PYTHONUNBUFFERED=1
    if ! "$tool" info >"$out/info.txt" 2>&1; then
        # The NVIDIA image keeps its Vulkan driver manifest outside the loader's search path.
        export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
        "$tool" info >"$out/info.txt" 2>&1
    fi
    cat "$out/info.txt"
    { nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true; } >>"$out/info.txt"
    "$py" -c 'import torch, monai, segmentation_models_pytorch as s, scipy; print("torch", torch.__version__, "cuda", torch.cuda.is_available(), "monai", monai.__version__, "smp", s.__version__, "scipy", scipy.__version__)' | tee -a "$out/info.txt"
    # Exits 1 when a case does not fit the adapter's limits; that case's row says so.
    "$tool" bench --json --passes --repeat "$repeat" --cpu-repeat 1 | tee "$out/bench-full.jsonl" \
        || echo "bench: some cases did not run (their rows say why)" >&2
    for size in ${SIZES:-2,19,32,64 2,19,64,128 8,19,64,128 4,19,128,256 8,19,128,256}; do
        "$py" benches/compare.py --size "$size" --repeat "$repeat" --segloss "$tool" --json \
            | tee "$out/compare-${size//,/x}.jsonl"
    done
}

case "${1:-}" in
    prepare) prepare ;;
    run) run ;;
    *)
        echo "usage: bash benches/device.sh prepare|run" >&2
        exit 2
        ;;
esac
