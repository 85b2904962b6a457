using EdgeTune.Core;

namespace EdgeTune.Formats.Onnx;

/// <summary>An operator set the model imports ("" is the default ONNX domain).</summary>
public sealed record OnnxOpset(string Domain, long Version);

/// <summary>
/// Writes and reads ONNX ModelProto files, the subset a decoder graph needs (onnx/onnx.proto field numbers).
/// Weights are expected in an external data file, so the protobuf itself stays small.
/// </summary>
public static class OnnxModelFile
{
    // ModelProto
    private const int ModelIrVersion = 1, ModelProducerName = 2, ModelProducerVersion = 3, ModelGraph = 7, ModelOpsetImport = 8;
    // OperatorSetIdProto
    private const int OpsetDomain = 1, OpsetVersion = 2;
    // GraphProto
    private const int GraphNode = 1, GraphName = 2, GraphInitializer = 5, GraphInput = 11, GraphOutput = 12;
    // NodeProto
    private const int NodeInput = 1, NodeOutput = 2, NodeName = 3, NodeOpType = 4, NodeAttribute = 5, NodeDomain = 7;
    // AttributeProto and its AttributeType values
    private const int AttrName = 1, AttrF = 2, AttrI = 3, AttrS = 4, AttrFloats = 7, AttrInts = 8, AttrType = 20;
    private const int TypeFloat = 1, TypeInt = 2, TypeString = 3, TypeFloats = 6, TypeInts = 7;
    // ValueInfoProto → TypeProto → TypeProto.Tensor → TensorShapeProto → Dimension
    private const int ValueName = 1, ValueType = 2, TypeTensor = 1, TensorElemType = 1, TensorShape = 2, ShapeDim = 1, DimValue = 1, DimParam = 2;
    // TensorProto and StringStringEntryProto
    private const int TensorDims = 1, TensorDataType = 2, TensorName = 8, TensorRawData = 9, TensorExternalData = 13, TensorDataLocation = 14;
    private const int EntryKey = 1, EntryValue = 2, LocationExternal = 1;

    public static byte[] Encode(OnnxGraph graph, IReadOnlyList<OnnxOpset> opsets, string producer, string producerVersion, long irVersion = 10)
    {
        var w = new ProtoWriter();
        w.Int64(ModelIrVersion, irVersion);
        w.String(ModelProducerName, producer);
        w.String(ModelProducerVersion, producerVersion);
        w.Message(ModelGraph, g => WriteGraph(g, graph));
        foreach (var o in opsets)
            w.Message(ModelOpsetImport, m =>
            {
                if (o.Domain.Length > 0) m.String(OpsetDomain, o.Domain);
                m.Int64(OpsetVersion, o.Version);
            });
        return w.ToArray();
    }

    private static void WriteGraph(ProtoWriter g, OnnxGraph graph)
    {
        foreach (var node in graph.Nodes) g.Message(GraphNode, n => WriteNode(n, node));
        g.String(GraphName, graph.Name);
        foreach (var init in graph.Initializers) g.Message(GraphInitializer, t => WriteTensor(t, init));
        foreach (var input in graph.Inputs) g.Message(GraphInput, v => WriteValueInfo(v, input));
        foreach (var output in graph.Outputs) g.Message(GraphOutput, v => WriteValueInfo(v, output));
    }

    private static void WriteNode(ProtoWriter n, OnnxNode node)
    {
        foreach (var i in node.Inputs) n.String(NodeInput, i);
        foreach (var o in node.Outputs) n.String(NodeOutput, o);
        n.String(NodeName, node.Name);
        n.String(NodeOpType, node.OpType);
        foreach (var a in node.Attributes) n.Message(NodeAttribute, m => WriteAttribute(m, a));
        if (node.Domain.Length > 0) n.String(NodeDomain, node.Domain);
    }

    private static void WriteAttribute(ProtoWriter m, OnnxAttribute a)
    {
        m.String(AttrName, a.Name);
        switch (a.Value)
        {
            case float f: m.Float(AttrF, f); m.Int64(AttrType, TypeFloat); break;
            case long i: m.Int64(AttrI, i); m.Int64(AttrType, TypeInt); break;
            case int i: m.Int64(AttrI, i); m.Int64(AttrType, TypeInt); break;
            case string s: m.String(AttrS, s); m.Int64(AttrType, TypeString); break;
            case long[] ints: foreach (var i in ints) m.Int64(AttrInts, i); m.Int64(AttrType, TypeInts); break;
            case float[] floats: foreach (var f in floats) m.Float(AttrFloats, f); m.Int64(AttrType, TypeFloats); break;
            default: throw new ArgumentException($"attribute '{a.Name}': {a.Value.GetType().Name} values are not written", nameof(a));
        }
    }

