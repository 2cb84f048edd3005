import Basics
import CheckpointIO
import Conversion
import Models
import TestSupport
import XCTest

/// Mixtures of experts across formats, against files the reference tools wrote: the HF
/// directories transformers saved (one tensor an expert) and the GGUFs written from them
/// with llama.cpp's conventions (experts stacked in `ffn_*_exps`, Mixtral as `llama` with
/// Q/K permuted, qwen2moe's shared-expert gate a vector). Each conversion must give the
/// other tool's file tensor for tensor, bytes and shapes, and the config the engine reads
/// back the same routing.
final class MixtureOfExpertsConversionTests: XCTestCase {
    func tensors(_ path: String) throws -> [String: (shape: [Int], bytes: [UInt8])] {
        var out: [String: (shape: [Int], bytes: [UInt8])] = [:]
        for t in try openCheckpoint(path: path).tensors { out[t.name] = (t.shape.count == 1 ? [t.elementCount] : t.shape, Array(t.bytes)) }
        return out
    }

    func assertSameTensors(_ got: String, _ want: String, ignoring: Set<String> = [], _ label: String) throws {
        let a = try tensors(got), b = try tensors(want)
        XCTAssertEqual(Set(a.keys), Set(b.keys).subtracting(ignoring), label)
        for (name, w) in b where !ignoring.contains(name) {
            guard let g = a[name] else { continue }
            // Vectors compare by length: [1, n] and [n] hold the same values.
            XCTAssertEqual(g.shape.reduce(1, *), w.shape.reduce(1, *), "\(label) \(name)")
            if g.shape.count > 1 || w.shape.count > 1, g.shape.filter({ $0 != 1 }) != w.shape.filter({ $0 != 1 }) {
                XCTFail("\(label) \(name): shape \(g.shape), want \(w.shape)")
            }
            XCTAssertTrue(g.bytes == w.bytes, "\(label) \(name): values differ")
        }
    }

    func testExpertsStackAndUnstackAsTheReferenceToolsDo() throws {
        let dir = makeTemporaryDirectory()
        for (family, hfClass, experts) in [("mixtral", "MixtralForCausalLM", 4), ("qwen3moe", "Qwen3MoeForCausalLM", 6), ("qwen2moe", "Qwen2MoeForCausalLM", 4)] {
            let gguf = fixturesPath + "/engine/tiny-\(family).gguf", hf = fixturesPath + "/engine/tiny-\(family)-hf"
            var options = ConversionOptions(target: .safetensors)
            options.dtype = .f32
            _ = try Converter(source: try openCheckpoint(path: gguf), output: dir + "/\(family)-hf", options: options).run()
            try assertSameTensors(dir + "/\(family)-hf", hf, "\(family) GGUF → HF")
            let config = try XCTUnwrap(try ModelConfig.beside(checkpointPath: dir + "/\(family)-hf"))
            XCTAssertEqual(config.architectures, [hfClass])
            XCTAssertEqual(config.expertCount, experts)

            _ = try Converter(source: try openCheckpoint(path: hf), output: dir + "/\(family).gguf", options: ConversionOptions(target: .gguf)).run()
            try assertSameTensors(dir + "/\(family).gguf", gguf, "\(family) HF → GGUF")
            let back = try GGUFCheckpoint(path: dir + "/\(family).gguf")
            XCTAssertEqual(back.metadata["general.architecture"]?.stringValue, family == "mixtral" ? "llama" : family)

            let specs = try [gguf, hf, dir + "/\(family)-hf", dir + "/\(family).gguf"].map { try DecoderModel(path: $0).spec }
            for s in specs {
                XCTAssertEqual([s.experts, s.expertsUsed, s.ffn, s.sharedFFN], [specs[0].experts, specs[0].expertsUsed, specs[0].ffn, specs[0].sharedFFN], family)
                XCTAssertEqual(s.expertWeightsNorm, family != "qwen2moe", family)
            }
        }
    }

