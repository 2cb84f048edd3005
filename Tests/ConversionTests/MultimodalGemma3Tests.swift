import Basics
import CheckpointIO
import Conversion
import Models
import TensorMath
import TestSupport
import XCTest

/// Gemma 3's multimodal HF checkpoints (`Gemma3ForConditionalGeneration`): the text
/// model's tensors under `language_model.model.` (older transformers) or
/// `model.language_model.` (newer), a vision tower beside them, the text config in
/// `text_config`. They used to fail with "tensors the model needs are missing".
final class MultimodalGemma3Tests: XCTestCase {
    func testBothLayoutsRunAndConvertToATextGGUF() throws {
        ThreadPool.setThreads(1)
        let dir = makeTemporaryDirectory()
        let gguf = fixturesPath + "/engine/tiny-gemma3.gguf"
        var options = ConversionOptions(target: .safetensors)
        options.dtype = .f32
        _ = try Converter(source: try openCheckpoint(path: gguf), output: dir + "/text", options: options).run()
        let text = try openCheckpoint(path: dir + "/text")
        let want = try engineLogits(gguf)
        let textConfig = String(decoding: try FileSystem.readFile(dir + "/text/config.json"), as: UTF8.self)
        for (layout, prefix) in [("old", "language_model."), ("new", "model.language_model.")] {
            let out = dir + "/" + layout
            try FileSystem.makeDirectory(out)
            var tensors = text.tensors.map { t -> SafetensorsTestTensor in
                let name = layout == "old" ? prefix + t.name : t.name.replacingPrefix("model.", with: prefix)
                return SafetensorsTestTensor(name, dtype: "F32", shape: t.shape, data: Array(t.bytes))
            }
            let vision = layout == "old" ? "vision_tower.vision_model.embeddings.patch_embedding.weight" : "model.vision_tower.vision_model.embeddings.patch_embedding.weight"
            tensors.append(SafetensorsTestTensor(vision, dtype: "F32", shape: [2, 3], data: floatBytes([1, 2, 3, 4, 5, 6])))
            tensors.append(SafetensorsTestTensor(layout == "old" ? "multi_modal_projector.mm_soft_emb_norm.weight" : "model.multi_modal_projector.mm_soft_emb_norm.weight",
                                                 dtype: "F32", shape: [3], data: floatBytes([1, 1, 1])))
            writeFile(out + "/model.safetensors", buildSafetensors(tensors))
            let config = #"{"architectures": ["Gemma3ForConditionalGeneration"], "model_type": "gemma3", "vision_config": {"model_type": "siglip_vision_model", "hidden_size": 3}, "text_config": "# + textConfig + "}"
            writeFile(out + "/config.json", Array(config.utf8))

            XCTAssertLessThan(maxDifference(want, try engineLogits(out)), 1e-4, layout)
            let s = try Converter(source: try openCheckpoint(path: out), output: out + ".gguf", options: ConversionOptions(target: .gguf)).run()
            XCTAssertTrue(s.warnings.contains { $0.contains("2 vision-tower and projector tensors not written") }, "\(s.warnings)")
            let g = try GGUFCheckpoint(path: out + ".gguf")
            XCTAssertEqual(g.metadata["general.architecture"]?.stringValue, "gemma3")
            XCTAssertEqual(Set(g.tensors.map(\.name)), Set(try GGUFCheckpoint(path: gguf).tensors.map(\.name)), layout)
            XCTAssertLessThan(maxDifference(want, try engineLogits(out + ".gguf")), 1e-4, layout)
        }
    }
}

extension String {
    func replacingPrefix(_ prefix: String, with replacement: String) -> String {
        hasPrefix(prefix) ? replacement + dropFirst(prefix.count) : self
    }
}
