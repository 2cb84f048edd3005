import Basics
#if canImport(Glibc)
import Glibc
#endif
import CheckpointIO
import Conversion
import Models
import Pruning

/// `ckpt prune`: width and depth pruning by importance, written as a new checkpoint.
enum PruneCommand {
    static let spec = CommandSpec(
        name: "prune",
        summary: "Cut MLP neurons, attention heads, hidden channels or layers, keeping the most important.",
        usage: "prune --model <model> [--importance STATS] [--method activation|magnitude|wanda|random] [--ffn N] [--heads-per-group N | --heads N] [--hidden N] [--layers N | --drop-layers a-b,…] [--experts N [--expert-metric routing|selected|output]] [--dtype keep|…] [--dry-run] [--json] [--force] (-o <out> | --in-place)",
        discussion: """
        Ranks channels with --method (activation statistics from 'ckpt importance' by
        default; magnitude and random need none) and keeps the best: --ffn MLP neurons per
        layer; --heads-per-group query heads in every KV group (GQA: KV heads all stay,
        head_dim stays and is written explicitly; --heads N is N / KV heads per group);
        --hidden embedding channels (removed from the embedding, every norm, every input
        projection's columns, every output projection's rows and the LM head); --layers N
        keeps the N layers of highest Block Influence, --drop-layers removes the listed ones.
        In a mixture of experts, --experts N keeps N routed experts per layer (their router
        rows, their slices of the stacked tensors, renumbered), ranked by --expert-metric,
        and --ffn cuts each kept expert's neurons by its own statistics; the shared expert
        keeps its width.
        Layers are renumbered and the shape metadata (GGUF keys or config.json) updated.
        GGUF in, GGUF out; safetensors in, safetensors out. Rows of quantized tensors are
        copied as whole blocks; where columns go, rows are requantized to the same type
        (or llama.cpp's fallback when blocks no longer fit). --dry-run prints the plan.
        """,
        options: [
            .init("--model", value: "model", help: "GGUF file, or HF safetensors directory with config.json."),
            .init("--importance", value: "stats", help: "Statistics from 'ckpt importance' of this model."),
            .init("--method", value: "method", help: "activation (default), magnitude, wanda or random."),
            .init("--head-metric", value: "kind", help: "Head score for --method activation: contribution (default), output, or loss (drop-one, needs --eval-file)."),
            .init("--agg", value: "kind", help: "Aggregation of activation statistics over samples: l2 (default), mean or variance."),
            .init("--depth-metric", value: "kind", help: "Layer score for --layers: bi (Block Influence, default) or loss (drop-one, needs --eval-file)."),
            .init("--ffn", value: "n", help: "MLP neurons to keep per layer."),
            .init("--heads-per-group", value: "n", help: "Query heads to keep per KV group."),
            .init("--heads", value: "n", help: "Query heads to keep per layer (a multiple of the KV heads)."),
            .init("--hidden", value: "n", help: "Hidden (embedding) channels to keep."),
            .init("--layers", value: "n", help: "Layers to keep (the most influential)."),
            .init("--drop-layers", value: "list", help: "Layers to drop, e.g. 20-25 or 3,7."),
            .init("--experts", value: "n", help: "Routed experts to keep per layer (a mixture of experts)."),
            .init("--expert-metric", value: "kind", help: "Expert score for --method activation: routing (routing weight mass, default), selected (share of tokens) or output (weight × output norm)."),
            .init("--seed", value: "n", help: "Seed for --method random (default 0)."),
            .init("--dtype", value: "type", help: "Output type of rewritten tensors (default keep)."),
            .init("--target-params", value: "n", help: "Search shapes near this many parameters (e.g. 90M, 8B) and rank them by held-out perplexity."),
            .init("--eval-file", value: "file", help: "Held-out text for --target-params (the calibration's hold-out)."),
            .init("--eval-chunks", value: "n", help: "Chunks of 256 tokens scored per candidate (default 4)."),
            .init("--pick", value: "best", help: "With --target-params: write the best candidate to -o."),
            .init("--dry-run", help: "Print the plan (shapes, parameter counts, what goes) and write nothing."),
            .init("--json", help: "Print the plan / summary as JSON."),
            .init("--force", help: "Replace an existing output."),
            .init("--in-place", help: "Replace the model itself, atomically: a GGUF or .safetensors file, or a shard directory (staged beside it and swapped in with one rename; needs the pruned model's size in free disk)."),
            .init("-o", value: "out", help: "Output path (.gguf file, or a safetensors directory)."),
            .init("--output", value: "out", help: "Same as -o."),
        ],
        positionals: 0...0
    )

