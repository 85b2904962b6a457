using EdgeTune.Core;
using EdgeTune.Inference.Reference;
using EdgeTune.Models.Tokenizers;

namespace EdgeTune.Training.Distillation;

/// <summary>
/// Teacher and student must share the tokenizer: the loss compares their distributions id by id, so the same id must
/// be the same token string (TRL #2215 crashed late on differing sizes, #4562 trained silently on mismatched ids).
/// Checked from the tokenizers alone, before any model is loaded.
/// </summary>
public static class VocabularyCheck
{
    /// <summary>Throws one line naming both sizes and the first differing token, unless the vocabularies are the same.</summary>
    public static void Require(string teacher, string student, ITokenizer? studentTokenizer = null)
    {
        if (!File.Exists(teacher) && !Directory.Exists(teacher)) throw new EdgeTuneException($"{teacher}: the teacher cannot be loaded: no such file or folder");
        ITokenizer t;
        try { t = ReferenceRuntime.LoadTokenizer(teacher); }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            throw new EdgeTuneException($"{teacher}: the teacher cannot be loaded: its tokenizer: {MessageText.OneLine(e.Message)}");
        }
        var s = studentTokenizer ?? ReferenceRuntime.LoadTokenizer(student);
        if (FirstDifference(t, s) is not { } id) return;
        string Token(ITokenizer tok) => id < tok.VocabularySize ? $"\"{MessageText.Escape(tok.Piece(id))}\"" : "(none)";
        throw new EdgeTuneException($"{teacher}: the teacher's vocabulary ({t.VocabularySize} tokens) differs from the student's {student} ({s.VocabularySize} tokens): " +
            $"first difference at id {id}: teacher {Token(t)}, student {Token(s)}; distillation needs the student's tokenizer");
    }

    /// <summary>The first id whose piece differs (or that only one side has); null when the vocabularies are equal.</summary>
    public static int? FirstDifference(ITokenizer a, ITokenizer b)
    {
        int common = Math.Min(a.VocabularySize, b.VocabularySize);
        for (int id = 0; id < common; id++)
            if (!string.Equals(a.Piece(id), b.Piece(id), StringComparison.Ordinal)) return id;
        return a.VocabularySize == b.VocabularySize ? null : common;
    }
}
