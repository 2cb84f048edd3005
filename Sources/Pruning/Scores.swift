/// Importance scores from activation statistics, as NVIDIA's Minitron / ModelOpt define
/// them: per sample the mean of |activation| over the sequence, then aggregated over
/// samples (L2 by default).
package enum Aggregation: String, Sendable, CaseIterable {
    /// Mean over samples of the per-sample mean |a|.
    case mean
    /// L2 norm over samples of the per-sample mean |a| (Minitron's choice).
    case l2
    /// Variance over samples of the per-sample mean |a|.
    case variance
}

/// How attention heads are scored.
package enum HeadMetric: String, Sendable, CaseIterable {
    /// ‖o_h‖₂ over head_dim: the input of the output projection (Minitron).
    case output
    /// ‖W_o,h · o_h‖₂ over hidden: what the head adds to the residual stream.
    case contribution
    /// Held-out loss increase when the head alone is zeroed (`DropOneLoss`; not in statistics).
    case loss
}

/// How layers are scored for depth pruning.
package enum DepthMetric: String, Sendable, CaseIterable {
    /// Block Influence from the statistics (1 − cos of a layer's input and output).
    case blockInfluence = "bi"
    /// Held-out loss increase when the layer alone is skipped (`DropOneLoss`).
    case loss
}

/// How the experts of a mixture are scored for `--experts`.
package enum ExpertMetric: String, Sendable, CaseIterable {
    /// The routing weight the expert's output is given, 0 when not chosen (routing mass).
    case routing
    /// How often the expert is among the chosen (its share of the tokens).
    case selected
    /// Routing weight × ‖expert output‖: what the expert adds to the residual stream.
    case output
}

extension ChannelSums {
    /// One score per channel (of `range`, all by default).
    package func scores(_ agg: Aggregation, samples: Int, range: Range<Int>? = nil) -> [Double] {
        let n = Double(max(samples, 1))
        return (range ?? 0..<channels).map { c in
            let s1 = FixedSum.double(sumMeanAbs[c]), s2 = FixedSum.double(sumMeanAbsSquared[c])
            switch agg {
            case .mean: return s1 / n
            case .l2: return s2.squareRoot()
            case .variance: return max(0, s2 / n - (s1 / n) * (s1 / n))
            }
        }
    }

    /// ‖X_c‖₂ over every calibration token: Wanda's per-input-channel norm.
    package var inputNorms: [Double] { sumSquares.map { FixedSum.double($0).squareRoot() } }
}

extension ImportanceStats {
    package func neuronScores(layer: Int, _ agg: Aggregation = .l2) -> [Double] {
        layers[layer].neurons.scores(agg, samples: samples)
    }

    /// One score per expert of the layer.
    package func expertScores(layer: Int, metric: ExpertMetric = .routing, _ agg: Aggregation = .l2) -> [Double] {
        let l = layers[layer]
        switch metric {
        case .routing: return l.expertRouting.scores(agg, samples: samples)
        case .selected: return l.expertSelected.scores(agg, samples: samples)
        case .output: return l.expertOutput.scores(agg, samples: samples)
        }
    }

    /// Expert `e`'s neurons, as `neuronScores` scores a dense MLP's.
    package func expertNeuronScores(layer: Int, expert e: Int, _ agg: Aggregation = .l2) -> [Double] {
        let f = shape.ffn
        return layers[layer].expertNeurons.scores(agg, samples: samples, range: (e * f)..<((e + 1) * f))
    }

    /// ‖X_c‖ of expert `e`'s neurons (Wanda), over the tokens routed to it.
    package func expertNeuronInputNorms(layer: Int, expert e: Int) -> [Double] {
        let f = shape.ffn
        return layers[layer].expertNeurons.sumSquares[(e * f)..<((e + 1) * f)].map { FixedSum.double($0).squareRoot() }
    }

    package func headScores(layer: Int, metric: HeadMetric = .contribution, _ agg: Aggregation = .l2) -> [Double] {
        switch metric {
        case .output: return layers[layer].headOutput.scores(agg, samples: samples)
        case .contribution, .loss: return layers[layer].headContribution.scores(agg, samples: samples)
        }
    }

    /// Embedding channels: the normed inputs of every attention and MLP block, summed over layers.
    package func channelScores(_ agg: Aggregation = .l2) -> [Double] {
        var out = [Double](repeating: 0, count: shape.hidden)
        for l in layers {
            for (i, v) in l.attentionInput.scores(agg, samples: samples).enumerated() { out[i] += v }
            for (i, v) in l.mlpInput.scores(agg, samples: samples).enumerated() { out[i] += v }
        }
        return out
    }

    /// Block Influence per layer: mean over calibration tokens of 1 − cos(input, output).
    /// Higher means the layer changes the residual stream more: more important.
    package var blockInfluence: [Double] {
        layers.map { FixedSum.double($0.blockInfluence) / Double(max(tokens, 1)) }
    }

    /// The contiguous run of `k` layers with the least total Block Influence: the block
    /// to drop. Returns its first layer.
    package func leastInfluentialBlock(of k: Int) -> Int? {
        let bi = blockInfluence
        guard k > 0, k <= bi.count else { return nil }
        var best = 0, bestSum = Double.infinity
        for start in 0...(bi.count - k) {
            let s = bi[start..<(start + k)].reduce(0, +)
            if s < bestSum { bestSum = s; best = start }
        }
        return best
    }

    /// Tokens whose layer input or output was a zero vector, per layer (scored as cos = 1).
    package var degenerateTokens: [Int] { layers.map(\.degenerateTokens) }
}

/// Indices of the `keep` largest scores, in ascending index order (ties: lower index wins).
package func topIndices(_ scores: [Double], keep: Int) -> [Int] {
    let order = scores.indices.sorted { scores[$0] != scores[$1] ? scores[$0] > scores[$1] : $0 < $1 }
    return Array(order.prefix(keep)).sorted()
}