    private static void WriteValueInfo(ProtoWriter v, OnnxValueInfo info)
    {
        v.String(ValueName, info.Name);
        v.Message(ValueType, t => t.Message(TypeTensor, tensor =>
        {
            tensor.Int64(TensorElemType, (long)info.Type);
            tensor.Message(TensorShape, shape =>
            {
                foreach (var d in info.Shape)
                    shape.Message(ShapeDim, dim =>
                    {
                        if (d.Value is long value) dim.Int64(DimValue, value);
                        else dim.String(DimParam, d.Param!);
                    });
            });
        }));
    }

    private static void WriteTensor(ProtoWriter t, OnnxInitializer init)
    {
        foreach (var d in init.Dims) t.Int64(TensorDims, d);
        t.Int64(TensorDataType, (long)init.Type);
        t.String(TensorName, init.Name);
        if (init.Raw is not null) t.Bytes(TensorRawData, init.Raw);
        if (init.External is { } ext)
        {
            void Entry(string key, string value) => t.Message(TensorExternalData, e => { e.String(EntryKey, key); e.String(EntryValue, value); });
            Entry("location", ext.File);
            Entry("offset", ext.Offset.ToString(System.Globalization.CultureInfo.InvariantCulture));
            Entry("length", ext.Length.ToString(System.Globalization.CultureInfo.InvariantCulture));
            t.Int64(TensorDataLocation, LocationExternal);
        }
    }

    /// <summary>Where each element of a graph read back sits in model.onnx, for error messages.</summary>
    public sealed record Positions(Dictionary<OnnxNode, long> Nodes, Dictionary<OnnxInitializer, long> Initializers, Dictionary<OnnxValueInfo, long> Values);

    /// <summary>The model's opsets and graph, each part checked only for well-formed protobuf here; meaning is the caller's.</summary>
    public static (OnnxGraph Graph, IReadOnlyList<OnnxOpset> Opsets, Positions Where) Read(string path)
    {
        var info = new FileInfo(path);
        if (!info.Exists) throw new EdgeTuneException($"{path}: no such file");
        if (info.Length > int.MaxValue) throw FileFormatException.AtOffset(path, 0, $"{info.Length} bytes is over protobuf's 2 GiB limit (weights belong in the external data file)");
        var reader = new ProtoReader(path, File.ReadAllBytes(path));
        var graph = new OnnxGraph();
        var opsets = new List<OnnxOpset>();
        var where = new Positions([], [], []);
        bool sawGraph = false;
        foreach (var f in reader.Fields())
        {
            if (f.Number == ModelGraph && f.WireType == 2) { ReadGraph(reader.Nested(f), graph, where); sawGraph = true; }
            else if (f.Number == ModelOpsetImport && f.WireType == 2)
            {
                string domain = ""; long version = 0;
                foreach (var o in reader.Nested(f).Fields())
                {
                    if (o.Number == OpsetDomain && o.WireType == 2) domain = o.AsString();
                    else if (o.Number == OpsetVersion && o.WireType == 0) version = o.AsInt64();
                }
                opsets.Add(new OnnxOpset(domain, version));
            }
        }
        if (!sawGraph) throw FileFormatException.AtOffset(path, 0, "no graph in this ModelProto (is this an ONNX model?)");
        return (graph, opsets, where);
    }

    private static void ReadGraph(ProtoReader r, OnnxGraph graph, Positions where)
    {
        foreach (var f in r.Fields())
        {
            if (f.WireType != 2) continue;
            switch (f.Number)
            {
                case GraphName: graph.Name = f.AsString(); break;
                case GraphNode: { var n = ReadNode(r.Nested(f)); graph.Nodes.Add(n); where.Nodes[n] = f.Offset; break; }
                case GraphInitializer: { var t = ReadTensor(r.Nested(f)); graph.Initializers.Add(t); where.Initializers[t] = f.Offset; break; }
                case GraphInput: { var v = ReadValueInfo(r.Nested(f)); graph.Inputs.Add(v); where.Values[v] = f.Offset; break; }
                case GraphOutput: { var v = ReadValueInfo(r.Nested(f)); graph.Outputs.Add(v); where.Values[v] = f.Offset; break; }
            }
        }
    }

