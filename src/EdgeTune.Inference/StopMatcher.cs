using System.Text;

namespace EdgeTune.Inference;

/// <summary>
/// Applies stop sequences (the request's, and the template's end-of-turn text) to streamed text: text is passed
/// on only once it cannot be the start of a stop sequence; when one appears, the text before it is the answer and
/// generation ends.
/// </summary>
public sealed class StopMatcher(IReadOnlyList<string> stops, Action<string>? onText)
{
    private readonly StringBuilder _all = new();
    private int _emitted;

    public bool Stopped { get; private set; }

    /// <summary>The answer so far (everything before a stop sequence).</summary>
    public string Text => _all.ToString();

    /// <summary>Adds text; true when a stop sequence has been reached.</summary>
    public bool Push(string piece)
    {
        if (piece.Length == 0) return false;
        _all.Append(piece);
        string text = _all.ToString();
        int cut = -1;
        foreach (var stop in stops)
        {
            if (stop.Length == 0) continue;
            int at = text.IndexOf(stop, Math.Max(0, _emitted - stop.Length + 1), StringComparison.Ordinal);
            if (at >= 0 && (cut < 0 || at < cut)) cut = at;
        }
        if (cut >= 0)
        {
            _all.Length = cut;
            if (cut > _emitted) onText?.Invoke(text[_emitted..cut]);
            _emitted = Math.Max(_emitted, cut);
            Stopped = true;
            return true;
        }
        // Hold back the longest tail that could still grow into a stop sequence.
        int hold = 0;
        foreach (var stop in stops)
            for (int k = Math.Min(stop.Length - 1, text.Length); k > hold; k--)
                if (text.EndsWith(stop[..k], StringComparison.Ordinal)) { hold = k; break; }
        int safe = text.Length - hold;
        if (safe > _emitted)
        {
            onText?.Invoke(text[_emitted..safe]);
            _emitted = safe;
        }
        return false;
    }

    /// <summary>Passes on what was held back (generation ended without reaching a stop sequence).</summary>
    public void Flush()
    {
        string text = _all.ToString();
        if (text.Length > _emitted) onText?.Invoke(text[_emitted..]);
        _emitted = text.Length;
    }
}
