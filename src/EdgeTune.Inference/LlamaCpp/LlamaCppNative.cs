using System.Runtime.InteropServices;
using System.Text.RegularExpressions;
using EdgeTune.Core;
using LLama.Exceptions;
using LLama.Native;

namespace EdgeTune.Inference.LlamaCpp;

/// <summary>
/// Loads llama.cpp's native library once per process (the configured one when there is one) and, when it cannot
/// load, says why in one line: the library, the missing GLIBC version when the loader names one, and the fix.
/// </summary>
public static partial class LlamaCppNative
{
    private static readonly Lock InitLock = new();
    private static bool _loaded;
    private static string? _library;
    private static string? _failure;

    /// <summary>The fix a board needs when the packaged library does not load.</summary>
    public const string Fix = "set [model] native_library to a llama.cpp built for this board (firmware-tools/build-llama-cpp-jetson.sh, see firmware-tools/README.md)";

    /// <summary>Loads llama.cpp (with <paramref name="nativeLibrary"/> when given) and silences its log; throws a one-line EdgeTuneException when it cannot.</summary>
    public static void EnsureLoaded(string? nativeLibrary = null)
    {
        lock (InitLock)
        {
            if (_failure is not null) throw new EdgeTuneException(_failure);
            if (_loaded)
            {
                if (nativeLibrary is not null && !string.Equals(Path.GetFullPath(nativeLibrary), _library, StringComparison.Ordinal))
                    throw new EdgeTuneException($"{nativeLibrary}: llama.cpp is already loaded from {_library ?? "the packaged library"}; one process loads one llama.cpp");
                return;
            }
            if (nativeLibrary is not null)
            {
                string full = Path.GetFullPath(nativeLibrary);
                if (!File.Exists(full)) throw new EdgeTuneException($"{full}: no such file ([model] native_library names llama.cpp's libllama.so)");
                NativeLibraryConfig.All.WithLibrary(full, null);
                _library = full;
            }
            try
            {
                NativeApi.llama_empty_call(); // registers LLamaSharp's native-library resolver and loads llama.cpp
            }
            catch (Exception e) when (e is TypeInitializationException or DllNotFoundException or RuntimeError or BadImageFormatException or EntryPointNotFoundException)
            {
                _failure = Explain(_library, e);
                throw new EdgeTuneException(_failure, e);
            }
            NativeLogConfig.llama_log_set((_, _) => { });
            _loaded = true;
        }
    }

    /// <summary>One line: which library failed to load, why (the loader's reason, the missing GLIBC), and the fix.</summary>
    internal static string Explain(string? configured, Exception error)
    {
        var candidates = configured is not null ? [configured] : PackagedLibraries();
        if (candidates.Count == 0)
            return $"llama.cpp cannot load: no libllama.so for {RuntimeInformation.RuntimeIdentifier} under {Path.Combine(AppContext.BaseDirectory, "runtimes")}; {Fix}";
        string? firstReason = null;
        foreach (var library in candidates)
        {
            string? reason = LoaderError(library);
            if (reason is null) continue; // this one loads by itself; LLamaSharp failed for another reason
            var glibc = MissingGlibc().Match(reason);
            if (glibc.Success)
                return $"llama.cpp cannot load: {glibc.Groups["lib"].Value.Trim()} needs {glibc.Groups["version"].Value}, this system has glibc {SystemGlibc()} ({library}); {Fix}";
            firstReason ??= $"{library}: {FirstLine(reason)}";
        }
        return $"llama.cpp cannot load: {firstReason ?? FirstLine(Innermost(error).Message)}; {Fix}";
    }

    /// <summary>The loader's own message for <paramref name="library"/> (dlerror), or null when it loads.</summary>
    private static string? LoaderError(string library)
    {
        try
        {
            var handle = NativeLibrary.Load(library);
            NativeLibrary.Free(handle);
            return null;
        }
        catch (Exception e) when (e is DllNotFoundException or BadImageFormatException)
        {
            return e.Message;
        }
    }

    /// <summary>The libllama.so files LLamaSharp would choose from, this machine's runtime identifier first.</summary>
    private static List<string> PackagedLibraries()
    {
        string root = Path.Combine(AppContext.BaseDirectory, "runtimes");
        if (!Directory.Exists(root)) return [];
        string arch = RuntimeInformation.ProcessArchitecture.ToString().ToLowerInvariant();
        return Directory.EnumerateFiles(root, "libllama.so", SearchOption.AllDirectories)
            .Where(p => p.Contains($"linux-{arch}", StringComparison.Ordinal) && !p.Contains("musl", StringComparison.Ordinal))
            .OrderBy(p => p, StringComparer.Ordinal)
            .ToList();
    }

    private static Exception Innermost(Exception e)
    {
        while (e.InnerException is not null) e = e.InnerException;
        return e;
    }

    private static string FirstLine(string s)
    {
        // .NET's message is "Unable to load shared library 'X' or one of its dependencies. In order to help ... : <dlerror>".
        var lines = s.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        return lines.Length == 0 ? s : lines[^1].Length > 0 ? lines[^1] : lines[0];
    }

    [GeneratedRegex(@"version [`'](?<version>GLIBC_[0-9.]+)' not found \(required by (?<lib>[^)]+)\)")]
    private static partial Regex MissingGlibc();

    /// <summary>The C library's version ("2.36"), or "unknown" off glibc.</summary>
    internal static string SystemGlibc()
    {
        try
        {
            return Marshal.PtrToStringUTF8(gnu_get_libc_version()) ?? "unknown";
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return "unknown";
        }
    }

    [LibraryImport("libc", EntryPoint = "gnu_get_libc_version")]
    private static partial IntPtr gnu_get_libc_version();

    /// <summary>llama.cpp's system info line (CPU features, backends), or "" when not available.</summary>
    internal static string SystemInfo()
    {
        try
        {
            return Marshal.PtrToStringUTF8(NativeApi.llama_print_system_info())?.Trim() ?? "";
        }
        catch (Exception e) when (e is EntryPointNotFoundException or DllNotFoundException)
        {
            return "";
        }
    }
}
