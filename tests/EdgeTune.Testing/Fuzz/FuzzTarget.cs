using System.Buffers.Binary;
using System.Text;
using EdgeTune.Core;
using EdgeTune.Data;
using EdgeTune.Formats.Gguf;
using EdgeTune.Formats.Safetensors;
using EdgeTune.Profiles;
using EdgeTune.Recipes;

namespace EdgeTune.Testing.Fuzz;

/// <summary>
/// A reader under fuzz: a valid seed input, how to break it, and how the product consumes a file of that format.
/// <see cref="Consume"/> returns whether the input was refused (a reader that reports problems instead of throwing,
/// as the dataset reader does, returns true when it reported an error) and throws <see cref="EdgeTuneException"/> to
/// refuse; <see cref="CheckMessage"/> says what is wrong with a refusal's message, or null when it is clear.
/// </summary>
public sealed record FuzzTarget(string Name, string Extension, Func<byte[]> Seed, Func<byte[], Random, byte[]> Mutate, Func<string, bool> Consume)
{
    public Func<string, string, string?> CheckMessage { get; init; } = NamesTheFileOnOneLine;

    /// <summary>The CLI prints the message as the one line of a failure: it must name the file (then the place) and be one line.</summary>
    public static string? NamesTheFileOnOneLine(string message, string path) =>
        message.Contains('\n') ? $"a message of several lines: {message}"
        : !message.StartsWith(path + ":", StringComparison.Ordinal) ? $"a message that does not start with the file name: {message}"
        : null;
}

/// <summary>The formats fuzzed in the unit suite (a seeded slice) and by `EdgeTune.Benchmarks fuzz` (10,000 and more each).</summary>
public static class FuzzTargets
{
    public static IReadOnlyList<FuzzTarget> All { get; } = [Gguf(), Safetensors(), Jsonl(), Csv(), Recipe(), Profile()];

    public static FuzzTarget Get(string name) =>
        All.FirstOrDefault(t => string.Equals(t.Name, name, StringComparison.OrdinalIgnoreCase))
        ?? throw new ArgumentException($"unknown format '{name}'; choose among {string.Join(", ", All.Select(t => t.Name))}");

    // ---- GGUF ------------------------------------------------------------------------------------------------------

    /// <summary>A GGUF with every metadata value type (arrays of each included) and a quantised and an F32 tensor.</summary>
    public static FuzzTarget Gguf()
    {
        byte[] seed = GgufSeed(out int headerEnd);
        return new FuzzTarget("gguf", ".gguf", () => seed, (valid, random) => Mutations.Binary(valid, random, headerEnd), path =>
        {
            using var file = GgufFile.Open(path);
            foreach (var (_, value) in file.Metadata) _ = value.ToString();
            foreach (var tensor in file.Tensors)
            {
                var data = file.GetData(tensor);
                if (data.Length > 0) _ = data.Span(0, 1)[0] + data.Span(data.Length - 1, 1)[0]; // the first and last byte are in the file
            }
            return false;
        });
    }

