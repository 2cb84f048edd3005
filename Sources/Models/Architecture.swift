import Basics
import CheckpointIO

/// What a tensor is in the model, independent of any file's naming scheme. Pruning and
/// distillation speak in roles; the name maps below translate to GGUF and HF names.
public enum TensorRole: Hashable, Sendable, CustomStringConvertible {
    case embed
    case lmHead
    case finalNorm
    /// The final LayerNorm's bias (nemotron).
    case finalNormBias
    case layer(Int, LayerTensor)
    /// One expert's gate, up or down matrix (`.mlpGate`, `.mlpUp`, `.mlpDown`) in a layer
    /// of a mixture of experts: its own tensor in HF checkpoints, a slice of the layer's
    /// stacked `*_exps` tensor in GGUF.
    case expert(Int, Int, LayerTensor)

    public var description: String {
        switch self {
        case .embed: return "embed"
        case .lmHead: return "lm_head"
        case .finalNorm: return "norm"
        case .finalNormBias: return "norm.bias"
        case let .layer(i, part): return "layers.\(i).\(part.rawValue)"
        case let .expert(i, e, part): return "layers.\(i).experts.\(e).\(part.rawValue)"
        }
    }

    /// The layer a role belongs to, if any.
    public var layerIndex: Int? {
        switch self {
        case let .layer(i, _), let .expert(i, _, _): return i
        default: return nil
        }
    }
}

/// The tensors of one decoder layer.
public enum LayerTensor: String, CaseIterable, Sendable {
    case attnNorm = "attn.norm"
    /// LayerNorm biases (nemotron): one value per hidden channel.
    case attnNormBias = "attn.norm.bias"
    case attnQ = "attn.q", attnK = "attn.k", attnV = "attn.v", attnOutput = "attn.o"
    case attnQBias = "attn.q.bias", attnKBias = "attn.k.bias", attnVBias = "attn.v.bias"
    case attnOutputBias = "attn.o.bias"
    /// Q, K and V rows in one matrix (phi3): q rows, then k, then v.
    case attnQKV = "attn.qkv"
    case attnQNorm = "attn.q_norm", attnKNorm = "attn.k_norm"
    case postAttnNorm = "attn.post_norm"
    case mlpNorm = "mlp.norm"
    case mlpNormBias = "mlp.norm.bias"
    case postMlpNorm = "mlp.post_norm"
    case mlpGate = "mlp.gate", mlpUp = "mlp.up", mlpDown = "mlp.down"
    case mlpUpBias = "mlp.up.bias", mlpDownBias = "mlp.down.bias"
    /// Gate and up rows in one matrix (phi3): the gate's rows, then up's.
    case mlpGateUp = "mlp.gate_up"
    /// Mixture of experts: the router (one row of logits per expert), the experts' gate,
    /// up and down matrices stacked (GGUF `ffn_*_exps`, [experts, rows, cols]; read as
    /// `TensorRole.expert` slices), a shared expert's gated MLP (qwen2moe) and the
    /// sigmoid gate on its output (one row).
    case moeRouter = "mlp.router"
    case expertsGate = "mlp.experts.gate", expertsUp = "mlp.experts.up", expertsDown = "mlp.experts.down"
    case sharedGate = "mlp.shared.gate", sharedUp = "mlp.shared.up", sharedDown = "mlp.shared.down"
    case sharedRouter = "mlp.shared.router"

    /// The per-expert part a stacked expert tensor holds, nil for any other tensor.
    public var stackedPart: LayerTensor? {
        switch self {
        case .expertsGate: return .mlpGate
        case .expertsUp: return .mlpUp
        case .expertsDown: return .mlpDown
        default: return nil
        }
    }

