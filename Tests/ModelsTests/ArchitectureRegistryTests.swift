import Basics
import CheckpointIO
@testable import Models
import XCTest

/// The architecture registry is the one place a family is described; these checks catch
/// an entry that would make conversion drop a tensor or two families claim one name.
final class ArchitectureRegistryTests: XCTestCase {
    static let config = """
    {"model_type": "x", "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 2,
     "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "vocab_size": 128,
     "rms_norm_eps": 1e-6, "max_position_embeddings": 256}
    """

    func testEveryEntryNamesEveryTensorItLaysOut() throws {
        let config = try ModelConfig.decode(json: Array(Self.config.utf8), path: "config.json")
        var ggufNames = Set<String>(), hfTypes = Set<String>()
        for arch in Architecture.all {
            XCTAssertTrue(ggufNames.insert(arch.ggufName).inserted, "two entries claim GGUF '\(arch.ggufName)'")
            for t in [arch.hfModelType] + arch.hfModelTypeAliases {
                XCTAssertTrue(hfTypes.insert(t).inserted, "two entries claim model_type '\(t)'")
                XCTAssertEqual(Architecture.hf(modelType: t)?.ggufName, arch.ggufName)
            }
            XCTAssertNotNil(Architecture.gguf(arch.ggufOutputName), "\(arch.ggufName) converts to an architecture nobody reads")

            for format in [CheckpointFormat.gguf, .safetensors] {
                let spec = try arch.spec(config, format: format, ropeFactors: nil, path: "config.json")
                XCTAssertEqual(spec.architecture, arch.ggufName)
                let tensors = arch.tensors(spec)
                XCTAssertEqual(Set(tensors.map(\.role)).count, tensors.count, "\(arch.ggufName) lays a tensor out twice")
                var gguf = Set<String>(), hf = Set<String>()
                for t in tensors {
                    // Every tensor must have a name in both formats, distinct, and map back to its role.
                    let g = try XCTUnwrap(arch.ggufName(t.role), "\(arch.ggufName): no GGUF name for \(t.role)")
                    let h = try XCTUnwrap(arch.hfName(t.role), "\(arch.ggufName): no HF name for \(t.role)")
                    XCTAssertTrue(gguf.insert(g).inserted && hf.insert(h).inserted, "\(arch.ggufName): \(t.role) shares a name")
                    XCTAssertEqual(arch.role(ggufName: g), t.role)
                    XCTAssertEqual(arch.role(hfName: h), t.role)
                    XCTAssertFalse(t.shape.isEmpty || t.shape.contains { $0 <= 0 }, "\(arch.ggufName) \(t.role): shape \(t.shape)")
                }
                // The forward pass's switches and the layout agree.
                let parts = Set(tensors.compactMap { if case let .layer(0, p) = $0.role { return p } else { return nil } })
                XCTAssertEqual(parts.contains(.attnQNorm), spec.qkNorm, arch.ggufName)
                XCTAssertEqual(parts.contains(.postAttnNorm) && parts.contains(.postMlpNorm), spec.postNorms, arch.ggufName)
            }
        }
    }
}
