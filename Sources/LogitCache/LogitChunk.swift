import Basics
import CheckpointIO

/// The records of consecutive sequences, decoded: one record per token fed to the
/// teacher, holding its input token and the teacher's distribution over the next token.
/// Entry lists are in ascending id order.
package struct LogitChunk: Equatable, Sendable {
    package var firstSequence: Int
    /// Records per sequence.
    package var sequenceLengths: [Int]
    /// The input token of every record.
    package var tokens: [Int32]
    /// Record r's entries are entryStart[r] ..< entryStart[r + 1] of ids and values.
    package var entryStart: [Int]
    package var ids: [Int32]
    /// topk: log-probabilities (dequantized, exact multiples of the step). Empty for sample.
    package var logprobs: [Float]
    /// sample: how many of the draws fell on each id. Empty for topk.
    package var counts: [Int32]
    /// topk: log of the mass outside the kept ids (−inf when none). Empty for sample.
    package var tailLogprobs: [Float]

    package init(firstSequence: Int) {
        self.firstSequence = firstSequence
        sequenceLengths = []
        tokens = []
        entryStart = [0]
        ids = []
        logprobs = []
        counts = []
        tailLogprobs = []
    }

    package var records: Int { tokens.count }
    package var sequenceCount: Int { sequenceLengths.count }
    package func entries(_ r: Int) -> Range<Int> { entryStart[r]..<entryStart[r + 1] }

    /// The first record of each sequence.
    package var sequenceStarts: [Int] {
        var out: [Int] = []
        var at = 0
        for n in sequenceLengths { out.append(at); at += n }
        return out
    }
}

/// The chunk payload (before compression): stream lengths, then the streams. Ids are
/// renumbered by their frequency in the chunk (most frequent → code 0), sorted by code
/// within each record and stored as LEB128 gaps; that and keeping each kind of field in
/// its own stream is what makes the codec's entropy stage effective.
enum ChunkPayload {
    static let streamCount = 7

    static func encode(_ c: LogitChunk, encoding: LogitEncoding, vocab: Int) -> [UInt8] {
        // Renumber ids by frequency within the chunk (ties: lower id first).
        var freq = [Int32](repeating: 0, count: vocab)
        for id in c.ids { freq[Int(id)] += 1 }
        var table = (0..<vocab).filter { freq[$0] > 0 }
        table.sort { freq[$0] != freq[$1] ? freq[$0] > freq[$1] : $0 < $1 }
        var code = [Int32](repeating: 0, count: vocab)
        for (i, id) in table.enumerated() { code[id] = Int32(i) }

        var s0: [UInt8] = [], s1: [UInt8] = [], s2: [UInt8] = [], s3: [UInt8] = []
        var s4: [UInt8] = [], s5: [UInt8] = [], s6: [UInt8] = []
        s0.reserveCapacity(c.sequenceCount * 4)
        for n in c.sequenceLengths { putU32(&s0, UInt32(n)) }
        s1.reserveCapacity(c.records * 4)
        for t in c.tokens { putU32(&s1, UInt32(bitPattern: t)) }
        for id in table { putU32(&s2, UInt32(id)) }
        s4.reserveCapacity(c.ids.count * 2)
        s5.reserveCapacity(c.ids.count)
        var order: [(code: Int32, at: Int)] = []
        for r in 0..<c.records {
            let e = c.entries(r)
            order.removeAll(keepingCapacity: true)
            for i in e { order.append((code[Int(c.ids[i])], i)) }
            order.sort { $0.code < $1.code }
            var prev: Int32 = -1
            for (cd, i) in order {
                putLEB(&s4, UInt64(cd - prev - 1))
                prev = cd
                switch encoding {
                case let .topK(_, step, _): s5.append(quantizeLogprob(c.logprobs[i], step: step))
                case .sample: putLEB(&s5, UInt64(c.counts[i]))
                }
            }
            switch encoding {
            case let .topK(_, _, tailStep):
                let q = quantizeTail(c.tailLogprobs[r], step: tailStep)
                s6.append(UInt8(q & 0xFF))
                s6.append(UInt8(q >> 8))
            case .sample:
                s3.append(UInt8(e.count & 0xFF))
                s3.append(UInt8(e.count >> 8))
            }
        }
        let streams = [s0, s1, s2, s3, s4, s5, s6]
        var out: [UInt8] = []
        out.reserveCapacity(streams.reduce(4 * streamCount) { $0 + $1.count })
        for s in streams { putU32(&out, UInt32(s.count)) }
        for s in streams { out += s }
        return out
    }

