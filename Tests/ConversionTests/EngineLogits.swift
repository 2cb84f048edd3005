import Basics
import Models

/// The engine's logits at every position of `tokens` for the model at `path`: what a
/// converted file must still give.
func engineLogits(_ path: String, tokens: [Int32] = [2, 9, 200, 31, 77, 5, 140, 3]) throws -> [Float] {
    var out: [Float] = []
    try LayerStream(model: try DecoderModel(path: path)).run([tokens], outputs: { _ in 0..<tokens.count }) { _, _, rows in out += rows }
    return out
}

/// The largest |a − b| over two logit arrays.
func maxDifference(_ a: [Float], _ b: [Float]) -> Float {
    precondition(a.count == b.count)
    return zip(a, b).map { abs($0 - $1) }.max() ?? 0
}
