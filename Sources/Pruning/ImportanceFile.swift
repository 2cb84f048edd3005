import Basics
import CheckpointIO

/// Reading and writing `ImportanceStats` (Formats/importance.md): an 8-byte magic, a
/// JSON header, then every sum as a 16-byte little-endian two's-complement integer, in
/// the order the header's `arrays` lists them.
package enum ImportanceFile {
    static let magic: [UInt8] = Array("CKPTIMP".utf8) + [1]

    package static func encode(_ s: ImportanceStats) -> [UInt8] {
        var w = JSONWriter(pretty: true)
        w.beginObject()
        w.string("ckpt-importance", key: "format")
        // Version 2 adds the experts' arrays; a dense model's file is still version 1.
        w.int(s.shape.experts > 0 ? 2 : 1, key: "version")
        w.beginObject(key: "model")
        w.string(s.modelIdentity, key: "identity")
        w.string(s.shape.architecture, key: "architecture")
        w.int(s.shape.layers, key: "layers")
        w.int(s.shape.hidden, key: "hidden")
        w.int(s.shape.heads, key: "heads")
        w.int(s.shape.kvHeads, key: "kv_heads")
        w.int(s.shape.headDim, key: "head_dim")
        w.int(s.shape.ffn, key: "ffn")
        if s.shape.experts > 0 { w.int(s.shape.experts, key: "experts") }
        w.endObject()
        w.beginObject(key: "calibration")
        w.string(s.calibrationIdentity, key: "identity")
        w.int(s.sequenceLength, key: "seq")
        w.int(s.totalSamples, key: "samples")
        w.beginArray(key: "covered")
        for r in s.sampleRanges { w.raw("[\(r.lowerBound), \(r.upperBound)]") }
        w.endArray()
        w.int(s.tokens, key: "tokens")
        w.endObject()
        w.int(FixedSum.fractionBits, key: "fraction_bits")
        w.beginArray(key: "layers")
        for l in s.layers {
            w.beginObject()
            w.string(String(l.blockInfluence), key: "block_influence")
            w.int(l.degenerateTokens, key: "degenerate_tokens")
            w.endObject()
        }
        w.endArray()
        w.beginArray(key: "arrays")
        for (i, l) in s.layers.enumerated() {
            for (name, a) in LayerSums.activations where l[keyPath: a].channels > 0 {
                for (sum, _) in ChannelSums.sums { w.raw("[\"layers.\(i).\(name).\(sum)\", \(l[keyPath: a].channels)]") }
            }
        }
        w.endArray()
        w.endObject()
        var header = Array((w.text + "\n").utf8)
        while (16 + header.count) % 16 != 0 { header.append(0x20) }
        var out = magic
        withUnsafeBytes(of: UInt64(header.count).littleEndian) { out += $0 }
        out += header
        for l in s.layers {
            for (_, a) in LayerSums.activations {
                for (_, p) in ChannelSums.sums {
                    for v in l[keyPath: a][keyPath: p] { withUnsafeBytes(of: v.littleEndian) { out += $0 } }
                }
            }
        }
        return out
    }

    package static func write(_ s: ImportanceStats, to path: String) throws {
        try FileSystem.writeAtomically(path, encode(s))
    }

    package static func read(_ path: String) throws -> ImportanceStats {
        let bytes = try FileSystem.readFile(path, limit: 1 << 34)
        func bad(_ why: String) -> CheckpointError { .malformed(path: path, reason: why) }
        guard bytes.count >= 16, Array(bytes[0..<8]) == magic else {
            throw CheckpointError.unrecognizedFormat(path: path, reason: "not a ckpt importance file (no CKPTIMP\\1 magic)")
        }
        let n = bytes[8..<16].withUnsafeBytes { $0.loadUnaligned(as: UInt64.self).littleEndian }
        guard n <= UInt64(bytes.count - 16) else { throw bad("header length \(n) runs past the end of the file") }
        let header: JSONValue
        do { header = try JSONParser.parse(Array(bytes[16..<(16 + Int(n))])) } catch { throw bad("header is not JSON: \(error)") }
        guard header["format"]?.stringValue == "ckpt-importance" else { throw bad("header format is not ckpt-importance") }
        guard let version = header["version"]?.nonNegativeInt, version == 1 || version == 2 else { throw CheckpointError.unsupported(path: path, reason: "importance file version \(header["version"].map { "\($0)" } ?? "?")") }
        guard header["fraction_bits"]?.nonNegativeInt == FixedSum.fractionBits else { throw bad("fraction_bits is not \(FixedSum.fractionBits)") }
        func int(_ v: JSONValue?, _ what: String) throws -> Int {
            guard let i = v?.nonNegativeInt else { throw bad("\(what) missing or not a non-negative integer") }
            return i
        }
        let m = header["model"], c = header["calibration"]
        let shape = ShapeSummary(architecture: m?["architecture"]?.stringValue ?? "", layers: try int(m?["layers"], "model.layers"),
                                 hidden: try int(m?["hidden"], "model.hidden"), heads: try int(m?["heads"], "model.heads"),
                                 kvHeads: try int(m?["kv_heads"], "model.kv_heads"), headDim: try int(m?["head_dim"], "model.head_dim"),
                                 ffn: try int(m?["ffn"], "model.ffn"),
                                 experts: m?["experts"] == nil ? 0 : try int(m?["experts"], "model.experts"))
        guard shape.layers < 1 << 16, shape.hidden < 1 << 24, shape.heads < 1 << 16, shape.headDim < 1 << 16, shape.ffn < 1 << 26,
              shape.experts < 1 << 16, shape.experts * shape.ffn < 1 << 28 else {
            throw bad("model shape out of range")
        }
        guard (version == 2) == (shape.experts > 0) else { throw bad("version \(version) with \(shape.experts) experts (version 2 is the experts' layout)") }
        var ranges: [Range<Int>] = []
        for r in c?["covered"]?.arrayValue ?? [] {
            guard let pair = r.arrayValue, pair.count == 2, let a = pair[0].nonNegativeInt, let b = pair[1].nonNegativeInt, a <= b else {
                throw bad("calibration.covered holds something other than [start, end] pairs")
            }
            ranges.append(a..<b)
        }
        var s = ImportanceStats(modelIdentity: m?["identity"]?.stringValue ?? "", shape: shape, sequenceLength: try int(c?["seq"], "calibration.seq"),
                                totalSamples: try int(c?["samples"], "calibration.samples"),
                                calibrationIdentity: c?["identity"]?.stringValue ?? "", sampleRanges: ranges)
        s.tokens = try int(c?["tokens"], "calibration.tokens")
        let layerInfo = header["layers"]?.arrayValue ?? []
        guard layerInfo.count == shape.layers else { throw bad("\(layerInfo.count) layer entries for \(shape.layers) layers") }
        var offset = 16 + Int(n)
        let expected = offset + s.layers.reduce(0) { l, layer in
            l + LayerSums.activations.reduce(0) { $0 + ChannelSums.sums.count * 16 * layer[keyPath: $1.path].channels }
        }
        guard bytes.count == expected else { throw bad("\(bytes.count) bytes, the header implies \(expected)") }
        func readArray(_ count: Int) -> [Int128] {
            defer { offset += 16 * count }
            return bytes[offset..<(offset + 16 * count)].withUnsafeBytes { raw in
                (0..<count).map { Int128(littleEndian: raw.loadUnaligned(fromByteOffset: 16 * $0, as: Int128.self)) }
            }
        }
        for i in 0..<shape.layers {
            guard let bi = layerInfo[i]["block_influence"]?.stringValue.flatMap({ Int128($0) }) else {
                throw bad("layers[\(i)].block_influence is not a decimal integer")
            }
            s.layers[i].blockInfluence = bi
            s.layers[i].degenerateTokens = try int(layerInfo[i]["degenerate_tokens"], "layers[\(i)].degenerate_tokens")
            for (_, a) in LayerSums.activations {
                let n = s.layers[i][keyPath: a].channels
                for (_, p) in ChannelSums.sums { s.layers[i][keyPath: a][keyPath: p] = readArray(n) }
            }
        }
        return s
    }
}