    private static OnnxNode ReadNode(ProtoReader r)
    {
        var inputs = new List<string>();
        var outputs = new List<string>();
        var attributes = new List<OnnxAttribute>();
        string name = "", op = "", domain = "";
        foreach (var f in r.Fields())
        {
            if (f.WireType != 2) continue;
            switch (f.Number)
            {
                case NodeInput: inputs.Add(f.AsString()); break;
                case NodeOutput: outputs.Add(f.AsString()); break;
                case NodeName: name = f.AsString(); break;
                case NodeOpType: op = f.AsString(); break;
                case NodeDomain: domain = f.AsString(); break;
                case NodeAttribute: attributes.Add(ReadAttribute(r.Nested(f))); break;
            }
        }
        return new OnnxNode(op, name, inputs, outputs, attributes, domain == "ai.onnx" ? "" : domain);
    }

    private static OnnxAttribute ReadAttribute(ProtoReader r)
    {
        string name = "";
        object? value = null;
        var ints = new List<long>();
        foreach (var f in r.Fields())
        {
            switch (f.Number)
            {
                case AttrName when f.WireType == 2: name = f.AsString(); break;
                case AttrF when f.WireType == 5: value = f.AsFloat(); break;
                case AttrI when f.WireType == 0: value = f.AsInt64(); break;
                case AttrS when f.WireType == 2: value = f.AsString(); break;
                case AttrInts: ints.AddRange(r.Varints(f)); break;
            }
        }
        return new OnnxAttribute(name, value ?? ints.ToArray());
    }

    private static OnnxValueInfo ReadValueInfo(ProtoReader r)
    {
        string name = "";
        var type = (OnnxDataType)0;
        var dims = new List<OnnxDim>();
        foreach (var f in r.Fields())
        {
            if (f.Number == ValueName && f.WireType == 2) name = f.AsString();
            else if (f.Number == ValueType && f.WireType == 2)
                foreach (var t in r.Nested(f).Fields().Where(t => t.Number == TypeTensor && t.WireType == 2))
                {
                    var tr = r.Nested(f).Nested(t);
                    foreach (var e in tr.Fields())
                    {
                        if (e.Number == TensorElemType && e.WireType == 0) type = (OnnxDataType)e.AsInt64();
                        else if (e.Number == TensorShape && e.WireType == 2)
                            foreach (var d in tr.Nested(e).Fields().Where(d => d.Number == ShapeDim && d.WireType == 2))
                            {
                                OnnxDim dim = new(null, null);
                                foreach (var x in tr.Nested(e).Nested(d).Fields())
                                {
                                    if (x.Number == DimValue && x.WireType == 0) dim = x.AsInt64();
                                    else if (x.Number == DimParam && x.WireType == 2) dim = x.AsString();
                                }
                                dims.Add(dim);
                            }
                    }
                }
        }
        return new OnnxValueInfo(name, type, dims);
    }

    private static OnnxInitializer ReadTensor(ProtoReader r)
    {
        var dims = new List<long>();
        string name = "";
        var type = (OnnxDataType)0;
        byte[]? raw = null;
        string? location = null;
        long offset = 0, length = -1;
        foreach (var f in r.Fields())
        {
            switch (f.Number)
            {
                case TensorDims: dims.AddRange(r.Varints(f)); break;
                case TensorDataType when f.WireType == 0: type = (OnnxDataType)f.AsInt64(); break;
                case TensorName when f.WireType == 2: name = f.AsString(); break;
                case TensorRawData when f.WireType == 2: raw = f.Bytes.ToArray(); break;
                case TensorExternalData when f.WireType == 2:
                    string key = "", value = "";
                    foreach (var e in r.Nested(f).Fields())
                    {
                        if (e.Number == EntryKey && e.WireType == 2) key = e.AsString();
                        else if (e.Number == EntryValue && e.WireType == 2) value = e.AsString();
                    }
                    if (key == "location") location = value;
                    else if (key == "offset" && long.TryParse(value, out long o)) offset = o;
                    else if (key == "length" && long.TryParse(value, out long l)) length = l;
                    break;
            }
        }
        return new OnnxInitializer(name, type, dims, raw, location is null ? null : new OnnxExternalLocation(location, offset, length));
    }
}
