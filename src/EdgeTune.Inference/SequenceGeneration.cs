using System.Diagnostics;
using EdgeTune.Models.Generation;
using EdgeTune.Models.Reference;

namespace EdgeTune.Inference;

/// <summary>
/// One generation between steps: sampling, detokenising, stop sequences and the end-of-turn text, the token budget.
/// The sequential loop and the batched scheduler both drive it one logits row at a time, so a sequence decoded
/// beside others takes exactly the decisions it would take alone.
/// </summary>
internal sealed class SequenceGeneration
{
    private readonly int[] _prompt;
    private readonly SamplingSettings _sampling;
    private readonly int _context;
    private readonly Sampler? _sampler;
    private readonly ITextDecoder _decoder;
    private readonly StopMatcher _stops;
    private readonly Func<int, bool> _isEndOfGeneration;
    private readonly List<int> _generated = [];
    private readonly long _start = Stopwatch.GetTimestamp();
    private string _finish = "length";
    private double _ttft;

    public SequenceGeneration(int[] prompt, SamplingSettings sampling, Action<string>? onText, string? endOfTurn, int context,
        ITextDecoder decoder, Func<int, bool> isEndOfGeneration)
    {
        _prompt = prompt;
        _sampling = sampling;
        _context = context;
        _sampler = sampling.Temperature > 0 ? new Sampler(sampling.Temperature, sampling.TopP, sampling.Seed ?? (ulong)Random.Shared.NextInt64()) : null;
        _decoder = decoder;
        _stops = new StopMatcher(endOfTurn is null ? sampling.Stop : [.. sampling.Stop, endOfTurn], onText);
        _isEndOfGeneration = isEndOfGeneration;
    }

    /// <summary>The token to evaluate next (the one just chosen), valid after <see cref="Step"/> returned true.</summary>
    public int NextToken => _generated[^1];

    /// <summary>
    /// Chooses the next token from <paramref name="logits"/> (those after the last evaluated token, which sits at
    /// <paramref name="position"/> − 1). True when generation goes on: evaluate <see cref="NextToken"/> at
    /// <paramref name="position"/> and call again.
    /// </summary>
    public bool Step(ReadOnlySpan<float> logits, int position)
    {
        if (_generated.Count >= _sampling.MaxTokens) return false;
        int token = _sampler is null ? ReferenceModel.ArgMax(logits) : _sampler.Next(logits);
        if (_generated.Count == 0) _ttft = Stopwatch.GetElapsedTime(_start).TotalMilliseconds;
        _generated.Add(token);
        if (_isEndOfGeneration(token)) { _finish = "stop"; return false; }
        _decoder.Add(token);
        if (_stops.Push(_decoder.Read())) { _finish = "stop"; return false; }
        return _generated.Count < _sampling.MaxTokens && position + 1 < _context;
    }

    /// <summary>The answer once <see cref="Step"/> returned false.</summary>
    public GenerationResult Finish(string? adapter)
    {
        if (!_stops.Stopped) _stops.Flush();
        int completion = _finish == "stop" && _isEndOfGeneration(_generated[^1]) ? _generated.Count - 1 : _generated.Count;
        return new GenerationResult(_stops.Text, _prompt.Length, completion, _finish, _ttft, Stopwatch.GetElapsedTime(_start).TotalMilliseconds, adapter, _generated);
    }
}
