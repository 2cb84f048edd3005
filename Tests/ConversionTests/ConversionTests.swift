import Basics
import CheckpointIO
import Conversion
import Models
import TestSupport
import XCTest

final class ConversionTests: XCTestCase {
    func convert(_ input: String, _ output: String, to target: CheckpointFormat, dtype: DTypeChoice = .keep, shardSize: Int? = nil) throws -> ConversionSummary {
        var o = ConversionOptions(target: target)
        o.dtype = dtype
        if let shardSize { o.shardSize = shardSize }
        return try Converter(source: try openCheckpoint(path: input), output: output, options: o).run()
    }

    func testRopePermutationRoundTrips() {
        for (rows, heads) in [(576, 9), (192, 3), (8, 2)] {
            let to = Architecture.ropePermutation(rows: rows, heads: heads, toGGUF: true)
            let back = Architecture.ropePermutation(rows: rows, heads: heads, toGGUF: false)
            XCTAssertEqual(Set(to).count, rows)
            XCTAssertEqual((0..<rows).map { to[back[$0]] }, Array(0..<rows))
        }
        // One head of 4 rows: HF rows [a0 a1 | b0 b1] are stored by llama.cpp as [a0 b0 a1 b1].
        XCTAssertEqual(Architecture.ropePermutation(rows: 4, heads: 1, toGGUF: true), [0, 2, 1, 3])
    }

    func testNameMapsBothWays() throws {
        let llama = try XCTUnwrap(Architecture.gguf("llama"))
        XCTAssertEqual(llama.role(ggufName: "blk.12.attn_q.weight"), .layer(12, .attnQ))
        XCTAssertEqual(llama.hfName(.layer(12, .attnQ)), "model.layers.12.self_attn.q_proj.weight")
        XCTAssertEqual(llama.role(hfName: "model.layers.3.post_attention_layernorm.weight"), .layer(3, .mlpNorm))
        XCTAssertEqual(llama.ggufName(.layer(3, .mlpNorm)), "blk.3.ffn_norm.weight")
        let gemma = try XCTUnwrap(Architecture.gguf("gemma2"))
        XCTAssertEqual(gemma.role(hfName: "model.layers.3.post_attention_layernorm.weight"), .layer(3, .postAttnNorm))
        XCTAssertEqual(gemma.ggufName(.layer(3, .postAttnNorm)), "blk.3.post_attention_norm.weight")
        XCTAssertEqual(gemma.hfName(.layer(0, .mlpNorm)), "model.layers.0.pre_feedforward_layernorm.weight")
        XCTAssertEqual(gemma.valueOffset(.layer(0, .attnNorm)), 1)
        XCTAssertEqual(gemma.valueOffset(.layer(0, .attnQ)), 0)
        XCTAssertNil(Architecture.gguf("qwen2")!.rowPermutation(.layer(0, .attnQ), rows: 64, config: ModelConfig(), toGGUF: true))
        XCTAssertNil(llama.role(ggufName: "blk.x.attn_q.weight"))
        XCTAssertEqual(Architecture.hf(modelType: "gemma3")?.ggufName, "gemma3")
    }

    /// GGUF → HF (f32) → GGUF (f32) is tensor for tensor identical to GGUF → GGUF (f32).
    func testRealModelRoundTripThroughHF() throws {
        let dir = makeTemporaryDirectory()
        let s1 = try convert(smolLM2Path, dir + "/hf", to: .safetensors, dtype: .f32)
        XCTAssertEqual(s1.tensors, 272)
        XCTAssertEqual(s1.warnings, [])
        XCTAssertTrue(try FileSystem.list(directory: dir + "/hf").contains("tokenizer.json"))
        _ = try convert(dir + "/hf", dir + "/back.gguf", to: .gguf, dtype: .f32)
        _ = try convert(smolLM2Path, dir + "/direct.gguf", to: .gguf, dtype: .f32)
        let back = try GGUFCheckpoint(path: dir + "/back.gguf")
        let direct = try GGUFCheckpoint(path: dir + "/direct.gguf")
        XCTAssertEqual(back.tensors.map(\.name), direct.tensors.map(\.name))
        for (a, b) in zip(back.tensors, direct.tensors) {
            XCTAssertEqual(a.shape, b.shape, a.name)
            XCTAssertEqual(a.dtype.name, "F32")
            XCTAssertTrue(sameBytes(a.bytes, b.bytes), "\(a.name) differs after the HF round trip")
        }
        // The tokenizer survives GGUF → tokenizer.json → GGUF key for key.
        let original = try GGUFCheckpoint(path: smolLM2Path)
        for key in ["tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.ggml.tokens", "tokenizer.ggml.token_type",
                    "tokenizer.ggml.merges", "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
                    "tokenizer.ggml.add_bos_token", "tokenizer.chat_template"] {
            XCTAssertEqual(back.metadata[key], original.metadata[key], key)
        }
        let config = ModelConfig(gguf: back.metadata)
        XCTAssertEqual(config.numHiddenLayers, 30)
        XCTAssertEqual(config.numKeyValueHeads, 3)
        XCTAssertEqual(config.ropeTheta, 100_000)
        let hf = try XCTUnwrap(try ModelConfig.beside(checkpointPath: dir + "/hf"))
        XCTAssertEqual(hf.tieWordEmbeddings, true, "SmolLM2 has no output.weight")
        XCTAssertEqual(hf.rmsNormEps.map(Float.init), 1e-5)
    }

