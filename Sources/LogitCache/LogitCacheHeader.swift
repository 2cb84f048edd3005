import Basics
import CheckpointIO

/// How a teacher's distribution at one position is kept (Formats/logit-cache.md).
package enum LogitEncoding: Equatable, Sendable {
    /// The k most probable ids with their log-probabilities quantized to `logprobStep`
    /// nats, plus the log of the remaining tail mass quantized to `tailStep` nats.
    case topK(k: Int, logprobStep: Double = 0.125, tailStep: Double = 1.0 / 1024)
    /// `draws` ids drawn from the distribution (seeded per position), kept as unique ids
    /// with counts: counts / draws is an unbiased estimate of the distribution.
    case sample(draws: Int, seed: UInt64)

    package var name: String {
        switch self {
        case .topK: return "topk"
        case .sample: return "sample"
        }
    }

    /// Entries per record at most.
    package var maxEntries: Int {
        switch self {
        case let .topK(k, _, _): return k
        case let .sample(draws, _): return draws
        }
    }
}

/// Everything a cache promises about its records: whose distributions they are, over
/// which text, encoded how. Caches merge, and a student trains on one, only when these
/// agree (`compatibilityKey`).
package struct LogitCacheHeader: Equatable, Sendable {
    package var teacherIdentity: String
    package var architecture: String
    package var tokenizerIdentity: String
    package var vocab: Int
    /// Tokens per sequence fed to the teacher (BOS included); the last sequence may be shorter.
    package var sequenceLength: Int
    package var bos: Int32?
    package var encoding: LogitEncoding
    package var temperature: Double
    package var codec: CompressionCodec
    package var level: Int
    package var sequencesPerChunk: Int
    /// FNV-1a 64 of the text file's bytes, its token count and the sequences it makes.
    package var textIdentity: String
    package var textTokens: Int
    package var totalSequences: Int
    /// The sequences this file holds (all of them, or one shard's).
    package var sequences: Range<Int>
    package var shard: (index: Int, count: Int)?

    package init(teacherIdentity: String, architecture: String, tokenizerIdentity: String, vocab: Int, sequenceLength: Int,
                bos: Int32?, encoding: LogitEncoding, temperature: Double, codec: CompressionCodec, level: Int,
                sequencesPerChunk: Int, textIdentity: String, textTokens: Int, totalSequences: Int, sequences: Range<Int>,
                shard: (index: Int, count: Int)?) {
        self.teacherIdentity = teacherIdentity
        self.architecture = architecture
        self.tokenizerIdentity = tokenizerIdentity
        self.vocab = vocab
        self.sequenceLength = sequenceLength
        self.bos = bos
        self.encoding = encoding
        self.temperature = temperature
        self.codec = codec
        self.level = level
        self.sequencesPerChunk = sequencesPerChunk
        self.textIdentity = textIdentity
        self.textTokens = textTokens
        self.totalSequences = totalSequences
        self.sequences = sequences
        self.shard = shard
    }

    package static func == (a: Self, b: Self) -> Bool {
        a.compatibilityKey == b.compatibilityKey && a.sequences == b.sequences
            && a.shard?.index == b.shard?.index && a.shard?.count == b.shard?.count
    }

    /// The header without the fields that say which part of the work a file holds.
    package var compatibilityKey: String {
        var h = self
        h.sequences = 0..<0
        h.shard = nil
        return h.json(pretty: false)
    }

    /// The first field that differs, for error messages.
    package func firstDifference(from o: LogitCacheHeader) -> String? {
        let pairs: [(String, String, String)] = [
            ("teacher", teacherIdentity, o.teacherIdentity),
            ("tokenizer", tokenizerIdentity, o.tokenizerIdentity),
            ("vocab", "\(vocab)", "\(o.vocab)"),
            ("seq", "\(sequenceLength)", "\(o.sequenceLength)"),
            ("encoding", encodingJSON, o.encodingJSON),
            ("temperature", "\(temperature)", "\(o.temperature)"),
            ("codec", "\(codec.rawValue) level \(level)", "\(o.codec.rawValue) level \(o.level)"),
            ("sequences_per_chunk", "\(sequencesPerChunk)", "\(o.sequencesPerChunk)"),
            ("text", "\(textIdentity) (\(textTokens) tokens)", "\(o.textIdentity) (\(o.textTokens) tokens)"),
        ]
        for (name, a, b) in pairs where a != b { return "\(name): \(a) vs \(b)" }
        return nil
    }

    var encodingJSON: String {
        var w = JSONWriter()
        writeEncoding(&w)
        return w.text
    }

    private func writeEncoding(_ w: inout JSONWriter, key: String? = nil) {
        w.beginObject(key: key)
        w.string(encoding.name, key: "kind")
        switch encoding {
        case let .topK(k, step, tailStep):
            w.int(k, key: "k")
            w.raw(formatNumber(step), key: "logprob_step")
            w.raw(formatNumber(tailStep), key: "tail_step")
        case let .sample(draws, seed):
            w.int(draws, key: "draws")
            w.string(String(seed), key: "seed")
        }
        w.endObject()
    }

    package func json(pretty: Bool = true) -> String {
        var w = JSONWriter(pretty: pretty)
        w.beginObject()
        w.string("ckpt-logit-cache", key: "format")
        w.int(1, key: "version")
        w.beginObject(key: "teacher")
        w.string(teacherIdentity, key: "identity")
        w.string(architecture, key: "architecture")
        w.endObject()
        w.beginObject(key: "tokenizer")
        w.string(tokenizerIdentity, key: "identity")
        w.int(vocab, key: "vocab")
        if let bos { w.int(Int(bos), key: "bos") } else { w.raw("null", key: "bos") }
        w.endObject()
        w.int(sequenceLength, key: "seq")
        writeEncoding(&w, key: "encoding")
        w.raw(formatNumber(temperature), key: "temperature")
        w.string(codec.rawValue, key: "codec")
        w.int(level, key: "level")
        w.int(sequencesPerChunk, key: "sequences_per_chunk")
        w.beginObject(key: "text")
        w.string(textIdentity, key: "identity")
        w.int(textTokens, key: "tokens")
        w.int(totalSequences, key: "sequences")
        w.endObject()
        w.raw("[\(sequences.lowerBound), \(sequences.upperBound)]", key: "sequences")
        if let shard { w.raw("[\(shard.index), \(shard.count)]", key: "shard") } else { w.raw("null", key: "shard") }
        w.endObject()
        return w.text
    }

    static func parse(_ bytes: [UInt8], path: String) throws -> LogitCacheHeader {
        func bad(_ reason: String) -> LogitCacheError { .malformed(path: path, reason: "header: " + reason) }
        let v: JSONValue
        do { v = try JSONParser.parse(bytes) } catch { throw bad("\(error)") }
        guard v["format"]?.stringValue == "ckpt-logit-cache" else { throw bad("not a ckpt logit cache") }
        guard v["version"]?.nonNegativeInt == 1 else { throw bad("version \(String(describing: v["version"])) is not 1") }
        func int(_ x: JSONValue?, _ name: String) throws -> Int {
            guard let i = x?.nonNegativeInt else { throw bad("\(name) missing or not a non-negative integer") }
            return i
        }
        func str(_ x: JSONValue?, _ name: String) throws -> String {
            guard let s = x?.stringValue else { throw bad("\(name) missing") }
            return s
        }
        func pair(_ x: JSONValue?, _ name: String) throws -> (Int, Int) {
            guard let a = x?.arrayValue, a.count == 2, let p = a[0].nonNegativeInt, let q = a[1].nonNegativeInt else {
                throw bad("\(name) is not a pair of integers")
            }
            return (p, q)
        }
        let enc = v["encoding"]
        let encoding: LogitEncoding
        switch try str(enc?["kind"], "encoding.kind") {
        case "topk":
            guard let step = enc?["logprob_step"]?.doubleValue, let tail = enc?["tail_step"]?.doubleValue, step > 0, tail > 0 else {
                throw bad("encoding steps missing")
            }
            encoding = .topK(k: try int(enc?["k"], "encoding.k"), logprobStep: step, tailStep: tail)
        case "sample":
            guard let seed = UInt64(try str(enc?["seed"], "encoding.seed")) else { throw bad("encoding.seed is not an integer") }
            encoding = .sample(draws: try int(enc?["draws"], "encoding.draws"), seed: seed)
        case let other: throw bad("unknown encoding \(other)")
        }
        guard let codec = CompressionCodec(rawValue: try str(v["codec"], "codec")) else { throw bad("unknown codec") }
        guard let temperature = v["temperature"]?.doubleValue, temperature > 0 else { throw bad("temperature missing") }
        let (s0, s1) = try pair(v["sequences"], "sequences")
        guard s0 <= s1 else { throw bad("sequences range is reversed") }
        var shard: (Int, Int)?
        if let sv = v["shard"], sv != .null { shard = try pair(sv, "shard") }
        let bos: Int32? = v["tokenizer"]?["bos"]?.nonNegativeInt.map { Int32(clamping: $0) }
        let h = LogitCacheHeader(
            teacherIdentity: try str(v["teacher"]?["identity"], "teacher.identity"),
            architecture: try str(v["teacher"]?["architecture"], "teacher.architecture"),
            tokenizerIdentity: try str(v["tokenizer"]?["identity"], "tokenizer.identity"),
            vocab: try int(v["tokenizer"]?["vocab"], "tokenizer.vocab"),
            sequenceLength: try int(v["seq"], "seq"), bos: bos, encoding: encoding, temperature: temperature,
            codec: codec, level: Int(v["level"]?.doubleValue ?? 0),
            sequencesPerChunk: try int(v["sequences_per_chunk"], "sequences_per_chunk"),
            textIdentity: try str(v["text"]?["identity"], "text.identity"), textTokens: try int(v["text"]?["tokens"], "text.tokens"),
            totalSequences: try int(v["text"]?["sequences"], "text.sequences"), sequences: s0..<s1, shard: shard)
        guard h.vocab > 0, h.vocab <= 1 << 30, h.sequenceLength > 0, h.sequencesPerChunk > 0 else { throw bad("sizes out of range") }
        if case let .topK(k, _, _) = h.encoding, k < 1 || k > h.vocab { throw bad("k \(k) outside 1…\(h.vocab)") }
        if case let .sample(d, _) = h.encoding, d < 1 || d > 65535 { throw bad("draws \(d) outside 1…65535") }
        guard s1 <= h.totalSequences else { throw bad("sequences \(s0)..<\(s1) beyond the text's \(h.totalSequences)") }
        return h
    }
}