    /// The stacked expert tensor that holds this part of every expert (GGUF's
    /// `ffn_*_exps`), nil for a part experts do not have: the inverse of `stackedPart`.
    public var expertStack: LayerTensor? {
        switch self {
        case .mlpGate: return .expertsGate
        case .mlpUp: return .expertsUp
        case .mlpDown: return .expertsDown
        default: return nil
        }
    }

    /// The parts a fused matrix holds, in row order, with their row counts (empty for
    /// a tensor that is not fused).
    public func fusedParts(_ s: DecoderSpec) -> [(part: LayerTensor, rows: Int)] {
        switch self {
        case .attnQKV: return [(.attnQ, s.qDim), (.attnK, s.kvDim), (.attnV, s.kvDim)]
        case .mlpGateUp: return [(.mlpGate, s.ffn), (.mlpUp, s.ffn)]
        default: return []
        }
    }

    /// Norm weights (vectors the gemma and nemotron families store with a +1 offset in
    /// GGUF). Norm biases are not: they are added, not scaled.
    public var isNorm: Bool {
        switch self {
        case .attnNorm, .attnQNorm, .attnKNorm, .postAttnNorm, .mlpNorm, .postMlpNorm: return true
        default: return false
        }
    }
}

/// One tensor of a decoder layer as an architecture lays it out: its part, the shape the
/// spec implies, and whether a checkpoint may leave it out (biases).
public struct LayerSlot: Sendable, Equatable {
    public let part: LayerTensor
    public let shape: [Int]
    public let optional: Bool

    public init(_ part: LayerTensor, _ shape: [Int], optional: Bool = false) {
        self.part = part
        self.shape = shape
        self.optional = optional
    }
}

/// A decoder family's registry entry: its names in GGUF and HF checkpoints, how its
/// `DecoderSpec` is read from a config, and which tensors a layer holds, with their
/// shapes, in the order training lays them out. Each family's entry lives in its own
/// file under Architectures/; everything else (the engine's tensor check, conversion,
/// surgery, training slots) reads it from here, so adding a family touches one file.
public struct Architecture: Sendable {
    /// `general.architecture` in GGUF.
    // The entries in Architectures/ are built with the memberwise initialiser; the
    // defaults are LLaMA's conventions.
    public internal(set) var ggufName: String
    /// `model_type` in HF `config.json` (and other spellings of it that are read).
    public internal(set) var hfModelType: String
    var hfModelTypeAliases: [String] = []
    /// `architectures[0]` in HF `config.json`.
    public internal(set) var hfClass: String
    /// llama.cpp's name for a family it knows only as the one it shares a layout with.
    var ggufWrittenAs: String?
    /// llama.cpp's converter reorders the rows of Q and K for these (its RoPE pairs
    /// adjacent elements, HF's pairs the two halves of each head).
    public internal(set) var permutesQK: Bool
    /// llama.cpp's converter adds 1 to every norm weight (gemma computes x·(1+w)).
    public internal(set) var normOffset: Float = 0
    /// `hidden_act` (or gemma's `hidden_activation`) written to an HF `config.json`.
    public internal(set) var hfActivation: (key: String, value: String) = ("hidden_act", "silu")
    /// HF's config must state `query_pre_attn_scalar` (gemma: transformers defaults it to
    /// 256, while GGUF keeps no key and llama.cpp derives the scale from the shape).
    public internal(set) var hfStatesQueryScale = false
    /// LayerNorm with biases instead of RMSNorm (its epsilon has its own keys).
    public internal(set) var usesLayerNorm = false
    /// The embedding doubles as the LM head (no `output.weight` / `lm_head.weight`).
    public internal(set) var alwaysTiedEmbeddings = false
    /// llama.cpp reads which layers slide from `{arch}.attention.sliding_window_pattern`.
    public internal(set) var ggufSlidingPattern = false
    /// GGUF name suffix (after `blk.N.`) and HF name suffix (after `model.layers.N.`).
    let layerNames: [LayerTensor: (gguf: String, hf: String)]
    /// HF names of one expert's matrices: `{prefix}{e}.{gate|up|down}` after
    /// `model.layers.N.` (Mixtral: `block_sparse_moe.experts.` with w1, w3, w2).
    var hfExperts: (prefix: String, gate: String, up: String, down: String)? = nil
    /// The family's spec from a config (sizes, RoPE, norms, windows), before the shared checks.
    let readSpec: @Sendable (ModelConfig, CheckpointFormat, _ ropeFactors: [Float]?, _ path: String) throws -> DecoderSpec
    /// The tensors of one layer, in training order.
    let layerLayout: @Sendable (DecoderSpec) -> [LayerSlot]

