import Basics
import CheckpointIO
@testable import Models
import TestSupport
import XCTest

final class ModelConfigTests: XCTestCase {
    func testFromRealGGUFMetadata() throws {
        let c = try GGUFCheckpoint(path: smolLM2Path)
        let config = ModelConfig(gguf: c.metadata)
        XCTAssertEqual(config.modelType, "llama")
        XCTAssertEqual(config.numHiddenLayers, 30)
        XCTAssertEqual(config.hiddenSize, 576)
        XCTAssertEqual(config.intermediateSize, 1536)
        XCTAssertEqual(config.numAttentionHeads, 9)
        XCTAssertEqual(config.numKeyValueHeads, 3)
        XCTAssertEqual(config.vocabSize, 49152)
        XCTAssertEqual(config.maxPositionEmbeddings, 8192)
        XCTAssertEqual(config.ropeTheta, 100_000)
        XCTAssertEqual(config.ropeDimensionCount, 64)
        XCTAssertEqual(config.rmsNormEps.map { Float($0) }, 1e-5)
    }

    func testPerLayerArraysAndRopeScaling() throws {
        var b = GGUFBuilder()
        b.metadata = [
            ("general.architecture", .string("qwen3")),
            ("qwen3.block_count", .u32(2)),
            ("qwen3.attention.head_count", .array(elementType: 4, [.u32(16), .u32(32)])),
            ("qwen3.rope.scaling.type", .string("yarn")),
            ("qwen3.rope.scaling.factor", .f32(4)),
            ("qwen3.rope.scaling.original_context_length", .u32(32768)),
        ]
        let g = try GGUFFile(file: MappedFile(copying: b.build(), label: "q.gguf"))
        let config = ModelConfig(gguf: g.metadata)
        XCTAssertEqual(config.numAttentionHeads, 32)
        XCTAssertEqual(config.numKeyValueHeads, 32, "no head_count_kv means no GQA")
        XCTAssertEqual(config.ropeScaling?.kind, "yarn")
        XCTAssertEqual(config.ropeScaling?.factor, 4)
        XCTAssertEqual(config.ropeScaling?.originalMaxPositionEmbeddings, 32768)
    }

    func testDecodesHFConfigJSON() throws {
        let llama = """
        {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 5120, "num_hidden_layers": 48,
         "num_attention_heads": 40, "num_key_value_heads": 8, "intermediate_size": 13824, "vocab_size": 152064,
         "rope_theta": 1000000.0, "max_position_embeddings": 32768, "rms_norm_eps": 1e-05, "tie_word_embeddings": false,
         "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "original_max_position_embeddings": 8192},
         "torch_dtype": "bfloat16", "unknown_future_field": {"x": [1, 2]}}
        """
        let c = try ModelConfig.decode(json: Array(llama.utf8), path: "config.json")
        XCTAssertEqual(c.numHiddenLayers, 48)
        XCTAssertEqual(c.numKeyValueHeads, 8)
        XCTAssertEqual(c.ropeTheta, 1_000_000)
        XCTAssertEqual(c.tieWordEmbeddings, false)
        XCTAssertEqual(c.ropeScaling?.kind, "llama3")
        XCTAssertEqual(c.architectures, ["LlamaForCausalLM"])

        let gemma3 = """
        {"architectures": ["Gemma3ForConditionalGeneration"], "model_type": "gemma3",
         "text_config": {"model_type": "gemma3_text", "hidden_size": 2560, "num_hidden_layers": 34, "num_attention_heads": 8,
                         "num_key_value_heads": 4, "head_dim": 256, "sliding_window": 1024, "rope_theta": 1000000.0}}
        """
        let g = try ModelConfig.decode(json: Array(gemma3.utf8), path: "config.json")
        XCTAssertEqual(g.modelType, "gemma3_text")
        XCTAssertEqual(g.numHiddenLayers, 34)
        XCTAssertEqual(g.headDim, 256)
        XCTAssertEqual(g.slidingWindow, 1024)
        XCTAssertEqual(g.architectures, ["Gemma3ForConditionalGeneration"])
    }

    func testMalformedConfigJSON() {
        XCTAssertThrowsError(try ModelConfig.decode(json: Array("{\"hidden_size\": ".utf8), path: "/m/config.json")) { e in
            XCTAssertTrue("\(e)".hasPrefix("/m/config.json: malformed file: invalid JSON"), "\(e)")
        }
        XCTAssertThrowsError(try ModelConfig.decode(json: Array("[1]".utf8), path: "/m/config.json")) { e in
            XCTAssertTrue("\(e)".contains("expected an object"), "\(e)")
        }
    }
}

