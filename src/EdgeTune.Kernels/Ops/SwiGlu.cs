using System.Numerics;

namespace EdgeTune.Kernels;

// SwiGLU gate of the llama MLP, elementwise over count values.
//   forward   gate, up, output: (count)     output = silu(gate)·up,  silu(g) = g·σ(g)
//   backward  dGate = dOutput·up·σ(g)·(1 + g·(1 − σ(g)))   dUp = dOutput·silu(g)   (both overwritten)
//   Each element is read before it is written, so output may alias gate, dGate gate and dUp up.
public static partial class Reference
{
    public static void SwiGluForward<T>(ReadOnlySpan<T> gate, ReadOnlySpan<T> up, Span<T> output, long count)
        where T : IFloatingPointIeee754<T>
    {
        CheckSwiGlu(gate.Length, up.Length, output.Length, count);
        for (int i = 0; i < count; i++)
        {
            T g = gate[i], u = up[i];
            output[i] = g / (T.One + T.Exp(-g)) * u;
        }
    }

    public static void SwiGluBackward<T>(ReadOnlySpan<T> dOutput, ReadOnlySpan<T> gate, ReadOnlySpan<T> up, Span<T> dGate, Span<T> dUp, long count)
        where T : IFloatingPointIeee754<T>
    {
        CheckSwiGlu(gate.Length, up.Length, dOutput.Length, count);
        Shapes.Require(dGate.Length, count, nameof(dGate), $"(count={count})");
        Shapes.Require(dUp.Length, count, nameof(dUp), $"(count={count})");
        for (int i = 0; i < count; i++)
        {
            T g = gate[i], u = up[i], d = dOutput[i];
            T sigmoid = T.One / (T.One + T.Exp(-g));
            T silu = g * sigmoid;
            dGate[i] = d * u * sigmoid * (T.One + g * (T.One - sigmoid));
            dUp[i] = d * silu;
        }
    }

    internal static void CheckSwiGlu(long gate, long up, long output, long count)
    {
        Shapes.NonNegative(count, nameof(count));
        Shapes.Require(gate, count, nameof(gate), $"(count={count})");
        Shapes.Require(up, count, nameof(up), $"(count={count})");
        Shapes.Require(output, count, nameof(output), $"(count={count})");
    }
}
