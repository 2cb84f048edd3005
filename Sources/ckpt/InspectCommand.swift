import Basics
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CheckpointIO
import Models
import TensorMath

/// `ckpt inspect`: the `ls -l` of model files.
enum InspectCommand {
    static let spec = CommandSpec(
        name: "inspect",
        summary: "Show the tensors and metadata of a checkpoint, without reading its data.",
        usage: "inspect <path> [--json] [--full] [--filter <glob> ...] [--stats]",
        discussion: """
        <path> is a .safetensors file, a *.safetensors.index.json, a directory of
        safetensors shards, a .gguf file, or any file of a GGUF split set.
        Shapes are outermost-first for both formats (GGUF ne[] is reversed).
        """,
        options: [
            .init("--json", help: "Print one JSON object to stdout instead of the table."),
            .init("--full", help: "Print metadata arrays in full (default: arrays over 64 elements are summarised)."),
            .init("--filter", value: "glob", repeatable: true, help: "Only tensors whose name matches the glob (repeatable: any match)."),
            .init("--stats", help: "Read the data and add min/max/mean/std/NaN/Inf per tensor (streamed)."),
        ],
        positionals: 1...1
    )

    static func run(_ args: ParsedArguments) throws {
        let path = args.positionals[0]
        let checkpoint = try openCheckpoint(path: path)
        let globs = args.values("--filter")
        let tensors = globs.isEmpty ? checkpoint.tensors : checkpoint.tensors.filter { t in
            globs.contains { fnmatch($0, t.name, 0) == 0 }
        }
        let config = try summaryConfig(checkpoint)
        var stats: [TensorStatistics?]?
        if args.flag("--stats") {
            let totalBytes = tensors.reduce(0) { $0 + $1.byteCount }
            let bar = ProgressBar(label: "stats", total: tensors.count, totalBytes: totalBytes)
            stats = try TensorStatistics.scan(tensors) { done, bytes in bar.update(done: done, bytesDone: bytes) }
            bar.finish()
        }
        if args.flag("--json") {
            Console.out(renderJSON(checkpoint, tensors: tensors, config: config, stats: stats, full: args.flag("--full")))
        } else {
            Console.out(renderTable(checkpoint, tensors: tensors, config: config, stats: stats, filtered: !globs.isEmpty))
        }
    }

    static func summaryConfig(_ c: any Checkpoint) throws -> ModelConfig? {
        switch c.format {
        case .gguf: return ModelConfig(gguf: c.metadata)
        case .safetensors: return try ModelConfig.beside(checkpointPath: c.path)
        }
    }

    // MARK: JSON

    static func renderJSON(_ c: any Checkpoint, tensors: [TensorView], config: ModelConfig?, stats: [TensorStatistics?]?, full: Bool) -> String {
        var w = JSONWriter()
        w.beginObject()
        w.string(c.format.rawValue, key: "format")
        if c.format == .gguf { w.int(c.formatVersion, key: "version") }
        w.string(c.path, key: "path")
        w.beginArray(key: "files")
        for f in c.files {
            w.beginObject()
            w.string(f.path, key: "path")
            w.int(f.size, key: "size")
            w.endObject()
        }
        w.endArray()
        w.beginObject(key: "metadata")
        for e in c.metadata { w.metadata(e.value, key: e.key, full: full) }
        w.endObject()
        if let st = c as? SafetensorsCheckpoint, let index = st.indexPath {
            w.beginObject(key: "index")
            w.string(index, key: "path")
            w.beginObject(key: "metadata")
            for e in st.indexMetadata { w.metadata(e.value, key: e.key, full: full) }
            w.endObject()
            w.endObject()
        }
        if let config {
            w.beginObject(key: "config")
            writeConfig(config, into: &w)
            w.endObject()
        }
        w.beginObject(key: "totals")
        w.int(tensors.count, key: "tensors")
        w.int(tensors.reduce(0) { $0 + $1.elementCount }, key: "parameters")
        w.int(tensors.reduce(0) { $0 + $1.byteCount }, key: "nbytes")
        w.beginObject(key: "by_dtype")
        for g in groupByDType(tensors) {
            w.beginObject(key: g.dtype)
            w.int(g.count, key: "tensors")
            w.int(g.parameters, key: "parameters")
            w.int(g.bytes, key: "nbytes")
            w.endObject()
        }
        w.endObject()
        w.endObject()
        w.beginArray(key: "tensors")
        for (i, t) in tensors.enumerated() {
            w.beginObject()
            w.string(t.name, key: "name")
            w.string(t.dtype.name, key: "dtype")
            w.raw("[" + t.shape.map(String.init).joined(separator: ",") + "]", key: "shape")
            w.string(t.file.path, key: "file")
            w.int(t.offset, key: "offset")
            w.int(t.byteCount, key: "nbytes")
            if let stats {
                if let s = stats[i] {
                    w.beginObject(key: "stats")
                    w.double(s.min, key: "min")
                    w.double(s.max, key: "max")
                    w.double(s.count > 0 ? s.mean : nil, key: "mean")
                    w.double(s.count > 0 ? s.standardDeviation : nil, key: "std")
                    w.int(s.nanCount, key: "nan")
                    w.int(s.infCount, key: "inf")
                    w.endObject()
                } else {
                    w.null(key: "stats")
                }
            }
            w.endObject()
        }
        w.endArray()
        w.endObject()
        return w.text + "\n"
    }

