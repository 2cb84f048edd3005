import Basics
import CKernels
import CheckpointIO
import Models
import TensorMath

/// Runs calibration text through a model layer by layer and accumulates the activation
/// statistics importance scores are made from. Each sample's contribution is computed
/// from its own tokens only (the kernels treat every token alike whatever the batch), so
/// a shard of the samples yields exactly its part of the full run's sums.
package enum Calibration {
    /// `samples` sequences of `seq` tokens cut from the start of `tokens`, each starting with
    /// BOS when the model adds one (it replaces the first token, as llama-perplexity does).
    package static func samples(from tokens: [Int32], count: Int, seq: Int, bos: Int32?, path: String) throws -> [[Int32]] {
        guard tokens.count >= count * seq else {
            throw ImportanceError.calibrationTooShort(path: path, tokens: tokens.count, needed: count * seq, samples: count, seq: seq)
        }
        return (0..<count).map { i in
            var s = Array(tokens[(i * seq)..<((i + 1) * seq)])
            if let bos { s[0] = bos }
            return s
        }
    }

    /// A fingerprint of the calibration samples (all of them, whatever shard is run).
    package static func identity(of samples: [[Int32]]) -> String {
        var h = FNV1a64()
        for s in samples {
            for t in s { withUnsafeBytes(of: t.littleEndian) { h.add($0) } }
            h.add("|")
        }
        return h.hex
    }

    /// `--shard i/N`: the contiguous range of sample indices shard i of N covers.
    package static func shardRange(_ text: String, samples: Int) throws -> Range<Int> {
        let parts = text.split(separator: "/")
        guard parts.count == 2, let i = Int(parts[0]), let n = Int(parts[1]), n > 0, i >= 0, i < n else {
            throw ImportanceError.badShard(text)
        }
        return (i * samples / n)..<((i + 1) * samples / n)
    }

    /// Runs samples `range` of `samples` through `model`, `batch` samples per pass.
    package static func run(model: DecoderModel, samples: [[Int32]], range: Range<Int>, batch: Int, releaseLayers: Bool = false,
                           progress: ((Int, Int) -> Void)? = nil) throws -> ImportanceStats {
        let s = model.spec
        let shape = ShapeSummary(architecture: s.architecture, layers: s.layers, hidden: s.hidden, heads: s.heads,
                                 kvHeads: s.kvHeads, headDim: s.headDim, ffn: s.ffn, experts: s.experts)
        var stats = ImportanceStats(modelIdentity: model.identity, shape: shape, sequenceLength: samples.first?.count ?? 0,
                                    totalSamples: samples.count, calibrationIdentity: identity(of: samples), sampleRanges: [range])
        let collector = Collector(model: model)
        let stream = LayerStream(model: model, releaseLayers: releaseLayers)
        var i = range.lowerBound
        while i < range.upperBound {
            let n = min(max(batch, 1), range.upperBound - i)
            collector.reset(layers: s.layers, shape: shape)
            try stream.run(Array(samples[i..<(i + n)]), hooks: collector.hooks())
            for l in 0..<s.layers { stats.layers[l].merge(collector.layers[l]) }
            stats.tokens += samples[i..<(i + n)].reduce(0) { $0 + $1.count }
            i += n
            progress?(i - range.lowerBound, range.count)
        }
        return stats
    }
}

/// Turns hook callbacks into per-layer sums for one batch.
final class Collector {
    let model: DecoderModel
    var layers: [LayerSums] = []
    private var layerInput: [Float] = []
    private var outputProjection: FloatBuffer?
    private var outputProjectionLayer = -1
    private var norms: FloatBuffer?
    private var contributionScratch: FloatBuffer?
    /// Per token and expert: routing weight × ‖expert output‖, filled by the experts of a layer.
    private var expertOutputs: [Float] = []
    /// The layer's routing weights, [tokens × experts].
    private var routingWeights: [Float] = []

    init(model: DecoderModel) { self.model = model }

    func reset(layers n: Int, shape: ShapeSummary) {
        layers = (0..<n).map { _ in LayerSums(spec: shape) }
    }