    static func decode(_ raw: [UInt8], firstSequence: Int, sequences: Int, records: Int, encoding: LogitEncoding,
                       vocab: Int) throws(PayloadError) -> LogitChunk {
        var c = LogitChunk(firstSequence: firstSequence)
        guard raw.count >= 4 * streamCount else { throw PayloadError("payload shorter than its stream table") }
        var lengths: [Int] = []
        var at = 4 * streamCount
        for i in 0..<streamCount {
            let n = Int(getU32(raw, 4 * i))
            lengths.append(n)
            at += n
        }
        guard at == raw.count else { throw PayloadError("stream lengths add up to \(at) bytes, payload has \(raw.count)") }
        var start = [Int]()
        at = 4 * streamCount
        for n in lengths { start.append(at); at += n }
        guard lengths[0] == 4 * sequences else { throw PayloadError("sequence-length stream has \(lengths[0]) bytes for \(sequences) sequences") }
        guard lengths[1] == 4 * records else { throw PayloadError("token stream has \(lengths[1]) bytes for \(records) records") }
        guard lengths[2] % 4 == 0 else { throw PayloadError("id table is not whole u32s") }
        var total = 0
        for i in 0..<sequences {
            let n = Int(getU32(raw, start[0] + 4 * i))
            c.sequenceLengths.append(n)
            total += n
        }
        guard total == records else { throw PayloadError("sequence lengths add up to \(total), header says \(records) records") }
        c.tokens.reserveCapacity(records)
        for i in 0..<records {
            let t = getU32(raw, start[1] + 4 * i)
            guard t < UInt32(vocab) else { throw PayloadError("token id \(t) outside the vocabulary of \(vocab)") }
            c.tokens.append(Int32(t))
        }
        let table = (0..<(lengths[2] / 4)).map { Int32(bitPattern: getU32(raw, start[2] + 4 * $0)) }
        for id in table where id < 0 || Int(id) >= vocab { throw PayloadError("id table holds \(id), outside the vocabulary") }
        var p4 = start[4], p5 = start[5]
        let end4 = start[4] + lengths[4], end5 = start[5] + lengths[5]
        switch encoding {
        case let .topK(k, step, tailStep):
            guard lengths[3] == 0, lengths[6] == 2 * records else { throw PayloadError("topk streams have the wrong sizes") }
            guard lengths[5] == k * records else { throw PayloadError("log-prob stream has \(lengths[5]) bytes for \(records) × \(k)") }
            c.ids.reserveCapacity(k * records)
            c.logprobs.reserveCapacity(k * records)
            for r in 0..<records {
                var prev: Int64 = -1
                for _ in 0..<k {
                    prev += Int64(try getLEB(raw, &p4, end4)) + 1
                    guard prev < Int64(table.count) else { throw PayloadError("record \(r): code \(prev) beyond the id table") }
                    c.ids.append(table[Int(prev)])
                    c.logprobs.append(0 - Float(Double(raw[p5]) * step))  // 0, not −0, for q = 0
                    p5 += 1
                }
                c.entryStart.append(c.ids.count)
                let q = Int(raw[start[6] + 2 * r]) | Int(raw[start[6] + 2 * r + 1]) << 8
                c.tailLogprobs.append(q == 0xFFFF ? -.infinity : 0 - Float(Double(q) * tailStep))
            }
        case let .sample(draws, _):
            guard lengths[3] == 2 * records, lengths[6] == 0 else { throw PayloadError("sample streams have the wrong sizes") }
            for r in 0..<records {
                let m = Int(raw[start[3] + 2 * r]) | Int(raw[start[3] + 2 * r + 1]) << 8
                guard m >= 1, m <= draws else { throw PayloadError("record \(r) has \(m) ids for \(draws) draws") }
                var prev: Int64 = -1, sum = 0
                for _ in 0..<m {
                    prev += Int64(try getLEB(raw, &p4, end4)) + 1
                    guard prev < Int64(table.count) else { throw PayloadError("record \(r): code \(prev) beyond the id table") }
                    c.ids.append(table[Int(prev)])
                    let n = try getLEB(raw, &p5, end5)
                    guard n >= 1, n <= UInt64(draws) else { throw PayloadError("record \(r): count \(n) outside 1…\(draws)") }
                    c.counts.append(Int32(n))
                    sum += Int(n)
                }
                guard sum == draws else { throw PayloadError("record \(r): counts add up to \(sum), not \(draws)") }
                c.entryStart.append(c.ids.count)
            }
        }
        guard p4 == end4, p5 == end5 else { throw PayloadError("streams have bytes left over") }
        // Codes were sorted within a record; give ids in ascending order, as encode() received them.
        for r in 0..<records {
            let e = c.entries(r)
            if e.count < 2 { continue }
            var idx = Array(e)
            idx.sort { c.ids[$0] < c.ids[$1] }
            let ids = idx.map { c.ids[$0] }
            if c.logprobs.isEmpty {
                let counts = idx.map { c.counts[$0] }
                for (j, i) in e.enumerated() { c.ids[i] = ids[j]; c.counts[i] = counts[j] }
            } else {
                let lps = idx.map { c.logprobs[$0] }
                for (j, i) in e.enumerated() { c.ids[i] = ids[j]; c.logprobs[i] = lps[j] }
            }
            for i in e.dropFirst() where c.ids[i] == c.ids[i - 1] { throw PayloadError("record \(r) lists id \(c.ids[i]) twice") }
        }
        return c
    }