    static func writeConfig(_ c: ModelConfig, into w: inout JSONWriter) {
        func int(_ v: Int?, _ k: String) { if let v { w.int(v, key: k) } }
        if let a = c.modelType { w.string(a, key: "architecture") }
        int(c.numHiddenLayers, "layers")
        int(c.hiddenSize, "hidden_size")
        int(c.intermediateSize, "intermediate_size")
        int(c.numAttentionHeads, "heads")
        int(c.numKeyValueHeads, "kv_heads")
        int(c.headDim, "head_dim")
        int(c.vocabSize, "vocab_size")
        int(c.maxPositionEmbeddings, "context_length")
        if let t = c.ropeTheta { w.double(t, key: "rope_theta") }
        int(c.ropeDimensionCount, "rope_dimensions")
        if let s = c.ropeScaling {
            w.beginObject(key: "rope_scaling")
            if let k = s.kind { w.string(k, key: "type") }
            if let f = s.factor { w.double(f, key: "factor") }
            int(s.originalMaxPositionEmbeddings, "original_context_length")
            w.endObject()
        }
        if let e = c.rmsNormEps { w.double(e, key: "rms_norm_eps") }
        if let e = c.normEps { w.double(e, key: "norm_eps") }
        int(c.slidingWindow, "sliding_window")
    }

    struct DTypeGroup { let dtype: String; var count = 0; var parameters = 0; var bytes = 0 }

    static func groupByDType(_ tensors: [TensorView]) -> [DTypeGroup] {
        var groups: [DTypeGroup] = []
        for t in tensors {
            if let i = groups.firstIndex(where: { $0.dtype == t.dtype.name }) {
                groups[i].count += 1; groups[i].parameters += t.elementCount; groups[i].bytes += t.byteCount
            } else {
                groups.append(DTypeGroup(dtype: t.dtype.name, count: 1, parameters: t.elementCount, bytes: t.byteCount))
            }
        }
        return groups.sorted { $0.bytes > $1.bytes }
    }

    // MARK: Table