    func hooks() -> LayerHooks {
        var h = LayerHooks()
        h.layerInput = { [unowned self] a in
            if self.layerInput.count != a.values.count { self.layerInput = [Float](repeating: 0, count: a.values.count) }
            self.layerInput.withUnsafeMutableBufferPointer { $0.baseAddress!.update(from: a.values.baseAddress!, count: a.values.count) }
        }
        h.attentionInput = { [unowned self] a in Self.accumulate(a, into: &self.layers[a.layer].attentionInput) }
        h.mlpInput = { [unowned self] a in Self.accumulate(a, into: &self.layers[a.layer].mlpInput) }
        h.mlpIntermediate = { [unowned self] a in Self.accumulate(a, into: &self.layers[a.layer].neurons) }
        h.headOutputs = { [unowned self] a in self.heads(a) }
        h.layerOutput = { [unowned self] a in
            self.blockInfluence(a)
            if self.model.spec.isMixtureOfExperts { self.finishExperts(a) }
        }
        h.expertRouting = { [unowned self] a in self.routing(a) }
        h.expertActivations = { [unowned self] x in self.expert(x) }
        return h
    }

    /// Routing weights and choices, each per expert as an activation of the token.
    private func routing(_ a: LayerActivation) {
        Self.accumulate(a, into: &layers[a.layer].expertRouting)
        let chosen = a.values.map { $0 > 0 ? Float(1) : 0 }
        chosen.withUnsafeBufferPointer { Self.accumulate($0, width: a.width, sequences: a.sequences, into: &layers[a.layer].expertSelected) }
        expertOutputs = [Float](repeating: 0, count: a.values.count)
        routingWeights = Array(a.values)
    }

    /// One expert's neurons, per sample: mean |a| over all the sample's tokens (0 on the
    /// tokens not routed to it), so its rows of one sample are a contiguous run.
    private func expert(_ x: ExpertActivation) {
        let F = x.ffn, E = model.spec.experts
        var sumAbs = [Double](repeating: 0, count: F), sq = sumAbs
        var j = 0
        for span in x.sequences {
            let first = j
            while j < x.rows.count && x.rows[j] < span.start + span.count { j += 1 }
            guard j > first else { continue }
            ckpt_column_moments(x.intermediate.baseAddress! + first * F, Int64(F), Int64(j - first), Int64(F), &sumAbs, &sq)
            Self.add(meanAbs: sumAbs, squares: sq, tokens: span.count, into: &layers[x.layer].expertNeurons, at: x.expert * F)
        }
        // ‖expert output‖ per routed row, as the head norms are taken.
        let n = norms(x.rows.count)
        ckpt_segment_norms(x.output.baseAddress!, Int64(x.hidden), Int64(x.rows.count), 1, Int32(x.hidden), n.pointer)
        for (k, row) in x.rows.enumerated() {
            expertOutputs[row * E + x.expert] = routingWeights[row * E + x.expert] * n.pointer[k]
        }
    }

    private func finishExperts(_ a: LayerActivation) {
        let E = model.spec.experts
        expertOutputs.withUnsafeBufferPointer { Self.accumulate($0, width: E, sequences: a.sequences, into: &layers[a.layer].expertOutput) }
    }

    /// Per sample: mean over its tokens of |a| per channel, and Σ a².
    static func accumulate(_ a: LayerActivation, into sums: inout ChannelSums) {
        accumulate(a.values, width: a.width, sequences: a.sequences, into: &sums)
    }

    static func accumulate(_ values: UnsafeBufferPointer<Float>, width w: Int, sequences: [SequenceSpan], into sums: inout ChannelSums) {
        var sumAbs = [Double](repeating: 0, count: w), sq = [Double](repeating: 0, count: w)
        for span in sequences {
            ckpt_column_moments(values.baseAddress! + span.start * w, Int64(w), Int64(span.count), Int64(w), &sumAbs, &sq)
            add(meanAbs: sumAbs, squares: sq, tokens: span.count, into: &sums)
        }
    }

