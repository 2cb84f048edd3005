import Basics
#if canImport(Glibc)
import Glibc
#endif
import CheckpointIO
import Models
import Pruning
import TensorMath

/// `ckpt importance`: activation statistics from calibration text; `merge`; `show`.
enum ImportanceCommand {
    static let spec = CommandSpec(
        name: "importance",
        summary: "Measure which heads, neurons, channels and layers matter, from calibration text.",
        usage: """
        importance --model <model> --calib <file> [--samples 1024] [--seq 512] [--batch B] [--tokenizer T] [--shard i/N] [--threads T] [--max-resident SIZE] -o <stats>
               ckpt importance merge <stats>... -o <stats>
               ckpt importance show <stats> [--json] [--plot FILE.svg|FILE.png] [--agg l2|mean|variance] [--head-metric contribution|output] [--expert-metric routing|selected|output]
               ckpt importance export <stats> --imatrix <file.gguf> [--force]
        """,
        discussion: """
        Runs --samples sequences of --seq tokens from the start of --calib through the model
        one layer at a time (the model is never whole in memory with --max-resident) and
        records, per layer, sums over samples of per-sample mean |activation| for MLP
        neurons (the input of the down projection), attention heads (‖o_h‖ and
        ‖W_o,h·o_h‖), hidden channels (the normed inputs of attention and MLP), Σa² per
        channel (Wanda), and Block Influence (1 − cos between a layer's input and output).
        In a mixture of experts, per routed expert: its routing weight mass, how often it
        is chosen, weight × ‖output‖, and each of its neurons (0 on tokens routed elsewhere).
        The sums are exact, so shards run with --shard i/N (contiguous sample ranges) and
        merged with 'ckpt importance merge' equal one run bit for bit. Format:
        Formats/importance.md. 'export --imatrix' writes llama.cpp's importance matrix
        (GGUF form: <weight>.in_sum2 and .counts per matrix) for llama-quantize --imatrix.
        """,
        options: [
            .init("--model", value: "model", help: "GGUF file, or HF safetensors directory / file with config.json."),
            .init("--calib", value: "file", help: "Calibration text (UTF-8)."),
            .init("--samples", value: "n", help: "Calibration sequences (default 1024)."),
            .init("--seq", value: "n", help: "Tokens per sequence (default 512)."),
            .init("--batch", value: "n", help: "Sequences per pass through the layers (default: 2048 tokens' worth)."),
            .init("--tokenizer", value: "path", help: "A GGUF or a directory with tokenizer.json to tokenize with, for models that ship none."),
            .init("--shard", value: "i/N", help: "Measure only shard i of N of the samples (merge the shards afterwards)."),
            .init("--threads", value: "n", help: "Threads (default: all CPUs)."),
            .init("--max-resident", value: "size", help: "Stream layers when the model is larger than this (default: half the memory of the machine or its cgroup)."),
            .init("-o", value: "stats", help: "Output statistics file."),
            .init("--output", value: "stats", help: "Same as -o."),
            .init("--json", help: "show: print scores as JSON."),
            .init("--plot", value: "file.svg|png", help: "show: draw head and neuron heatmaps and the layer-importance curve (SVG, or PNG by the name)."),
            .init("--agg", value: "kind", help: "show: aggregation over samples, l2 (default), mean or variance."),
            .init("--head-metric", value: "kind", help: "show: contribution (default) or output."),
            .init("--expert-metric", value: "kind", help: "show, a mixture of experts: routing (default), selected or output."),
            .init("--imatrix", value: "file.gguf", help: "export: llama.cpp importance-matrix output."),
            .init("--force", help: "export: replace an existing file."),
        ],
        positionals: 0...4096
    )

    static func run(_ args: ParsedArguments) throws {
        switch args.positionals.first {
        case "merge": try merge(args)
        case "show": try show(args)
        case "export": try export(args)
        case nil: try measure(args)
        case let other?: throw UsageError(message: "unknown importance action '\(other)' (merge, show, or none to measure)", command: "importance")
        }
    }

    static func output(_ args: ParsedArguments) throws -> String {
        guard let o = args.output else {
            throw UsageError(message: "importance needs -o <stats>", command: "importance")
        }
        return o
    }

