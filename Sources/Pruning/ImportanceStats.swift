import Basics
import CheckpointIO

/// Exact sums of activation statistics. Every per-sample quantity is rounded once to a
/// fixed-point integer (2⁻⁶⁰ resolution, in an Int128) and added as an integer, so sums
/// are associative: the statistics of N calibration shards, merged in any order, are
/// bit-identical to one run over all samples.
package struct FixedSum: Sendable, Equatable {
    package static let fractionBits = 60
    static let scale = Double(sign: .plus, exponent: fractionBits, significand: 1)
    /// Largest magnitude one addend may have (keeps 2²⁷ addends far from Int128's range).
    package static let limit = 1e20

    /// The fixed-point integer of `v`, or nil when `v` is not finite or too large.
    @inline(__always)
    static func fixed(_ v: Double) -> Int128? {
        guard v.isFinite, abs(v) <= limit else { return nil }
        return Int128((v * scale).rounded())
    }

    @inline(__always)
    static func double(_ v: Int128) -> Double { Double(v) / scale }
}

/// Per-channel sums over calibration samples for one activation: Σ over samples of the
/// mean |a| over the sample's tokens, Σ of its square, and Σ over all tokens of a².
/// `mean` / `l2` / `variance` aggregations and Wanda's ‖X‖ all come from these.
package struct ChannelSums: Sendable, Equatable {
    package var sumMeanAbs: [Int128]
    package var sumMeanAbsSquared: [Int128]
    package var sumSquares: [Int128]

    package init(channels: Int) {
        sumMeanAbs = [Int128](repeating: 0, count: channels)
        sumMeanAbsSquared = sumMeanAbs
        sumSquares = sumMeanAbs
    }

    package var channels: Int { sumMeanAbs.count }

    /// The three sums, with their names in Formats/importance.md, in file order.
    static var sums: [(name: String, path: WritableKeyPath<ChannelSums, [Int128]>)] {
        [("sum_mean_abs", \.sumMeanAbs), ("sum_mean_abs_squared", \.sumMeanAbsSquared), ("sum_squares", \.sumSquares)]
    }

    mutating func merge(_ o: ChannelSums) {
        for (_, p) in Self.sums {
            for i in 0..<channels { self[keyPath: p][i] += o[keyPath: p][i] }
        }
    }
}

/// The statistics of one decoder layer.
package struct LayerSums: Sendable, Equatable {
    /// Normed input of attention and of the MLP (hidden channels).
    package var attentionInput: ChannelSums
    package var mlpInput: ChannelSums
    /// Per query head: ‖o_h‖₂ over head_dim (Minitron), and ‖W_o,h · o_h‖₂ over hidden.
    package var headOutput: ChannelSums
    package var headContribution: ChannelSums
    /// Per channel of the output projection's input (heads × head_dim).
    package var attentionChannels: ChannelSums
    /// Per MLP neuron: act(gate) × up, the input of the down projection (none in a mixture of experts).
    package var neurons: ChannelSums
    /// Mixture of experts, per expert: the routing weight its output gets (0 when not
    /// chosen), whether it was chosen (1 or 0), and that weight times the norm of its output.
    package var expertRouting: ChannelSums
    package var expertSelected: ChannelSums
    package var expertOutput: ChannelSums
    /// Per expert neuron (experts × ffn, expert-major): its act(gate) × up, 0 on tokens not routed to it.
    package var expertNeurons: ChannelSums
    /// Σ over tokens of 1 − cos(layer input, layer output) (Block Influence).
    package var blockInfluence: Int128 = 0
    /// Tokens whose cosine was 0/0 (a zero vector): scored as cos = 1, counted to warn.
    package var degenerateTokens: Int = 0

    package init(spec: ShapeSummary) {
        attentionInput = ChannelSums(channels: spec.hidden)
        mlpInput = ChannelSums(channels: spec.hidden)
        headOutput = ChannelSums(channels: spec.heads)
        headContribution = ChannelSums(channels: spec.heads)
        attentionChannels = ChannelSums(channels: spec.heads * spec.headDim)
        let e = spec.experts
        neurons = ChannelSums(channels: e > 0 ? 0 : spec.ffn)
        expertRouting = ChannelSums(channels: e)
        expertSelected = ChannelSums(channels: e)
        expertOutput = ChannelSums(channels: e)
        expertNeurons = ChannelSums(channels: e * spec.ffn)
    }

    /// The per-channel activations, with their names in Formats/importance.md, in file order.
    static var activations: [(name: String, path: WritableKeyPath<LayerSums, ChannelSums>)] {
        [("attention_input", \.attentionInput), ("mlp_input", \.mlpInput), ("head_output", \.headOutput),
         ("head_contribution", \.headContribution), ("attention_channels", \.attentionChannels), ("neurons", \.neurons),
         ("expert_routing", \.expertRouting), ("expert_selected", \.expertSelected), ("expert_output", \.expertOutput),
         ("expert_neurons", \.expertNeurons)]
    }

    mutating func merge(_ o: LayerSums) {
        for (_, p) in Self.activations { self[keyPath: p].merge(o[keyPath: p]) }
        blockInfluence += o.blockInfluence
        degenerateTokens += o.degenerateTokens
    }
}