    /// `general.architecture` of a GGUF converted from this family.
    public var ggufOutputName: String { ggufWrittenAs ?? ggufName }

    /// Every family ckpt reads, converts, prunes and trains.
    public static let all: [Architecture] = [.llama, .mistral, .qwen2, .qwen3, .gemma2, .gemma3, .nemotron, .phi3, .mixtral, .qwen2moe, .qwen3moe]

    public static func gguf(_ name: String) -> Architecture? { all.first { $0.ggufName == name } }

    public static func hf(modelType: String) -> Architecture? {
        all.first { $0.hfModelType == modelType || $0.hfModelTypeAliases.contains(modelType) }
    }

    /// The decoder spec of a model of this family, every value range-checked.
    public func spec(_ config: ModelConfig, format: CheckpointFormat, ropeFactors: [Float]?, path: String) throws -> DecoderSpec {
        let s = try readSpec(config, format, ropeFactors, path)
        return try ConfigCheck(path: path, format: format, architecture: ggufName).finish(s, config: config)
    }

    /// Every tensor a model of this shape holds, with its shape, in training order: the
    /// embedding, each layer's tensors, the final norm, and the LM head unless tied.
    public func tensors(_ s: DecoderSpec) -> [(role: TensorRole, shape: [Int], optional: Bool)] {
        var out: [(role: TensorRole, shape: [Int], optional: Bool)] = [(.embed, [s.vocab, s.hidden], false)]
        let layout = layerLayout(s)
        for i in 0..<s.layers {
            for slot in layout {
                if let part = slot.part.stackedPart, slot.shape.count == 3 {
                    // Each expert's matrix on its own: HF files keep them apart, GGUF's
                    // stacked tensor is read as one slice an expert.
                    for e in 0..<slot.shape[0] { out.append((.expert(i, e, part), Array(slot.shape.dropFirst()), slot.optional)) }
                } else {
                    out.append((.layer(i, slot.part), slot.shape, slot.optional))
                }
            }
        }
        out.append((.finalNorm, [s.hidden], false))
        if s.norm == .layer { out.append((.finalNormBias, [s.hidden], false)) }
        out.append((.lmHead, [s.vocab, s.hidden], true))
        return out
    }

    /// The role of a GGUF tensor name, or nil when the name is not this family's.
    public func role(ggufName name: String) -> TensorRole? {
        switch name {
        case "token_embd.weight": return .embed
        case "output.weight": return .lmHead
        case "output_norm.weight": return .finalNorm
        case "output_norm.bias": return .finalNormBias
        default: return layerRole(name, prefix: "blk.", \.gguf)
        }
    }

    /// The role of an HF tensor name, or nil.
    public func role(hfName name: String) -> TensorRole? {
        switch MultimodalNames.textModelName(name) {
        case "model.embed_tokens.weight": return .embed
        case "lm_head.weight": return .lmHead
        case "model.norm.weight": return .finalNorm
        case "model.norm.bias": return .finalNormBias
        case let name: return layerRole(name, prefix: "model.layers.", \.hf)
        }
    }