    func testQuantizedGGUFOutputAndResharding() throws {
        let dir = makeTemporaryDirectory()
        _ = try convert(smolLM2Path, dir + "/hf", to: .safetensors, dtype: .bf16)
        _ = try convert(dir + "/hf", dir + "/sharded", to: .safetensors, shardSize: 50_000_000)
        let sharded = try XCTUnwrap(try openCheckpoint(path: dir + "/sharded") as? SafetensorsCheckpoint)
        let original = try openCheckpoint(path: dir + "/hf")
        XCTAssertEqual(sharded.files.count, 6)
        XCTAssertEqual(sharded.tensors.map(\.name), original.tensors.map(\.name))
        for (a, b) in zip(sharded.tensors, original.tensors) { XCTAssertTrue(sameBytes(a.bytes, b.bytes), a.name) }
        XCTAssertTrue(try FileSystem.list(directory: dir + "/sharded").contains("config.json"), "config.json travels with the shards")

        _ = try convert(dir + "/hf", dir + "/q8.gguf", to: .gguf, dtype: .quantized(GGMLType.named("Q8_0")!))
        let q8 = try GGUFCheckpoint(path: dir + "/q8.gguf")
        XCTAssertEqual(q8.tensor(named: "blk.0.attn_norm.weight")?.dtype.name, "F32", "1-D tensors stay F32")
        XCTAssertEqual(q8.tensor(named: "blk.0.ffn_up.weight")?.dtype.name, "Q8_0")
        // Q8_0 of bf16 weights: within half a step of the source, plus what rounding the
        // scale to f16 (relative error 2^-11) can add at the largest code, 127.
        let src = try XCTUnwrap(original.tensor(named: "model.layers.0.mlp.up_proj.weight"))
        let dst = try XCTUnwrap(q8.tensor(named: "blk.0.ffn_up.weight"))
        var a = [Float](repeating: 0, count: src.elementCount), b = a
        try a.withUnsafeMutableBufferPointer { try TensorDecoder.decodeRows(src, rows: 0..<src.rowCount, into: $0.baseAddress!) }
        try b.withUnsafeMutableBufferPointer { try TensorDecoder.decodeRows(dst, rows: 0..<dst.rowCount, into: $0.baseAddress!) }
        var worst: Float = 0 // error over allowed error, at most 1
        for blockStart in stride(from: 0, to: a.count, by: 32) {
            var amax: Float = 0
            for i in blockStart..<(blockStart + 32) { amax = max(amax, abs(a[i])) }
            let allowed = amax / 127 * (0.5 + 127.0 / 2048) + 1e-12
            for i in blockStart..<(blockStart + 32) { worst = max(worst, abs(a[i] - b[i]) / allowed) }
        }
        XCTAssertLessThanOrEqual(worst, 1)
        XCTAssertGreaterThan(worst, 0.3, "the bound is not vacuous")
    }

