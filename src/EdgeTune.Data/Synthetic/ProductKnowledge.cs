using System.Text;

namespace EdgeTune.Data.Synthetic;

/// <summary>
/// A small product knowledge base for the retrieval baselines (the demo's and the tests'): one Markdown file per
/// product with Warranty, Returns, Routing and Firmware sections. Each question's answer sits in exactly one section
/// of one file (its gold sentence), among sections that read alike for the other products, so retrieval must find
/// the product and the topic. Questions come as chat JSONL like <see cref="SupportTickets"/>.
/// </summary>
public static class ProductKnowledge
{
    public const string SystemPrompt = "You answer questions about our products from the knowledge base. Answer with the value only.";

    public static readonly string[] Products =
        [.. SupportTickets.Products, "DoorLock", "ThermoStat", "SmartPlug", "LightBar", "AirSense", "WaterGuard", "SolarHub", "ChargeDock", "BeamCam", "GateKeeper"];

    private static readonly string[] Teams = ["hardware-emea", "hardware-americas", "billing-core", "firmware-lab", "field-service", "returns-desk"];
    private static readonly string[] Filler =
    [
        "Customers find the details in the order confirmation as well.",
        "Agents should quote this policy when a ticket asks about it.",
        "The policy was last reviewed by the support leads this quarter.",
        "Exceptions need the approval of a team lead.",
    ];

    /// <summary>A question, its answer, the file holding it and the one sentence of the knowledge base that answers it.</summary>
    public sealed record Question(string Text, string Answer, string File, string GoldSentence);

    /// <summary>Writes <paramref name="products"/> product files (at most <see cref="Products"/>.Length) into <paramref name="folder"/>; returns the questions they answer.</summary>
    public static IReadOnlyList<Question> Write(string folder, int products, int seed)
    {
        if (products < 1 || products > Products.Length) throw new ArgumentOutOfRangeException(nameof(products), products, $"1 to {Products.Length}");
        Directory.CreateDirectory(folder);
        var rng = new Random(seed);
        var questions = new List<Question>();
        foreach (var product in Products.Take(products))
        {
            int months = 6 * rng.Next(1, 9);
            int days = 7 * rng.Next(2, 9);
            string team = Teams[rng.Next(Teams.Length)];
            string firmware = $"{rng.Next(1, 6)}.{rng.Next(0, 10)}.{rng.Next(0, 20)}";
            string file = product + ".md";
            var facts = new (string Section, string Gold, string Question, string Answer)[]
            {
                ("Warranty", $"The {product} warranty lasts {months} months from delivery.", $"How many months does the {product} warranty last?", $"{months} months"),
                ("Returns", $"A {product} may be returned within {days} days of purchase.", $"Within how many days can a {product} be returned?", $"{days} days"),
                ("Routing", $"Hardware tickets about the {product} go to the {team} team.", $"Which team handles {product} hardware tickets?", team),
                ("Firmware", $"The {product} needs firmware {firmware} or later for the cloud dashboard.", $"Which firmware does the {product} need for the cloud dashboard?", firmware),
            };
            var md = new StringBuilder($"# {product}\n\nProduct notes for support agents.\n");
            foreach (var f in facts)
            {
                md.Append($"\n## {f.Section}\n\n{f.Gold}\n\n{Filler[rng.Next(Filler.Length)]} {Filler[rng.Next(Filler.Length)]}\n");
                questions.Add(new Question(f.Question, f.Answer, file, f.Gold));
            }
            File.WriteAllText(Path.Combine(folder, file), md.ToString());
        }
        return questions;
    }

    /// <summary>The questions as chat JSONL lines (system prompt, question, answer).</summary>
    public static IEnumerable<string> Lines(IEnumerable<Question> questions) =>
        questions.Select(q => SupportTickets.Line(SystemPrompt, q.Text, q.Answer));
}