    static func run(_ args: ParsedArguments) throws {
        guard let modelPath = args.value("--model") else { throw UsageError(message: "prune needs --model", command: "prune") }
        let model = try DecoderModel(path: modelPath)
        let s = model.spec
        guard let method = PruneMethod(rawValue: args.value("--method") ?? "activation") else {
            throw UsageError(message: "--method is activation, magnitude, wanda or random", command: "prune")
        }
        guard let metric = HeadMetric(rawValue: args.value("--head-metric") ?? "contribution") else {
            throw UsageError(message: "--head-metric is contribution, output or loss", command: "prune")
        }
        func count(_ name: String) throws -> Int? {
            try args.optionalInt(name, min: 0)
        }
        var target = PruneTarget(ffn: try count("--ffn"), headsPerGroup: try count("--heads-per-group"), hidden: try count("--hidden"),
                                 layers: try count("--layers"), experts: try count("--experts"))
        guard let expertMetric = ExpertMetric(rawValue: args.value("--expert-metric") ?? "routing") else {
            throw UsageError(message: "--expert-metric is routing, selected or output", command: "prune")
        }
        if let h = try count("--heads") {
            if target.headsPerGroup != nil { throw UsageError(message: "give --heads or --heads-per-group, not both", command: "prune") }
            guard h % s.kvHeads == 0 else { throw PruneError.headsNotDivisible(heads: h, groups: s.kvHeads) }
            target.headsPerGroup = h / s.kvHeads
        }
        if let d = args.value("--drop-layers") {
            if target.layers != nil { throw UsageError(message: "give --layers or --drop-layers, not both", command: "prune") }
            target.dropLayers = try PrunePlanner.parseLayers(d, layers: s.layers)
            if target.dropLayers!.count >= s.layers { throw PruneError.noLayersLeft }
        }
        let importancePath = args.value("--importance")
        let stats = try importancePath.map { try ImportanceFile.read($0) }
        let seed = try args.int("--seed", default: 0, min: 0)
        if let goal = args.value("--target-params") {
            if s.isMixtureOfExperts {
                throw CheckpointError.unsupported(path: modelPath, reason: "--target-params searches dense shapes; prune a mixture of experts with --experts and --ffn")
            }
            guard target == PruneTarget() else { throw UsageError(message: "--target-params chooses the shape; drop --ffn/--heads/--hidden/--layers", command: "prune") }
            target = try search(args, model: model, goal: goal, method: method, metric: metric, stats: stats, seed: UInt64(seed))
        }
        if target == PruneTarget() { throw UsageError(message: "nothing to prune: give --ffn, --heads-per-group, --hidden, --layers, --drop-layers, --experts or --target-params", command: "prune") }
        guard let agg = Aggregation(rawValue: args.value("--agg") ?? "l2") else {
            throw UsageError(message: "--agg is l2, mean or variance", command: "prune")
        }
        guard let depthMetric = DepthMetric(rawValue: args.value("--depth-metric") ?? "bi") else {
            throw UsageError(message: "--depth-metric is bi or loss", command: "prune")
        }
        var layerLoss: [Double]?, headLoss: [Int: [Double]]?
        if depthMetric == .loss || metric == .loss {
            guard let evalFile = args.value("--eval-file") else {
                throw UsageError(message: "drop-one loss metrics need --eval-file (held-out text)", command: "prune")
            }
            let tokenizer = try Tokenizers.forModel(path: modelPath)
            let tokens = tokenizer.encode(bytes: try FileSystem.readFile(evalFile, limit: 1 << 32), special: false)
            let bos = tokenizer.addsBOS ? tokenizer.files.bosID.map(Int32.init) : nil
            let chunks = try args.int("--eval-chunks", default: 2, min: 1)
            if depthMetric == .loss && target.layers != nil {
                let bar = ProgressBar(label: "drop-one layers", total: s.layers, totalBytes: 0)
                layerLoss = try DropOneLoss.layers(model: model, tokens: tokens, chunks: chunks, bos: bos) { d, t in bar.update(done: d, bytesDone: 0, force: d == t) }
                bar.finish()
            }
            if metric == .loss && target.headsPerGroup != nil {
                let bar = ProgressBar(label: "drop-one heads", total: s.layers * s.heads, totalBytes: 0)
                headLoss = try DropOneLoss.heads(model: model, layers: Array(0..<s.layers), tokens: tokens, chunks: chunks, bos: bos) { d, t in bar.update(done: d, bytesDone: 0, force: d == t) }
                bar.finish()
            }
        }
        let plan = try PrunePlanner.plan(model: model, target: target, method: method, stats: stats, headMetric: metric, seed: UInt64(seed),
                                         layerLoss: layerLoss, headLoss: headLoss, aggregation: agg, expertMetric: expertMetric)
        let tied = model.tensor(.lmHead) == nil
        let before = PrunePlan.identity(spec: s, method: method)
        let record = PruneRecord(plan: plan, spec: s, source: "\(modelPath) (\(model.identity))",
                                          importance: importancePath.map { "\($0) (\(stats!.calibrationIdentity))" })
        let summary = """
        plan (\(method.rawValue)): layers \(s.layers) → \(plan.keptLayers.count), hidden \(s.hidden) → \(plan.hiddenChannels.count), \
        \(s.isMixtureOfExperts ? "experts \(s.experts) → \(plan.expertCount ?? s.experts), " : "")ffn \(s.ffn) → \(plan.ffn ?? s.ffn), \
        heads \(s.heads) → \(plan.heads.first?.count ?? s.heads) (KV \(s.kvHeads)); \
        parameters \(formatCount(before.parameterCount(spec: s, tiedHead: tied))) → \(formatCount(plan.parameterCount(spec: s, tiedHead: tied)))
        """
        let dropped = (0..<s.layers).filter { !plan.keptLayers.contains($0) }
        let newHeads = plan.heads.first?.count ?? s.heads
        if model.checkpoint.format == .safetensors, plan.hiddenChannels.count % newHeads != 0 {
            Console.err("warning: hidden size \(plan.hiddenChannels.count) is not a multiple of \(newHeads) attention heads: transformers (5.x) refuses such a config.json even with head_dim given; choose --hidden as a multiple of \(newHeads)\n")
        }
        if args.flag("--dry-run") {
            if args.flag("--json") { Console.out(record.json + "\n") } else {
                var text = summary + "\n"
                if !dropped.isEmpty { text += "layers dropped: \(dropped.map(String.init).joined(separator: " "))\n" }
                if target.experts != nil {
                    for (k, l) in plan.keptLayers.enumerated() {
                        let gone = (0..<s.experts).filter { !plan.experts[k].contains($0) }
                        text += "layer \(l): experts dropped \(gone.map(String.init).joined(separator: " "))\n"
                    }
                }
                if target.headsPerGroup != nil {
                    for (k, l) in plan.keptLayers.enumerated() {
                        let gone = (0..<s.heads).filter { !plan.heads[k].contains($0) }
                        text += "layer \(l): heads dropped \(gone.map(String.init).joined(separator: " "))\n"
                    }
                }
                Console.out(text)
            }
            return
        }
        let out: String
        if args.flag("--in-place") {
            if args.output != nil {
                throw UsageError(message: "--in-place replaces the model; it takes no -o", command: "prune")
            }
            out = try inPlaceTarget(modelPath)
            if model.checkpoint.format == .gguf && model.checkpoint.files.count > 1 {
                throw CheckpointError.unsupported(path: modelPath, reason: "in-place pruning of a GGUF split set is not supported yet; write to a new path (-o)")
            }
        } else {
            guard let o = args.output else {
                throw UsageError(message: "prune needs -o <out> (or --dry-run, or --in-place)", command: "prune")
            }
            out = o
        }
        var options = ConversionOptions(target: model.checkpoint.format)
        if model.checkpoint.format == .gguf && !out.hasSuffix(".gguf") {
            throw UsageError(message: "a GGUF model is pruned into a .gguf file: '\(out)'", command: "prune")
        }
        if let d = args.value("--dtype") {
            guard let choice = DTypeChoice.parse(d) else { throw UsageError(message: "unknown --dtype '\(d)'", command: "prune") }
            options.dtype = choice
        }
        // In place: the new file is staged beside the model and renamed over it; the old
        // inode stays mapped (and readable) until the rewrite is done.
        options.overwrite = args.flag("--force") || args.flag("--in-place")
        options.edit = try Surgery.edit(model: model, plan: plan, record: record)
        let converter = try Converter(source: model.checkpoint, output: out, options: options)
        for w in converter.warnings { Console.err("warning: \(w)\n") }
        if ["phi3", "nemotron", "qwen2moe"].contains(model.spec.architecture), model.checkpoint.format == .gguf,
           let q = plan.heads.first.map({ $0.count * model.spec.headDim }), q != plan.hiddenChannels.count {
            // llama.cpp (0.3.36) sizes these families' query projection from the embedding width alone.
            Console.err("warning: \(model.spec.architecture) keeps \(q) query channels and \(plan.hiddenChannels.count) hidden channels: llama.cpp loads a \(model.spec.architecture) GGUF only where they are equal (prune heads and --hidden by the same ratio); ckpt and transformers run it as it is\n")
        }
        let bar = ProgressBar(label: "prune", total: model.checkpoint.tensors.count, totalBytes: model.checkpoint.tensorBytes)
        let result = try converter.run { done, bytes in bar.update(done: done, bytesDone: bytes) }
        bar.finish()
        if args.flag("--json") {
            Console.out(ConvertCommand.summaryJSON(result, fields: [("model", modelPath), ("output", out), ("plan", record.json)], inPlace: false))
        } else {
            Console.err(summary + "\npruned \(result.tensors) tensors, \(formatBytes(result.bytesRead)) → \(formatBytes(result.bytesWritten)) in \(formatFixed(result.seconds, digits: 2)) s: \(out)\n")
        }
    }

