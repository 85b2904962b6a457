using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using EdgeTune.Core;

namespace EdgeTune.Retrieval;

/// <summary>One document of a knowledge folder: a Markdown or text file, or one line of a JSONL file.</summary>
/// <summary>A JSONL document sits on one line of its file (<see cref="OneLine"/>): every line of its text is that line.</summary>
public sealed record KnowledgeDocument(string Title, string Text, int Line, bool Markdown, bool OneLine = false);

/// <summary>A file of the knowledge folder with its content hash (the index is keyed by it) and its documents.</summary>
public sealed record KnowledgeFile(string RelativePath, string Sha256, long Bytes, IReadOnlyList<KnowledgeDocument> Documents);

/// <summary>
/// Reads a knowledge folder: Markdown (.md, .markdown), plain text (.txt) and JSONL of {"title", "text"} (.jsonl),
/// in sub-folders too, in ordinal path order. Hidden files and folders (a leading dot) are not read. Other files
/// (images, PDFs) are skipped with a warning, since documentation folders hold them beside the text. A document
/// that would mislead the index is refused in one line naming the file: binary content in a text file, a file
/// over <see cref="MaxFileBytes"/>, malformed JSONL, or a folder with no documents at all.
/// </summary>
public static class KnowledgeFolder
{
    public const long MaxFileBytes = 10L * 1024 * 1024;
    public static readonly string[] Extensions = [".md", ".markdown", ".txt", ".jsonl"];

    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    public static IReadOnlyList<KnowledgeFile> Read(string folder, Action<string>? warn = null)
    {
        if (!Directory.Exists(folder)) throw new EdgeTuneException($"{folder}: no such knowledge folder");
        string root = Path.GetFullPath(folder);
        var files = new List<KnowledgeFile>();
        foreach (var path in Enumerate(root))
        {
            string relative = Path.GetRelativePath(root, path).Replace('\\', '/');
            string ext = Path.GetExtension(path).ToLowerInvariant();
            if (!Extensions.Contains(ext))
            {
                warn?.Invoke($"{path}: skipped (a knowledge folder is read for {string.Join(", ", Extensions)} files)");
                continue;
            }
            files.Add(ReadFile(path, relative, ext));
        }
        if (files.Sum(f => f.Documents.Count) == 0)
            throw new EdgeTuneException($"{folder}: no knowledge documents (Markdown .md, text .txt or JSONL .jsonl of {{\"title\", \"text\"}}) with any text");
        return files;
    }

    private static IEnumerable<string> Enumerate(string root)
    {
        var options = new EnumerationOptions { RecurseSubdirectories = false, AttributesToSkip = 0, IgnoreInaccessible = false };
        foreach (var file in Directory.EnumerateFiles(root, "*", options).Order(StringComparer.Ordinal))
            if (!Path.GetFileName(file).StartsWith('.')) yield return file;
        foreach (var dir in Directory.EnumerateDirectories(root, "*", options).Order(StringComparer.Ordinal))
            if (!Path.GetFileName(dir).StartsWith('.'))
                foreach (var file in Enumerate(dir)) yield return file;
    }

    internal static KnowledgeFile ReadFile(string path, string relative, string ext)
    {
        long length = new FileInfo(path).Length;
        if (length > MaxFileBytes)
            throw new EdgeTuneException($"{path}: {length / (1024.0 * 1024):0.#} MB, over the {MaxFileBytes / (1024 * 1024)} MB a knowledge document may have (split it into smaller files)");
        byte[] bytes = File.ReadAllBytes(path);
        int nul = Array.IndexOf(bytes, (byte)0);
        if (nul >= 0) throw FileFormatException.AtOffset(path, nul, "a NUL byte: binary content, not a text document (remove it from the knowledge folder)");
        string text;
        try
        {
            text = StrictUtf8.GetString(bytes);
        }
        catch (DecoderFallbackException e)
        {
            throw FileFormatException.AtOffset(path, Math.Max(0, e.Index), "not UTF-8 text (binary content, or another encoding: save it as UTF-8)");
        }
        if (text.Length > 0 && text[0] == '\uFEFF') text = text[1..];
        string hash = Convert.ToHexStringLower(SHA256.HashData(bytes));
        string title = Path.GetFileNameWithoutExtension(path);
        var documents = new List<KnowledgeDocument>();
        if (ext == ".jsonl")
        {
            var lines = text.Split('\n');
            for (int i = 0; i < lines.Length; i++)
            {
                string line = lines[i].Trim();
                if (line.Length == 0) continue;
                var (t, body) = ParseJsonLine(path, i + 1, line);
                if (body.Trim().Length > 0) documents.Add(new KnowledgeDocument(t ?? $"{title}:{i + 1}", body, i + 1, Markdown: false, OneLine: true));
            }
        }
        else if (text.Trim().Length > 0)
        {
            documents.Add(new KnowledgeDocument(title, text, 1, Markdown: ext is ".md" or ".markdown"));
        }
        return new KnowledgeFile(relative, hash, length, documents);
    }

    private static (string? Title, string Text) ParseJsonLine(string path, int line, string json)
    {
        try
        {
            using var doc = JsonDocument.Parse(json);
            if (doc.RootElement.ValueKind != JsonValueKind.Object) throw new EdgeTuneException($"{path}:{line}: expected a JSON object {{\"title\", \"text\"}}");
            if (!doc.RootElement.TryGetProperty("text", out var text) || text.ValueKind != JsonValueKind.String)
                throw new EdgeTuneException($"{path}:{line}: no string \"text\" field (knowledge JSONL lines are {{\"title\", \"text\"}})");
            string? title = doc.RootElement.TryGetProperty("title", out var t)
                ? t.ValueKind == JsonValueKind.String ? t.GetString() : throw new EdgeTuneException($"{path}:{line}: \"title\" must be a string")
                : null;
            return (title, text.GetString()!);
        }
        catch (JsonException e)
        {
            throw new EdgeTuneException($"{path}:{line}: not JSON ({MessageText.Escape(e.Message)})");
        }
    }
}
