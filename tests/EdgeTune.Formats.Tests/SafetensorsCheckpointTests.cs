using EdgeTune.Core;
using EdgeTune.Formats.Safetensors;
using EdgeTune.Testing;
using static EdgeTune.Formats.Tests.SafetensorsTestFiles;

namespace EdgeTune.Formats.Tests;

public class SafetensorsCheckpointTests
{
    /// <summary>Five 64-byte tensors and one of 256 bytes, in insertion order.</summary>
    private static SafetensorsCheckpointWriter FiveSmallOneBig(long maxShardBytes)
    {
        var writer = new SafetensorsCheckpointWriter(maxShardBytes);
        writer.Metadata["format"] = "pt";
        for (int i = 0; i < 5; i++)
            writer.AddTensor($"layers.{i}.weight", SafetensorsDType.F32, [4, 4], RandomBytes(i, 64));
        writer.AddTensor("embed", SafetensorsDType.BF16, [128], RandomBytes(99, 256));
        return writer;
    }

    [Fact]
    public void Sharded_round_trip_splits_like_huggingface_and_reads_back()
    {
        using var dir = new TempDir();
        var written = FiveSmallOneBig(maxShardBytes: 150).Write(dir.Path);

        // 64+64 fit in 150, the third starts a new shard; the 256-byte tensor exceeds the limit and gets its own.
        Assert.Equal(
        [
            "model-00001-of-00004.safetensors", "model-00002-of-00004.safetensors",
            "model-00003-of-00004.safetensors", "model-00004-of-00004.safetensors", "model.safetensors.index.json",
        ], written.Select(Path.GetFileName));

        using var checkpoint = SafetensorsCheckpoint.Open(dir.Path);
        Assert.Equal(dir.File("model.safetensors.index.json"), checkpoint.IndexPath);
        Assert.Equal(4, checkpoint.Shards.Count);
        Assert.Equal(5 * 64 + 256, checkpoint.TotalSize);
        Assert.Empty(checkpoint.UnlistedTensors);
        // Shard by shard: the oversized tensor's shard was closed before the one holding layers.4.
        Assert.Equal(
            ["layers.0.weight", "layers.1.weight", "layers.2.weight", "layers.3.weight", "embed", "layers.4.weight"],
            checkpoint.Tensors.Select(t => t.Name));
        for (int i = 0; i < 5; i++)
        {
            Assert.Equal(RandomBytes(i, 64), checkpoint.GetBytes($"layers.{i}.weight").ToArray());
            Assert.Equal([4L, 4L], checkpoint.GetTensor($"layers.{i}.weight").Shape);
        }
        Assert.Equal(RandomBytes(99, 256), checkpoint.GetBytes("embed").ToArray());
        Assert.Equal("model-00003-of-00004.safetensors", Path.GetFileName(checkpoint.GetShard("embed").Path));
        Assert.All(checkpoint.Shards, s => Assert.Equal("pt", s.Metadata["format"]));
        var values = new float[16];
        checkpoint.ReadAsFloat32("layers.4.weight", values);

        // Opening the index file itself gives the same checkpoint.
        using var viaIndex = SafetensorsCheckpoint.Open(dir.File("model.safetensors.index.json"));
        Assert.Equal(checkpoint.Tensors.Select(t => t.Name), viaIndex.Tensors.Select(t => t.Name));
    }

    [Fact]
    public void Index_is_written_as_transformers_writes_it()
    {
        using var dir = new TempDir();
        var writer = new SafetensorsCheckpointWriter(maxShardBytes: 8);
        writer.AddTensor("b", SafetensorsDType.F32, [2], new byte[8]);
        writer.AddTensor("a", SafetensorsDType.F32, [1], new byte[4]);
        writer.Write(dir.Path);

        // json.dumps(index, indent=2, sort_keys=True) + "\n"
        Assert.Equal(
            "{\n  \"metadata\": {\n    \"total_size\": 12\n  },\n  \"weight_map\": {\n" +
            "    \"a\": \"model-00002-of-00002.safetensors\",\n    \"b\": \"model-00001-of-00002.safetensors\"\n  }\n}\n",
            File.ReadAllText(dir.File("model.safetensors.index.json")));
    }

    [Fact]
    public void One_shard_is_a_plain_model_safetensors_and_replaces_an_earlier_sharded_save()
    {
        using var dir = new TempDir();
        FiveSmallOneBig(maxShardBytes: 150).Write(dir.Path);
        File.WriteAllText(dir.File("model-other.safetensors"), "not ours");

        var written = FiveSmallOneBig(maxShardBytes: 1 << 20).Write(dir.Path);

        Assert.Equal([dir.File("model.safetensors")], written);
        Assert.Equal(["model-other.safetensors", "model.safetensors"], Directory.GetFiles(dir.Path).Select(Path.GetFileName).Order());
        using var checkpoint = SafetensorsCheckpoint.Open(dir.Path);
        Assert.Null(checkpoint.IndexPath);
        Assert.Equal(6, checkpoint.Tensors.Count);
        Assert.Equal(RandomBytes(3, 64), checkpoint.GetBytes("layers.3.weight").ToArray());
    }

    private static string WriteSharded(TempDir dir)
    {
        FiveSmallOneBig(maxShardBytes: 150).Write(dir.Path);
        return dir.File("model.safetensors.index.json");
    }

    private static void EditIndex(string index, string from, string to)
    {
        string text = File.ReadAllText(index);
        Assert.Contains(from, text);
        File.WriteAllText(index, text.Replace(from, to, StringComparison.Ordinal));
    }

