import Basics
import CKernels
import CheckpointIO
import Models
import Synchronization
import TensorMath
#if canImport(Glibc)
import Glibc
#endif

/// The sequences a text makes for the teacher: BOS (when the model adds one) followed by
/// the next `length − 1` tokens of the text, then the next, and so on; the last sequence
/// takes what is left. Every cache over the same text and settings numbers them alike,
/// which is what lets shards built apart merge into the unsharded cache.
package struct TeacherText: Sendable {
    package let tokens: [Int32]
    package let length: Int
    package let bos: Int32?
    package let identity: String

    package init(tokens: [Int32], length: Int, bos: Int32?, identity: String) {
        self.tokens = tokens
        self.length = length
        self.bos = bos
        self.identity = identity
    }

    var textPerSequence: Int { bos == nil ? length : length - 1 }
    package var sequenceCount: Int { (tokens.count + textPerSequence - 1) / textPerSequence }

    package func sequence(_ i: Int) -> [Int32] {
        let a = i * textPerSequence, b = min(a + textPerSequence, tokens.count)
        return (bos.map { [$0] } ?? []) + tokens[a..<b]
    }

    /// FNV-1a 64 over the vocabulary (tokens, types, merges, and SentencePiece scores,
    /// which decide its segmentation): two tokenizers with the same ids for the same
    /// strings get the same identity.
    package static func tokenizerIdentity(_ files: TokenizerFiles) -> String {
        var h = FNV1a64()
        h.add(files.model.rawValue)
        for (t, ty) in zip(files.tokens, files.types) { h.add(t); h.add([0, UInt8(truncatingIfNeeded: ty.rawValue)]) }
        for m in files.merges { h.add(m); h.add([0]) }
        for s in files.scores { withUnsafeBytes(of: s.bitPattern.littleEndian) { h.add($0) } }
        return h.hex
    }
}

