using System.Buffers;
using System.Numerics.Tensors;

namespace EdgeTune.Kernels.Cpu;

// gate, up, output: (count)   output = silu(gate)·up (output may alias gate)
// dGate = dOut·up·σ(g)·(1 + g(1 − σ(g))), dUp = dOut·silu(g), overwritten (may alias gate and up).
// Chunks in parallel; σ by TensorPrimitives.Sigmoid into a pooled scratch; every element read before it is written.
public sealed unsafe partial class CpuBackend
{
    public void SwiGluForward(DeviceBuffer gate, DeviceBuffer up, DeviceBuffer output, long count)
    {
        Reference.CheckSwiGlu(gate.Length, up.Length, output.Length, count);
        float* pg = Of(gate, nameof(gate)).Pointer, pu = Of(up, nameof(up)).Pointer, po = Of(output, nameof(output)).Pointer;
        ForChunks(count, ElementChunk, (start, length) =>
        {
            float[] sigmoid = CpuScratch.Pool.Rent(length);
            var s = sigmoid.AsSpan(0, length);
            var g = new ReadOnlySpan<float>(pg + start, length);
            TensorPrimitives.Sigmoid(g, s);
            TensorPrimitives.Multiply(g, s, s);
            TensorPrimitives.Multiply(s, new ReadOnlySpan<float>(pu + start, length), new Span<float>(po + start, length));
            CpuScratch.Pool.Return(sigmoid);
        });
    }

    public void SwiGluBackward(DeviceBuffer dOutput, DeviceBuffer gate, DeviceBuffer up, DeviceBuffer dGate, DeviceBuffer dUp, long count)
    {
        Reference.CheckSwiGlu(gate.Length, up.Length, dOutput.Length, count);
        Shapes.Require(dGate.Length, count, nameof(dGate), $"(count={count})");
        Shapes.Require(dUp.Length, count, nameof(dUp), $"(count={count})");
        float* pd = Of(dOutput, nameof(dOutput)).Pointer, pg = Of(gate, nameof(gate)).Pointer, pu = Of(up, nameof(up)).Pointer;
        float* pdg = Of(dGate, nameof(dGate)).Pointer, pdu = Of(dUp, nameof(dUp)).Pointer;
        ForChunks(count, ElementChunk, (start, length) =>
        {
            float[] sigmoid = CpuScratch.Pool.Rent(length);
            TensorPrimitives.Sigmoid(new ReadOnlySpan<float>(pg + start, length), sigmoid.AsSpan(0, length));
            for (int i = 0; i < length; i++)
            {
                long at = start + i;
                float g = pg[at], u = pu[at], d = pd[at], s = sigmoid[i];
                pdg[at] = d * u * s * (1f + g * (1f - s));
                pdu[at] = d * g * s;
            }
            CpuScratch.Pool.Return(sigmoid);
        });
    }
}