    private static byte[] GgufSeed(out int headerEnd)
    {
        var writer = new GgufWriter();
        writer.Metadata.Set("general.architecture", GgufValue.String("llama"));
        writer.Metadata.Set("general.alignment", GgufValue.U32(32));
        writer.Metadata.Set("t.u8", GgufValue.U8(200));
        writer.Metadata.Set("t.i8", GgufValue.I8(-100));
        writer.Metadata.Set("t.u16", GgufValue.U16(65000));
        writer.Metadata.Set("t.i16", GgufValue.I16(-32000));
        writer.Metadata.Set("t.u32", GgufValue.U32(4_000_000_000));
        writer.Metadata.Set("t.i32", GgufValue.I32(-2_000_000_000));
        writer.Metadata.Set("t.f32", GgufValue.F32(1e-5f));
        writer.Metadata.Set("t.bool", GgufValue.Bool(true));
        writer.Metadata.Set("t.string", GgufValue.String("héllo ✓ {{ chat template }}"));
        writer.Metadata.Set("t.u64", GgufValue.U64(ulong.MaxValue));
        writer.Metadata.Set("t.i64", GgufValue.I64(long.MinValue));
        writer.Metadata.Set("t.f64", GgufValue.F64(Math.PI));
        writer.Metadata.Set("a.u8", GgufValue.Array(new byte[] { 1, 2, 255 }));
        writer.Metadata.Set("a.i32", GgufValue.Array(new[] { -7, 8 }));
        writer.Metadata.Set("a.f32", GgufValue.Array(new[] { 0.5f, -0f, float.PositiveInfinity }));
        writer.Metadata.Set("a.bool", GgufValue.Array(new[] { true, false }));
        writer.Metadata.Set("tokenizer.ggml.tokens", GgufValue.Array(new[] { "<s>", "</s>", "▁a", "" }));
        writer.AddTensor("blk.0.attn_q.weight", GgmlType.Q8_0, [64, 2], new byte[136]);
        writer.AddTensor("norm", GgmlType.F32, [8], new byte[32]);
        using var dir = new TempDir();
        string path = dir.File("seed.gguf");
        writer.Write(path);
        using (var file = GgufFile.Open(path)) headerEnd = (int)file.DataOffset;
        return File.ReadAllBytes(path);
    }

    // ---- safetensors -----------------------------------------------------------------------------------------------

    /// <summary>Bytes that turn one valid JSON shape into another, more often than random bytes do.</summary>
    private static readonly byte[] JsonBytes = "{}[]\",:-0123456789 eE.\\u\n"u8.ToArray().Concat(new byte[] { 0, 0x7f, 0x80, 0xc3, 0xff }).ToArray();

    /// <summary>A safetensors file with metadata, six dtypes, a scalar and an empty tensor; mutations inside the JSON header and its length.</summary>
    public static FuzzTarget Safetensors()
    {
        byte[] seed = SafetensorsSeed();
        int headerEnd = 8 + (int)BinaryPrimitives.ReadUInt64LittleEndian(seed);
        return new FuzzTarget("safetensors", ".safetensors", () => seed, (valid, random) => MutateSafetensors(valid, headerEnd, random), path =>
        {
            using var file = SafetensorsFile.Open(path);
            // Whatever the header claimed, every accessor must stay inside the file.
            foreach (var tensor in file.Tensors)
            {
                _ = file.GetBytes(tensor.Name).ToArray();
                if (tensor.DType is SafetensorsDType.F32 or SafetensorsDType.F16 or SafetensorsDType.BF16 or SafetensorsDType.F64)
                    file.ReadAsFloat32(tensor.Name, new float[tensor.ElementCount]);
            }
            return false;
        });
    }

    private static byte[] SafetensorsSeed()
    {
        static byte[] Random(int seed, int count)
        {
            var bytes = new byte[count];
            new Random(seed).NextBytes(bytes);
            return bytes;
        }
        var writer = new SafetensorsWriter();
        writer.Metadata["format"] = "pt";
        writer.Metadata["source"] = "fuzz";
        writer.AddTensor("a.weight", SafetensorsDType.F32, [2, 3], Random(1, 24));
        writer.AddTensor("b.bias", SafetensorsDType.F16, [3], Random(2, 6));
        writer.AddTensor("c", SafetensorsDType.BF16, [1, 2], Random(3, 4));
        writer.AddTensor("d", SafetensorsDType.F64, [], Random(4, 8));
        writer.AddTensor("e", SafetensorsDType.I8, [5], Random(5, 5));
        writer.AddTensor("empty", SafetensorsDType.I64, [0], Array.Empty<byte>());
        using var dir = new TempDir();
        string path = dir.File("seed.safetensors");
        writer.Write(path);
        return File.ReadAllBytes(path);
    }