    /// Ranks candidate shapes near `goal` parameters by perplexity on --eval-file: each is
    /// pruned to a temporary file beside the output, evaluated, and deleted. Returns the
    /// best one's target when --pick best is given (and prints the table either way).
    static func search(_ args: ParsedArguments, model: DecoderModel, goal text: String, method: PruneMethod, metric: HeadMetric,
                       stats: ImportanceStats?, seed: UInt64) throws -> PruneTarget {
        guard let goal = ArchitectureSearch.parameterCount(text) else {
            throw UsageError(message: "--target-params takes a count such as 90M or 8B, not '\(text)'", command: "prune")
        }
        guard let evalFile = args.value("--eval-file") else {
            throw UsageError(message: "--target-params needs --eval-file (held-out text to rank the candidates on)", command: "prune")
        }
        let s = model.spec
        let tied = model.tensor(.lmHead) == nil
        let candidates = ArchitectureSearch.candidates(spec: s, tiedHead: tied, parameters: goal)
        if candidates.isEmpty {
            throw CheckpointError.unsupported(path: model.path, reason: "no shape of this model comes within 5% of \(formatCount(goal)) parameters")
        }
        let chunks = try args.int("--eval-chunks", default: 4, min: 1)
        let tokenizer = try Tokenizers.forModel(path: model.path)
        let tokens = tokenizer.encode(bytes: try FileSystem.readFile(evalFile, limit: 1 << 32), special: false)
        let bos = tokenizer.addsBOS ? tokenizer.files.bosID.map(Int32.init) : nil
        let results = try ArchitectureSearch.rank(
            model: model, candidates: candidates, method: method, stats: stats, headMetric: metric, seed: seed, tokens: tokens, bos: bos,
            chunks: chunks, scratchDirectory: FileSystem.directoryName(args.output ?? model.path)) { i, r in
            Console.err("candidate \(i + 1)/\(candidates.count): \(r.candidate.label): \(formatCount(r.candidate.parameters)) parameters, ppl \(formatFixed(r.perplexity, digits: 2))\n")
        }
        var table = "shape".padding(to: 48) + "parameters".leftPadding(to: 12) + "ppl".leftPadding(to: 12) + "\n"
        for r in results {
            table += r.candidate.label.padding(to: 48) + formatCount(r.candidate.parameters).leftPadding(to: 12)
                + formatFixed(r.perplexity, digits: 2).leftPadding(to: 12) + "\n"
        }
        Console.out(table)
        guard args.value("--pick") == "best" else {
            Console.err("(--pick best writes the first row)\n")
            exit(0)
        }
        return results[0].candidate.target
    }