/// The model shape statistics are laid out by.
package struct ShapeSummary: Sendable, Equatable {
    package var architecture: String
    package var layers, hidden, heads, kvHeads, headDim, ffn: Int
    /// Routed experts per layer (0: a dense MLP); `ffn` is then each expert's width.
    package var experts: Int

    package init(architecture: String, layers: Int, hidden: Int, heads: Int, kvHeads: Int, headDim: Int, ffn: Int, experts: Int = 0) {
        self.architecture = architecture
        self.layers = layers; self.hidden = hidden; self.heads = heads; self.kvHeads = kvHeads
        self.headDim = headDim; self.ffn = ffn; self.experts = experts
    }
}

/// Activation statistics of a calibration run (or of several merged): what `ckpt
/// importance` writes and `ckpt prune` reads. See Formats/importance.md.
package struct ImportanceStats: Sendable, Equatable {
    /// `DecoderModel.identity` of the model measured.
    package var modelIdentity: String
    package var shape: ShapeSummary
    /// Calibration settings: sequence length, the samples the full run has, the
    /// fingerprint of the calibration tokens, and which samples these sums cover.
    package var sequenceLength: Int
    package var totalSamples: Int
    package var calibrationIdentity: String
    /// Sample ranges covered, sorted and disjoint (one per merged shard).
    package var sampleRanges: [Range<Int>]
    package var tokens: Int
    package var layers: [LayerSums]

    package init(modelIdentity: String, shape: ShapeSummary, sequenceLength: Int, totalSamples: Int,
                calibrationIdentity: String, sampleRanges: [Range<Int>]) {
        self.modelIdentity = modelIdentity
        self.shape = shape
        self.sequenceLength = sequenceLength
        self.totalSamples = totalSamples
        self.calibrationIdentity = calibrationIdentity
        self.sampleRanges = sampleRanges
        tokens = 0
        layers = (0..<shape.layers).map { _ in LayerSums(spec: shape) }
    }

    package var samples: Int { sampleRanges.reduce(0) { $0 + $1.count } }

    /// Why two sets of statistics cannot be added, or nil.
    package func mergeConflict(with o: ImportanceStats) -> String? {
        if modelIdentity != o.modelIdentity { return "they come from different models (identity \(modelIdentity) vs \(o.modelIdentity))" }
        if shape != o.shape { return "the model shapes differ" }
        if sequenceLength != o.sequenceLength || totalSamples != o.totalSamples || calibrationIdentity != o.calibrationIdentity {
            return "the calibration settings differ (sequence length, sample count or calibration text)"
        }
        for a in sampleRanges { for b in o.sampleRanges where a.overlaps(b) {
            return "both cover samples \(max(a.lowerBound, b.lowerBound))..<\(min(a.upperBound, b.upperBound))"
        } }
        return nil
    }

    /// Adds `o`'s sums (refused with a reason when they do not belong together).
    package mutating func merge(_ o: ImportanceStats) throws {
        if let why = mergeConflict(with: o) { throw ImportanceError.mismatch(reason: why) }
        for i in layers.indices { layers[i].merge(o.layers[i]) }
        tokens += o.tokens
        sampleRanges = Self.coalesce(sampleRanges + o.sampleRanges)
    }

    static func coalesce(_ ranges: [Range<Int>]) -> [Range<Int>] {
        var out: [Range<Int>] = []
        for r in ranges.sorted(by: { $0.lowerBound < $1.lowerBound }) where !r.isEmpty {
            if let last = out.last, last.upperBound == r.lowerBound {
                out[out.count - 1] = last.lowerBound..<r.upperBound
            } else {
                out.append(r)
            }
        }
        return out
    }
}

/// Errors of importance estimation and of statistics files.
package enum ImportanceError: UserFacingError, Sendable, Equatable {
    case mismatch(reason: String)
    case calibrationTooShort(path: String, tokens: Int, needed: Int, samples: Int, seq: Int)
    case badShard(String)
    case wrongModel(path: String, expected: String, found: String)

    package var description: String {
        switch self {
        case let .mismatch(reason): return "cannot merge these statistics: \(reason)"
        case let .calibrationTooShort(path, tokens, needed, samples, seq):
            return "\(path): \(tokens) tokens, fewer than the \(needed) that \(samples) samples of \(seq) need (fewer or shorter samples would fit)"
        case let .badShard(s): return "a shard is i/N with 0 ≤ i < N, got '\(s)'"
        case let .wrongModel(path, expected, found):
            return "\(path): these statistics were measured on another model (identity \(found), this model is \(expected))"
        }
    }

    package var exitCode: ExitCode {
        switch self {
        case .badShard: return .usage
        case .mismatch, .calibrationTooShort, .wrongModel: return .dataError
        }
    }
}