    static func measure(_ args: ParsedArguments) throws {
        guard let modelPath = args.value("--model") else { throw UsageError(message: "importance needs --model", command: "importance") }
        guard let calib = args.value("--calib") else { throw UsageError(message: "importance needs --calib", command: "importance") }
        let out = try output(args)
        let count = try args.int("--samples", default: 1024, min: 1)
        let seq = try args.int("--seq", default: 512, min: 2)
        let batch = try args.int("--batch", default: max(1, 2048 / seq), min: 1)
        ThreadPool.setThreads(try args.threads())
        let cap: Int? = try args.size("--max-resident") ?? ResidentLimit.defaultBytes
        let model = try DecoderModel(path: modelPath)
        if seq > model.spec.contextLength { throw ModelError.contextTooLong(tokens: seq, context: model.spec.contextLength) }
        let tokenizer = try Tokenizers.forModel(path: args.value("--tokenizer") ?? modelPath)
        let bytes = try FileSystem.readFile(calib, limit: 1 << 34)
        let tokens = tokenizer.encode(bytes: bytes, special: false)
        let bos = tokenizer.addsBOS ? tokenizer.files.bosID.map(Int32.init) : nil
        let samples = try Calibration.samples(from: tokens, count: count, seq: seq, bos: bos, path: calib)
        let range = try args.value("--shard").map { try Calibration.shardRange($0, samples: count) } ?? 0..<count
        let bar = ProgressBar(label: "importance", total: range.count, totalBytes: 0)
        let t0 = monotonicSeconds()
        let stats = try Calibration.run(model: model, samples: samples, range: range, batch: batch,
                                        releaseLayers: cap.map { model.checkpoint.tensorBytes > $0 } ?? false) { done, all in
            bar.update(done: done, bytesDone: 0, force: done == all)
        }
        bar.finish()
        let seconds = monotonicSeconds() - t0
        try ImportanceFile.write(stats, to: out)
        warnDegenerate(stats)
        Console.err("importance: \(range.count) samples × \(seq) tokens (samples \(range.lowerBound)..<\(range.upperBound) of \(count)) in "
            + "\(formatFixed(seconds, digits: 1)) s, \(formatFixed(Double(stats.tokens) / max(seconds, 1e-9), digits: 1)) tokens/s → \(out)\n")
    }

    static func warnDegenerate(_ stats: ImportanceStats) {
        let d = stats.degenerateTokens
        if let worst = d.indices.max(by: { d[$0] < d[$1] }), d[worst] > 0 {
            Console.err("warning: \(d.reduce(0, +)) token(s) had a zero hidden state at a layer boundary (most at layer \(worst)); their cosine was taken as 1\n")
        }
    }

    static func merge(_ args: ParsedArguments) throws {
        let inputs = Array(args.positionals.dropFirst())
        guard inputs.count >= 1 else { throw UsageError(message: "importance merge needs statistics files to merge", command: "importance") }
        let out = try output(args)
        var merged = try ImportanceFile.read(inputs[0])
        for path in inputs.dropFirst() {
            let next = try ImportanceFile.read(path)
            do { try merged.merge(next) } catch let e as ImportanceError {
                throw CheckpointError.inconsistentSet(path: path, reason: e.description)
            }
        }
        try ImportanceFile.write(merged, to: out)
        let covered = merged.sampleRanges.map { "\($0.lowerBound)..<\($0.upperBound)" }.joined(separator: ", ")
        Console.err("merged \(inputs.count) file(s): samples \(covered) of \(merged.totalSamples), \(merged.tokens) tokens → \(out)\n")
        if merged.samples < merged.totalSamples {
            Console.err("note: \(merged.totalSamples - merged.samples) sample(s) of the calibration set are not covered yet\n")
        }
    }

    static func export(_ args: ParsedArguments) throws {
        guard args.positionals.count == 2 else { throw UsageError(message: "importance export takes one statistics file", command: "importance") }
        guard let out = args.value("--imatrix") else { throw UsageError(message: "importance export needs --imatrix <file.gguf>", command: "importance") }
        let stats = try ImportanceFile.read(args.positionals[1])
        try Imatrix.write(stats, to: out, dataset: "ckpt calibration \(stats.calibrationIdentity)", overwrite: args.flag("--force"))
        Console.err("wrote llama.cpp importance matrix for \(stats.shape.layers) layers (\(stats.tokens) tokens) → \(out)\n")
    }

