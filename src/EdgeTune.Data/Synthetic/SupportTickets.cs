using System.Text.Json;

namespace EdgeTune.Data.Synthetic;

/// <summary>A defect planted on purpose, so a quality report can be checked against it.</summary>
public sealed record PlantedDefect(string Kind, long Line);

/// <summary>
/// A small realistic business task for the demo and tests: customer support tickets → a JSON triage answer
/// {"category", "priority", "product"}. The rules are learnable from the text (symptom words decide the
/// category, urgency words the priority, the product is named), the text is noisy as real tickets are
/// (greetings, typos, casing, signatures, filler), and defects can be planted where the data check must find them.
/// </summary>
public static class SupportTickets
{
    public const string SystemPrompt =
        "You triage customer support tickets. Answer with JSON only: {\"category\": hardware|billing|account|software, " +
        "\"priority\": low|medium|high, \"product\": the product named in the ticket}.";

    public static readonly string[] Products = ["RouterX", "CamPro", "HubMini", "SensorKit", "PowerBox"];

    private static readonly Dictionary<string, string[]> Symptoms = new()
    {
        ["hardware"] = ["will not power on", "is overheating", "makes a loud clicking noise", "has a cracked case", "shows a blinking red light", "stopped charging"],
        ["billing"] = ["was charged twice this month", "invoice shows the wrong amount", "refund has not arrived", "payment failed at checkout", "subscription renewed without notice"],
        ["account"] = ["login keeps failing", "password reset email never comes", "account is locked out", "two factor code is rejected", "cannot change the account email"],
        ["software"] = ["app crashes on start", "firmware update failed", "settings do not sync", "dashboard shows an error", "update broke the schedule feature"],
    };

    private static readonly string[] High = ["This is urgent.", "Our production line is down.", "Please fix this asap!", "Critical for us today."];
    private static readonly string[] Low = ["No rush, just curious.", "Whenever you have time.", "Low priority question.", ""];
    private static readonly string[] Greetings = ["Hi,", "Hello team,", "hey", "Good morning,", "", "Dear support,"];
    private static readonly string[] Closings = ["Thanks.", "Regards, Sam", "thank you!", "", "Best, A. Jones", "Cheers"];
    private static readonly string[] Fillers = ["I bought it last year.", "We have several of them.", "I already restarted it.", "It worked fine yesterday.", "", "The manual did not help."];

    public sealed record Ticket(string Text, string Category, string Priority, string Product)
    {
        public string Answer => JsonSerializer.Serialize(new Dictionary<string, string> { ["category"] = Category, ["priority"] = Priority, ["product"] = Product });
    }

    public static Ticket Generate(Random rng)
    {
        string category = Symptoms.Keys.ElementAt(rng.Next(Symptoms.Count));
        string product = Products[rng.Next(Products.Length)];
        string symptom = Symptoms[category][rng.Next(Symptoms[category].Length)];
        int p = rng.Next(10);
        var (priority, urgency) = p < 3 ? ("high", High[rng.Next(High.Length)]) : p < 6 ? ("low", Low[rng.Next(Low.Length)]) : ("medium", "");
        if (priority == "low" && urgency.Length == 0) priority = "medium";
        string subject = rng.Next(3) switch
        {
            0 => $"my {product} {symptom}.",
            1 => $"the {product} {symptom}.",
            _ => $"{product}: {symptom}.",
        };
        var parts = new[] { Greetings[rng.Next(Greetings.Length)], subject, Fillers[rng.Next(Fillers.Length)], urgency, Closings[rng.Next(Closings.Length)] };
        string text = string.Join(' ', parts.Where(s => s.Length > 0));
        if (rng.Next(8) == 0) text = text.ToLowerInvariant();
        if (rng.Next(10) == 0) text = Typo(text, rng);
        return new Ticket(text, category, priority, product);
    }

    private static string Typo(string text, Random rng)
    {
        int i = rng.Next(1, Math.Max(2, text.Length - 1));
        return text[..(i - 1)] + text[i] + text[i - 1] + text[(i + 1)..];
    }