    /// What an in-place prune replaces: the model file, or the whole shard directory (given
    /// as the directory or its index). The new set is staged
    /// beside the directory and swapped in with one atomic rename (RENAME_EXCHANGE), so a
    /// crash leaves the old set or the new one; the next ckpt command clears the staging.
    /// The swap carries the shards, the index and the directory's plain files (config,
    /// tokenizer): anything else in it would be lost, so it is refused by name.
    static func inPlaceTarget(_ path: String) throws -> String {
        let path = FileSystem.withoutTrailingSlash(path)
        var directory: String?
        switch try FileSystem.kind(of: path) {
        case .directory:
            directory = path
        case .file:
            // (One shard of a set given alone never gets here: it lacks the model's other tensors.)
            if path.hasSuffix(".index.json") { directory = FileSystem.directoryName(path) }
        default:
            throw CheckpointError.notFound(path: path)
        }
        guard let directory else { return path }
        var strays: [String] = []
        for name in try FileSystem.list(directory: directory).sorted() {
            let kind = try FileSystem.kind(of: FileSystem.join(directory, name))
            if name.hasPrefix(".") || kind != .file { strays.append(name) }
        }
        guard strays.isEmpty else {
            throw CheckpointError.unsupported(path: directory, reason: "prune --in-place replaces the whole directory and would not carry \(strays.joined(separator: ", ")) (hidden files and subdirectories): move them out first, or write to a new path (-o)")
        }
        return directory
    }
}