    static func quantizeLogprob(_ lp: Float, step: Double) -> UInt8 {
        let q = (-Double(lp) / step).rounded()
        return q.isNaN ? 255 : UInt8(min(255, max(0, q)))
    }

    static func quantizeTail(_ lp: Float, step: Double) -> Int {
        if lp == -.infinity { return 0xFFFF }
        let q = (-Double(lp) / step).rounded()
        return q.isNaN ? 0xFFFE : Int(min(0xFFFE, max(0, q)))
    }
}

struct PayloadError: Error {
    let reason: String
    init(_ r: String) { reason = r }
}

@inline(__always) func putU32(_ out: inout [UInt8], _ v: UInt32) {
    out.append(UInt8(v & 0xFF)); out.append(UInt8((v >> 8) & 0xFF))
    out.append(UInt8((v >> 16) & 0xFF)); out.append(UInt8(v >> 24))
}

@inline(__always) func putU64(_ out: inout [UInt8], _ v: UInt64) {
    putU32(&out, UInt32(v & 0xFFFF_FFFF)); putU32(&out, UInt32(v >> 32))
}

@inline(__always) func getU32(_ b: [UInt8], _ at: Int) -> UInt32 {
    UInt32(b[at]) | UInt32(b[at + 1]) << 8 | UInt32(b[at + 2]) << 16 | UInt32(b[at + 3]) << 24
}

@inline(__always) func getU64(_ b: [UInt8], _ at: Int) -> UInt64 {
    UInt64(getU32(b, at)) | UInt64(getU32(b, at + 4)) << 32
}

@inline(__always) func putLEB(_ out: inout [UInt8], _ v: UInt64) {
    var v = v
    while v >= 0x80 { out.append(UInt8(v & 0x7F) | 0x80); v >>= 7 }
    out.append(UInt8(v))
}

@inline(__always) func getLEB(_ b: [UInt8], _ at: inout Int, _ end: Int) throws(PayloadError) -> UInt64 {
    var v: UInt64 = 0, shift: UInt64 = 0
    while true {
        guard at < end else { throw PayloadError("a varint runs past its stream") }
        let x = b[at]
        at += 1
        guard shift < 63 || (shift == 63 && x <= 1) else { throw PayloadError("a varint overflows 64 bits") }
        v |= UInt64(x & 0x7F) << shift
        if x < 0x80 { return v }
        shift += 7
    }
}
