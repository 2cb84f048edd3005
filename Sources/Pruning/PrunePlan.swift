import Basics
import CheckpointIO
import Models
import TensorMath

/// How channels are ranked for width pruning.
package enum PruneMethod: String, Sendable, CaseIterable {
    /// Activation statistics from calibration (Minitron).
    case activation
    /// Weight norms only.
    case magnitude
    /// |W| · ‖X‖ per channel (Wanda).
    case wanda
    /// Seeded random choice: the baseline every score must beat.
    case random
}

/// What to cut, as counts; nil leaves a dimension alone.
package struct PruneTarget: Sendable, Equatable {
    package var ffn: Int?
    package var headsPerGroup: Int?
    package var hidden: Int?
    package var layers: Int?
    /// Explicit layers to drop (overrides `layers`).
    package var dropLayers: [Int]?
    /// Routed experts to keep per layer (a mixture of experts; `ffn` is then each expert's width).
    package var experts: Int?

    package init(ffn: Int? = nil, headsPerGroup: Int? = nil, hidden: Int? = nil, layers: Int? = nil, dropLayers: [Int]? = nil,
                 experts: Int? = nil) {
        self.ffn = ffn; self.headsPerGroup = headsPerGroup; self.hidden = hidden; self.layers = layers; self.dropLayers = dropLayers
        self.experts = experts
    }
}

/// The channels, heads and layers a pruned model keeps, in source indices.
package struct PrunePlan: Sendable, Equatable {
    package var keptLayers: [Int]
    /// Per kept layer (same order as keptLayers): MLP neurons kept, ascending (empty in a mixture of experts).
    package var neurons: [[Int]]
    /// Per kept layer: query heads kept, grouped by KV head (each group keeps the same count).
    package var heads: [[Int]]
    /// Hidden channels kept, ascending.
    package var hiddenChannels: [Int]
    package var method: PruneMethod
    /// A mixture of experts, per kept layer: the routed experts kept (ascending), and for
    /// each of them (same order) its neurons kept. Empty for a dense model.
    package var experts: [[Int]]
    package var expertNeurons: [[[Int]]]

    package init(keptLayers: [Int], neurons: [[Int]], heads: [[Int]], hiddenChannels: [Int], method: PruneMethod,
                 experts: [[Int]] = [], expertNeurons: [[[Int]]] = []) {
        self.keptLayers = keptLayers; self.neurons = neurons; self.heads = heads
        self.hiddenChannels = hiddenChannels; self.method = method
        self.experts = experts; self.expertNeurons = expertNeurons
    }

    /// The whole model as a plan (nothing cut).
    package static func identity(spec s: DecoderSpec, method: PruneMethod) -> PrunePlan {
        let moe = s.isMixtureOfExperts
        return PrunePlan(keptLayers: Array(0..<s.layers), neurons: (0..<s.layers).map { _ in moe ? [] : Array(0..<s.ffn) },
                         heads: (0..<s.layers).map { _ in Array(0..<s.heads) }, hiddenChannels: Array(0..<s.hidden), method: method,
                         experts: moe ? (0..<s.layers).map { _ in Array(0..<s.experts) } : [],
                         expertNeurons: moe ? (0..<s.layers).map { _ in (0..<s.experts).map { _ in Array(0..<s.ffn) } } : [])
    }

    /// The MLP width left (each routed expert's in a mixture), or nil when the plan has no layers.
    package var ffn: Int? { expertNeurons.first?.first?.count ?? neurons.first?.count }

    /// Routed experts left per layer (nil for a dense model).
    package var expertCount: Int? { experts.first?.count }

    /// Parameters of the decoder the plan leaves (matrices and norms, embeddings included).
    package func parameterCount(spec s: DecoderSpec, tiedHead: Bool) -> Int {
        let h = hiddenChannels.count
        var n = s.vocab * h * (tiedHead ? 1 : 2) + h
        for (i, _) in keptLayers.enumerated() {
            let q = heads[i].count * s.headDim, kv = s.kvDim
            n += h * q * 2 + h * kv * 2 + 2 * h
            if experts.isEmpty {
                n += 3 * h * neurons[i].count
            } else {
                // Router rows, the experts' gated MLPs, the shared expert and its gate.
                n += experts[i].count * h + expertNeurons[i].reduce(0) { $0 + 3 * h * $1.count }
                if s.sharedFFN > 0 { n += 3 * h * s.sharedFFN + h }
            }
        }
        return n
    }
}