    private static byte[] MutateSafetensors(byte[] valid, int headerEnd, Random random)
    {
        var bytes = new List<byte>(valid);
        int mutations = random.Next(1, 4);
        for (int m = 0; m < mutations; m++)
        {
            int end = Math.Min(headerEnd, bytes.Count);
            if (end <= 8) break;
            int at = random.Next(8, end);
            switch (random.Next(8))
            {
                case 0: bytes[at] ^= (byte)(1 << random.Next(8)); break;
                case 1: bytes[at] = JsonBytes[random.Next(JsonBytes.Length)]; break;
                case 2: bytes[at] = (byte)random.Next(256); break;
                case 3:
                    int cut = random.Next(0, bytes.Count);
                    bytes.RemoveRange(cut, bytes.Count - cut);
                    break;
                case 4: bytes.RemoveAt(at); break;
                case 5: bytes.Insert(at, JsonBytes[random.Next(JsonBytes.Length)]); break;
                case 6: SetHeaderLength(bytes, random, headerEnd); break;
                default: bytes[at] = (byte)random.Next('0', '9' + 1); break; // numbers: offsets and shapes
            }
        }
        return bytes.ToArray();
    }

    private static void SetHeaderLength(List<byte> bytes, Random random, int headerEnd)
    {
        if (bytes.Count < 8) return;
        ulong current = (ulong)(headerEnd - 8);
        ulong value = random.Next(6) switch
        {
            0 => 1UL << random.Next(64),
            1 => ulong.MaxValue - (ulong)random.Next(16),
            2 => (ulong)random.NextInt64(),
            3 => current + (ulong)random.Next(-8, 9),
            4 => (ulong)bytes.Count - 8 + (ulong)random.Next(0, 3),
            _ => (ulong)random.Next(0, 16),
        };
        var span = new byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(span, value);
        for (int i = 0; i < 8; i++) bytes[i] = span[i];
    }

    // ---- datasets --------------------------------------------------------------------------------------------------

    private static readonly string[] JsonTokens =
    [
        "{", "}", "[", "]", "\"", ",", ":", "\\", "\\u", "\\ud800", "\\u0000", "null", "true", "false", "-", "1e999", "-0", "0.5",
        "\n", "\r\n", "\r", "\t", " ", "\uFEFF", "\u2028", "\"messages\"", "\"role\"", "\"content\"", "\"assistant\"", "\"user\"",
        "\"system\"", "\"tool\"", "\"instruction\"", "\"output\"", "\"input\"", "\"prompt\"", "\"completion\"", "\"response\"",
        "\"label\"", "\"provenance\"", "\"source\"", "[]", "{}", "\"\"", "12345678901234567890", "NaN", "/*", "//",
    ];

    /// <summary>JSONL of every row shape the reader knows (chat messages, Alpaca, prompt/completion, labels, provenance), read and checked.</summary>
    public static FuzzTarget Jsonl()
    {
        byte[] seed = Encoding.UTF8.GetBytes(string.Join('\n',
        [
            """{"messages": [{"role": "system", "content": "Triage the ticket."}, {"role": "user", "content": "The printer is jammed."}, {"role": "assistant", "content": "{\"category\": \"hardware\"}"}], "label": "hardware"}""",
            """{"instruction": "Summarise the note.", "input": "Meeting moved to Friday at 10.", "output": "Friday 10:00.", "label": "calendar"}""",
            """{"prompt": "Translate 'cat' to French.", "completion": "chat", "provenance": {"source": "field", "device": "pi5-01"}}""",
            """{"prompt": "Capital of France?", "response": "Paris", "source": "manual", "feedback": 1, "label": "geo"}""",
            """{"messages": [{"role": "user", "content": "Hi ünïcode ✓"}, {"role": "assistant", "content": "Hello."}]}""",
            """{"instruction": "Add 2 and 3.", "output": "5"}""",
        ]) + "\n");
        return new FuzzTarget("jsonl", ".jsonl", () => seed, (valid, random) => Mutations.Text(valid, random, JsonTokens), CheckDataset);
    }

    private static readonly string[] CsvTokens =
    [
        ",", "\"", "\"\"", "\n", "\r\n", "\r", "\t", ";", " ", "\uFEFF", "\u0000", "instruction", "output", "input", "prompt",
        "completion", "label", "system", ",,,,", "\"a,b\"", "\"line\nbreak\"", "\"unclosed", "é", "\u2028",
    ];

