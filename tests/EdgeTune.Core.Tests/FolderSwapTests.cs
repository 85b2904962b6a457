using EdgeTune.Core.IO;
using EdgeTune.Testing;

namespace EdgeTune.Core.Tests;

public class FolderSwapTests
{
    private static Dictionary<string, string> Files(string folder) =>
        Directory.GetFiles(folder, "*", SearchOption.AllDirectories).ToDictionary(f => Path.GetRelativePath(folder, f), File.ReadAllText);

    [Fact]
    public void Replace_carries_the_files_it_does_not_rewrite_and_leaves_no_sibling()
    {
        using var dir = new TempDir();
        string folder = dir.File("data");
        FolderSwap.Replace(folder, [], aside => File.WriteAllText(Path.Combine(aside, "a.txt"), "1"));
        Directory.CreateDirectory(Path.Combine(folder, "notes"));
        File.WriteAllText(Path.Combine(folder, "notes", "n.md"), "mine");
        File.WriteAllText(Path.Combine(folder, "b.txt"), "kept");

        FolderSwap.Replace(folder, ["a.txt"], aside =>
        {
            Assert.False(File.Exists(Path.Combine(aside, "a.txt"))); // rewritten: not copied
            File.WriteAllText(Path.Combine(aside, "a.txt"), "2");
            File.AppendAllText(Path.Combine(aside, "b.txt"), "+more");
            Assert.Equal("1", File.ReadAllText(Path.Combine(folder, "a.txt"))); // the folder itself is untouched meanwhile
        });
        Assert.Equal(new Dictionary<string, string> { ["a.txt"] = "2", ["b.txt"] = "kept+more", [Path.Combine("notes", "n.md")] = "mine" }, Files(folder));
        Assert.Equal(["data"], Directory.GetDirectories(dir.Path).Select(Path.GetFileName));
    }

    [Fact]
    public void A_failing_writer_leaves_the_folder_as_it_was()
    {
        using var dir = new TempDir();
        string folder = dir.File("data");
        FolderSwap.Replace(folder, [], aside => File.WriteAllText(Path.Combine(aside, "a.txt"), "1"));
        Assert.Throws<InvalidOperationException>(() => FolderSwap.Replace(folder, ["a.txt"], aside =>
        {
            File.WriteAllText(Path.Combine(aside, "a.txt"), "half");
            throw new InvalidOperationException("disk full");
        }));
        Assert.Equal(new Dictionary<string, string> { ["a.txt"] = "1" }, Files(folder));
        Assert.Equal(["data"], Directory.GetDirectories(dir.Path).Select(Path.GetFileName));
    }

    [Fact]
    public void Recover_puts_back_a_folder_left_moved_aside_by_a_crash()
    {
        // The state a crash leaves between the two renames where the atomic exchange is not available.
        using var dir = new TempDir();
        string old = dir.File(".data.edgetune-old"), aside = dir.File(".data.edgetune-new");
        Directory.CreateDirectory(old);
        File.WriteAllText(Path.Combine(old, "a.txt"), "old");
        Directory.CreateDirectory(aside);
        File.WriteAllText(Path.Combine(aside, "a.txt"), "new");
        FolderSwap.Recover(dir.File("data"));
        Assert.Equal(new Dictionary<string, string> { ["a.txt"] = "old" }, Files(dir.File("data")));
        Assert.Equal(["data"], Directory.GetDirectories(dir.Path).Select(Path.GetFileName));

        // After a finished swap whose clean-up was cut short, the superseded version goes and the folder stays.
        Directory.CreateDirectory(old);
        FolderSwap.Recover(dir.File("data"));
        Assert.Equal(new Dictionary<string, string> { ["a.txt"] = "old" }, Files(dir.File("data")));
        Assert.False(Directory.Exists(old));
    }
}