/// Errors in a pruning request.
package enum PruneError: UserFacingError, Sendable, Equatable {
    case targetTooLarge(what: String, requested: Int, current: Int)
    case headsNotDivisible(heads: Int, groups: Int)
    case noLayersLeft
    case badLayerList(String)
    case needsStatistics(method: String)
    case hiddenBlocks(hidden: Int, block: Int, type: String)
    case notAMixture(architecture: String)

    package var description: String {
        switch self {
        case let .targetTooLarge(what, requested, current):
            return "\(what) \(requested) is not smaller than the model's \(current) (pruning only removes)"
        case let .headsNotDivisible(heads, groups):
            return "\(heads) query heads do not split evenly over the \(groups) KV groups (GQA keeps every KV head and the same number of query heads per group)"
        case .noLayersLeft: return "the plan drops every layer"
        case let .badLayerList(s): return "a layer list is layer numbers and ranges such as 3,20-25, got '\(s)'"
        case let .needsStatistics(method): return "the \(method) method needs importance statistics (from ckpt importance)"
        case let .hiddenBlocks(hidden, block, type):
            return "a hidden size of \(hidden) is not a multiple of \(block), which \(type) rows need; choose a multiple of \(block) or a float type"
        case let .notAMixture(architecture):
            return "--experts prunes a mixture of experts; this \(architecture) model has a dense MLP (--ffn prunes its neurons)"
        }
    }

    /// Every case is a request the model cannot meet.
    package var exitCode: ExitCode { .usage }
}

