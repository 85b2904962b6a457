using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Encodings.Web;
using System.Text.Json;
using EdgeTune.Core;
using EdgeTune.Evaluation;
using EdgeTune.Evaluation.Runners;
using EdgeTune.Inference;
using EdgeTune.Retrieval;

namespace EdgeTune.Cli.Commands;

/// <summary>
/// <c>edgetune retrieval index|search|bench</c>: the knowledge index (kb.etidx) the rag baseline measures and the
/// agent serves with ([retrieval] index in agent.toml).
/// </summary>
internal static class RetrievalCommand
{
    private static readonly JsonSerializerOptions Json = new() { WriteIndented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };
    private static readonly CultureInfo C = CultureInfo.InvariantCulture;

    public static Command Create(CliConsole console) =>
        new("retrieval", "Knowledge indexes for retrieval-augmented generation: build one from a folder of documents, search it, benchmark it.")
        {
            Index(console), Search(console), Bench(console),
        };

    /// <summary>The model's tokenizer (llama.cpp for a GGUF file, EdgeTune's own for a Hugging Face folder), as evaluation and the agent count.</summary>
    private static IInferenceModel OpenModel(string model, int threads)
    {
        if (!File.Exists(model) && !Directory.Exists(model)) throw new EdgeTuneException($"{model}: no such file or folder (--model)");
        return Evaluator.OpenEngine(model, null, threads, Evaluator.UsesLlamaCpp(model, null));
    }

    private static Command Index(CliConsole console)
    {
        var docs = new Argument<string>("DOCS") { Description = "The knowledge folder: Markdown (.md), text (.txt) and JSONL of {\"title\", \"text\"} (.jsonl), sub-folders included" };
        var output = new Option<string>("--out") { Description = "The index file to write or update (e.g. kb.etidx)", Required = true };
        var model = new Option<string>("--model") { Description = "The model the index serves (GGUF or Hugging Face folder): chunks are counted in its tokens", Required = true };
        var chunkTokens = new Option<int>("--chunk-tokens") { Description = "Target chunk size in the model's tokens", DefaultValueFactory = _ => 256 };
        var chunkOverlap = new Option<int>("--chunk-overlap") { Description = "Tokens shared by neighbouring chunks of a section", DefaultValueFactory = _ => 32 };
        var threads = new Option<int>("--threads") { Description = "CPU threads for llama.cpp (0: all cores)" };
        var json = new Option<bool>("--json") { Description = "Print the build's figures as JSON" };
        var command = new Command("index",
            "Build or update a knowledge index: documents chunked on headings and paragraphs to about --chunk-tokens of the model's " +
            "tokens, in SQLite with FTS5 (ranked by bm25()), keyed by each document's SHA-256: a rerun re-chunks only the documents " +
            "that changed and leaves an unchanged index alone. Files of other kinds are skipped with a warning; binary content, a " +
            "document over 10 MB or a chunk that cannot fit the model's context is refused naming the file. The file is replaced " +
            "whole. Serve it with [retrieval] index in agent.toml.\n\n" +
            "Example: edgetune retrieval index docs/ --out kb.etidx --model model.gguf")
        {
            docs, output, model, chunkTokens, chunkOverlap, threads, json,
        };
        command.SetAction(parse =>
        {
            string folder = parse.GetValue(docs)!, file = parse.GetValue(output)!, modelPath = parse.GetValue(model)!;
            if (!Directory.Exists(folder)) throw new EdgeTuneException($"{folder}: no such knowledge folder");
            using var engine = OpenModel(modelPath, parse.GetValue(threads));
            var options = new ChunkingOptions
            {
                ChunkTokens = parse.GetValue(chunkTokens),
                ChunkOverlap = parse.GetValue(chunkOverlap),
                Tokenize = engine.EncodePlain,
                // Half the context at most: the question, the system prompt and the answer need the rest.
                MaxChunkTokens = engine.ContextSize / 2,
            };
            var clock = Stopwatch.StartNew();
            var progress = new SyncProgress<IndexProgress>(p =>
            {
                if (p.Done == p.Total || p.Done % 100 == 0) console.Error.WriteLine($"index: {p.Done}/{p.Total} documents");
            });
            var result = KnowledgeIndex.Build(folder, file, options, Path.GetFileName(modelPath), w => console.Error.WriteLine($"edgetune: warning: {w}"), progress);
            double seconds = clock.Elapsed.TotalSeconds;
            if (parse.GetValue(json))
            {
                console.Out.WriteLine(JsonSerializer.Serialize(new
                {
                    index = Path.GetFullPath(file), files = result.Files, files_chunked = result.FilesChunked, files_kept = result.FilesKept,
                    files_removed = result.FilesRemoved, chunks = result.Chunks, bytes = result.Bytes, up_to_date = result.UpToDate,
                    chunk_tokens = options.ChunkTokens, chunk_overlap = options.ChunkOverlap, tokenizer = KnowledgeIndex.Fingerprint(engine.EncodePlain),
                    seconds = Math.Round(seconds, 3),
                }, Json));
            }
            else
            {
                console.Out.WriteLine(result.UpToDate
                    ? $"{file}: up to date ({result.Files} documents unchanged, {result.Chunks} chunks)"
                    : string.Create(C, $"{file}: {result.Chunks} chunks from {result.Files} documents ({result.FilesChunked} chunked, {result.FilesKept} unchanged, {result.FilesRemoved} removed), {result.Bytes / 1024.0:0.#} KiB in {seconds:0.##} s"));
            }
            return CliApp.Success;
        });
        return command;
    }

