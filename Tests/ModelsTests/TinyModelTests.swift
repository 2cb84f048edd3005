import Basics
import CheckpointIO
import Models
import TensorMath
import TestSupport
import XCTest

/// The engine on tiny random models of every family it runs, written as GGUF by gguf-py
/// (Tools/reference/make_engine_fixtures.py), against a float64 numpy forward pass that
/// was itself checked against transformers (max |Δ| ≈ 4e-6), and against llama.cpp's
/// logits for the same files.
final class TinyModelTests: XCTestCase {
    struct Reference {
        let tokens: [Int32]
        let layer0: [[Double]]
        let logits: [[Double]]
        let llamaCpp: [[Double]]?
    }

    func reference(_ arch: String) throws -> Reference {
        let json = try JSONParser.parse(FileSystem.readFile(fixturesPath + "/engine/tiny-\(arch).json", limit: 8 << 20))
        func matrix(_ key: String) -> [[Double]]? { json[key]?.arrayValue?.map { $0.arrayValue!.map { $0.doubleValue! } } }
        return Reference(tokens: json["tokens"]!.arrayValue!.map { Int32($0.nonNegativeInt!) },
                         layer0: matrix("layer0_output")!, logits: matrix("logits")!, llamaCpp: matrix("llama_cpp_logits"))
    }

    /// Runs the model, returning layer 0's output and the logits of every position.
    /// `llamaCpp`: round activations as llama.cpp does; otherwise f32 throughout (the numpy reference's arithmetic).
    func run(_ path: String, tokens: [Int32], llamaCpp: Bool = false) throws -> (layer0: [Float], logits: [Float], spec: DecoderSpec) {
        let model = try DecoderModel(path: path)
        let stream = LayerStream(model: model)
        stream.llamaCppRounding = llamaCpp
        var layer0: [Float] = []
        var hooks = LayerHooks()
        hooks.layerOutput = { a in if a.layer == 0 { layer0 = Array(a.values) } }
        var logits = [Float](repeating: .nan, count: tokens.count * model.spec.vocab)
        try stream.run([tokens], hooks: hooks, outputs: { _ in 0..<tokens.count }) { _, p0, rows in
            for (i, v) in rows.enumerated() { logits[p0 * model.spec.vocab + i] = v }
        }
        return (layer0, logits, model.spec)
    }

    /// Largest |a − b| relative to the largest |b|.
    func relativeError(_ a: [Float], _ b: [[Double]]) -> Double {
        let flat = b.flatMap { $0 }
        precondition(a.count == flat.count)
        let scale = flat.map(abs).max()!
        return zip(a, flat).map { abs(Double($0) - $1) }.max()! / scale
    }

    func check(_ arch: String, threads: Int = 2, architecture: String? = nil) throws {
        ThreadPool.setThreads(threads)
        let ref = try reference(arch)
        let out = try run(fixturesPath + "/engine/tiny-\(arch).gguf", tokens: ref.tokens)
        XCTAssertEqual(out.spec.architecture, architecture ?? String(arch.prefix { $0 != "-" }))
        let e0 = relativeError(out.layer0, ref.layer0), e = relativeError(out.logits, ref.logits)
        XCTAssertLessThan(e0, 1e-4, "\(arch): layer 0 output vs numpy")
        XCTAssertLessThan(e, 1e-4, "\(arch): logits vs numpy")
        if let cpp = ref.llamaCpp {
            // With llama.cpp's rounding (f16 K and V here) the engine lands within ~5e-3 of it;
            // the rest is gemma's GELU, which llama.cpp reads from an f16 table.
            let rounded = try run(fixturesPath + "/engine/tiny-\(arch).gguf", tokens: ref.tokens, llamaCpp: true)
            let d = zip(rounded.logits, cpp.flatMap { $0 }).map { abs(Double($0) - $1) }.max()!
            XCTAssertLessThan(d, 1e-2, "\(arch): logits vs llama.cpp")
            print("tiny-\(arch): rel. error vs numpy layer0 \(e0), logits \(e); max |Δ| vs llama.cpp \(d)")
        }
    }