    /// <summary>
    /// The support team's triage guide as a small knowledge base (one Markdown file per category, one on priority):
    /// what the rag baseline retrieves from. Every rule the tickets follow is written in it.
    /// </summary>
    public static void WriteTriageGuide(string folder)
    {
        Directory.CreateDirectory(folder);
        foreach (var (category, symptoms) in Symptoms)
        {
            var md = new System.Text.StringBuilder($"# {category} tickets\n\nTickets go to category \"{category}\" when the customer reports one of these.\n");
            foreach (var symptom in symptoms) md.Append($"\n## {symptom}\n\nA ticket saying the device {symptom} is a {category} ticket.\n");
            File.WriteAllText(Path.Combine(folder, $"{category}.md"), md.ToString());
        }
        var priority = new System.Text.StringBuilder("# Priority\n\n## High\n\nPriority is high when the ticket says:\n");
        foreach (var h in High) priority.Append($"- {h}\n");
        priority.Append("\n## Low\n\nPriority is low when the ticket says:\n");
        foreach (var l in Low.Where(l => l.Length > 0)) priority.Append($"- {l}\n");
        priority.Append("\n## Medium\n\nEvery other ticket is medium priority.\n\n## Product\n\nThe product field is the product the ticket names: " + string.Join(", ", Products) + ".\n");
        File.WriteAllText(Path.Combine(folder, "priority.md"), priority.ToString());
    }

    /// <summary>One JSONL line in the chat format the data pipeline reads.</summary>
    public static string Line(string system, string user, string assistant) =>
        JsonSerializer.Serialize(new { messages = new[] { new { role = "system", content = system }, new { role = "user", content = user }, new { role = "assistant", content = assistant } } });

    /// <summary>
    /// Writes <paramref name="count"/> tickets as chat JSONL; with <paramref name="plantDefects"/>, also a few exact and
    /// near duplicates, conflicting answers, empty answers, a malformed line, prose answers among the JSON ones, an
    /// over-length ticket and tickets with personal data. Returns the planted defects with their 1-based lines.
    /// </summary>
    public static List<PlantedDefect> Write(string path, int count, int seed, bool plantDefects)
    {
        var rng = new Random(seed);
        var defects = new List<PlantedDefect>();
        var written = new List<Ticket>();
        using var w = new StreamWriter(path);
        long line = 0;
        void Emit(string text, string? defect = null)
        {
            w.WriteLine(text);
            line++;
            if (defect is not null) defects.Add(new PlantedDefect(defect, line));
        }
        int every = plantDefects ? Math.Max(20, count / 20) : int.MaxValue;
        for (int i = 0; i < count; i++)
        {
            var t = Generate(rng);
            written.Add(t);
            Emit(Line(SystemPrompt, t.Text, t.Answer));
            if (i == 0 || (i + 1) % every != 0) continue;
            var earlier = written[rng.Next(written.Count)];
            switch ((i + 1) / every % 8)
            {
                case 0: Emit(Line(SystemPrompt, earlier.Text, earlier.Answer), "duplicate"); break;
                case 1: Emit(Line(SystemPrompt, earlier.Text + " Thanks again!", earlier.Answer), "near-duplicate"); break;
                case 2:
                    string other = Symptoms.Keys.First(k => k != earlier.Category);
                    Emit(Line(SystemPrompt, earlier.Text, (earlier with { Category = other }).Answer), "conflict");
                    break;
                case 3: Emit(Line(SystemPrompt, Generate(rng).Text, "  "), "empty-answer"); break;
                case 4: Emit("{\"messages\": [{\"role\": \"user\", \"content\": \"printer broken", "malformed"); break;
                case 5:
                    var prose = Generate(rng);
                    Emit(Line(SystemPrompt, prose.Text, $"This looks like a {prose.Category} issue with the {prose.Product}, priority {prose.Priority}."), "format");
                    break;
                case 6:
                    var longOne = Generate(rng);
                    Emit(Line(SystemPrompt, string.Join(' ', Enumerable.Repeat(longOne.Text, 60)), longOne.Answer), "over-length");
                    break;
                default:
                    var pii = Generate(rng);
                    Emit(Line(SystemPrompt, pii.Text + " Call me at +1 415 555 0134 or mail jane.doe@example.com.", pii.Answer), "pii");
                    break;
            }
        }
        return defects;
    }
}