/// Runs the teacher over a text and writes its distributions into a logit cache.
package enum TeacherPass {
    package struct Settings: Sendable {
        package var encoding: LogitEncoding
        package var temperature: Double = 1
        package var codec: CompressionCodec = .zstd
        package var level: Int = 3
        package var sequencesPerChunk: Int
        /// Sequences per pass through the layers (weights read once per batch).
        package var batch: Int
        package var shard: (index: Int, count: Int)?
        /// Stop after this many sequences of the text (benchmarks, smoke runs).
        package var maxSequences: Int?

        package init(encoding: LogitEncoding, sequencesPerChunk: Int, batch: Int) {
            self.encoding = encoding
            self.sequencesPerChunk = sequencesPerChunk
            self.batch = batch
        }
    }

    package struct Report: Sendable {
        package var sequences: Int
        package var records: Int
        package var resumedAfter: Int
        package var forwardSeconds: Double
        package var encodeSeconds: Double
        package var totalSeconds: Double
        package var fileBytes: Int
        package var alreadyComplete: Bool
    }

    /// The sequences a shard covers: whole chunks, chunk range i·C/N ..< (i+1)·C/N.
    package static func sequenceRange(total: Int, perChunk: Int, shard: (index: Int, count: Int)?) -> Range<Int> {
        guard let shard else { return 0..<total }
        let chunks = (total + perChunk - 1) / perChunk
        let c0 = shard.index * chunks / shard.count, c1 = (shard.index + 1) * chunks / shard.count
        return min(c0 * perChunk, total)..<min(c1 * perChunk, total)
    }

    package static func header(model: DecoderModel, tokenizer: any Tokenizer, text: TeacherText, settings: Settings) -> LogitCacheHeader {
        let total = min(text.sequenceCount, settings.maxSequences ?? Int.max)
        return LogitCacheHeader(
            teacherIdentity: model.identity, architecture: model.spec.architecture,
            tokenizerIdentity: TeacherText.tokenizerIdentity(tokenizer.files), vocab: model.spec.vocab,
            sequenceLength: text.length, bos: text.bos, encoding: settings.encoding, temperature: settings.temperature,
            codec: settings.codec, level: settings.level, sequencesPerChunk: settings.sequencesPerChunk,
            textIdentity: text.identity, textTokens: text.tokens.count, totalSequences: total,
            sequences: sequenceRange(total: total, perChunk: settings.sequencesPerChunk, shard: settings.shard),
            shard: settings.shard)
    }

    /// Builds (or resumes) the cache at `output`. Work in progress lives in
    /// `output.partial`, renamed to `output` when complete, so `output` is always whole.
    package static func build(stream: LayerStream, tokenizer: any Tokenizer, text: TeacherText, settings: Settings, output: String,
                             progress: ((_ sequencesDone: Int, _ sequencesTotal: Int, _ records: Int, _ bytes: Int) -> Void)? = nil)
        throws -> Report {
        let model = stream.model, spec = model.spec
        let h = header(model: model, tokenizer: tokenizer, text: text, settings: settings)
        if case let .topK(k, _, _) = h.encoding, k > spec.vocab {
            throw LogitCacheError.badSettings("top-\(k) is more ids than the vocabulary has (\(spec.vocab))")
        }
        if text.tokens.isEmpty { throw LogitCacheError.badSettings("the text has no tokens; there is nothing to run the teacher on") }
        if text.length > spec.contextLength {
            throw LogitCacheError.badSettings("sequences of \(text.length) tokens are longer than the teacher's context (\(spec.contextLength))")
        }
        let t0 = monotonicSeconds()
        // A finished cache with these settings: nothing to do.
        if try FileSystem.kind(of: output) == .file {
            if let done = try? LogitCacheReader(path: output), done.header == h {
                return Report(sequences: done.sequenceCount, records: done.records, resumedAfter: done.sequenceCount, forwardSeconds: 0,
                              encodeSeconds: 0, totalSeconds: 0, fileBytes: done.fileSize, alreadyComplete: true)
            }
            throw LogitCacheError.exists(path: output)
        }
        let partial = output + ".partial"
        let appender: LogitCacheAppender
        if try FileSystem.kind(of: partial) == .file {
            // A crash while the header itself was being written leaves a prefix of it:
            // nothing to keep, start again. Anything else must be this build's to resume.
            let have = try MappedFile(path: partial)
            let mine = LogitCacheLayout.headerBytes(h)
            if have.size < mine.count && Array(mine[0..<have.size]) == Array(have.bytes) {
                unlink(partial)
                appender = try LogitCacheAppender(creating: partial, header: h)
            } else {
                appender = try LogitCacheAppender(resuming: partial, header: h)
            }
        } else {
            appender = try LogitCacheAppender(creating: partial, header: h)
        }
        let resumedAfter = appender.sequencesDone - h.sequences.lowerBound
        let queue = try BackgroundQueue(capacity: 1, purpose: "compressing and writing logit chunks")
        var queueOpen = true
        defer { if queueOpen { try? queue.finish() } }

        let encoder = RowEncoder(encoding: h.encoding, vocab: spec.vocab, temperature: settings.temperature)
        var forward = 0.0, encode = 0.0, records = 0
        let bytesBox = Counter()
        var s = appender.sequencesDone
        progress?(s - h.sequences.lowerBound, h.sequences.count, 0, 0)
        while s < h.sequences.upperBound {
            let chunkEnd = min(s + settings.sequencesPerChunk, h.sequences.upperBound)
            var chunk = LogitChunk(firstSequence: s)
            var b = s
            while b < chunkEnd {
                let nb = min(max(settings.batch, 1), chunkEnd - b)
                let seqs = (b..<(b + nb)).map { text.sequence($0) }
                for q in seqs { chunk.sequenceLengths.append(q.count) }
                let first = b
                var encodeHere = 0.0
                let f0 = monotonicSeconds()
                try stream.run(seqs, outputs: { seqs[$0].isEmpty ? nil : 0..<seqs[$0].count }) { si, p0, logits in
                    let e0 = monotonicSeconds()
                    encoder.append(logits, sequence: first + si, position0: p0, tokens: seqs[si], into: &chunk)
                    encodeHere += monotonicSeconds() - e0
                }
                forward += monotonicSeconds() - f0 - encodeHere
                encode += encodeHere
                records += seqs.reduce(0) { $0 + $1.count }
                b += nb
            }
            let done = chunk
            try queue.submit {
                let sealed = try LogitCacheLayout.seal(done, header: h)
                try appender.append(sealed: sealed, info: ChunkInfo(offset: 0, firstSequence: done.firstSequence, sequenceCount: done.sequenceCount,
                                                                     records: done.records, rawSize: 0, compressedSize: sealed.count - LogitCacheLayout.chunkHeaderSize))
                bytesBox.add(sealed.count)
            }
            s = chunkEnd
            progress?(s - h.sequences.lowerBound, h.sequences.count, records, bytesBox.value)
        }
        queueOpen = false
        try queue.finish()
        try appender.finish()
        try FileSystem.rename(partial, output)
        try FileSystem.syncDirectory(FileSystem.directoryName(output))
        let size = (try? MappedFile(path: output).size) ?? 0
        return Report(sequences: h.sequences.count, records: records, resumedAfter: resumedAfter, forwardSeconds: forward,
                      encodeSeconds: encode, totalSeconds: monotonicSeconds() - t0, fileBytes: size, alreadyComplete: false)
    }

    /// The seed of the draws at (sequence, position): SplitMix64's finalizer, twice.
    package static func rowSeed(_ seed: UInt64, sequence: Int, position: Int) -> UInt64 {
        SplitMix64.mix(seed ^ SplitMix64.mix(UInt64(sequence) << 32 | UInt64(position)))
    }
}