    func testLlama() throws { try check("llama") }
    func testQwen2() throws { try check("qwen2") }
    func testQwen3() throws { try check("qwen3") }
    func testGemma2() throws { try check("gemma2") }
    func testGemma3() throws { try check("gemma3", threads: 1) }
    /// LayerNorm1P with biases, biases on every projection, RoPE on half of each head, and
    /// an ungated squared-ReLU MLP; against numpy (itself within 1e-6 of transformers) and
    /// llama.cpp.
    func testNemotron() throws {
        try check("nemotron")
        let spec = try DecoderModel(path: fixturesPath + "/engine/tiny-nemotron.gguf").spec
        XCTAssertEqual(spec.norm, .layer)
        XCTAssertEqual(spec.activation, .reluSquared)
        XCTAssertFalse(spec.gatedMLP)
        XCTAssertEqual(spec.headDim, 16)
        XCTAssertEqual(spec.ropeDims, 8)
        XCTAssertEqual(spec.normEps, 1e-5)
    }

    /// Fused qkv and gate_up read as row slices, LongRoPE's short factors and attention
    /// factor, partial rotary (12 of 16 dims); against numpy (within 4e-6 of
    /// transformers). The llama.cpp release we compare with does not load the fixture's
    /// byte-level vocabulary for phi3 ("unordered_map::at" in its vocabulary loader).
    func testPhi3() throws {
        try check("phi3")
        let model = try DecoderModel(path: fixturesPath + "/engine/tiny-phi3.gguf")
        XCTAssertEqual(model.spec.ropeDims, 12)
        XCTAssertEqual(Double(model.spec.ropeAttentionFactor), (1 + log(2.0) / log(256.0)).squareRoot(), accuracy: 1e-6)
        XCTAssertEqual(model.spec.contextLength, 256, "only the short factors run: the original context bounds a sequence")
        XCTAssertEqual(model.tensor(.layer(0, .attnK))?.shape, [32, 64], "K is rows 64..<96 of attn_qkv")
    }

    /// head_dim 24 where hidden/heads is 16, as Minitron-8B's 128 beside 4096/48 (the
    /// llama.cpp release we compare with cannot load that shape: numpy/transformers only).
    /// Mixtral (a llama GGUF with experts), Qwen3-MoE and Qwen2-MoE (shared expert, weights
    /// not renormalised), made by transformers (Tools/reference/make_moe_fixtures.py):
    /// the GGUF against transformers' float64 logits and llama.cpp's, the HF directory
    /// (one tensor an expert) against transformers.
    func testMixturesOfExperts() throws {
        for (name, arch, experts, used, shared) in [("mixtral", "llama", 4, 2, 0), ("qwen3moe", "qwen3moe", 6, 2, 0), ("qwen2moe", "qwen2moe", 4, 2, 48)] {
            try check(name, architecture: arch)
            let ref = try reference(name)
            let hf = try run(fixturesPath + "/engine/tiny-\(name)-hf", tokens: ref.tokens)
            XCTAssertEqual(hf.spec.architecture, name == "mixtral" ? "mixtral" : arch)
            XCTAssertEqual([hf.spec.experts, hf.spec.expertsUsed, hf.spec.sharedFFN], [experts, used, shared], name)
            XCTAssertEqual(hf.spec.expertWeightsNorm, name != "qwen2moe", name)
            let e = relativeError(hf.logits, ref.logits)
            XCTAssertLessThan(e, 1e-4, "\(name): HF logits vs transformers")
            print("tiny-\(name)-hf: rel. error vs transformers logits \(e)")
        }
    }

    func testNemotronExplicitHeadDim() throws {
        try check("nemotron-headdim")
        let spec = try DecoderModel(path: fixturesPath + "/engine/tiny-nemotron-headdim.gguf").spec
        XCTAssertEqual(spec.headDim, 24)
        XCTAssertEqual(spec.ropeDims, 12)
    }

    /// The same weights in HF layout (unpermuted Q/K, HF names, config.json) give the same
    /// logits as the GGUF: RoPE pairs halves there and neighbours here.
    func testHFSafetensorsMatchGGUF() throws {
        ThreadPool.setThreads(2)
        for arch in ["llama", "qwen3", "nemotron", "phi3"] {
            let ref = try reference(arch)
            let hf = try run(fixturesPath + "/engine/tiny-\(arch)-hf", tokens: ref.tokens)
            let gguf = try run(fixturesPath + "/engine/tiny-\(arch).gguf", tokens: ref.tokens)
            XCTAssertTrue(hf.spec.ropeNeox)
            XCTAssertEqual(gguf.spec.ropeNeox, arch != "llama")
            XCTAssertLessThan(relativeError(hf.logits, ref.logits), 1e-4, arch)
            let d = zip(hf.logits, gguf.logits).map { abs($0 - $1) }.max()!
            XCTAssertLessThan(d, 1e-4, "\(arch): HF and GGUF forms")
        }
    }

