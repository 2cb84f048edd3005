import Basics
import CheckpointIO

/// What a tensor is in the model, independent of any file's naming scheme. Pruning and
/// distillation speak in roles; the name maps below translate to GGUF and HF names.
public enum TensorRole: Hashable, Sendable, CustomStringConvertible {
    case embed
    case lmHead
    case finalNorm
    case layer(Int, LayerTensor)

    public var description: String {
        switch self {
        case .embed: return "embed"
        case .lmHead: return "lm_head"
        case .finalNorm: return "norm"
        case let .layer(i, part): return "layers.\(i).\(part.rawValue)"
        }
    }
}

/// The tensors of one decoder layer.
public enum LayerTensor: String, CaseIterable, Sendable {
    case attnNorm = "attn.norm"
    case attnQ = "attn.q", attnK = "attn.k", attnV = "attn.v", attnOutput = "attn.o"
    case attnQBias = "attn.q.bias", attnKBias = "attn.k.bias", attnVBias = "attn.v.bias"
    case attnQNorm = "attn.q_norm", attnKNorm = "attn.k_norm"
    case postAttnNorm = "attn.post_norm"
    case mlpNorm = "mlp.norm"
    case postMlpNorm = "mlp.post_norm"
    case mlpGate = "mlp.gate", mlpUp = "mlp.up", mlpDown = "mlp.down"

    /// Norm weights (vectors the gemma family stores with a +1 offset in GGUF).
    public var isNorm: Bool {
        switch self {
        case .attnNorm, .attnQNorm, .attnKNorm, .postAttnNorm, .mlpNorm, .postMlpNorm: return true
        default: return false
        }
    }
}

/// A decoder architecture's naming and storage conventions in GGUF and in HF
/// checkpoints: one table per family, the only place these names are spelled.
public struct Architecture: Sendable {
    /// `general.architecture` in GGUF.
    public let ggufName: String
    /// `model_type` in HF `config.json`.
    public let hfModelType: String
    /// `architectures[0]` in HF `config.json`.
    public let hfClass: String
    /// llama.cpp's converter reorders the rows of Q and K for these (its RoPE pairs
    /// adjacent elements, HF's pairs the two halves of each head).
    public let permutesQK: Bool
    /// llama.cpp's converter adds 1 to every norm weight (gemma computes x·(1+w)).
    public let normOffset: Float
    /// The embedding doubles as the LM head (no `output.weight` / `lm_head.weight`).
    public let alwaysTiedEmbeddings: Bool
    /// GGUF name suffix (after `blk.N.`) and HF name suffix (after `model.layers.N.`).
    let layerNames: [LayerTensor: (gguf: String, hf: String)]

    public static let all: [Architecture] = [
        Architecture(ggufName: "llama", hfModelType: "llama", hfClass: "LlamaForCausalLM", permutesQK: true, normOffset: 0,
                     alwaysTiedEmbeddings: false, layerNames: llamaNames),
        Architecture(ggufName: "mistral", hfModelType: "mistral", hfClass: "MistralForCausalLM", permutesQK: true, normOffset: 0,
                     alwaysTiedEmbeddings: false, layerNames: llamaNames),
        Architecture(ggufName: "qwen2", hfModelType: "qwen2", hfClass: "Qwen2ForCausalLM", permutesQK: false, normOffset: 0,
                     alwaysTiedEmbeddings: false, layerNames: llamaNames),
        Architecture(ggufName: "qwen3", hfModelType: "qwen3", hfClass: "Qwen3ForCausalLM", permutesQK: false, normOffset: 0,
                     alwaysTiedEmbeddings: false, layerNames: llamaNames),
        Architecture(ggufName: "gemma2", hfModelType: "gemma2", hfClass: "Gemma2ForCausalLM", permutesQK: false, normOffset: 1,
                     alwaysTiedEmbeddings: true, layerNames: gemmaNames),
        Architecture(ggufName: "gemma3", hfModelType: "gemma3_text", hfClass: "Gemma3ForCausalLM", permutesQK: false, normOffset: 1,
                     alwaysTiedEmbeddings: true, layerNames: gemmaNames),
    ]

    public static func gguf(_ name: String) -> Architecture? { all.first { $0.ggufName == name } }