final class ModelConfigStrictnessTests: XCTestCase {
    func testWrongFieldTypeNamesTheField() {
        XCTAssertThrowsError(try ModelConfig.decode(json: Array(#"{"hidden_size": "5120"}"#.utf8), path: "c.json")) { e in
            XCTAssertTrue("\(e)".contains("hidden_size: expected an integer"), "\(e)")
        }
        XCTAssertNoThrow(try ModelConfig.decode(json: Array(#"{"hidden_size": 64, "rope_scaling": null, "sliding_window": null}"#.utf8), path: "c.json"))
    }

    /// YaRN frequencies and attention factor against transformers' own computation
    /// (Tests/Fixtures/engine/rope-yarn.json from Tools/reference/make_rope_fixtures.py), from
    /// config.json and from the GGUF metadata the converter writes for it.
    func testYaRNMatchesTransformers() throws {
        let cases = try XCTUnwrap(JSONParser.parse(FileSystem.readFile(fixturesPath + "/engine/rope-yarn.json")).arrayValue)
        XCTAssertEqual(cases.count, 4)
        for c in cases {
            let name = c["name"]!.stringValue!
            let config = try ModelConfig.decode(json: Array(c["config_json"]!.stringValue!.utf8), path: "config.json")
            let want = c["inv_freq"]!.arrayValue!.map { $0.doubleValue! }, attention = c["attention_factor"]!.doubleValue!
            let fromGGUF = ModelConfig(gguf: config.ggufMetadata(architecture: Architecture.gguf("qwen2")!))
            // llama.cpp always rounds the ramp's ends (ggml_rope_yarn_corr_dims); GGUF has no key
            // for transformers' truncate = false, so that case is checked from config.json only.
            let sources = config.ropeScaling?.truncate == false ? [("config.json", config)] : [("config.json", config), ("GGUF", fromGGUF)]
            for (source, cfg) in sources {
                let spec = try Architecture.qwen2.spec(cfg, format: source == "GGUF" ? .gguf : .safetensors, ropeFactors: nil, path: "x")
                XCTAssertEqual(spec.ropeInvFreq.count, want.count, name)
                for (a, b) in zip(spec.ropeInvFreq, want) { XCTAssertEqual(a, b, accuracy: 2e-6 * b, "\(name) from \(source)") }
                XCTAssertEqual(Double(spec.ropeAttentionFactor), attention, accuracy: 1e-6, "\(name) from \(source)")
                XCTAssertEqual(spec.ropeAttentionFactorLocal, spec.ropeAttentionFactor)
            }
        }
        // The frequencies really are scaled: the lowest ones by the factor, the highest kept.
        let first = try XCTUnwrap(cases.first)
        let inv = first["inv_freq"]!.arrayValue!.map { $0.doubleValue! }
        let theta = 1_000_000.0, dims = 64.0
        XCTAssertEqual(inv[0], 1, accuracy: 1e-9)
        XCTAssertEqual(inv[31], pow(theta, -62 / dims) / 4, accuracy: 1e-6 * inv[31])
    }
}

/// transformers v5 keeps RoPE in `rope_parameters`; before it was read, RoPE base fell
/// back to 10000 without a word.
final class RopeParametersTests: XCTestCase {
    func decode(_ rope: String, extra: String = "") throws -> ModelConfig {
        let text = #"{"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "rope_parameters": "# + rope + extra + "}"
        return try ModelConfig.decode(json: Array(text.utf8), path: "dir/config.json")
    }

    func testLlama31AndDefaultForms() throws {
        let c = try decode(#"{"factor": 8.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0, "original_max_position_embeddings": 8192, "rope_theta": 500000.0, "rope_type": "llama3"}"#)
        XCTAssertEqual(c.ropeTheta, 500_000)
        XCTAssertEqual(c.ropeScaling?.kind, "llama3")
        XCTAssertEqual(c.ropeScaling?.factor, 8)
        XCTAssertEqual(c.ropeScaling?.highFreqFactor, 4)
        XCTAssertEqual(c.ropeScaling?.originalMaxPositionEmbeddings, 8192)
        let d = try decode(#"{"rope_theta": 1000000.0, "rope_type": "default"}"#)
        XCTAssertEqual(d.ropeTheta, 1_000_000)
        XCTAssertNil(d.ropeScaling)
        // The engine's frequencies follow: base 1e6, not the 10000 fallback.
        XCTAssertEqual(try RotaryFrequencies.base(XCTUnwrap(d.ropeTheta), dims: 16)[1], 1 / pow(1e6, 2.0 / 16), accuracy: 1e-15)
    }

    func testPerAttentionKindForm() throws {
        let c = try decode(#"{"full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1000000.0}, "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0}}"#)
        XCTAssertEqual(c.ropeTheta, 1_000_000)
        XCTAssertEqual(c.ropeScaling?.kind, "linear")
        XCTAssertEqual(c.ropeScaling?.factor, 8)
        XCTAssertEqual(c.ropeLocalBaseFreq, 10_000)
    }

    func testUnknownFieldsAreRefusedByName() {
        for (rope, field) in [(#"{"rope_type": "default", "rope_theta": 1e4, "mrope_section": [16, 24, 24]}"#, "mrope_section"),
                              (#"{"rope_theta": 1e4, "partial_rotary_factor": 0.5, "rotary_emb_fraction": 0.5}"#, "rotary_emb_fraction"),
                              (#"{"full_attention": {"rope_theta": 1e4}, "chunked_attention": {}}"#, "chunked_attention")] {
            XCTAssertThrowsError(try decode(rope)) { e in
                guard case let CheckpointError.unsupported(path, reason)? = e as? CheckpointError else { return XCTFail("\(e)") }
                XCTAssertEqual(path, "dir/config.json")
                XCTAssertTrue(reason.contains(field), reason)
                XCTAssertEqual((e as? CheckpointError)?.exitCode, .unsupported)
            }
        }
    }
}