    private func layerRole(_ name: String, prefix: String, _ side: KeyPath<(gguf: String, hf: String), String>) -> TensorRole? {
        guard name.hasPrefix(prefix) else { return nil }
        let rest = name.dropFirst(prefix.count)
        guard let dot = rest.firstIndex(of: "."), let index = Int(rest[..<dot]), index >= 0 else { return nil }
        let suffix = String(rest[rest.index(after: dot)...])
        if side == \.hf, let x = hfExperts, suffix.hasPrefix(x.prefix) {
            let tail = suffix.dropFirst(x.prefix.count)
            guard let d = tail.firstIndex(of: "."), let e = Int(tail[..<d]), e >= 0 else { return nil }
            switch tail[tail.index(after: d)...] {
            case x.gate: return .expert(index, e, .mlpGate)
            case x.up: return .expert(index, e, .mlpUp)
            case x.down: return .expert(index, e, .mlpDown)
            default: return nil
            }
        }
        guard let part = layerNames.first(where: { !$0.value[keyPath: side].isEmpty && $0.value[keyPath: side] == suffix })?.key else { return nil }
        return .layer(index, part)
    }

    public func ggufName(_ role: TensorRole) -> String? {
        switch role {
        case .embed: return "token_embd.weight"
        case .lmHead: return "output.weight"
        case .finalNorm: return "output_norm.weight"
        case .finalNormBias: return "output_norm.bias"
        case let .layer(i, part): return layerNames[part].flatMap { $0.gguf.isEmpty ? nil : "blk.\(i).\($0.gguf)" }
        case .expert: return nil
        }
    }

    public func hfName(_ role: TensorRole) -> String? {
        switch role {
        case .embed: return "model.embed_tokens.weight"
        case .lmHead: return "lm_head.weight"
        case .finalNorm: return "model.norm.weight"
        case .finalNormBias: return "model.norm.bias"
        case let .layer(i, part): return layerNames[part].flatMap { $0.hf.isEmpty ? nil : "model.layers.\(i).\($0.hf)" }
        case let .expert(i, e, part):
            guard let x = hfExperts else { return nil }
            let name = part == .mlpGate ? x.gate : part == .mlpUp ? x.up : x.down
            return "model.layers.\(i).\(x.prefix)\(e).\(name)"
        }
    }

    /// The row order change a role needs going from HF to GGUF (or back, `inverse`),
    /// as a map from output row to input row; nil when rows stay in place.
    public func rowPermutation(_ role: TensorRole, rows: Int, config: ModelConfig, toGGUF: Bool) -> [Int]? {
        guard permutesQK, case let .layer(_, part) = role, part == .attnQ || part == .attnK || part == .attnQBias || part == .attnKBias else { return nil }
        let heads = (part == .attnQ || part == .attnQBias) ? config.numAttentionHeads : config.numKeyValueHeads
        guard let heads, heads > 0, rows % heads == 0, (rows / heads) % 2 == 0 else { return nil }
        return Self.ropePermutation(rows: rows, heads: heads, toGGUF: toGGUF)
    }

    /// llama.cpp's `permute`: within each head of `d` rows, HF row `s·d/2 + t` (half s,
    /// index t) becomes GGUF row `2t + s`, so rotary pairs sit next to each other.
    public static func ropePermutation(rows: Int, heads: Int, toGGUF: Bool) -> [Int] {
        let d = rows / heads
        var map = [Int](repeating: 0, count: rows)
        for h in 0..<heads {
            for s in 0..<2 {
                for t in 0..<(d / 2) {
                    let hfRow = h * d + s * (d / 2) + t
                    let ggufRow = h * d + 2 * t + s
                    if toGGUF { map[ggufRow] = hfRow } else { map[hfRow] = ggufRow }
                }
            }
        }
        return map
    }

    /// The constant added to a tensor's values going to GGUF (subtracted going back).
    public func valueOffset(_ role: TensorRole) -> Float {
        switch role {
        case .finalNorm: return normOffset
        case let .layer(_, part) where part.isNorm: return normOffset
        default: return 0
        }
    }
}