    func testAMissingExpertIsNamed() throws {
        let dir = makeTemporaryDirectory()
        let src = try openCheckpoint(path: fixturesPath + "/engine/tiny-qwen3moe-hf")
        let dropped = "model.layers.1.mlp.experts.3.up_proj.weight"
        writeFile(dir + "/model.safetensors", buildSafetensors(src.tensors.filter { $0.name != dropped }.map {
            SafetensorsTestTensor($0.name, dtype: "F32", shape: $0.shape, data: Array($0.bytes))
        }))
        writeFile(dir + "/config.json", try FileSystem.readFile(fixturesPath + "/engine/tiny-qwen3moe-hf/config.json"))
        XCTAssertThrowsError(try Converter(source: try openCheckpoint(path: dir), output: dir + "/out.gguf", options: ConversionOptions(target: .gguf))) { e in
            XCTAssertTrue("\(e)".contains(dropped), "\(e)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/out.gguf"))
        XCTAssertThrowsError(try DecoderModel(path: dir)) { e in XCTAssertTrue("\(e)".contains(dropped), "\(e)") }
    }

    /// An expert whose matrix is not shaped as its siblings' cannot be stacked: convert
    /// names it and its shape, the engine names it and the shape it expects, nothing is written.
    func testAMisshapenExpertIsNamed() throws {
        let dir = makeTemporaryDirectory()
        let src = try openCheckpoint(path: fixturesPath + "/engine/tiny-mixtral-hf")
        let odd = "model.layers.0.block_sparse_moe.experts.2.w1.weight"
        writeFile(dir + "/model.safetensors", buildSafetensors(src.tensors.map { t in
            // Half the rows: a [16, 64] gate where the others are [32, 64].
            t.name == odd ? SafetensorsTestTensor(t.name, dtype: "F32", shape: [t.shape[0] / 2, t.shape[1]], data: Array(t.bytes.prefix(t.byteCount / 2)))
                : SafetensorsTestTensor(t.name, dtype: "F32", shape: t.shape, data: Array(t.bytes))
        }))
        writeFile(dir + "/config.json", try FileSystem.readFile(fixturesPath + "/engine/tiny-mixtral-hf/config.json"))
        XCTAssertThrowsError(try Converter(source: try openCheckpoint(path: dir), output: dir + "/out.gguf", options: ConversionOptions(target: .gguf))) { e in
            XCTAssertTrue("\(e)".contains(odd) && "\(e)".contains("[16, 64]"), "\(e)")
            XCTAssertEqual((e as? CheckpointError)?.exitCode, .dataError)
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/out.gguf"))
        XCTAssertThrowsError(try DecoderModel(path: dir)) { e in XCTAssertTrue("\(e)".contains(odd) && "\(e)".contains("32"), "\(e)") }
    }
}

/// A mixture-of-experts config the engine cannot route is refused naming the key.
final class MixtureOfExpertsConfigTests: XCTestCase {
    func testImpossibleRoutingIsRefusedByName() throws {
        let src = fixturesPath + "/engine/tiny-qwen3moe-hf"
        let config = String(decoding: try FileSystem.readFile(src + "/config.json"), as: UTF8.self)
        for (from, to, key) in [("\"num_experts_per_tok\": 2", "\"num_experts_per_tok\": 7", "num_experts_per_tok"),
                                ("\"decoder_sparse_step\": 1", "\"decoder_sparse_step\": 2", "decoder_sparse_step")] {
            XCTAssertTrue(config.contains(from), "fixture config lacks \(from)")
            let dir = makeTemporaryDirectory()
            writeFile(dir + "/model.safetensors", try FileSystem.readFile(src + "/model.safetensors", limit: 1 << 24))
            writeFile(dir + "/config.json", Array(config.replacingOccurrences(of: from, with: to).utf8))
            XCTAssertThrowsError(try DecoderModel(path: dir), key) { e in
                XCTAssertTrue("\(e)".contains(key), "\(e)")
                XCTAssertNotEqual((e as? any UserFacingError)?.exitCode.rawValue ?? 0, 0, "\(e)")
            }
        }
    }
}
