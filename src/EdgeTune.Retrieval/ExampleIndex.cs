using Microsoft.Data.Sqlite;

namespace EdgeTune.Retrieval;

/// <summary>
/// Retrieved few-shot: an in-memory FTS5 index over the prompts of the examples it is given, ranked by bm25(). It
/// holds exactly what it was constructed with; evaluation gives it the training split only, so a test or eval row
/// can never be shown as a demonstration.
/// </summary>
public sealed class ExampleIndex : IDisposable
{
    private readonly SqliteConnection connection;
    private readonly List<string> ids = [];

    public ExampleIndex(IEnumerable<(string Id, string Text)> examples)
    {
        connection = new SqliteConnection("Data Source=:memory:");
        connection.Open();
        using (var create = connection.CreateCommand())
        {
            create.CommandText = "CREATE VIRTUAL TABLE examples USING fts5(text, tokenize = 'porter unicode61'); CREATE VIRTUAL TABLE examples_vocab USING fts5vocab(examples, 'row')";
            create.ExecuteNonQuery();
        }
        using var tx = connection.BeginTransaction();
        using var insert = connection.CreateCommand();
        insert.CommandText = "INSERT INTO examples(rowid, text) VALUES ($r, $t)";
        var pr = insert.Parameters.Add("$r", SqliteType.Integer);
        var pt = insert.Parameters.Add("$t", SqliteType.Text);
        foreach (var (id, text) in examples)
        {
            pr.Value = ids.Count;
            pt.Value = text;
            insert.ExecuteNonQuery();
            ids.Add(id);
        }
        tx.Commit();
    }

    public int Count => ids.Count;

    /// <summary>The ids of the <paramref name="k"/> examples most similar to <paramref name="query"/>, best first (ties in insertion order).</summary>
    public IReadOnlyList<string> Search(string query, int k) =>
        FtsQuery.Search(connection, "examples_vocab", query, ids.Count, k, match => SearchMatch(match, k));

    private List<string> SearchMatch(string match, int k)
    {
        using var cmd = connection.CreateCommand();
        cmd.CommandText = "SELECT rowid FROM examples WHERE examples MATCH $q ORDER BY bm25(examples), rowid LIMIT $k";
        cmd.Parameters.AddWithValue("$q", match);
        cmd.Parameters.AddWithValue("$k", k);
        var result = new List<string>(k);
        using var reader = cmd.ExecuteReader();
        while (reader.Read()) result.Add(ids[(int)reader.GetInt64(0)]);
        return result;
    }

    public void Dispose() => connection.Dispose();
}
