import Basics
#if canImport(Glibc)
import Glibc
#endif
import CheckpointIO
import Models
import TensorMath
import TestSupport
import XCTest

/// Hostile config values (beside the header fuzzing in CheckpointIOTests): every numeric
/// field of a real tiny model's config.json set to zero, negatives, values past Int32 and
/// past any allocation, fractions and non-finite stand-ins. Opening the model and running a
/// few tokens must either work or throw an error that names the file, never trap.
final class ConfigFuzzTests: XCTestCase {
    static let fields = [
        "num_hidden_layers", "hidden_size", "intermediate_size", "num_attention_heads", "num_key_value_heads",
        "head_dim", "vocab_size", "max_position_embeddings", "rope_theta", "rms_norm_eps", "sliding_window",
        "query_pre_attn_scalar", "attn_logit_softcapping", "final_logit_softcapping", "rope_local_base_freq",
        "sliding_window_pattern",
    ]
    static let values = ["0", "-1", "1", "3", "2147483648", "100000000000", "9223372036854775807", "1e11", "1e308", "-1e308", "0.5", "null"]
    static let scalings = [
        #"{"rope_type": "llama3", "factor": 0, "low_freq_factor": 1, "high_freq_factor": 4, "original_max_position_embeddings": 8192}"#,
        #"{"rope_type": "llama3", "factor": 8, "low_freq_factor": 4, "high_freq_factor": 4, "original_max_position_embeddings": 8192}"#,
        #"{"rope_type": "llama3", "factor": 8, "original_max_position_embeddings": -3}"#,
        #"{"rope_type": "yarn", "factor": 1e308, "original_max_position_embeddings": 1}"#,
        #"{"rope_type": "yarn", "factor": 4, "beta_fast": -1, "original_max_position_embeddings": 64}"#,
        #"{"rope_type": "linear", "factor": -2}"#,
    ]

    /// The fixture's config.json as text with `field` replaced (or added) as `value`.
    func config(modelType: String, field: String, value: String) throws -> String {
        var text = String(decoding: try FileSystem.readFile(fixturesPath + "/engine/tiny-llama-hf/config.json"), as: UTF8.self)
        text = text.replacingFirst(#""model_type": "llama""#, with: #""model_type": "\#(modelType)""#)
        let open = text.firstIndex(of: "{")!
        // Duplicate keys are not ours to judge; a leading one is overridden, so drop the old line.
        text = text.split(separator: "\n").filter { !$0.contains("\"\(field)\":") }.joined(separator: "\n")
        text.insert(contentsOf: "\n  \"\(field)\": \(value),", at: text.index(after: text.firstIndex(of: "{") ?? open))
        return text
    }

    func attempt(_ dir: String, _ what: String) {
        do {
            let model = try DecoderModel(path: dir)
            let stream = LayerStream(model: model)
            try stream.run([[1, 2, 3, 4, 5]])
        } catch ModelError.contextTooLong {
            // A context of 1 or 3 is legal and too short for the five tokens: refused as such.
        } catch {
            // An error is the right answer for most; it must say which file.
            XCTAssertTrue("\(error)".contains(dir), "\(what): \(error)")
        }
    }

    func testHostileConfigValuesThrowOrRun() throws {
        ThreadPool.setThreads(1)
        let dir = makeTemporaryDirectory()
        symlink(fixturesPath + "/engine/tiny-llama-hf/model.safetensors", dir + "/model.safetensors")
        var cases = 0
        for modelType in ["llama", "mistral", "gemma2", "gemma3_text"] {
            for field in Self.fields {
                for value in Self.values {
                    writeFile(dir + "/config.json", Array(try config(modelType: modelType, field: field, value: value).utf8))
                    attempt(dir, "\(modelType) \(field)=\(value)")
                    cases += 1
                }
            }
            for s in Self.scalings {
                writeFile(dir + "/config.json", Array(try config(modelType: modelType, field: "rope_scaling", value: s).utf8))
                attempt(dir, "\(modelType) rope_scaling=\(s)")
                cases += 1
            }
        }
        XCTAssertGreaterThan(cases, 700)
    }

    /// The two values of the report: a window past Int32 runs as no window (it is longer
    /// than any sequence), and a layer count past the tensors is refused by name.
    func testWindowPastInt32RunsAndLayerCountPastTensorsIsRefused() throws {
        ThreadPool.setThreads(1)
        let dir = makeTemporaryDirectory()
        symlink(fixturesPath + "/engine/tiny-llama-hf/model.safetensors", dir + "/model.safetensors")
        writeFile(dir + "/config.json", Array(try config(modelType: "mistral", field: "sliding_window", value: "2147483648").utf8))
        let windowed = try DecoderModel(path: dir)
        XCTAssertEqual(windowed.spec.slidingWindow, Int(Int32.max))
        let plain = try DecoderModel(path: fixturesPath + "/engine/tiny-llama-hf")
        func logits(_ m: DecoderModel) throws -> [Float] {
            var out: [Float] = []
            try LayerStream(model: m).run([[1, 2, 3, 4, 5]], outputs: { _ in 0..<5 }) { _, _, rows in out += rows }
            return out
        }
        XCTAssertEqual(try logits(windowed), try logits(plain))

        for layers in ["3", "100000000000"] {
            writeFile(dir + "/config.json", Array(try config(modelType: "llama", field: "num_hidden_layers", value: layers).utf8))
            XCTAssertThrowsError(try DecoderModel(path: dir)) { e in
                guard case let CheckpointError.badMetadata(_, key, reason)? = e as? CheckpointError else { return XCTFail("\(e)") }
                XCTAssertEqual(key, "num_hidden_layers")
                XCTAssertTrue(reason.contains(layers == "3" ? "holds tensors for 2" : "out of range"), reason)
            }
        }
    }
}

extension String {
    func replacingFirst(_ target: String, with replacement: String) -> String {
        guard let r = firstRange(of: target) else { return self }
        var s = self
        s.replaceSubrange(r, with: replacement)
        return s
    }
}
