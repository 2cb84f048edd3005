import Basics
import CheckpointIO
import Conversion
import Models

/// Minitron's lightweight architecture search: candidate shapes (depth and width
/// combinations) whose parameter count is near a target, to be pruned and ranked by
/// held-out loss.
package enum ArchitectureSearch {
    package struct Candidate: Sendable, Equatable {
        package var target: PruneTarget
        package var parameters: Int
        /// The shape the target leads to.
        package var layers: Int, hidden: Int, ffn: Int, heads: Int
        package var label: String { "layers \(layers), hidden \(hidden), ffn \(ffn), heads \(heads)" }
    }

    /// Up to `limit` shapes within `tolerance` (relative) of `parameters`, closest first.
    /// Widths step by eighths (hidden and FFN rounded to multiples of 64), heads by whole
    /// heads per KV group, depth by single layers down to half the model.
    package static func candidates(spec s: DecoderSpec, tiedHead: Bool, parameters goal: Int, tolerance: Double = 0.05,
                                  limit: Int = 8) -> [Candidate] {
        let perGroup = s.heads / s.kvHeads
        func steps(_ full: Int) -> [Int] {
            Array(Set((4...8).map { max(64, ($0 * full / 8) / 64 * 64) } + [full])).filter { $0 <= full }.sorted()
        }
        var out: [Candidate] = []
        for layers in stride(from: s.layers, through: max(1, s.layers / 2), by: -1) {
            for hidden in steps(s.hidden) {
                for ffn in steps(s.ffn) {
                    for g in 1...perGroup {
                        let plan = PrunePlan(keptLayers: Array(0..<layers), neurons: [[Int]](repeating: Array(0..<ffn), count: layers),
                                             heads: [[Int]](repeating: Array(0..<(g * s.kvHeads)), count: layers),
                                             hiddenChannels: Array(0..<hidden), method: .activation)
                        let n = plan.parameterCount(spec: s, tiedHead: tiedHead)
                        guard abs(Double(n - goal)) <= tolerance * Double(goal) else { continue }
                        let t = PruneTarget(ffn: ffn < s.ffn ? ffn : nil, headsPerGroup: g < perGroup ? g : nil,
                                            hidden: hidden < s.hidden ? hidden : nil, layers: layers < s.layers ? layers : nil)
                        if t == PruneTarget() { continue }
                        out.append(Candidate(target: t, parameters: n, layers: layers, hidden: hidden, ffn: ffn, heads: g * s.kvHeads))
                    }
                }
            }
        }
        out.sort { ranksBefore($0, $1, goal: goal) }
        // Spread the picks over depths so the table compares depth against width.
        var picked: [Candidate] = [], seenLayers: [Int: Int] = [:]
        for c in out {
            let l = c.target.layers ?? s.layers
            if seenLayers[l, default: 0] >= 2 { continue }
            seenLayers[l, default: 0] += 1
            picked.append(c)
            if picked.count == limit { break }
        }
        return picked
    }

    /// Closest to the goal first; among equals, deeper, then wider hidden, FFN and heads
    /// (Minitron found pruning width costs less than depth at equal size).
    static func ranksBefore(_ a: Candidate, _ b: Candidate, goal: Int) -> Bool {
        let da = abs(a.parameters - goal), db = abs(b.parameters - goal)
        if da != db { return da < db }
        return (a.layers, a.hidden, a.ffn, a.heads) > (b.layers, b.hidden, b.ffn, b.heads)
    }

    /// A parameter count as people write one: 90M, 1.5B, 8e9 (decimal multiples).
    package static func parameterCount(_ text: String) -> Int? {
        let scales: [Character: Double] = ["K": 1e3, "M": 1e6, "B": 1e9, "G": 1e9, "T": 1e12]
        var number = Substring(text), scale = 1.0
        if let last = text.last.map({ Character($0.uppercased()) }), let m = scales[last] { scale = m; number = text.dropLast() }
        guard let v = Double(number), v > 0, v * scale < 1e15 else { return nil }
        return Int(v * scale)
    }

    /// A candidate and the held-out perplexity of the model pruned to it.
    package struct Ranked: Sendable {
        package let candidate: Candidate
        package let perplexity: Double
    }

    /// Prunes the model to each candidate in a scratch file in `scratchDirectory`, measures
    /// its perplexity on `tokens` (`chunks` chunks of 256), deletes the file, and returns
    /// the candidates best first. `progress` hears of each one as it is measured.
    package static func rank(model: DecoderModel, candidates: [Candidate], method: PruneMethod, stats: ImportanceStats?,
                            headMetric: HeadMetric, seed: UInt64, tokens: [Int32], bos: Int32?, chunks: Int,
                            scratchDirectory dir: String, progress: (Int, Ranked) -> Void = { _, _ in }) throws -> [Ranked] {
        let ext = model.checkpoint.format == .gguf ? ".gguf" : ""
        var results: [Ranked] = []
        for (i, c) in candidates.enumerated() {
            let temp = FileSystem.join(dir, ".ckpt-search-\(getpid())-\(i)\(ext)")
            defer { FileSystem.removeTree(temp) }
            let plan = try PrunePlanner.plan(model: model, target: c.target, method: method, stats: stats, headMetric: headMetric, seed: seed)
            var options = ConversionOptions(target: model.checkpoint.format)
            options.edit = try Surgery.edit(model: model, plan: plan, record: nil)
            _ = try Converter(source: model.checkpoint, output: temp, options: options).run()
            let pruned = try DecoderModel(path: temp)
            let r = try Perplexity.evaluate(stream: LayerStream(model: pruned), tokens: tokens, ctx: 256, maxChunks: chunks, batch: chunks, bos: bos)
            let ranked = Ranked(candidate: c, perplexity: r.ppl)
            results.append(ranked)
            progress(i, ranked)
        }
        return results.sorted { $0.perplexity < $1.perplexity }
    }
}

#if canImport(Glibc)
import Glibc
#endif
