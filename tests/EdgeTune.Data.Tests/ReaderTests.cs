using System.Text;
using EdgeTune.Testing;

namespace EdgeTune.Data.Tests;

public class ReaderTests
{
    private static List<ReadItem> Read(string path, ReadOptions? options = null) => DatasetReader.Read(path, options).ToList();

    [Fact]
    public void Reads_alpaca_chat_and_prompt_completion_formats()
    {
        using var dir = new TempDir();
        string file = dir.File("mixed.jsonl");
        File.WriteAllLines(file,
        [
            """{"instruction": "Translate", "input": "Guten Tag", "output": "Good day", "label": "de"}""",
            """{"messages": [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}], "source": "field", "device": "pi5"}""",
            """{"prompt": "2+2?", "completion": "4"}""",
            "",
            """{"prompt": "3+3?", "response": "6"}""",
        ]);
        var items = Read(file);
        Assert.All(items, i => Assert.Null(i.Finding));
        var e = items.Select(i => i.Example!).ToList();
        Assert.Equal([1L, 2, 3, 5], e.Select(x => x.Line));
        Assert.Equal("Translate\n\nGuten Tag", e[0].Messages[0].Content);
        Assert.Equal("de", e[0].Label);
        Assert.Equal(["system", "user", "assistant"], e[1].Messages.Select(m => m.Role));
        Assert.Equal("pi5", e[1].Provenance["device"]);
        Assert.Equal("4", e[2].Answer);
        Assert.Equal("6", e[3].Answer);
    }

    [Fact]
    public void Field_mapping_and_csv_with_quoted_newlines()
    {
        using var dir = new TempDir();
        string file = dir.File("qa.csv");
        File.WriteAllText(file, "question,answer,label\n\"What, exactly?\",\"Two\nlines\",a\nplain,\"say \"\"hi\"\"\",b\n");
        var items = Read(file, new ReadOptions { Fields = FieldMapping.Parse("prompt=question,completion=answer") });
        var e = items.Select(i => i.Example!).ToList();
        Assert.Equal(2, e.Count);
        Assert.Equal("What, exactly?", e[0].Messages[0].Content);
        Assert.Equal("Two\nlines", e[0].Answer);
        Assert.Equal(4, e[1].Line);
        Assert.Equal("say \"hi\"", e[1].Answer);
    }

    [Fact]
    public void Json_array_is_streamed_by_element()
    {
        using var dir = new TempDir();
        string file = dir.File("data.json");
        File.WriteAllText(file, """[{"prompt": "a", "completion": "b"}, {"prompt": "c", "completion": "d"}]""");
        Assert.Equal(["b", "d"], Read(file).Select(i => i.Example!.Answer));
    }

    [Fact]
    public void Csv_missing_column_names_file_and_line()
    {
        using var dir = new TempDir();
        string file = dir.File("bad.csv");
        File.WriteAllText(file, "prompt,text\nx,y\n");
        var f = Assert.Single(Read(file)).Finding!;
        Assert.Equal((file, 1L, Severity.Error), (f.File, f.Line, f.Severity));
        Assert.Contains("no column 'completion' or 'response'", f.Message);
    }

    [Fact]
    public void Malformed_lines_are_findings_and_reading_goes_on()
    {
        using var dir = new TempDir();
        string file = dir.File("bad.jsonl");
        using (var s = File.Create(file))
        {
            void Line(byte[] b) { s.Write(b); s.WriteByte((byte)'\n'); }
            Line(Encoding.UTF8.GetBytes("""{"prompt": "a", "completion": "b"}"""));
            Line(Encoding.UTF8.GetBytes("""{"prompt": "a", "completion": """));
            Line([.. Encoding.UTF8.GetBytes("{\"prompt\": \"x"), 0xC3, 0x28, .. Encoding.UTF8.GetBytes("\", \"completion\": \"y\"}")]);
            Line(Encoding.UTF8.GetBytes("""{"text": "no known fields"}"""));
            Line(Encoding.UTF8.GetBytes("""{"prompt": "c", "completion": "d"}"""));
        }
        var items = Read(file);
        Assert.Equal([2L, 3, 4], items.Where(i => i.Finding is not null).Select(i => i.Finding!.Line));
        Assert.Contains("invalid UTF-8", items[2].Finding!.Message);
        Assert.Equal(["b", "d"], items.Where(i => i.Example is not null).Select(i => i.Example!.Answer));
    }

    [Fact]
    public void Huge_single_line_is_a_finding_not_an_out_of_memory()
    {
        using var dir = new TempDir();
        string file = dir.File("huge.jsonl");
        using (var s = File.Create(file))
        {
            s.Write("""{"prompt": "a", "completion": "b"}"""u8);
            s.WriteByte((byte)'\n');
            var chunk = new byte[1 << 20];
            Array.Fill(chunk, (byte)'x');
            for (int i = 0; i < 100; i++) s.Write(chunk); // 100 MB line 2
            s.WriteByte((byte)'\n');
            s.Write("""{"prompt": "c", "completion": "d"}"""u8);
        }
        long before = GC.GetAllocatedBytesForCurrentThread();
        var items = Read(file);
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.True(allocated < 40L << 20, $"the long line was buffered: {allocated} bytes allocated");
        Assert.Equal(2, items[1].Finding!.Line);
        Assert.Contains("longer than 8 MiB", items[1].Finding!.Message);
        Assert.Equal("d", items[2].Example!.Answer);
    }

    [Fact]
    public void Binary_file_is_one_error_naming_the_line()
    {
        using var dir = new TempDir();
        string file = dir.File("model.jsonl");
        File.WriteAllBytes(file, [.. "GGUF"u8, 3, 0, 0, 0, (byte)'\n', 7, 0, .. "more\n"u8]);
        var f = Assert.Single(Read(file)).Finding!;
        Assert.Equal((1L, "unreadable"), (f.Line, f.Kind));
        Assert.Contains("binary", f.Message);
    }
}
