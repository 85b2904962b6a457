using System.Buffers;

namespace EdgeTune.Kernels.Cpu;

/// <summary>
/// The pool the CPU kernels take their scratch from. ArrayPool&lt;float&gt;.Shared keeps an array of every size in every
/// thread that ever rented one, and Parallel.For runs on however many thread-pool threads exist, so its retained
/// scratch grew with the pool's threads (measured: ~250 MiB at the Qwen2.5-0.5B shape). This pool has no per-thread
/// caches and keeps at most a few arrays of each size: what the kernels keep is bounded by the worker count and can be
/// counted (<c>edgetune plan</c> does).
/// </summary>
internal static class CpuScratch
{
    /// <summary>Arrays kept per size: the kernels rent at most one per worker, and the workers are at most the cores (plus the caller).</summary>
    public static readonly int ArraysPerSize = Environment.ProcessorCount + 1;

    public static readonly ArrayPool<float> Pool = ArrayPool<float>.Create(maxArrayLength: 1 << 28, maxArraysPerBucket: ArraysPerSize);
}