/// Scores by method, then the plan.
package enum PrunePlanner {
    /// Parses "3,20-25" into sorted layer indices.
    package static func parseLayers(_ text: String, layers: Int) throws -> [Int] {
        var out = Set<Int>()
        for part in text.split(separator: ",") {
            let ends = part.split(separator: "-", omittingEmptySubsequences: false)
            guard ends.count <= 2, let a = Int(ends[0]), let b = Int(ends.last!), a >= 0, a <= b, b < layers else {
                throw PruneError.badLayerList(text)
            }
            for i in a...b { out.insert(i) }
        }
        if out.isEmpty { throw PruneError.badLayerList(text) }
        return out.sorted()
    }

    /// `layerLoss` / `headLoss`: drop-one losses (from `DropOneLoss`) used instead of the
    /// statistics' Block Influence / head scores when given.
    package static func plan(model: DecoderModel, target: PruneTarget, method: PruneMethod, stats: ImportanceStats?,
                            headMetric: HeadMetric = .contribution, seed: UInt64 = 0,
                            layerLoss: [Double]? = nil, headLoss: [Int: [Double]]? = nil,
                            aggregation agg: Aggregation = .l2, expertMetric: ExpertMetric = .routing) throws -> PrunePlan {
        let s = model.spec
        if stats == nil && (method == .activation || method == .wanda) {
            // Drop-one losses stand in for statistics on the axes they cover.
            let needs = target.ffn != nil || target.hidden != nil || target.experts != nil
                || (target.headsPerGroup != nil && (headLoss == nil || method == .wanda))
                || (target.layers != nil && target.dropLayers == nil && layerLoss == nil)
            if needs { throw PruneError.needsStatistics(method: method.rawValue) }
        }
        if let st = stats, st.modelIdentity != model.identity {
            throw ImportanceError.wrongModel(path: model.path, expected: model.identity, found: st.modelIdentity)
        }
        let groups = s.kvHeads, perGroup = s.heads / s.kvHeads
        if let f = target.ffn, f >= s.ffn || f < 1 { throw PruneError.targetTooLarge(what: "an FFN width of", requested: f, current: s.ffn) }
        if let h = target.hidden, h >= s.hidden || h < 1 { throw PruneError.targetTooLarge(what: "a hidden size of", requested: h, current: s.hidden) }
        if let g = target.headsPerGroup, g >= perGroup || g < 1 {
            throw PruneError.targetTooLarge(what: "query heads per group:", requested: g, current: perGroup)
        }
        if let e = target.experts {
            guard s.isMixtureOfExperts else { throw PruneError.notAMixture(architecture: s.architecture) }
            if e >= s.experts || e < 1 { throw PruneError.targetTooLarge(what: "an expert count of", requested: e, current: s.experts) }
        }
        if let l = target.layers, l >= s.layers || l < 1 {
            throw l < 1 ? PruneError.noLayersLeft : PruneError.targetTooLarge(what: "a depth of", requested: l, current: s.layers)
        }
        var rng = SplitMix64(seed: seed)
        let scorer = WeightScores(model: model)

        // Depth.
        var kept = Array(0..<s.layers)
        if let drop = target.dropLayers {
            kept = kept.filter { !drop.contains($0) }
        } else if let n = target.layers {
            let bi: [Double]
            switch method {
            case .random: bi = (0..<s.layers).map { _ in rng.uniform() }
            case .magnitude: bi = try (0..<s.layers).map { try scorer.layerNorm($0) }
            default: bi = layerLoss ?? stats!.blockInfluence
            }
            kept = topIndices(bi, keep: n)
        }
        if kept.isEmpty { throw PruneError.noLayersLeft }

        var neurons: [[Int]] = [], heads: [[Int]] = [], experts: [[Int]] = [], expertNeurons: [[[Int]]] = []
        for l in kept {
            if s.isMixtureOfExperts {
                var keep = Array(0..<s.experts)
                if let n = target.experts {
                    let scores: [Double]
                    switch method {
                    case .activation, .wanda: scores = stats!.expertScores(layer: l, metric: expertMetric, agg)
                    case .magnitude: scores = try (0..<s.experts).map { try scorer.expertNorm(layer: l, expert: $0) }
                    case .random: scores = (0..<s.experts).map { _ in rng.uniform() }
                    }
                    keep = topIndices(scores, keep: n)
                }
                experts.append(keep)
                expertNeurons.append(try keep.map { e in
                    guard let f = target.ffn else { return Array(0..<s.ffn) }
                    let scores: [Double]
                    switch method {
                    case .activation: scores = stats!.expertNeuronScores(layer: l, expert: e, agg)
                    case .magnitude: scores = try scorer.neuronNorms(layer: l, expert: e)
                    case .wanda: scores = try scorer.wandaNeurons(layer: l, expert: e, inputNorms: stats!.expertNeuronInputNorms(layer: l, expert: e))
                    case .random: scores = (0..<s.ffn).map { _ in rng.uniform() }
                    }
                    return topIndices(scores, keep: f)
                })
                neurons.append([])
            } else if let f = target.ffn {
                let scores: [Double]
                switch method {
                case .activation: scores = stats!.neuronScores(layer: l, agg)
                case .magnitude: scores = try scorer.neuronNorms(layer: l)
                case .wanda: scores = try scorer.wandaNeurons(layer: l, inputNorms: stats!.layers[l].neurons.inputNorms)
                case .random: scores = (0..<s.ffn).map { _ in rng.uniform() }
                }
                neurons.append(topIndices(scores, keep: f))
            } else {
                neurons.append(Array(0..<s.ffn))
            }
            if let g = target.headsPerGroup {
                let scores: [Double]
                switch method {
                case .activation: scores = headLoss?[l] ?? stats!.headScores(layer: l, metric: headMetric, agg)
                case .magnitude: scores = try scorer.headNorms(layer: l)
                case .wanda: scores = try scorer.wandaHeads(layer: l, inputNorms: stats!.layers[l].attentionChannels.inputNorms)
                case .random: scores = (0..<s.heads).map { _ in rng.uniform() }
                }
                var keep: [Int] = []
                for grp in 0..<groups {
                    let members = Array((grp * perGroup)..<((grp + 1) * perGroup))
                    let best = topIndices(members.map { scores[$0] }, keep: g)
                    keep += best.map { members[$0] }
                }
                heads.append(keep)
            } else {
                heads.append(Array(0..<s.heads))
            }
        }
        var hidden = Array(0..<s.hidden)
        if let h = target.hidden {
            let scores: [Double]
            switch method {
            case .activation: scores = stats!.channelScores(agg)
            case .magnitude: scores = try scorer.channelNorms()
            case .wanda:
                scores = try scorer.wandaChannels(layers: kept, attentionNorms: kept.map { stats!.layers[$0].attentionInput.inputNorms },
                                                  mlpNorms: kept.map { stats!.layers[$0].mlpInput.inputNorms })
            case .random: scores = (0..<s.hidden).map { _ in rng.uniform() }
            }
            hidden = topIndices(scores, keep: h)
        }
        return PrunePlan(keptLayers: kept, neurons: neurons, heads: heads, hiddenChannels: hidden, method: method,
                         experts: experts, expertNeurons: expertNeurons)
    }
}

/// Weight-only scores (magnitude, and Wanda's |W| factor). Each matrix is read once, a
/// block of rows at a time, so memory stays one block however large the matrix (a 15B
/// model's embedding is 1.5 GB).
struct WeightScores {
    let model: DecoderModel
    /// Floats decoded per block (16 MiB).
    static let blockElements = 1 << 22

    /// Per row Σx², per column Σ|x| and Σx², summed in double in row-major order.
    struct MatrixSums {
        var rowSquares: [Double]
        var columnAbs: [Double]
        var columnSquares: [Double]
    }

