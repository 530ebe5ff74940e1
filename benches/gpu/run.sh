#!/usr/bin/env bash
# Runs on the GPU machine, from the project root with .gpu-stage/ (benches/gpu/stage.sh):
# `tessera bench gpu` on the real 512³ labels and on the synthetic 512³ volume, reports under
# $OUT (or /tmp/gpu-bench). One call, a few minutes: device time is scarce.
set -uo pipefail
out="${OUT:-/tmp/gpu-bench}"
mkdir -p "$out"
st=.gpu-stage
gunzip -c "$st/real512_u32.npy.gz" > /tmp/real512_u32.npy
[ -f "$st/bin/tessera.gz" ] && gunzip -f "$st/bin/tessera.gz"
nproc > "$out/machine.txt"
nvidia-smi >> "$out/machine.txt" 2>&1
# The HBM ceiling as CUDA sees it (PyTorch's device-to-device copy, CUDA events), beside the
# copy kernel `bench gpu` measures through Vulkan, where the machine has PyTorch.
python3 - <<'PY' 2>&1 | tee "$out/cuda-copy.txt" || true
import torch
n = 1 << 28  # 1 GiB of float32
src = torch.rand(n, device="cuda"); dst = torch.empty_like(src)
times = []
for _ in range(21):
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    a.record(); dst.copy_(src); b.record(); torch.cuda.synchronize()
    times.append(a.elapsed_time(b) / 1e3)
t = sorted(times[1:])[10]
print(f"cuda copy 1 GiB: median {t*1e3:.3f} ms, {2 * 4 * n / t / 1e9:.0f} GB/s (read + write)")
PY
for run in real synthetic; do
    args=(--repeats "${REPEATS:-5}" --json "$out/gpu-$run.json")
    [ "$run" = real ] && args+=(--input /tmp/real512_u32.npy)
    echo "== $run"
    bash "$st/on-device.sh" "$st/bin/tessera" bench gpu "${args[@]}" 2>&1 | tee "$out/gpu-$run.log"
done
