import Basics
import CheckpointIO

/// What the mixture-of-experts families (Mixtral, Qwen2-MoE, Qwen3-MoE) share: the MLP
/// replaced by a router and per-expert gated MLPs (plus, in qwen2moe, a shared expert
/// behind a sigmoid gate), GGUF's stacked `*_exps` names, and the spec fields that say
/// how tokens are routed.
enum MoE {
    /// The layer layout with its MLP replaced by the experts (dense layouts are returned
    /// as they are). Stacked tensors are [experts, rows, cols], as GGUF holds them.
    static func layout(_ dense: [LayerSlot], _ s: DecoderSpec) -> [LayerSlot] {
        guard s.isMixtureOfExperts else { return dense }
        var out = dense.filter { ![.mlpGate, .mlpUp, .mlpDown].contains($0.part) }
        out += [
            LayerSlot(.moeRouter, [s.experts, s.hidden]),
            LayerSlot(.expertsGate, [s.experts, s.ffn, s.hidden]),
            LayerSlot(.expertsUp, [s.experts, s.ffn, s.hidden]),
            LayerSlot(.expertsDown, [s.experts, s.hidden, s.ffn]),
        ]
        if s.sharedFFN > 0 {
            out += [
                LayerSlot(.sharedRouter, [s.hidden], optional: true),
                LayerSlot(.sharedGate, [s.sharedFFN, s.hidden]), LayerSlot(.sharedUp, [s.sharedFFN, s.hidden]),
                LayerSlot(.sharedDown, [s.hidden, s.sharedFFN]),
            ]
        }
        return out
    }

    /// GGUF names of the expert tensors (llama.cpp's), with HF names for the ones HF keeps
    /// whole; the experts' own HF names are `Architecture.hfExperts`.
    static func names(router: String, shared: String? = nil) -> [LayerTensor: (gguf: String, hf: String)] {
        var n: [LayerTensor: (gguf: String, hf: String)] = [
            .moeRouter: ("ffn_gate_inp.weight", router),
            .expertsGate: ("ffn_gate_exps.weight", ""), .expertsUp: ("ffn_up_exps.weight", ""),
            .expertsDown: ("ffn_down_exps.weight", ""),
        ]
        if let shared {
            n[.sharedGate] = ("ffn_gate_shexp.weight", "\(shared).gate_proj.weight")
            n[.sharedUp] = ("ffn_up_shexp.weight", "\(shared).up_proj.weight")
            n[.sharedDown] = ("ffn_down_shexp.weight", "\(shared).down_proj.weight")
            n[.sharedRouter] = ("ffn_gate_inp_shexp.weight", "\(shared)_gate.weight")
        }
        return n
    }

    /// A family's spec reader for its mixture-of-experts variant: the dense family's spec
    /// under the new name, with the routing fields.
    static func spec(_ dense: @escaping @Sendable (ModelConfig, CheckpointFormat, [Float]?, String) throws -> DecoderSpec,
                     architecture: String, normalises: Bool) -> @Sendable (ModelConfig, CheckpointFormat, [Float]?, String) throws -> DecoderSpec {
        { c, format, factors, path in
            var s = try dense(c, format, factors, path)
            s.architecture = architecture
            try route(&s, c, format: format, normalises: normalises, path: path)
            return s
        }
    }

    /// The routing fields of the spec, from the config; a dense config leaves it dense.
    /// `normalises`: the family's renormalisation of the chosen weights when the config
    /// does not say (llama.cpp hard-codes it per architecture).
    static func route(_ s: inout DecoderSpec, _ c: ModelConfig, format: CheckpointFormat, normalises: Bool, path: String) throws {
        guard let experts = c.expertCount, experts > 0 else { return }
        let check = ConfigCheck(path: path, format: format, architecture: s.architecture)
        let hfExperts = c.numLocalExperts != nil ? "num_local_experts" : "num_experts"
        s.experts = try check.count(experts, hfExperts, "expert_count", max: 1 << 16)
        s.expertsUsed = try check.count(c.numExpertsPerTok, "num_experts_per_tok", "expert_used_count", max: s.experts)
        if let f = c.moeIntermediateSize {
            s.ffn = try check.count(f, "moe_intermediate_size", "expert_feed_forward_length", max: ConfigCheck.maxWidth)
        }
        if let f = c.sharedExpertIntermediateSize, f > 0 {
            s.sharedFFN = try check.count(f, "shared_expert_intermediate_size", "expert_shared_feed_forward_length", max: ConfigCheck.maxWidth)
        }
        s.expertWeightsNorm = c.normTopkProb ?? normalises
        if let step = c.decoderSparseStep, step != 1 {
            throw CheckpointError.unsupported(path: path, reason: "decoder_sparse_step \(step): only models whose every layer is sparse are run (1)")
        }
        if let dense = c.mlpOnlyLayers, !dense.isEmpty {
            throw CheckpointError.unsupported(path: path, reason: "mlp_only_layers \(dense): layers with a dense MLP among sparse ones are not run yet")
        }
    }
}

extension Architecture {
    /// Mixtral (`MixtralForCausalLM`): Mistral's block with a mixture of SiLU-gated experts
    /// (`block_sparse_moe`: router `gate`, experts' w1 = gate, w3 = up, w2 = down), the
    /// chosen experts' softmax weights renormalised. llama.cpp writes it as `llama`.
    public static let mixtral = Architecture(
        ggufName: "mixtral", hfModelType: "mixtral", hfClass: "MixtralForCausalLM", ggufWrittenAs: "llama", permutesQK: true,
        layerNames: Llama.names.merging(MoE.names(router: "block_sparse_moe.gate.weight")) { $1 },
        hfExperts: ("block_sparse_moe.experts.", "w1.weight", "w3.weight", "w2.weight"),
        readSpec: MoE.spec(Mistral.spec, architecture: "mixtral", normalises: true),
        layerLayout: Llama.layout)

    /// Qwen3-MoE (`qwen3moe`): Qwen3's attention (q/k norms) with routed experts only;
    /// llama.cpp renormalises the chosen weights.
    public static let qwen3moe = Architecture(
        ggufName: "qwen3moe", hfModelType: "qwen3_moe", hfClass: "Qwen3MoeForCausalLM", permutesQK: false,
        layerNames: Llama.names.merging(MoE.names(router: "mlp.gate.weight")) { $1 },
        hfExperts: ("mlp.experts.", "gate_proj.weight", "up_proj.weight", "down_proj.weight"),
        readSpec: MoE.spec(Qwen3.spec, architecture: "qwen3moe", normalises: true),
        layerLayout: { Llama.withQKNorm(Llama.layout($0), $0) })

    /// Qwen1.5-MoE / Qwen2-MoE (`qwen2moe`): Qwen2's attention (qkv biases) with routed
    /// experts, their weights not renormalised, plus a shared expert whose output is
    /// scaled by sigmoid(x · shared_expert_gate).
    public static let qwen2moe = Architecture(
        ggufName: "qwen2moe", hfModelType: "qwen2_moe", hfClass: "Qwen2MoeForCausalLM", permutesQK: false,
        layerNames: Llama.names.merging(MoE.names(router: "mlp.gate.weight", shared: "mlp.shared_expert")) { $1 },
        hfExperts: ("mlp.experts.", "gate_proj.weight", "up_proj.weight", "down_proj.weight"),
        readSpec: MoE.spec({ try DecoderSpec.common($0, architecture: "qwen2moe", format: $1, ropeFactors: $2, path: $3) },
                           architecture: "qwen2moe", normalises: false),
        layerLayout: Llama.layout)
}