    /// <summary>CSV with a header row, quoted commas, quotes and line breaks, read and checked.</summary>
    public static FuzzTarget Csv()
    {
        byte[] seed = Encoding.UTF8.GetBytes(
            "instruction,input,output,label\n" +
            "Summarise the note.,\"Meeting moved to Friday, 10:00.\",Friday 10:00.,calendar\n" +
            "\"Say \"\"hi\"\"\",,hi,greeting\n" +
            "Two lines?,\"first\nsecond\",\"ok, two\",misc\n" +
            "Capital of France?,,Paris,geo\n" +
            "ünïcode ✓,,fine,misc\n");
        return new FuzzTarget("csv", ".csv", () => seed, (valid, random) => Mutations.Text(valid, random, CsvTokens), CheckDataset);
    }

    /// <summary>
    /// `edgetune data check` on the file: the reader and the checker (lengths in words, stratified by label). Bad
    /// rows are findings, never exceptions; each finding must name this file and a line (0 for the file as a whole)
    /// on one line of text. Refused when there is an error finding.
    /// </summary>
    private static bool CheckDataset(string path)
    {
        var checker = new DataChecker(new CheckOptions { TokenCount = e => e.Messages.Sum(m => m.Content.Split(' ').Length), MaxTokens = 200, MinExamples = 2 });
        checker.AddFile(path);
        foreach (var item in DatasetReader.Read(path, new ReadOptions { Stratify = "label" })) checker.Add(item);
        var report = checker.Finish();
        foreach (var f in report.Findings)
        {
            if (f.File != path) throw new FuzzViolationException($"finding {f.Kind} names {f.File}, not the file read");
            if (f.Line < 0) throw new FuzzViolationException($"finding {f.Kind} has line {f.Line}");
            if (f.Message.Length == 0 || f.Message.Contains('\n')) throw new FuzzViolationException($"finding {f.Kind} at line {f.Line} has an empty or multi-line message: {f.Message}");
        }
        return report.Errors > 0;
    }

    // ---- TOML: recipes and profiles --------------------------------------------------------------------------------

    private static readonly string[] TomlTokens =
    [
        "[", "]", "[[", "]]", "=", "\"", "'", "\"\"\"", "'''", "\\", "\\u", "\\U0010FFFF", "\\uD800", "\\u0000", "#", "\n", "\r\n",
        "\t", " ", ".", ",", "{", "}", "{ value = 1 }", "inf", "-inf", "nan", "1e999", "-0", "0x7f", "0o17", "0b101", "1_000",
        "9223372036854775808", "-9223372036854775809", "true", "false", "1979-05-27T07:32:00Z", "07:32:00", "\"\"", "[]",
        "model", "data", "adapter", "train", "output", "eval", "extends", "unit", "value", "source", "GB", "MB", "W", "tokens/s",
    ];

    /// <summary>A recipe that sets every section and most keys.</summary>
    public static FuzzTarget Recipe()
    {
        byte[] seed = Encoding.UTF8.GetBytes("""
            # A recipe that sets most keys (fuzz seed).
            [model]
            base = "models/base.gguf"
            chat_template = "{% for m in messages %}{{ m.content }}{% endfor %}"

            [data]
            train = "data/train.jsonl"
            eval = "data/eval.jsonl"
            test = "data/test.jsonl"
            map = ["instruction=question", "output=answer"]
            train_on_inputs = false

            [adapter]
            method = "qlora"
            rank = 16
            alpha = 32
            dropout = 0.05
            targets = ["q", "k", "v", "o", "gate", "up", "down"]
            rslora = false

            [train]
            learning_rate = 2e-4
            epochs = 3
            max_steps = 1000
            batch_size = 4
            gradient_accumulation = 4
            max_seq_len = 1024
            seed = 42
            warmup_ratio = 0.03
            schedule = "cosine"
            weight_decay = 0.0
            max_grad_norm = 0.3
            checkpoint_every = 100
            eval_every = 50
            early_stopping_patience = 3

            [output]
            dir = "runs/triage"

            [eval]
            task = "extraction"
            metrics = ["exact_match", "json_valid", "field_accuracy"]
            system_prompt = "Answer with JSON."
            few_shot = 3
            max_new_tokens = 64
            primary_metric = "field_accuracy"
            target_metric = "field_accuracy"
            target_value = 0.9
            trim = true
            seed = 1
            bootstrap_resamples = 1000
            """);
        return new FuzzTarget("recipe", ".toml", () => seed, (valid, random) => Mutations.Text(valid, random, TomlTokens), path =>
        {
            _ = Recipes.Recipe.Load(path);
            return false;
        });
    }

