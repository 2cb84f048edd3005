import Basics
import CheckpointIO

extension Architecture {
    /// Nemotron (Nemotron-4 15B, Minitron 8B/4B, the models NVIDIA's pruning recipe was made
    /// on): LayerNorm with a bias and a weight used as 1 + w ("layernorm1p": llama.cpp's
    /// converter adds the 1), an ungated squared-ReLU MLP, RoPE on the first
    /// `partial_rotary_factor` of each head (NeoX pairs, unpermuted in GGUF), head_dim
    /// independent of hidden/heads, optional biases on every projection.
    public static let nemotron = Architecture(
        ggufName: "nemotron", hfModelType: "nemotron", hfClass: "NemotronForCausalLM", permutesQK: false, normOffset: 1,
        hfActivation: ("hidden_act", "relu2"), usesLayerNorm: true,
        layerNames: Nemotron.names, readSpec: Nemotron.spec, layerLayout: Nemotron.layout)
}

enum Nemotron {
    @Sendable static func spec(_ config: ModelConfig, format: CheckpointFormat, ropeFactors: [Float]?, path: String) throws -> DecoderSpec {
        var c = config
        // transformers' NemotronConfig defaults: half the head rotates, eps 1e-5.
        if format == .safetensors, c.partialRotaryFactor == nil, c.ropeDimensionCount == nil { c.partialRotaryFactor = 0.5 }
        var s = try DecoderSpec.common(c, architecture: "nemotron", format: format, ropeFactors: ropeFactors, path: path)
        let check = ConfigCheck(path: path, format: format, architecture: "nemotron")
        s.normEps = Float(try check.real(c.normEps ?? c.rmsNormEps ?? 1e-5, "norm_eps", "attention.layer_norm_epsilon", in: 0...1))
        if let act = c.hiddenAct, act != "relu2" {
            throw CheckpointError.unsupported(path: path, reason: "nemotron with hidden_act '\(act)': the engine runs its squared ReLU ('relu2') only")
        }
        s.activation = .reluSquared
        s.norm = .layer
        s.hfNormOffset = 1
        return s
    }

    /// LayerNorm (weight, bias), Q, K, V and output with optional biases, LayerNorm, then
    /// up and down with optional biases: no gate.
    @Sendable static func layout(_ s: DecoderSpec) -> [LayerSlot] {
        [
            LayerSlot(.attnNorm, [s.hidden]), LayerSlot(.attnNormBias, [s.hidden]),
            LayerSlot(.attnQ, [s.qDim, s.hidden]), LayerSlot(.attnK, [s.kvDim, s.hidden]), LayerSlot(.attnV, [s.kvDim, s.hidden]),
            LayerSlot(.attnQBias, [s.qDim], optional: true), LayerSlot(.attnKBias, [s.kvDim], optional: true),
            LayerSlot(.attnVBias, [s.kvDim], optional: true),
            LayerSlot(.attnOutput, [s.hidden, s.qDim]), LayerSlot(.attnOutputBias, [s.hidden], optional: true),
            LayerSlot(.mlpNorm, [s.hidden]), LayerSlot(.mlpNormBias, [s.hidden]),
            LayerSlot(.mlpUp, [s.ffn, s.hidden]), LayerSlot(.mlpUpBias, [s.ffn], optional: true),
            LayerSlot(.mlpDown, [s.hidden, s.ffn]), LayerSlot(.mlpDownBias, [s.hidden], optional: true),
        ]
    }

    static let names: [LayerTensor: (gguf: String, hf: String)] = {
        var n = Llama.names
        n[.mlpGate] = nil
        n[.attnQNorm] = nil
        n[.attnKNorm] = nil
        n[.attnNormBias] = ("attn_norm.bias", "input_layernorm.bias")
        n[.attnOutputBias] = ("attn_output.bias", "self_attn.o_proj.bias")
        n[.mlpNormBias] = ("ffn_norm.bias", "post_attention_layernorm.bias")
        n[.mlpUpBias] = ("ffn_up.bias", "mlp.up_proj.bias")
        n[.mlpDownBias] = ("ffn_down.bias", "mlp.down_proj.bias")
        return n
    }()
}
