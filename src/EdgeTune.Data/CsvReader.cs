using System.Text;
using EdgeTune.Core;

namespace EdgeTune.Data;

/// <summary>
/// CSV (RFC 4180: quoted fields may hold separators, doubled quotes and newlines) with a header row. Columns
/// are mapped to example parts by <see cref="FieldMapping"/>; a header without the needed columns is one
/// fatal finding on line 1. A quoted field spanning lines is reported at the line where its row starts.
/// </summary>
internal static class CsvReader
{
    public static IEnumerable<ReadItem> Read(string path, char separator, ReadOptions options)
    {
        var f = options.Fields;
        using var stream = File.OpenRead(path);
        string[]? header = null;
        var pending = new StringBuilder();
        long rowStart = 0;
        foreach (var raw in LineReader.Read(stream, options.MaxLineBytes))
        {
            if (raw.Problem is not null)
            {
                yield return DatasetReader.Malformed(path, raw.Number, raw.Problem, raw.Fatal);
                pending.Clear();
                if (raw.Fatal || header is null) yield break;
                continue;
            }
            if (pending.Length == 0) rowStart = raw.Number;
            else pending.Append('\n');
            pending.Append(raw.Text);
            if (pending.Length > options.MaxLineBytes)
            {
                yield return DatasetReader.Malformed(path, rowStart, "quoted field never closes (row longer than the line limit); reading stopped", true);
                yield break;
            }
            if (!TrySplit(pending.ToString(), separator, out var cells)) continue; // inside a quoted field: the row goes on
            pending.Clear();
            if (header is null)
            {
                header = cells.Select(c => c.Trim()).ToArray();
                string? missing = MissingColumn(header, f);
                if (missing is not null)
                {
                    yield return DatasetReader.Malformed(path, rowStart, $"header has no column {missing} (columns: {MessageText.OneLine(string.Join(", ", header))}; use --map)", true);
                    yield break;
                }
                continue;
            }
            if (cells.Count == 1 && cells[0].Length == 0) continue;
            if (cells.Count != header.Length)
            {
                yield return DatasetReader.Malformed(path, rowStart, $"{cells.Count} fields, the header has {header.Length}");
                continue;
            }
            var fields = new Dictionary<string, string?>(StringComparer.Ordinal);
            for (int i = 0; i < header.Length; i++) fields[header[i]] = cells[i];
            var provenance = DatasetReader.ProvenanceKeys.Where(k => fields.TryGetValue(k, out var v) && !string.IsNullOrEmpty(v)).ToDictionary(k => k, k => fields[k]!);
            var item = DatasetReader.FromFields(fields, path, rowStart, f, provenance);
            if (options.Stratify is { } field && item.Example is { } e)
                item = new(e with { Stratum = Strata.Resolve(fields, field, e.Answer) ?? Strata.Missing }, null);
            yield return item;
        }
        if (pending.Length > 0) yield return DatasetReader.Malformed(path, rowStart, "quoted field never closes before the end of the file");
    }

    private static string? MissingColumn(string[] header, FieldMapping f)
    {
        bool Has(string c) => header.Contains(c, StringComparer.Ordinal);
        if (Has(f.Instruction)) return Has(f.Output) ? null : $"'{f.Output}'";
        if (Has(f.Prompt)) return f.Completion.Any(Has) ? null : $"'{string.Join("' or '", f.Completion)}'";
        return $"'{f.Prompt}' (or '{f.Instruction}')";
    }

    /// <summary>Splits one row; false when a quoted field is still open at the end (the row continues on the next line).</summary>
    internal static bool TrySplit(string row, char separator, out List<string> cells)
    {
        cells = [];
        var cell = new StringBuilder();
        bool quoted = false;
        for (int i = 0; i < row.Length; i++)
        {
            char c = row[i];
            if (quoted)
            {
                if (c != '"') cell.Append(c);
                else if (i + 1 < row.Length && row[i + 1] == '"') { cell.Append('"'); i++; }
                else quoted = false;
            }
            else if (c == '"' && cell.Length == 0) quoted = true;
            else if (c == separator) { cells.Add(cell.ToString()); cell.Clear(); }
            else cell.Append(c);
        }
        cells.Add(cell.ToString());
        return !quoted;
    }
}