    private static Command Search(CliConsole console)
    {
        var index = new Argument<string>("INDEX") { Description = "A knowledge index written by 'edgetune retrieval index'" };
        var query = new Option<string>("--query") { Description = "The question to retrieve for", Required = true };
        var topK = new Option<int>("--top-k") { Description = "How many chunks", DefaultValueFactory = _ => 4 };
        var json = new Option<bool>("--json") { Description = "Print the hits (chunk id, file, line, score, text) as JSON" };
        var command = new Command("search",
            "Show the chunks a question retrieves, best first (bm25(), lower scores rank higher): what the rag baseline and the agent " +
            "would place in the system prompt.\n\nExample: edgetune retrieval search kb.etidx --query \"How long is the RouterX warranty?\"")
        {
            index, query, topK, json,
        };
        command.SetAction(parse =>
        {
            int k = parse.GetValue(topK);
            if (k < 1) throw new EdgeTuneException($"--top-k {k}: at least 1");
            using var kb = KnowledgeIndex.Open(parse.GetValue(index)!);
            var hits = kb.Search(parse.GetValue(query)!, k);
            if (parse.GetValue(json))
                console.Out.WriteLine(JsonSerializer.Serialize(hits.Select(h => new
                {
                    chunk_id = h.Chunk.ChunkId, file = h.Chunk.File, line = h.Chunk.Line, heading = h.Chunk.Heading, tokens = h.Chunk.Tokens,
                    score = Math.Round(h.Score, 6), text = h.Chunk.Text,
                }), Json));
            else if (hits.Count == 0)
                console.Out.WriteLine("no chunk shares a word with the query");
            else
                foreach (var h in hits)
                    console.Out.WriteLine(string.Create(C, $"{h.Chunk.ChunkId}  (line {h.Chunk.Line}, {h.Chunk.Tokens} tokens, bm25 {h.Score:0.###})  {h.Chunk.Heading}\n    {h.Chunk.Text.ReplaceLineEndings(" ")}"));
            return CliApp.Success;
        });
        return command;
    }

