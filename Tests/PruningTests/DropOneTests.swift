import Basics
import CheckpointIO
import Conversion
import Models
import Pruning
import TestSupport
import XCTest

/// Skipping a layer in the stream is what dropping it from the file does, and zeroing a
/// head's output is what removing the head does: drop-one losses measure pruning itself.
final class DropOneTests: XCTestCase {
    let tokens: [Int32] = Array("drop one, measure the loss".utf8).map { Int32($0) }

    func logits(_ stream: LayerStream) throws -> [Float] {
        var out: [Float] = []
        try stream.run([tokens], outputs: { _ in 0..<self.tokens.count }) { _, _, l in out += l }
        return out
    }

    func pruned(_ plan: PrunePlan, _ path: String, from source: String = fixturesPath + "/engine/tiny-llama.gguf") throws -> LayerStream {
        let src = try DecoderModel(path: source)
        var options = ConversionOptions(target: .gguf)
        options.edit = try Surgery.edit(model: src, plan: plan, record: nil)
        _ = try Converter(source: src.checkpoint, output: path, options: options).run()
        let s = LayerStream(model: try DecoderModel(path: path))
        s.llamaCppRounding = false
        return s
    }

    /// Gemma's sliding and global layers keep their kinds when layers before them go: the
    /// pruned GGUF lists them (llama.cpp's per-layer sliding_window_pattern) instead of
    /// leaving the family's fixed period to misplace them. Layer 0 of the tiny gemma3
    /// (five sliding, then one global) and of the tiny gemma2 (alternating) are dropped.
    func testDroppedLayersKeepGemmaSlidingPattern() throws {
        let dir = makeTemporaryDirectory()
        for name in ["tiny-gemma3", "tiny-gemma2"] {
            let source = fixturesPath + "/engine/\(name).gguf"
            let model = try DecoderModel(path: source)
            let s = model.spec
            let stream = LayerStream(model: model)
            stream.llamaCppRounding = false
            stream.skipLayers = [0]
            let skipped = try logits(stream)
            let plan = PrunePlan(keptLayers: Array(1..<s.layers), neurons: Array(repeating: Array(0..<s.ffn), count: s.layers - 1),
                                 heads: Array(repeating: Array(0..<s.heads), count: s.layers - 1),
                                 hiddenChannels: Array(0..<s.hidden), method: .random)
            let out = try pruned(plan, dir + "/\(name).gguf", from: source)
            XCTAssertEqual(out.model.spec.slidingLayers, Set(s.slidingLayers.filter { $0 > 0 }.map { $0 - 1 }), name)
            XCTAssertTrue(try skipped == logits(out), "\(name): bit for bit")
        }
    }

    func testSkipAndMaskEqualPrunedModels() throws {
        let dir = makeTemporaryDirectory()
        let stream = LayerStream(model: try DecoderModel(path: fixturesPath + "/engine/tiny-llama.gguf"))
        stream.llamaCppRounding = false
        let intact = try logits(stream)
        stream.skipLayers = [0]
        let skipped = try logits(stream)
        let noLayer0 = try pruned(PrunePlan(keptLayers: [1], neurons: [Array(0..<128)], heads: [Array(0..<4)],
                                            hiddenChannels: Array(0..<64), method: .random), dir + "/l.gguf")
        XCTAssertEqual(skipped, try logits(noLayer0), "bit for bit")
        stream.skipLayers = []
        stream.maskedHeads = [0: [1, 2], 1: [0, 3]]
        let masked = try logits(stream)
        let noHeads = try pruned(PrunePlan(keptLayers: [0, 1], neurons: [Array(0..<128), Array(0..<128)], heads: [[0, 3], [1, 2]],
                                           hiddenChannels: Array(0..<64), method: .random), dir + "/h.gguf")
        let p = try logits(noHeads)
        XCTAssertLessThan(zip(masked, p).map { abs($0 - $1) }.max()!, 1e-4, "same sums, other order")
        XCTAssertGreaterThan(zip(masked, intact).map { abs($0 - $1) }.max()!, 1e-3, "the mask does something")
    }

    func testDropOneLossesArePositiveForRealLayers() throws {
        let model = try DecoderModel(path: fixturesPath + "/engine/tiny-llama.gguf")
        let text = try FileSystem.readFile(repositoryRoot + "/Formats/gguf.md").map { Int32($0) }
        let layers = try DropOneLoss.layers(model: model, tokens: text, ctx: 64, chunks: 2, bos: nil)
        XCTAssertEqual(layers.count, 2)
        XCTAssertTrue(layers.allSatisfy { $0.isFinite && $0 != 0 })
        let heads = try DropOneLoss.heads(model: model, layers: [1], tokens: text, ctx: 64, chunks: 2, bos: nil)
        XCTAssertEqual(heads[1]?.count, 4)
    }
}
