import Basics
#if canImport(Glibc)
import Glibc
#endif
import CheckpointIO
import Conversion
import Models
import TensorMath
import TestSupport
import XCTest

/// Llama 3.1's RoPE scaling across formats, as llama.cpp's converter carries it: a
/// `rope_freqs.weight` factor vector in GGUF (llama.cpp aborts on a `llama3` scaling
/// type), `rope_scaling` in config.json.
final class Llama3RopeTests: XCTestCase {
    /// Llama 3.1 8B's factors: llama.cpp's convert_hf_to_gguf.py formula (θ 500000,
    /// head_dim 128, factor 8, band 1…4 over 8192), computed apart from this code.
    func testFactorsOfLlama31AndTheirInverse() throws {
        var c = ModelConfig()
        c.ropeTheta = 500_000
        var s = ModelConfig.RopeScaling()
        s.ropeType = "llama3"; s.factor = 8; s.lowFreqFactor = 1; s.highFreqFactor = 4; s.originalMaxPositionEmbeddings = 8192
        c.ropeScaling = s
        let f = try XCTUnwrap(c.llama3RopeFactors(dims: 128))
        XCTAssertEqual(f.count, 64)
        XCTAssertTrue(f[0...28].allSatisfy { $0 == 1 } && f[35...63].allSatisfy { $0 == 8 }, "\(f)")
        for (i, want) in zip(29...34, [1.20748, 1.55341, 2.02631, 2.69453, 3.68425, 5.25733]) {
            XCTAssertEqual(Double(f[i]), want, accuracy: 1e-4, "pair \(i)")
        }
        let back = try XCTUnwrap(c.llama3Scaling(fromFactors: f, dims: 128))
        XCTAssertEqual(back.kind, "llama3")
        XCTAssertEqual(back.factor ?? 0, 8, accuracy: 1e-6)
        XCTAssertEqual(back.lowFreqFactor ?? 0, 1, accuracy: 1e-3)
        XCTAssertEqual(back.highFreqFactor ?? 0, 4, accuracy: 1e-3)
        XCTAssertEqual(back.originalMaxPositionEmbeddings, 8192)
        // Factors no llama3 band gives are not forced into one.
        var odd = f
        odd[10] = 3
        XCTAssertNil(c.llama3Scaling(fromFactors: odd, dims: 128))
    }

    /// The tiny llama with llama3 scaling, HF → GGUF → HF: the GGUF holds the factors and
    /// no scaling keys, the HF copy gets rope_scaling back and no stray tensor, and all
    /// three give the logits of the original (which differ from unscaled RoPE's).
    func testRoundTripKeepsTheScaling() throws {
        ThreadPool.setThreads(2)
        let dir = makeTemporaryDirectory()
        let src = dir + "/hf"
        try FileSystem.makeDirectory(src)
        symlink(fixturesPath + "/engine/tiny-llama-hf/model.safetensors", src + "/model.safetensors")
        var text = String(decoding: try FileSystem.readFile(fixturesPath + "/engine/tiny-llama-hf/config.json"), as: UTF8.self)
        let plain = text
        text.replaceSubrange(text.firstRange(of: "{")!, with: #"{"rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 8.0, "original_max_position_embeddings": 2048},"#)
        writeFile(src + "/config.json", Array(text.utf8))
        let unscaled = dir + "/plain"
        try FileSystem.makeDirectory(unscaled)
        symlink(fixturesPath + "/engine/tiny-llama-hf/model.safetensors", unscaled + "/model.safetensors")
        writeFile(unscaled + "/config.json", Array(plain.utf8))

        let options = ConversionOptions(target: .gguf)
        _ = try Converter(source: try openCheckpoint(path: src), output: dir + "/m.gguf", options: options).run()
        let g = try GGUFCheckpoint(path: dir + "/m.gguf")
        XCTAssertNil(g.metadata["llama.rope.scaling.type"], "llama.cpp aborts on a llama3 scaling type")
        let freqs = try XCTUnwrap(g.tensor(named: "rope_freqs.weight"))
        XCTAssertEqual(freqs.shape, [8])
        XCTAssertEqual(freqs.dtype.name, "F32")

        _ = try Converter(source: g, output: dir + "/back", options: ConversionOptions(target: .safetensors)).run()
        let back = try openCheckpoint(path: dir + "/back")
        XCTAssertFalse(back.tensors.contains { $0.name == "rope_freqs.weight" }, "no stray tensor")
        let config = try XCTUnwrap(ModelConfig.beside(checkpointPath: dir + "/back"))
        XCTAssertEqual(config.ropeScaling?.kind, "llama3")
        XCTAssertEqual(config.ropeScaling?.factor ?? 0, 8, accuracy: 1e-6)

        let want = try engineLogits(src)
        let d0 = maxDifference(want, try engineLogits(unscaled))
        XCTAssertGreaterThan(d0, 1e-3, "the scaling changes the logits, so the checks below can fail")
        for path in [dir + "/m.gguf", dir + "/back"] {
            XCTAssertLessThan(maxDifference(want, try engineLogits(path)), 1e-4, path)
        }
    }
}

/// HF Mistral → GGUF is written as llama.cpp's converter writes it: architecture `llama`
/// (llama.cpp has no `mistral` and refused the file), the same names and Q/K order.
final class MistralToGGUFTests: XCTestCase {
    func testMistralIsWrittenAsLlama() throws {
        ThreadPool.setThreads(2)
        let dir = makeTemporaryDirectory()
        try FileSystem.makeDirectory(dir + "/hf")
        symlink(fixturesPath + "/engine/tiny-llama-hf/model.safetensors", dir + "/hf/model.safetensors")
        var text = String(decoding: try FileSystem.readFile(fixturesPath + "/engine/tiny-llama-hf/config.json"), as: UTF8.self)
        text.replaceSubrange(text.firstRange(of: #""model_type": "llama""#)!, with: #""model_type": "mistral""#)
        text.replaceSubrange(text.firstRange(of: "LlamaForCausalLM")!, with: "MistralForCausalLM")
        writeFile(dir + "/hf/config.json", Array(text.utf8))
        XCTAssertEqual(try DecoderModel(path: dir + "/hf").spec.architecture, "mistral")
        _ = try Converter(source: try openCheckpoint(path: dir + "/hf"), output: dir + "/m.gguf", options: ConversionOptions(target: .gguf)).run()
        let g = try GGUFCheckpoint(path: dir + "/m.gguf")
        XCTAssertEqual(g.metadata["general.architecture"]?.stringValue, "llama")
        XCTAssertEqual(g.metadata["llama.block_count"]?.intValue, 2)
        XCTAssertFalse(g.metadata.contains { $0.key.hasPrefix("mistral.") })
        XCTAssertLessThan(maxDifference(try engineLogits(dir + "/hf"), try engineLogits(dir + "/m.gguf")), 1e-4)
    }
}