    func testMissingTensorsAndUnsupportedTypesAreNamed() throws {
        // The HF copy's config.json beside a safetensors file holding only the embedding.
        let src = try openCheckpoint(path: fixturesPath + "/engine/tiny-llama-hf")
        let embed = try XCTUnwrap(src.tensor(named: "model.embed_tokens.weight"))
        let dir = makeTemporaryDirectory()
        writeFile(dir + "/config.json", try FileSystem.readFile(fixturesPath + "/engine/tiny-llama-hf/config.json"))
        writeFile(dir + "/model.safetensors", buildSafetensors([SafetensorsTestTensor(embed.name, dtype: "F32", shape: embed.shape, data: Array(embed.bytes))]))
        XCTAssertThrowsError(try DecoderModel(path: dir)) { e in
            guard case let ModelError.missingTensors(_, names)? = e as? ModelError else { return XCTFail("\(e)") }
            XCTAssertTrue(names.contains("model.layers.0.self_attn.q_proj.weight"))
            XCTAssertTrue(names.contains("model.norm.weight"))
        }
        // Every tensor present, one matrix in a type without a kernel (I32).
        var tensors: [SafetensorsTestTensor] = []
        for t in src.tensors {
            let bad = t.name == "model.layers.1.mlp.up_proj.weight"
            tensors.append(SafetensorsTestTensor(t.name, dtype: bad ? "I32" : "F32", shape: t.shape, data: Array(t.bytes)))
        }
        writeFile(dir + "/model.safetensors", buildSafetensors(tensors))
        XCTAssertThrowsError(try DecoderModel(path: dir)) { e in
            XCTAssertEqual(e as? ModelError, .unsupportedTensorType(path: dir + "/model.safetensors", tensor: "model.layers.1.mlp.up_proj.weight", type: "I32"))
        }
    }

    func testOutOfVocabularyAndOverlongInputsAreRefused() throws {
        let model = try DecoderModel(path: fixturesPath + "/engine/tiny-qwen2.gguf")
        let stream = LayerStream(model: model)
        XCTAssertThrowsError(try stream.run([[1, 2, 256]])) { e in
            XCTAssertEqual(e as? ModelError, .tokenOutOfVocabulary(id: 256, vocab: 256))
        }
        XCTAssertThrowsError(try stream.run([[Int32](repeating: 5, count: model.spec.contextLength + 1)])) { e in
            XCTAssertEqual(e as? ModelError, .contextTooLong(tokens: model.spec.contextLength + 1, context: model.spec.contextLength))
        }
    }

    /// Generation with the KV cache gives the logits a full re-run would.
    func testKVCacheContinuationMatchesFullRun() throws {
        ThreadPool.setThreads(2)
        for arch in ["llama", "gemma2"] {
            let ref = try reference(arch)
            let model = try DecoderModel(path: fixturesPath + "/engine/tiny-\(arch).gguf")
            let stream = LayerStream(model: model)
            stream.llamaCppRounding = false
            let cache = KVCache(spec: model.spec, capacity: 64)
            let v = model.spec.vocab
            var stepped: [Float] = []
            try stream.run([Array(ref.tokens.prefix(10))], cache: cache, outputs: { _ in 9..<10 }) { _, _, l in stepped += l }
            for t in ref.tokens[10...] {
                let pos = cache.count
                try stream.run([[t]], cache: cache, outputs: { _ in pos..<(pos + 1) }) { _, _, l in stepped += l }
            }
            let full = try run(fixturesPath + "/engine/tiny-\(arch).gguf", tokens: ref.tokens).logits
            let tail = Array(full[(9 * v)...])
            XCTAssertEqual(stepped.count, tail.count)
            XCTAssertLessThan(zip(stepped, tail).map { abs($0 - $1) }.max()!, 1e-4, arch)
        }
    }
}