    static func renderTable(_ c: any Checkpoint, tensors: [TensorView], config: ModelConfig?, stats: [TensorStatistics?]?, filtered: Bool) -> String {
        var s = ""
        let formatName = c.format == .gguf ? "GGUF v\(c.formatVersion)" : "safetensors"
        let fileNote = c.files.count > 1 ? ", \(c.files.count) files (\(formatBytes(c.files.reduce(0) { $0 + $1.size })))" : ""
        s += "\(c.path): \(formatName)\(fileNote), \(c.tensors.count) tensors, \(formatCount(c.parameterCount)) parameters, \(formatBytes(c.tensorBytes)) of tensor data\n"

        if let config {
            var rows: [(String, String)] = []
            func add(_ k: String, _ v: String?) { if let v { rows.append((k, v)) } }
            add("architecture", config.modelType)
            add("layers", config.numHiddenLayers.map(String.init))
            add("hidden size", config.hiddenSize.map(String.init))
            add("ffn size", config.intermediateSize.map(String.init))
            if let h = config.numAttentionHeads {
                let kv = config.numKeyValueHeads.map { " (\($0) KV)" } ?? ""
                rows.append(("heads", "\(h)\(kv)" + (config.headDim.map { ", head dim \($0)" } ?? "")))
            }
            add("vocab", config.vocabSize.map(String.init))
            add("context", config.maxPositionEmbeddings.map(String.init))
            if let theta = config.ropeTheta {
                var r = "theta \(JSONWriter.number(theta))"
                if let d = config.ropeDimensionCount { r += ", \(d) dims" }
                if let sc = config.ropeScaling { r += ", scaling \(sc.kind ?? "?") ×\(sc.factor.map { JSONWriter.number($0) } ?? "?")" }
                rows.append(("rope", r))
            }
            add("sliding window", config.slidingWindow.map(String.init))
            if !rows.isEmpty {
                s += "\n"
                for (k, v) in rows { s += "  " + k.padding(to: 15) + v + "\n" }
            }
        }

        let meta = c.metadata.filter { !$0.key.hasPrefix("GGUF.") }
        if !meta.isEmpty {
            s += "\nmetadata (\(meta.count) keys)\n"
            let width = min(44, meta.map(\.key.count).max() ?? 0)
            for e in meta { s += "  " + e.key.padding(to: width) + "  " + describe(e.value) + "\n" }
        }

        s += "\n"
        let nameWidth = min(60, max(4, tensors.map(\.name.count).max() ?? 4))
        let dtypeWidth = max(5, tensors.map(\.dtype.name.count).max() ?? 5)
        let shapes = tensors.map { "[" + $0.shape.map(String.init).joined(separator: ", ") + "]" }
        let shapeWidth = max(5, shapes.map(\.count).max() ?? 5)
        var header = "name".padding(to: nameWidth) + "  " + "dtype".padding(to: dtypeWidth) + "  " + "shape".padding(to: shapeWidth) + "  " + "size".leftPadding(to: 10)
        if stats != nil {
            header += "  " + ["min", "max", "mean", "std"].map { $0.leftPadding(to: 11) }.joined(separator: " ") + "  " + "nan".leftPadding(to: 5) + " " + "inf".leftPadding(to: 5)
        }
        s += header + "\n"
        for (i, t) in tensors.enumerated() {
            var line = t.name.padding(to: nameWidth) + "  " + t.dtype.name.padding(to: dtypeWidth) + "  " + shapes[i].padding(to: shapeWidth) + "  " + formatBytes(t.byteCount).leftPadding(to: 10)
            if let stats {
                if let st = stats[i] {
                    let cols = [st.min, st.max, st.count > 0 ? st.mean : nil, st.count > 0 ? st.standardDeviation : nil]
                    line += "  " + cols.map { formatStat($0).leftPadding(to: 11) }.joined(separator: " ")
                    line += "  " + String(st.nanCount).leftPadding(to: 5) + " " + String(st.infCount).leftPadding(to: 5)
                } else {
                    line += "  (no decoder for \(t.dtype.name) yet)"
                }
            }
            s += line + "\n"
        }

        s += "\n" + (filtered ? "\(tensors.count) of \(c.tensors.count) tensors match" : "\(tensors.count) tensors") + " — by dtype:\n"
        for g in groupByDType(tensors) {
            s += "  " + g.dtype.padding(to: dtypeWidth) + "  " + "\(g.count) tensors".leftPadding(to: 12) + "  " + "\(formatCount(g.parameters)) params".leftPadding(to: 16) + "  " + formatBytes(g.bytes).leftPadding(to: 10) + "\n"
        }
        return s
    }

    static func describe(_ v: MetadataValue) -> String {
        switch v {
        case let .string(str):
            let oneLine = str.replacingAll("\n", with: "\\n")
            return oneLine.count > 72 ? "\"" + oneLine.prefix(72) + "…\" (\(str.utf8.count) bytes)" : "\"" + oneLine + "\""
        case let .array(a):
            if a.count <= 8 && a.elementType != "array" {
                return "[" + a.values().map(describe).joined(separator: ", ") + "]"
            }
            return "[\(a.count) × \(a.elementType)]"
        case let .object(entries):
            return "{" + entries.map { "\($0.key): \(describe($0.value))" }.joined(separator: ", ") + "}"
        case let .float32(f): return JSONWriter.number(f)
        case let .float64(d): return JSONWriter.number(d)
        case let .bool(b): return b ? "true" : "false"
        case .null: return "null"
        default: return v.intValue.map(String.init) ?? "\(v)"
        }
    }
}

extension String {
    func replacingAll(_ target: Character, with replacement: String) -> String {
        var out = ""
        for ch in self { if ch == target { out += replacement } else { out.append(ch) } }
        return out
    }
}