    /// `general.architecture` of a GGUF converted from this family. llama.cpp has no
    /// `mistral` architecture: its converter writes Mistral (and Mixtral) as `llama`,
    /// whose name map and Q/K order they share. A `mistral` GGUF is still read.
    public var ggufOutputName: String { ggufName == "mistral" ? "llama" : ggufName }

    public static func hf(modelType: String) -> Architecture? {
        all.first { $0.hfModelType == modelType } ?? (modelType == "gemma3" ? gguf("gemma3") : nil)
    }

    private static let llamaNames: [LayerTensor: (gguf: String, hf: String)] = [
        .attnNorm: ("attn_norm.weight", "input_layernorm.weight"),
        .attnQ: ("attn_q.weight", "self_attn.q_proj.weight"),
        .attnK: ("attn_k.weight", "self_attn.k_proj.weight"),
        .attnV: ("attn_v.weight", "self_attn.v_proj.weight"),
        .attnOutput: ("attn_output.weight", "self_attn.o_proj.weight"),
        .attnQBias: ("attn_q.bias", "self_attn.q_proj.bias"),
        .attnKBias: ("attn_k.bias", "self_attn.k_proj.bias"),
        .attnVBias: ("attn_v.bias", "self_attn.v_proj.bias"),
        .attnQNorm: ("attn_q_norm.weight", "self_attn.q_norm.weight"),
        .attnKNorm: ("attn_k_norm.weight", "self_attn.k_norm.weight"),
        .mlpNorm: ("ffn_norm.weight", "post_attention_layernorm.weight"),
        .mlpGate: ("ffn_gate.weight", "mlp.gate_proj.weight"),
        .mlpUp: ("ffn_up.weight", "mlp.up_proj.weight"),
        .mlpDown: ("ffn_down.weight", "mlp.down_proj.weight"),
    ]

    // Gemma 2/3 norm around both blocks: HF's post_attention_layernorm is the norm *after*
    // attention (GGUF post_attention_norm), and the pre-MLP norm has its own name.
    private static let gemmaNames: [LayerTensor: (gguf: String, hf: String)] = {
        var n = llamaNames
        n[.postAttnNorm] = ("post_attention_norm.weight", "post_attention_layernorm.weight")
        n[.mlpNorm] = ("ffn_norm.weight", "pre_feedforward_layernorm.weight")
        n[.postMlpNorm] = ("post_ffw_norm.weight", "post_feedforward_layernorm.weight")
        return n
    }()

    /// The role of a GGUF tensor name, or nil when the name is not this family's.
    public func role(ggufName name: String) -> TensorRole? {
        switch name {
        case "token_embd.weight": return .embed
        case "output.weight": return .lmHead
        case "output_norm.weight": return .finalNorm
        default: return layerRole(name, prefix: "blk.", \.gguf)
        }
    }

    /// The role of an HF tensor name, or nil.
    public func role(hfName name: String) -> TensorRole? {
        switch MultimodalNames.textModelName(name) {
        case "model.embed_tokens.weight": return .embed
        case "lm_head.weight": return .lmHead
        case "model.norm.weight": return .finalNorm
        case let name: return layerRole(name, prefix: "model.layers.", \.hf)
        }
    }

    private func layerRole(_ name: String, prefix: String, _ side: KeyPath<(gguf: String, hf: String), String>) -> TensorRole? {
        guard name.hasPrefix(prefix) else { return nil }
        let rest = name.dropFirst(prefix.count)
        guard let dot = rest.firstIndex(of: "."), let index = Int(rest[..<dot]), index >= 0 else { return nil }
        let suffix = String(rest[rest.index(after: dot)...])
        guard let part = layerNames.first(where: { $0.value[keyPath: side] == suffix })?.key else { return nil }
        return .layer(index, part)
    }

    public func ggufName(_ role: TensorRole) -> String? {
        switch role {
        case .embed: return "token_embd.weight"
        case .lmHead: return "output.weight"
        case .finalNorm: return "output_norm.weight"
        case let .layer(i, part): return layerNames[part].map { "blk.\(i).\($0.gguf)" }
        }
    }

    public func hfName(_ role: TensorRole) -> String? {
        switch role {
        case .embed: return "model.embed_tokens.weight"
        case .lmHead: return "lm_head.weight"
        case .finalNorm: return "model.norm.weight"
        case let .layer(i, part): return layerNames[part].map { "model.layers.\(i).\($0.hf)" }
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