    func testGemmaNormOffsetAndUnknownArchitecture() throws {
        let dir = makeTemporaryDirectory()
        var b = GGUFBuilder()
        b.metadata = [("general.architecture", .string("gemma2")), ("gemma2.block_count", .u32(1)), ("gemma2.attention.head_count", .u32(2))]
        b.tensors = [GGUFTestTensor("blk.0.attn_norm.weight", ne: [4], type: 0, data: floatBytes([1, 1.5, 0.5, 2])),
                     GGUFTestTensor("blk.0.ffn_up.weight", ne: [4], type: 0, data: floatBytes([1, 1.5, 0.5, 2]))]
        writeFile(dir + "/g.gguf", b.build())
        _ = try convert(dir + "/g.gguf", dir + "/g-hf", to: .safetensors)
        let hf = try openCheckpoint(path: dir + "/g-hf")
        let norm = try XCTUnwrap(hf.tensor(named: "model.layers.0.input_layernorm.weight"))
        XCTAssertEqual(norm.withBytes { raw in (0..<4).map { raw.loadUnaligned(fromByteOffset: $0 * 4, as: Float.self) } }, [0, 0.5, -0.5, 1])
        let up = try XCTUnwrap(hf.tensor(named: "model.layers.0.mlp.up_proj.weight"))
        XCTAssertEqual(up.withBytes { $0.loadUnaligned(as: Float.self) }, 1, "only norms carry the offset")
        _ = try convert(dir + "/g-hf", dir + "/g2.gguf", to: .gguf)
        let back = try GGUFCheckpoint(path: dir + "/g2.gguf")
        XCTAssertTrue(back.tensor(named: "blk.0.attn_norm.weight")!.bytes.elementsEqual(floatBytes([1, 1.5, 0.5, 2])))

        var u = GGUFBuilder()
        u.metadata = [("general.architecture", .string("mamba"))]
        u.tensors = [GGUFTestTensor("blk.0.ssm_a", ne: [2], type: 0, data: floatBytes([1, 2]))]
        writeFile(dir + "/u.gguf", u.build())
        XCTAssertThrowsError(try convert(dir + "/u.gguf", dir + "/u-hf", to: .safetensors)) { e in
            XCTAssertEqual(e as? ConversionError, .noNameMap(path: dir + "/u.gguf", architecture: "mamba"))
        }
        XCTAssertEqual(try FileSystem.kind(of: dir + "/u-hf"), .missing)
        var keep = ConversionOptions(target: .safetensors)
        keep.keepNames = true
        let s = try Converter(source: try openCheckpoint(path: dir + "/u.gguf"), output: dir + "/u-hf", options: keep).run()
        XCTAssertTrue(s.warnings.contains { $0.contains("'mamba' has no name map") }, "\(s.warnings)")
        XCTAssertNotNil(try openCheckpoint(path: dir + "/u-hf").tensor(named: "blk.0.ssm_a"))
    }

    func testRefusals() throws {
        let dir = makeTemporaryDirectory()
        var o = ConversionOptions(target: .safetensors)
        o.dtype = .quantized(GGMLType.named("Q8_0")!)
        XCTAssertThrowsError(try Converter(source: try openCheckpoint(path: smolLM2Path), output: dir + "/x", options: o)) { e in
            XCTAssertTrue("\(e)".contains("GGUF output only"), "\(e)")
        }
        // Head counts that cannot describe the Q rows: refuse rather than write wrong rows.
        var b = GGUFBuilder()
        b.metadata = [("general.architecture", .string("llama")), ("llama.attention.head_count", .u32(3))]
        b.tensors = [GGUFTestTensor("blk.0.attn_q.weight", ne: [4, 4], type: 0, data: floatBytes(Array(repeating: 1, count: 16)))]
        writeFile(dir + "/bad.gguf", b.build())
        XCTAssertThrowsError(try convert(dir + "/bad.gguf", dir + "/bad-hf", to: .safetensors)) { e in
            XCTAssertTrue("\(e)".contains("rows must be reordered"), "\(e)")
        }
        XCTAssertEqual(try FileSystem.list(directory: dir), ["bad.gguf"], "nothing written")
        writeFile(dir + "/exists", [1])
        XCTAssertThrowsError(try convert(smolLM2Path, dir + "/exists", to: .safetensors)) { e in
            XCTAssertEqual(e as? CheckpointError, .outputExists(path: dir + "/exists"))
        }
    }
}

/// K-quant encoders against llama.cpp's own quantizer, byte for byte: the fixtures are
/// llama.cpp's encoding (llama_model_quantize, pure) of the first 16 rows of
/// blk.0.ffn_down.weight of SmolLM2 in f32 (Tools/reference/check_kquant.py).
final class KQuantFixtureTests: XCTestCase {
    func testEncodersMatchLlamaCppOnRealRows() throws {
        let c = try GGUFCheckpoint(path: smolLM2Path)
        let t = try XCTUnwrap(c.tensor(named: "blk.0.ffn_down.weight"))
        XCTAssertEqual(t.rowLength, 1536)
        var rows = [Float](repeating: 0, count: 16 * 1536)
        try rows.withUnsafeMutableBufferPointer { try TensorDecoder.decodeRows(t, rows: 0..<16, into: $0.baseAddress!) }
        for name in ["Q4_K", "Q5_K", "Q6_K"] {
            let type = try XCTUnwrap(GGMLType.named(name))
            let expected = try FileSystem.readFile(fixturesPath + "/kquant/blk.0.ffn_down.weight.rows0-16.\(name)")
            var out = [UInt8](repeating: 0, count: 16 * 1536 / 256 * type.bytesPerBlock)
            let n = try rows.withUnsafeBufferPointer { src in
                try out.withUnsafeMutableBytes { try Converter.encode(src.baseAddress!, count: rows.count, as: .gguf(type), into: $0.baseAddress!) }
            }
            XCTAssertEqual(n, expected.count, name)
            XCTAssertEqual(out, expected, "\(name) differs from llama.cpp's encoding")
        }
    }
}
