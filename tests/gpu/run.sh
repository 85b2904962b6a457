#!/usr/bin/env bash
# The GPU check, for a machine with an NVIDIA GPU (CI never runs it; nothing in CI needs a GPU).
#
#   tests/gpu/run.sh            # from the repository root; needs the .NET 10 SDK and the NVIDIA driver
#
# In under 8 minutes: the ILGPU backend contract suite on CUDA (every kernel against its scalar reference), the
# kernel benchmarks on CUDA (GEMM GFLOP/s, frozen NF4 GEMM, attention, cross-entropy), and `edgetune bench train`
# at the Qwen2.5-0.5B and TinyLlama-1.1B shapes for LoRA and QLoRA; where PyTorch with CUDA is installed, the same
# shapes in PyTorch (transformers + PEFT when both are installed) for the side-by-side ratio. One table at the end.
# Exits 2 at once, with the reason, where no GPU is visible or the SDK is missing; each stage has its own time limit,
# so nothing hangs.
set -uo pipefail
cd "$(dirname "$0")/../.."
start=$SECONDS
out=${GPU_CHECK_OUT:-${OUT:-/tmp/edgetune-gpu-check}}
mkdir -p "$out"
table="$out/summary.md"
fail=0

die() { echo "tests/gpu/run.sh: $*" >&2; exit 2; }
command -v nvidia-smi >/dev/null 2>&1 || die "no nvidia-smi: this check needs an NVIDIA GPU and its driver (CI has neither and never runs it)"
gpus=$(timeout 20 nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null) || die "nvidia-smi found no GPU (or did not answer in 20 s)"
[ -n "$gpus" ] || die "nvidia-smi lists no GPU"
command -v dotnet >/dev/null 2>&1 || die "no dotnet: install the .NET 10 SDK (https://dot.net) to build the check"

echo "# EdgeTune GPU check" | tee "$table"
echo "GPU: $gpus; $(nproc) CPU cores; $(date -u +%Y-%m-%dT%H:%MZ)" | tee -a "$table"

stage() { # stage NAME SECONDS COMMAND...: runs with a time limit, logs, records pass/fail
  local name=$1 limit=$2; shift 2
  echo "== $name (limit ${limit}s)"
  local t0=$SECONDS
  timeout --kill-after=10 "$limit" "$@" > "$out/$name.log" 2>&1
  local rc=$?
  tail -n 40 "$out/$name.log"
  if [ $rc -ne 0 ]; then
    fail=1
    echo "| $name | FAILED (exit $rc$([ $rc -eq 124 ] && echo ', time limit')) in $((SECONDS - t0)) s | see $out/$name.log |" >> "$out/stages.md"
  else
    echo "| $name | ok in $((SECONDS - t0)) s | |" >> "$out/stages.md"
  fi
  return $rc
}
: > "$out/stages.md"

stage build 240 dotnet build EdgeTune.sln -c Release -m -v q -nologo || { cat "$out/stages.md"; exit 1; }

# The contract suite on CUDA. A skip means ILGPU sees no device although nvidia-smi does: a failure here.
stage contract 150 dotnet test tests/EdgeTune.Kernels.Tests -c Release --no-build --filter "FullyQualifiedName~IlgpuCudaTests" --logger "console;verbosity=normal"
if grep -q "Skipped" "$out/contract.log" && ! grep -q "Passed!" "$out/contract.log"; then
  echo "| contract | FAILED: skipped, ILGPU sees no CUDA device | |" >> "$out/stages.md"; fail=1
fi

stage kernels 90 dotnet run -c Release --no-build --project tests/EdgeTune.Benchmarks -- kernels --device cuda --repeat 5

cli="dotnet src/EdgeTune.Cli/bin/Release/net10.0/edgetune.dll"
echo "| shape | method | EdgeTune tokens/s | step ms | peak anonymous MiB | PyTorch tokens/s | ratio |" > "$out/train.md"
echo "|---|---|---:|---:|---:|---:|---:|" >> "$out/train.md"
has_torch=$(python3 -c "import torch,sys; sys.exit(0 if torch.cuda.is_available() else 1)" >/dev/null 2>&1 && echo yes || echo no)
has_peft=$(python3 -c "import transformers, peft" >/dev/null 2>&1 && echo --peft || echo "")
for shape in qwen2.5-0.5b tinyllama-1.1b; do
  for method in lora qlora; do
    name="train-$shape-$method"
    stage "$name" 150 $cli bench train --device cuda --shape "$shape" --method "$method" --seq 512 --batch 1 --steps 3 --json
    ours=$(python3 - "$out/$name.log" <<'PY'
import json, sys
text = open(sys.argv[1]).read()
try:
    r = json.loads(text[text.index("["):])[0]
    print(f"{r['tokens_per_second']:.0f} {r['step_milliseconds']:.0f} {(r.get('peak_anonymous_bytes') or 0) / 1048576:.0f}")
except Exception:
    print("- - -")
PY
)
    read -r tps ms mib <<< "$ours"
    torch_tps="-"
    if [ "$has_torch" = yes ] && [ "$method" = lora ]; then
      timeout 150 python3 tests/assets/bench/torch_train_bench.py --device cuda --shape "$shape" --method lora --seq 512 --batch 1 --steps 3 $has_peft > "$out/torch-$shape.log" 2>&1
      torch_tps=$(grep -o '[0-9]* tokens/s' "$out/torch-$shape.log" | tail -1 | cut -d' ' -f1)
      torch_tps=${torch_tps:--}
    fi
    ratio="-"
    if [ "$torch_tps" != "-" ] && [ "$tps" != "-" ]; then ratio=$(python3 -c "print(f'{$tps / $torch_tps:.2f}')"); fi
    echo "| $shape | $method | $tps | $ms | $mib | $torch_tps | $ratio |" >> "$out/train.md"
  done
done

{ echo; echo "## Stages"; echo "| stage | result | |"; echo "|---|---|---|"; cat "$out/stages.md"; echo; echo "## Training (sequence 512, batch 1, 3 steps after a warm-up; PyTorch: $([ "$has_torch" = yes ] && echo "CUDA${has_peft:+, transformers + PEFT}" || echo "not installed with CUDA"))"; cat "$out/train.md"; echo; echo "total $((SECONDS - start)) s"; } | tee -a "$table"
exit $fail