    /// <summary>A device profile with every section, values with units and sources, power modes and budgets.</summary>
    public static FuzzTarget Profile()
    {
        const string Src = "source = \"https://www.nvidia.com/en-us/autonomous-machines/embedded-systems/jetson-orin/\"";
        byte[] seed = Encoding.UTF8.GetBytes($$"""
            # A Jetson profile (fuzz seed).
            schema = 1
            name = "fuzz"
            display_name = "NVIDIA Jetson Orin Nano 8GB"
            description = "Orin Nano 8GB module at the 7 W / 15 W clocks."

            [identity]
            vendor = "NVIDIA"
            soc = "Orin (T234)"
            module = "Jetson Orin Nano 8GB"
            architecture = "aarch64"
            device_tree_ids = ["nvidia,p3767-0003", "nvidia,p3767-0005"]

            [cpu]
            model = "Arm Cortex-A78AE"
            cores = { value = 6, {{Src}}, note = "6-core CPU" }
            isa = { value = "armv8.2-a", {{Src}} }
            max_frequency = { value = 1.5, unit = "GHz", {{Src}} }

            [gpu]
            model = "NVIDIA Ampere (GA10B)"
            compute_capability = { value = "8.7", source = "https://developer.nvidia.com/cuda-gpus" }
            cuda_cores = { value = 1024, {{Src}} }
            tensor_cores = { value = 32, {{Src}} }
            max_frequency = { value = 625, unit = "MHz", {{Src}} }

            [memory]
            type = "LPDDR5, 128-bit"
            unified = true
            total = { value = 8, unit = "GB", {{Src}} }
            usable_for_model = { value = 6, unit = "GB", source = "estimate: 8 GB shared by CPU and GPU" }
            bandwidth = { value = 68, unit = "GB/s", {{Src}} }

            [compute]
            int8_sparse_tops = { value = 40, unit = "TOPS", {{Src}} }
            int8_dense_tops = { value = 20, unit = "TOPS", source = "derived: half of the 40 sparse TOPS" }

            [power_modes]
            15W = { value = 15, unit = "W", {{Src}} }
            7W = { value = 7, unit = "W", {{Src}} }

            [runtimes]
            llama_cpp_cpu = true
            llama_cpp_cuda = true
            onnxruntime_cpu = true

            [sensors]
            power = "ina3221"
            power_rails = ["VDD_IN"]
            thermal_zones = ["cpu-thermal", "gpu-thermal"]

            [budgets]
            max_model_memory = { value = 5, unit = "GB", source = "policy: leave 1 GB" }
            min_decode_tokens_per_s = { value = 10, unit = "tokens/s", source = "policy: faster than people read" }
            max_ttft_p95 = { value = 2, unit = "s", source = "policy: 2 s" }
            max_watts = { value = 15, unit = "W", source = "policy: the 15W mode" }
            """);
        return new FuzzTarget("profile", ".toml", () => seed, (valid, random) => Mutations.Text(valid, random, TomlTokens), path =>
        {
            // Only the fuzzed file's folder is searched: `extends` mutated into another name finds nothing (or the file itself).
            _ = new ProfileLoader(new ProfileCatalog([Path.GetDirectoryName(path)!])).Load(path);
            return false;
        });
    }
}