    private static Command Bench(CliConsole console)
    {
        var chunks = new Option<int>("--chunks") { Description = "Chunks in the generated index", DefaultValueFactory = _ => 10_000 };
        var queries = new Option<int>("--queries") { Description = "Queries timed", DefaultValueFactory = _ => 2000 };
        var topK = new Option<int>("--top-k") { Description = "Chunks per query", DefaultValueFactory = _ => 4 };
        var json = new Option<bool>("--json") { Description = "Print the figures as JSON" };
        var command = new Command("bench",
            "Benchmark the knowledge index on this machine: build a generated knowledge base of --chunks one-section documents " +
            "(counted with a word tokenizer, so the figure is the index's, not a model's), then time --queries top-k searches. " +
            "Prints documents/s, index bytes and query latency p50/p95 with the machine noted. Target: query p95 ≤ 5 ms.\n\n" +
            "Example: edgetune retrieval bench --json")
        {
            chunks, queries, topK, json,
        };
        command.SetAction(parse =>
        {
            int n = parse.GetValue(chunks), q = parse.GetValue(queries), k = parse.GetValue(topK);
            if (n < 1 || q < 1 || k < 1) throw new EdgeTuneException("--chunks, --queries and --top-k must be at least 1");
            string dir = Path.Combine(Path.GetTempPath(), "edgetune-retrieval-bench-" + Guid.NewGuid().ToString("N")[..8]);
            try
            {
                string docs = Path.Combine(dir, "docs");
                var questions = BenchCorpus.Write(docs, n);
                var options = new ChunkingOptions { ChunkTokens = 256, ChunkOverlap = 32, Tokenize = BenchCorpus.Words };
                console.Error.WriteLine($"bench: indexing {n} documents");
                var clock = Stopwatch.StartNew();
                var built = KnowledgeIndex.Build(docs, Path.Combine(dir, "kb.etidx"), options, "word tokenizer");
                double buildSeconds = clock.Elapsed.TotalSeconds;
                using var kb = KnowledgeIndex.Open(Path.Combine(dir, "kb.etidx"));
                for (int i = 0; i < Math.Min(50, q); i++) kb.Search(questions[i % questions.Count], k); // warm-up
                var ms = new double[q];
                for (int i = 0; i < q; i++)
                {
                    long start = Stopwatch.GetTimestamp();
                    kb.Search(questions[(i * 7919) % questions.Count], k);
                    ms[i] = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
                }
                Array.Sort(ms);
                double p50 = ms[(int)(0.50 * (q - 1))], p95 = ms[(int)(0.95 * (q - 1))];
                string machine = $"{Environment.ProcessorCount} cores, {System.Runtime.InteropServices.RuntimeInformation.OSDescription}, {System.Runtime.InteropServices.RuntimeInformation.ProcessArchitecture}";
                if (parse.GetValue(json))
                    console.Out.WriteLine(JsonSerializer.Serialize(new
                    {
                        documents = built.Files, chunks = built.Chunks, build_seconds = Math.Round(buildSeconds, 3),
                        documents_per_second = Math.Round(built.Files / buildSeconds, 1), index_bytes = built.Bytes,
                        queries = q, top_k = k, query_p50_ms = Math.Round(p50, 4), query_p95_ms = Math.Round(p95, 4), machine,
                    }, Json));
                else
                {
                    console.Out.WriteLine(string.Create(C, $"index build: {built.Files} documents, {built.Chunks} chunks in {buildSeconds:0.##} s ({built.Files / buildSeconds:0} documents/s), {built.Bytes / (1024.0 * 1024):0.##} MiB"));
                    console.Out.WriteLine(string.Create(C, $"query top-{k}: p50 {p50:0.###} ms, p95 {p95:0.###} ms over {q} queries (target p95 ≤ 5 ms)"));
                    console.Out.WriteLine($"machine: {machine}");
                }
                return CliApp.Success;
            }
            finally
            {
                try { Directory.Delete(dir, recursive: true); } catch (IOException) { }
            }
        });
        return command;
    }

    /// <summary>A generated knowledge base for the benchmark: one short section per document, with questions about them.</summary>
    private static class BenchCorpus
    {
        private static readonly string[] Topics = ["warranty", "returns", "routing", "firmware", "pricing", "shipping", "setup", "battery", "mounting", "cleaning"];
        private static readonly string[] Vocabulary = ["the", "device", "support", "customer", "must", "within", "days", "team", "ticket", "update", "policy", "order", "after", "before", "check"];

        public static List<string> Write(string folder, int count)
        {
            Directory.CreateDirectory(folder);
            var rng = new Random(1);
            var questions = new List<string>();
            for (int i = 0; i < count; i++)
            {
                string product = $"model{i / Topics.Length}", topic = Topics[i % Topics.Length];
                var filler = string.Join(' ', Enumerable.Range(0, 60).Select(_ => Vocabulary[rng.Next(Vocabulary.Length)]));
                File.WriteAllText(Path.Combine(folder, $"{product}-{topic}.md"), $"# {product} {topic}\n\nThe {product} {topic} rule is number {rng.Next(1000)}. {filler}\n");
                questions.Add($"What is the {topic} rule of the {product}?");
            }
            return questions;
        }

        public static int[] Words(string text) => text.Split((char[])[' ', '\n', '\t'], StringSplitOptions.RemoveEmptyEntries).Select(w => w.Length).ToArray();
    }
}