    static func show(_ args: ParsedArguments) throws {
        guard args.positionals.count == 2 else { throw UsageError(message: "importance show takes one statistics file", command: "importance") }
        let stats = try ImportanceFile.read(args.positionals[1])
        guard let agg = Aggregation(rawValue: args.value("--agg") ?? "l2") else {
            throw UsageError(message: "--agg is l2, mean or variance", command: "importance")
        }
        guard let metric = HeadMetric(rawValue: args.value("--head-metric") ?? "contribution") else {
            throw UsageError(message: "--head-metric is contribution or output", command: "importance")
        }
        guard let expertMetric = ExpertMetric(rawValue: args.value("--expert-metric") ?? "routing") else {
            throw UsageError(message: "--expert-metric is routing, selected or output", command: "importance")
        }
        let sh = stats.shape
        let heads = (0..<sh.layers).map { stats.headScores(layer: $0, metric: metric, agg) }
        // A mixture's neurons: every expert's, expert after expert.
        let neurons = (0..<sh.layers).map { sh.experts > 0 ? stats.layers[$0].expertNeurons.scores(agg, samples: stats.samples) : stats.neuronScores(layer: $0, agg) }
        let experts = sh.experts > 0 ? (0..<sh.layers).map { stats.expertScores(layer: $0, metric: expertMetric, agg) } : nil
        let bi = stats.blockInfluence
        if let plot = args.value("--plot") {
            try ImportancePlot.drawing(stats: stats, heads: heads, neurons: neurons, metric: metric, agg: agg).write(to: plot)
        }
        if args.flag("--json") {
            var w = JSONWriter()
            w.beginObject()
            w.string(stats.modelIdentity, key: "model")
            w.string(sh.architecture, key: "architecture")
            w.int(stats.samples, key: "samples")
            w.int(stats.tokens, key: "tokens")
            w.string(agg.rawValue, key: "agg")
            w.string(metric.rawValue, key: "head_metric")
            if experts != nil { w.string(expertMetric.rawValue, key: "expert_metric") }
            w.beginArray(key: "layers")
            for l in 0..<sh.layers {
                w.beginObject()
                w.double(bi[l], key: "block_influence")
                w.raw("[" + heads[l].map { JSONWriter.number($0) }.joined(separator: ",") + "]", key: "heads")
                w.raw("[" + neurons[l].map { JSONWriter.number($0) }.joined(separator: ",") + "]", key: "neurons")
                if let experts { w.raw("[" + experts[l].map { JSONWriter.number($0) }.joined(separator: ",") + "]", key: "experts") }
                w.endObject()
            }
            w.endArray()
            w.raw("[" + stats.channelScores(agg).map { JSONWriter.number($0) }.joined(separator: ",") + "]", key: "channels")
            w.endObject()
            Console.out(w.text + "\n")
            return
        }
        var s = "\(args.positionals[1]): \(sh.architecture), \(sh.layers) layers, \(stats.samples) samples, \(stats.tokens) tokens; "
        s += "scores: \(agg.rawValue) over samples, heads by \(metric.rawValue)\(experts == nil ? "" : ", experts by \(expertMetric.rawValue)")\n\n"
        s += "layer".padding(to: 7) + "BI".leftPadding(to: 10) + "  rank" + "   heads, best → worst".padding(to: 40)
            + (experts == nil ? "" : "experts, best → worst".padding(to: 40)) + "neurons: max / median / min\n"
        let biRank = bi.indices.sorted { bi[$0] > bi[$1] }
        for l in 0..<sh.layers {
            let order = heads[l].indices.sorted { heads[l][$0] > heads[l][$1] }
            let sorted = neurons[l].sorted()
            let rank = biRank.firstIndex(of: l)! + 1
            s += "\(l)".padding(to: 7) + formatStat(bi[l]).leftPadding(to: 10) + "\(rank)".leftPadding(to: 6) + "   "
            s += order.map(String.init).joined(separator: " ").padding(to: 37)
            if let e = experts?[l] {
                let order = e.indices.sorted { e[$0] > e[$1] }
                let shown = order.count <= 12 ? order.map(String.init) : order.prefix(8).map(String.init) + ["…"] + order.suffix(3).map(String.init)
                s += "   " + shown.joined(separator: " ").padding(to: 37)
            }
            guard !sorted.isEmpty else { s += "-\n"; continue }
            s += "\(formatStat(sorted.last)) / \(formatStat(sorted[sorted.count / 2])) / \(formatStat(sorted.first))\n"
        }
        for k in [1, 2, 4, sh.layers / 5].filter({ $0 > 0 && $0 < sh.layers }) {
            if let b = stats.leastInfluentialBlock(of: k) { s += "\nleast influential block of \(k): layers \(b)…\(b + k - 1)" }
        }
        let ch = stats.channelScores(agg)
        let chOrder = ch.indices.sorted { ch[$0] < ch[$1] }
        s += "\nleast important hidden channels: " + chOrder.prefix(12).map(String.init).joined(separator: " ") + "\n"
        Console.out(s)
        warnDegenerate(stats)
    }
}