/// A count the pool's workers add to.
final class Counter: Sendable {
    private let v = Mutex(0)
    func add(_ n: Int) { v.withLock { $0 += n } }
    var value: Int { v.withLock { $0 } }
}

/// Turns rows of logits into records (top-k or draws), rows spread over the pool.
package final class RowEncoder {
    package let encoding: LogitEncoding
    let vocab: Int
    let inverseTemperature: Float
    private var scratch: FloatBuffer
    private var ids: [Int32] = []
    private var values: [Float] = []
    private var counts: [Int32] = []
    private var unique: [Int32] = []
    private var tails: [Double] = []
    private var seeds: [UInt64] = []
    private var uniforms: [Double] = []

    package init(encoding: LogitEncoding, vocab: Int, temperature: Double) {
        self.encoding = encoding
        self.vocab = vocab
        inverseTemperature = Float(1 / temperature)
        scratch = FloatBuffer(count: max(ThreadPool.threads, 1) * vocab, zeroed: false)
    }

    /// Appends one record per row of `logits` (positions position0 … of `tokens`).
    package func append(_ logits: UnsafeBufferPointer<Float>, sequence: Int, position0: Int, tokens: [Int32], into c: inout LogitChunk) {
        let rows = logits.count / vocab
        let threads = max(ThreadPool.threads, 1)
        if scratch.count < threads * vocab { scratch = FloatBuffer(count: threads * vocab, zeroed: false) }
        switch encoding {
        case let .topK(k, _, _):
            if ids.count < rows * k { ids = .init(repeating: 0, count: rows * k); values = .init(repeating: 0, count: rows * k) }
            if tails.count < rows { tails = .init(repeating: 0, count: rows) }
            ids.withUnsafeMutableBufferPointer { ip in
                values.withUnsafeMutableBufferPointer { vp in
                    tails.withUnsafeMutableBufferPointer { tp in
                        ckpt_topk_logprobs(logits.baseAddress, Int64(rows), Int64(vocab), Int32(k), inverseTemperature, ip.baseAddress,
                                           vp.baseAddress, tp.baseAddress, scratch.pointer)
                    }
                }
            }
            var order = [Int](0..<k)
            for r in 0..<rows {
                c.tokens.append(tokens[position0 + r])
                order.sort { ids[r * k + $0] < ids[r * k + $1] }
                for j in order {
                    c.ids.append(ids[r * k + j])
                    c.logprobs.append(values[r * k + j])
                }
                c.entryStart.append(c.ids.count)
                c.tailLogprobs.append(Float(tails[r]))
                for j in 0..<k { order[j] = j }
            }
        case let .sample(draws, seed):
            if ids.count < rows * draws { ids = .init(repeating: 0, count: rows * draws); counts = .init(repeating: 0, count: rows * draws) }
            if unique.count < rows { unique = .init(repeating: 0, count: rows); seeds = .init(repeating: 0, count: rows) }
            if uniforms.count < threads * draws { uniforms = .init(repeating: 0, count: threads * draws) }
            for r in 0..<rows { seeds[r] = TeacherPass.rowSeed(seed, sequence: sequence, position: position0 + r) }
            ids.withUnsafeMutableBufferPointer { ip in
                counts.withUnsafeMutableBufferPointer { cp in
                    unique.withUnsafeMutableBufferPointer { up in
                        uniforms.withUnsafeMutableBufferPointer { u in
                            ckpt_sample_ids(logits.baseAddress, Int64(rows), Int64(vocab), inverseTemperature, Int32(draws), seeds, ip.baseAddress,
                                            cp.baseAddress, up.baseAddress, scratch.pointer, u.baseAddress)
                        }
                    }
                }
            }
            for r in 0..<rows {
                c.tokens.append(tokens[position0 + r])
                for j in 0..<Int(unique[r]) {
                    c.ids.append(ids[r * draws + j])
                    c.counts.append(counts[r * draws + j])
                }
                c.entryStart.append(c.ids.count)
            }
        }
    }
}