    [Fact]
    public void Missing_shard_is_named()
    {
        using var dir = new TempDir();
        string index = WriteSharded(dir);
        File.Delete(dir.File("model-00002-of-00004.safetensors"));
        var e = Assert.Throws<FileFormatException>(() => SafetensorsCheckpoint.Open(dir.Path));
        Assert.Contains("model.safetensors.index.json: key 'layers.2.weight'", e.Message);
        Assert.Contains("'model-00002-of-00004.safetensors' does not exist", e.Message);
    }

    [Fact]
    public void Tensor_listed_in_a_shard_that_lacks_it()
    {
        using var dir = new TempDir();
        string index = WriteSharded(dir);
        EditIndex(index, "\"layers.4.weight\": \"model-00004-of-00004.safetensors\"", "\"layers.4.weight\": \"model-00001-of-00004.safetensors\"");
        var e = Assert.Throws<FileFormatException>(() => SafetensorsCheckpoint.Open(dir.Path));
        Assert.Contains("key 'layers.4.weight'", e.Message);
        Assert.Contains("model-00001-of-00004.safetensors", e.Message);
    }

    [Fact]
    public void Tensors_the_index_does_not_list_are_warnings()
    {
        using var dir = new TempDir();
        string index = WriteSharded(dir);
        EditIndex(index, "    \"layers.1.weight\": \"model-00001-of-00004.safetensors\",\n", "");

        using var checkpoint = SafetensorsCheckpoint.Open(dir.Path);
        var unlisted = Assert.Single(checkpoint.UnlistedTensors);
        Assert.Equal(new SafetensorsUnlistedTensor("model-00001-of-00004.safetensors", "layers.1.weight"), unlisted);
        Assert.Contains("not listed", unlisted.ToString());
        Assert.False(checkpoint.Contains("layers.1.weight"));
        Assert.Equal(5, checkpoint.Tensors.Count);
        var e = Assert.Throws<FileFormatException>(() => checkpoint.GetBytes("layers.1.weight"));
        Assert.Contains("key 'layers.1.weight'", e.Message);
    }

    [Theory]
    [InlineData("../model-00001-of-00004.safetensors")]
    [InlineData("/etc/passwd")]
    [InlineData("")]
    public void Shard_names_must_be_plain_file_names(string shard)
    {
        using var dir = new TempDir();
        string index = WriteSharded(dir);
        EditIndex(index, "\"embed\": \"model-00003-of-00004.safetensors\"", $"\"embed\": \"{shard}\"");
        var e = Assert.Throws<FileFormatException>(() => SafetensorsCheckpoint.Open(index));
        Assert.Contains("key 'embed'", e.Message);
        Assert.Contains("plain file name", e.Message);
    }

    [Fact]
    public void Malformed_index_json()
    {
        using var dir = new TempDir();
        string index = WriteSharded(dir);

        File.WriteAllText(index, "{\n  \"weight_map\": {\n    \"a\": 3\n  }\n}\n");
        Assert.Contains("key 'a'", Assert.Throws<FileFormatException>(() => SafetensorsCheckpoint.Open(index)).Message);

        string json = "{\"weight_map\": {\"a\": \"x.safetensors\",}}";
        File.WriteAllText(index, json);
        var e = Assert.Throws<FileFormatException>(() => SafetensorsCheckpoint.Open(index));
        Assert.Contains($"model.safetensors.index.json: at byte {json.IndexOf(",}", StringComparison.Ordinal) + 1}:", e.Message);

        File.WriteAllText(index, "{\"metadata\": {}}");
        Assert.Contains("key 'weight_map': missing", Assert.Throws<FileFormatException>(() => SafetensorsCheckpoint.Open(index)).Message);

        File.WriteAllText(index, "{\"weight_map\": {\"a\": \"x.safetensors\", \"a\": \"y.safetensors\"}}");
        Assert.Contains("listed twice", Assert.Throws<FileFormatException>(() => SafetensorsCheckpoint.Open(index)).Message);
    }

    [Fact]
    public void Broken_shard_is_reported_with_its_own_name()
    {
        using var dir = new TempDir();
        WriteSharded(dir);
        File.WriteAllBytes(dir.File("model-00004-of-00004.safetensors"), [9, 0, 0]);
        var e = Assert.Throws<FileFormatException>(() => SafetensorsCheckpoint.Open(dir.Path));
        Assert.Contains("model-00004-of-00004.safetensors: at byte 0", e.Message);
    }

    [Fact]
    public void Checkpoint_writer_refuses_bad_descriptors()
    {
        var writer = new SafetensorsCheckpointWriter(maxShardBytes: 100);
        writer.AddTensor("a", SafetensorsDType.U8, [1], new byte[1]);
        Assert.Throws<ArgumentException>(() => writer.AddTensor("a", SafetensorsDType.U8, [1], new byte[1]));
        Assert.Throws<ArgumentException>(() => writer.AddTensor("b", SafetensorsDType.F32, [2], new byte[4]));
        Assert.Throws<ArgumentOutOfRangeException>(() => new SafetensorsCheckpointWriter(0));
    }

    [Fact]
    public void Empty_folder_is_a_clear_error()
    {
        using var dir = new TempDir();
        var e = Assert.Throws<EdgeTuneException>(() => SafetensorsCheckpoint.Open(dir.Path));
        Assert.Contains("model.safetensors", e.Message);
    }
}
