using EdgeTune.Core;

namespace EdgeTune.Bundles;

/// <summary>Why a bundle was refused; the code travels into the agent's answer and /metrics.</summary>
public enum BundleRefusal
{
    /// <summary>Not a bundle, or a malformed manifest.</summary>
    Format,
    /// <summary>A file's bytes do not match the manifest's SHA-256 or size.</summary>
    Tampered,
    /// <summary>No signature, and keys are configured (an unsigned bundle is never installed).</summary>
    Unsigned,
    /// <summary>Signed by a key that is not trusted, or the signature does not match the manifest.</summary>
    Untrusted,
    WrongBoard,
    Downgrade,
    AgentTooOld,
    /// <summary>A path that would leave the slot, or an entry that is not a regular file (links).</summary>
    UnsafePath,
    /// <summary>The archive is larger than its manifest says, or an entry is larger than listed.</summary>
    Oversize,
    NoSpace,
}

/// <summary>A refused bundle: one line naming the file and the reason.</summary>
public sealed class BundleException : EdgeTuneException
{
    public BundleException(BundleRefusal refusal, string message) : base(message) => Refusal = refusal;
    public BundleException(string message) : base(message) => Refusal = BundleRefusal.Format;
    public BundleException(string message, Exception inner) : base(message, inner) => Refusal = BundleRefusal.Format;
    public BundleException() : base("bundle refused") => Refusal = BundleRefusal.Format;

    public BundleRefusal Refusal { get; }

    /// <summary>snake_case of the refusal, for metrics labels and API error codes.</summary>
    public string Code => Refusal switch
    {
        BundleRefusal.WrongBoard => "wrong_board",
        BundleRefusal.AgentTooOld => "agent_too_old",
        BundleRefusal.UnsafePath => "unsafe_path",
        BundleRefusal.NoSpace => "no_space",
        var r => r.ToString().ToLowerInvariant(),
    };
}