    /// Adds one sample's column sums to channels `offset…` of `sums`.
    static func add(meanAbs: [Double], squares: [Double], tokens: Int, into sums: inout ChannelSums, at offset: Int = 0) {
        let n = Double(max(tokens, 1))
        for c in 0..<meanAbs.count {
            let m = meanAbs[c] / n
            // Non-finite activations (a broken model) add nothing rather than abort the run.
            if let f = FixedSum.fixed(m) { sums.sumMeanAbs[offset + c] += f }
            if let f = FixedSum.fixed(m * m) { sums.sumMeanAbsSquared[offset + c] += f }
            if let f = FixedSum.fixed(squares[c]) { sums.sumSquares[offset + c] += f }
        }
    }

    /// Head statistics from the per-head attention outputs.
    private func heads(_ a: LayerActivation) {
        let s = model.spec
        let (nh, hd, T) = (s.heads, s.headDim, a.values.count / a.width)
        Self.accumulate(a, into: &layers[a.layer].attentionChannels)
        // ‖o_h‖ over head_dim per token.
        let n = norms(T * nh)
        ckpt_segment_norms(a.values.baseAddress!, Int64(a.width), Int64(T), Int32(nh), Int32(hd), n.pointer)
        addNorms(n, heads: nh, a: a, into: &layers[a.layer].headOutput)
        // ‖W_o,h · o_h‖ over hidden per token.
        let wo = outputProjection(layer: a.layer)
        let need = ThreadPool.threads * Int(ckpt_head_contribution_scratch_floats(Int64(s.hidden), Int32(hd)))
        if contributionScratch == nil || contributionScratch!.count < need { contributionScratch = FloatBuffer(count: need, zeroed: false) }
        ckpt_head_contribution_norms(wo.pointer, Int64(s.qDim), Int64(s.hidden), a.values.baseAddress!, Int64(a.width), Int64(T),
                                     Int32(nh), Int32(hd), n.pointer, contributionScratch!.pointer)
        addNorms(n, heads: nh, a: a, into: &layers[a.layer].headContribution)
    }

    private func norms(_ count: Int) -> FloatBuffer {
        if let b = norms, b.count >= count { return b }
        let b = FloatBuffer(count: count, zeroed: false)
        norms = b
        return b
    }

    private func addNorms(_ n: FloatBuffer, heads nh: Int, a: LayerActivation, into sums: inout ChannelSums) {
        var sumAbs = [Double](repeating: 0, count: nh), sq = sumAbs
        for span in a.sequences {
            ckpt_column_moments(n.pointer + span.start * nh, Int64(nh), Int64(span.count), Int64(nh), &sumAbs, &sq)
            Self.add(meanAbs: sumAbs, squares: sq, tokens: span.count, into: &sums)
        }
    }

    /// Layer `i`'s output projection as f32 [hidden][heads·head_dim], decoded once per layer.
    private func outputProjection(layer i: Int) -> FloatBuffer {
        if outputProjectionLayer == i, let w = outputProjection { return w }
        let t = model.tensor(.layer(i, .attnOutput))!
        let w = outputProjection.flatMap { $0.count == t.elementCount ? $0 : nil } ?? FloatBuffer(count: t.elementCount, zeroed: false)
        // The engine checked at load that every matrix decodes.
        try! TensorDecoder.decodeRows(t, rows: 0..<t.rowCount, into: w.pointer)
        outputProjection = w
        outputProjectionLayer = i
        return w
    }

    /// 1 − cos(input, output) per token, summed per sample.
    private func blockInfluence(_ a: LayerActivation) {
        let w = a.width
        layerInput.withUnsafeBufferPointer { x in
            for span in a.sequences {
                var degenerate: Int64 = 0
                let sum = ckpt_one_minus_cosine_sum(x.baseAddress! + span.start * w, a.values.baseAddress! + span.start * w,
                                                    Int64(w), Int64(span.count), Int64(w), &degenerate)
                if let f = FixedSum.fixed(sum) { layers[a.layer].blockInfluence += f }
                layers[a.layer].degenerateTokens += Int(degenerate)
            }
        }
    }
}