    func sums(_ role: TensorRole) throws -> MatrixSums {
        let t = role == .lmHead ? model.lmHeadView : model.tensor(role)!
        let rows = t.rowCount, cols = t.rowLength
        var out = MatrixSums(rowSquares: [Double](repeating: 0, count: rows), columnAbs: [Double](repeating: 0, count: cols),
                             columnSquares: [Double](repeating: 0, count: cols))
        let perBlock = max(1, Self.blockElements / max(cols, 1))
        var buffer = [Float](repeating: 0, count: min(rows, perBlock) * cols)
        defer { try? t.file.advise(.dontNeed, range: t.offset..<(t.offset + t.byteCount)) }
        var r0 = 0
        while r0 < rows {
            let r1 = min(rows, r0 + perBlock)
            try buffer.withUnsafeMutableBufferPointer { try TensorDecoder.decodeRows(t, rows: r0..<r1, into: $0.baseAddress!) }
            for r in r0..<r1 {
                var q = 0.0
                for c in 0..<cols {
                    let x = Double(buffer[(r - r0) * cols + c])
                    q += x * x
                    out.columnAbs[c] += abs(x)
                    out.columnSquares[c] += x * x
                }
                out.rowSquares[r] = q
            }
            r0 = r1
        }
        return out
    }

    /// The MLP tensor `part` of layer `l`, or of its routed expert `e`.
    private func mlp(_ l: Int, _ e: Int?, _ part: LayerTensor) -> TensorRole {
        e.map { .expert(l, $0, part) } ?? .layer(l, part)
    }

    /// ‖gate row‖ + ‖up row‖ + ‖down column‖ per neuron (no gate term in an ungated MLP),
    /// of the dense MLP or of expert `e`.
    func neuronNorms(layer l: Int, expert e: Int? = nil) throws -> [Double] {
        let up = try sums(mlp(l, e, .mlpUp)).rowSquares
        let gate = model.spec.gatedMLP ? try sums(mlp(l, e, .mlpGate)).rowSquares : [Double](repeating: 0, count: up.count)
        let down = try sums(mlp(l, e, .mlpDown)).columnSquares
        return (0..<up.count).map { gate[$0].squareRoot() + up[$0].squareRoot() + down[$0].squareRoot() }
    }

    /// ‖gate‖ + ‖up‖ + ‖down‖ (Frobenius) of expert `e`.
    func expertNorm(layer l: Int, expert e: Int) throws -> Double {
        try [LayerTensor.mlpGate, .mlpUp, .mlpDown].map { try sums(.expert(l, e, $0)).rowSquares.reduce(0, +).squareRoot() }.reduce(0, +)
    }

    func headNorms(layer l: Int) throws -> [Double] {
        let s = model.spec
        let q = try sums(.layer(l, .attnQ)).rowSquares
        let o = try sums(.layer(l, .attnOutput)).columnSquares
        return (0..<s.heads).map { h in
            let r = (h * s.headDim)..<((h + 1) * s.headDim)
            return r.map { q[$0] }.reduce(0, +).squareRoot() + r.map { o[$0] }.reduce(0, +).squareRoot()
        }
    }

    func channelNorms() throws -> [Double] {
        try sums(.embed).columnSquares.map { $0.squareRoot() }
    }

    func layerNorm(_ l: Int) throws -> Double {
        let s = model.spec
        let outputs: [TensorRole] = [.layer(l, .attnOutput)]
            + (s.isMixtureOfExperts ? (0..<s.experts).map { .expert(l, $0, .mlpDown) } : [.layer(l, .mlpDown)])
        return try outputs.map { try sums($0).rowSquares.reduce(0, +) }.reduce(0, +)
    }

    /// Wanda for an input channel c of W: Σ_i |W[i, c]| · ‖X_c‖ (the dense MLP's down projection, or expert `e`'s).
    func wandaNeurons(layer l: Int, expert e: Int? = nil, inputNorms: [Double]) throws -> [Double] {
        let a = try sums(mlp(l, e, .mlpDown)).columnAbs
        return a.indices.map { a[$0] * inputNorms[$0] }
    }

    func wandaHeads(layer l: Int, inputNorms: [Double]) throws -> [Double] {
        let s = model.spec
        let a = try sums(.layer(l, .attnOutput)).columnAbs
        return (0..<s.heads).map { h in ((h * s.headDim)..<((h + 1) * s.headDim)).map { a[$0] * inputNorms[$0] }.reduce(0, +) }
    }

    func wandaChannels(layers: [Int], attentionNorms: [[Double]], mlpNorms: [[Double]]) throws -> [Double] {
        var out = [Double](repeating: 0, count: model.spec.hidden)
        for (i, l) in layers.enumerated() {
            for (part, norms) in [(LayerTensor.attnQ, attentionNorms[i]), (.attnK, attentionNorms[i]), (.attnV, attentionNorms[i]),
                                  (.mlpGate, mlpNorms[i]), (.mlpUp, mlpNorms[i])] where model.tensor(.layer(l, part)) != nil {
                let a = try sums(.layer(l, part)).columnAbs
                for c in out.indices { out[c] += a[c] * norms[c] }
            }
        }
        return out
    }
}