/// Shortest decimal that reads back as the same Double (JSON has no hex floats).
func formatNumber(_ x: Double) -> String {
    if x == x.rounded(), abs(x) < 1e15 { return String(Int(x)) }
    return "\(x)"
}

/// What goes wrong with a cache, said so a user can act on it.
package enum LogitCacheError: UserFacingError, Sendable, Equatable {
    case malformed(path: String, reason: String)
    case corruptChunk(path: String, chunk: Int, offset: Int, reason: String)
    case incomplete(path: String, reason: String)
    case mismatch(path: String, other: String, reason: String)
    case badSettings(String)
    case exists(path: String)

    package var description: String {
        switch self {
        case let .malformed(path, reason): return "\(path): \(reason)"
        case let .corruptChunk(path, chunk, offset, reason): return "\(path): chunk \(chunk) at byte \(offset): \(reason)"
        case let .incomplete(path, reason): return "\(path): \(reason)"
        case let .mismatch(path, other, reason): return "\(path) does not match \(other): \(reason)"
        case let .badSettings(reason): return reason
        case let .exists(path): return "\(path) already exists and holds a different cache; remove it or choose another output"
        }
    }

    package var exitCode: ExitCode {
        switch self {
        case .malformed, .corruptChunk, .incomplete, .mismatch: return .dataError
        case .badSettings: return .usage
        case .exists: return .cannotCreate
        }
    }
}