/// An SVG a person would look at before choosing what to cut: head importance per layer,
/// neuron importance per layer (neurons sorted by score within the layer), and the
/// Block Influence curve.
enum ImportancePlot {
    static func drawing(stats: ImportanceStats, heads: [[Double]], neurons: [[Double]], metric: HeadMetric, agg: Aggregation) -> Drawing {
        let L = stats.shape.layers, H = stats.shape.heads
        let cell = 14.0, left = 60.0, top = 50.0
        let headW = Double(H) * cell, bins = 64, neuronW = Double(bins) * 6
        let width = left + headW + 40 + neuronW + 40 + 220, height = top + Double(L) * cell + 60
        var d = Drawing(width: Int(width), height: Int(height))
        d.text(left, 20, "\(stats.shape.architecture): importance from \(stats.samples) samples (\(agg.rawValue))", size: 14)
        func color(_ t: Double) -> Drawing.Color {
            // Dark blue (unimportant) to yellow (important), by rank within the row.
            let x = max(0, min(1, t))
            return Drawing.Color(r: UInt8(68 + x * (253 - 68)), g: UInt8(1 + x * (231 - 1)), b: UInt8(84 + x * (37 - 84)))
        }
        func ranks(_ v: [Double]) -> [Double] {
            let order = v.indices.sorted { v[$0] < v[$1] }
            var r = [Double](repeating: 0, count: v.count)
            for (i, j) in order.enumerated() { r[j] = v.count > 1 ? Double(i) / Double(v.count - 1) : 1 }
            return r
        }
        d.text(left, top - 8, "heads (\(metric.rawValue))")
        let x2 = left + headW + 40
        d.text(x2, top - 8, "MLP neurons, sorted; log score vs model max")
        let globalMax = neurons.flatMap { $0 }.max() ?? 1
        let logMin = log10(max(globalMax, 1e-30)) - 4
        for l in 0..<L {
            let y = top + Double(l) * cell
            d.text(left - 8, y + cell - 3, "\(l)", anchor: .end)
            let hr = ranks(heads[l])
            for h in 0..<H {
                d.shapes.append(.rect(x: left + Double(h) * cell, y: y, width: cell - 1, height: cell - 1, fill: color(hr[h]), stroke: nil,
                                      title: "layer \(l) head \(h): \(formatStat(heads[l][h]))"))
            }
            let sorted = neurons[l].sorted(by: >)
            for b in 0..<bins {
                let i = min(sorted.count - 1, b * sorted.count / bins)
                let v = sorted.isEmpty ? 0 : (log10(max(sorted[i], 1e-30)) - logMin) / 4
                d.shapes.append(.rect(x: x2 + Double(b) * 6, y: y, width: 6, height: cell - 1, fill: color(v), stroke: nil, title: nil))
            }
        }
        // Block Influence curve.
        let x3 = x2 + neuronW + 40, w3 = 200.0
        let bi = stats.blockInfluence
        let maxBI = max(bi.max() ?? 1, 1e-12)
        let red = Drawing.Color(hex: "#c0392b")
        d.text(x3, top - 8, "Block Influence (1 − cos)")
        d.shapes.append(.line(x1: x3, y1: top, x2: x3, y2: top + Double(L) * cell, stroke: Drawing.Color(hex: "#999999")))
        let points = (0..<L).map { l in (x3 + bi[l] / maxBI * w3, top + Double(l) * cell + cell / 2) }
        d.shapes.append(.polyline(points, stroke: red, width: 2))
        for l in 0..<L {
            d.shapes.append(.circle(x: points[l].0, y: points[l].1, r: 2.5, fill: red, title: "layer \(l): \(formatStat(bi[l]))"))
        }
        d.text(x3, top + Double(L) * cell + 16, "0")
        d.text(x3 + w3, top + Double(L) * cell + 16, formatStat(maxBI), anchor: .end)
        d.text(left, height - 12, "colour by rank in its layer (heads) or log score (neurons): dark = least important, yellow = most; rows are layers 0 (top) to \(L - 1)", fill: Drawing.Color(hex: "#555555"))
        return d
    }
}
