using System.Text.Json;

namespace EdgeTune.Data.Synthetic;

/// <summary>
/// Text for the demo's short pre-training, standing in for the general ability a real 1–7B checkpoint brings:
/// plain sentences about devices, accounts, payments and software (the task's world, but no labelled tickets),
/// simple question–answer turns, and JSON records with unrelated random values, so the tiny model learns the
/// language, JSON, the chat format and when to stop — but not the ticket → triage mapping the tuning must teach.
/// </summary>
public static class PretrainingText
{
    private static readonly string[] Subjects = ["The router", "A camera", "The hub", "This sensor", "The power box", "Our team", "The customer", "A technician", "The app", "The invoice", "Your account", "The update"];
    private static readonly string[] Verbs = ["shows", "needs", "sends", "keeps", "checks", "connects to", "reports", "stores", "updates", "protects", "charges", "resets"];
    private static readonly string[] Objects = ["the network", "a new password", "the monthly payment", "the firmware", "a status light", "the settings", "the battery", "an email", "the dashboard", "the schedule", "a refund", "the warranty"];
    private static readonly string[] Endings = [".", " every day.", " after a restart.", " when asked.", " in the morning.", " without problems.", " for the user."];
    private static readonly (string Q, string A)[] Pairs =
    [
        ("What does a router do?", "A router connects devices to the network."),
        ("How do I reset my password?", "Open the login page and choose reset password."),
        ("Where is my invoice?", "Invoices are in the billing section of your account."),
        ("Why is the light red?", "A red light means the device needs attention."),
        ("How do I update the firmware?", "Open the app and choose update firmware."),
        ("Can I get a refund?", "Refunds are possible within thirty days."),
        ("Is the camera waterproof?", "The camera works outdoors in rain."),
        ("How long does the battery last?", "The battery lasts about two days."),
    ];

    private static readonly string[] RecordKeys = ["category", "priority", "product", "status", "owner", "region"];
    private static readonly string[] RecordValues =
        ["hardware", "billing", "account", "software", "low", "medium", "high", "RouterX", "CamPro", "HubMini", "SensorKit", "PowerBox",
         "open", "closed", "north", "south", "team", "support"];

    /// <summary>A JSON record with random keys and values: a real base model has seen plenty of JSON; this one sees some.</summary>
    public static string Record(Random rng)
    {
        var keys = RecordKeys.OrderBy(_ => rng.Next()).Take(rng.Next(2, 5));
        return JsonSerializer.Serialize(keys.ToDictionary(k => k, _ => RecordValues[rng.Next(RecordValues.Length)]));
    }

    public static string Sentence(Random rng) =>
        $"{Subjects[rng.Next(Subjects.Length)]} {Verbs[rng.Next(Verbs.Length)]} {Objects[rng.Next(Objects.Length)]}{Endings[rng.Next(Endings.Length)]}";

    /// <summary>Chat JSONL: paragraphs to continue and questions to answer; train on inputs too (pre-training).</summary>
    public static void Write(string path, int count, int seed)
    {
        var rng = new Random(seed);
        using var w = new StreamWriter(path);
        for (int i = 0; i < count; i++)
        {
            if (rng.Next(4) == 0)
            {
                w.WriteLine(JsonSerializer.Serialize(new { prompt = "Write a JSON record.", response = Record(rng) }));
                continue;
            }
            if (rng.Next(3) == 0)
            {
                var (q, a) = Pairs[rng.Next(Pairs.Length)];
                w.WriteLine(JsonSerializer.Serialize(new { prompt = q, response = a }));
                continue;
            }
            if (rng.Next(3) == 0)
            {
                // The products and their troubles in plain prose, with no triage labels.
                var t = SupportTickets.Generate(rng);
                w.WriteLine(JsonSerializer.Serialize(new { prompt = Sentence(rng), response = t.Text }));
                continue;
            }
            string first = Sentence(rng);
            string rest = string.Join(' ', Enumerable.Range(0, rng.Next(1, 3)).Select(_ => Sentence(rng)));
            w.WriteLine(JsonSerializer.Serialize(new { prompt = first, response = rest }));
        }
    }
}
