import Basics
import CKernels
import CheckpointIO
#if canImport(Glibc)
import Glibc
#endif

/// Byte layout of a logit cache (Formats/logit-cache.md): header, chunks appended one
/// after another, and, once complete, an index of the chunks and a trailer pointing at it.
package enum LogitCacheLayout {
    package static let magic: [UInt8] = Array("CKPTLGC".utf8) + [1]
    package static let chunkMagic: [UInt8] = Array("CHNK".utf8)
    package static let indexMagic: [UInt8] = Array("CIDX".utf8)
    package static let trailerMagic: [UInt8] = Array("CKPTLEND".utf8)
    package static let chunkHeaderSize = 48
    package static let indexEntrySize = 32
    package static let trailerSize = 16

    static func headerBytes(_ h: LogitCacheHeader) -> [UInt8] {
        var json = Array(h.json(pretty: true).utf8) + [0x0A]
        while json.count % 8 != 0 { json.append(0x20) }
        var out = magic
        putU32(&out, UInt32(json.count))
        putU32(&out, json.withUnsafeBytes { ckpt_crc32c(0, $0.baseAddress, Int64($0.count)) })
        return out + json
    }

    /// Compresses a chunk and frames it: the 48-byte chunk header, then the payload.
    static func seal(_ c: LogitChunk, header h: LogitCacheHeader) throws -> [UInt8] {
        let raw = ChunkPayload.encode(c, encoding: h.encoding, vocab: h.vocab)
        let packed = try h.codec.compress(raw, level: h.level)
        var out = chunkMagic
        putU32(&out, 0)
        putU64(&out, UInt64(c.firstSequence))
        putU32(&out, UInt32(c.sequenceCount))
        putU32(&out, UInt32(c.records))
        putU64(&out, UInt64(raw.count))
        putU64(&out, UInt64(packed.count))
        putU64(&out, 0)
        out += packed
        let crc = out.withUnsafeBytes { ckpt_crc32c(0, $0.baseAddress! + 8, Int64($0.count - 8)) }
        out[4] = UInt8(crc & 0xFF); out[5] = UInt8((crc >> 8) & 0xFF)
        out[6] = UInt8((crc >> 16) & 0xFF); out[7] = UInt8(crc >> 24)
        return out
    }
}

/// Where one chunk sits and what it holds.
package struct ChunkInfo: Equatable, Sendable {
    package var offset: Int
    package var firstSequence: Int
    package var sequenceCount: Int
    package var records: Int
    package var rawSize: Int
    package var compressedSize: Int
    package var end: Int { offset + LogitCacheLayout.chunkHeaderSize + compressedSize }
    package var sequences: Range<Int> { firstSequence..<(firstSequence + sequenceCount) }
}

/// A cache file opened for reading: header, chunk index, and chunks decoded on demand
/// (each checked against its CRC first). Memory: the mapping is file-backed, and a chunk's
/// pages are dropped once it is decoded, so reading a cache of any size stays bounded.
package final class LogitCacheReader: @unchecked Sendable {
    package let path: String
    package let header: LogitCacheHeader
    package let chunks: [ChunkInfo]
    package let dataStart: Int
    let file: MappedFile

    /// Opens a complete cache (one with an index and trailer).
    package init(path: String) throws {
        self.path = path
        file = try MappedFile(path: path)
        let (h, start) = try Self.readHeader(file)
        header = h
        dataStart = start
        chunks = try Self.readIndex(file, dataStart: start, header: h)
    }

    package var sequenceCount: Int { chunks.reduce(0) { $0 + $1.sequenceCount } }
    package var records: Int { chunks.reduce(0) { $0 + $1.records } }
    package var fileSize: Int { file.size }

    static func readHeader(_ file: MappedFile) throws -> (LogitCacheHeader, Int) {
        let b = file.bytes
        let m = LogitCacheLayout.magic
        guard b.count >= 16, Array(b[0..<7]) == Array(m[0..<7]) else {
            throw LogitCacheError.malformed(path: file.path, reason: "not a ckpt logit cache (no CKPTLGC magic)")
        }
        guard b[7] == m[7] else { throw LogitCacheError.malformed(path: file.path, reason: "format version \(b[7]) is not supported (this ckpt reads 1)") }
        let n = Int(UInt32(b[8]) | UInt32(b[9]) << 8 | UInt32(b[10]) << 16 | UInt32(b[11]) << 24)
        let crc = UInt32(b[12]) | UInt32(b[13]) << 8 | UInt32(b[14]) << 16 | UInt32(b[15]) << 24
        guard n % 8 == 0, 16 + n <= b.count else { throw LogitCacheError.malformed(path: file.path, reason: "header length \(n) is wrong for a \(b.count)-byte file") }
        guard ckpt_crc32c(0, b.baseAddress! + 16, Int64(n)) == crc else {
            throw LogitCacheError.malformed(path: file.path, reason: "header checksum mismatch (the file is corrupt)")
        }
        let h = try LogitCacheHeader.parse(Array(b[16..<(16 + n)]), path: file.path)
        return (h, 16 + n)
    }

    static func parseChunkHeader(_ b: UnsafeRawBufferPointer, at o: Int, path: String, index: Int) throws -> ChunkInfo {
        func u32(_ i: Int) -> Int { Int(UInt32(b[o + i]) | UInt32(b[o + i + 1]) << 8 | UInt32(b[o + i + 2]) << 16 | UInt32(b[o + i + 3]) << 24) }
        func u64(_ i: Int) -> Int? { Int(exactly: UInt64(u32(i)) | UInt64(u32(i + 4)) << 32) }
        guard o + LogitCacheLayout.chunkHeaderSize <= b.count else {
            throw LogitCacheError.corruptChunk(path: path, chunk: index, offset: o, reason: "file ends inside the chunk header")
        }
        guard Array(b[o..<(o + 4)]) == LogitCacheLayout.chunkMagic else {
            throw LogitCacheError.corruptChunk(path: path, chunk: index, offset: o, reason: "no CHNK magic")
        }
        guard let first = u64(8), first < 1 << 48, let raw = u64(24), let packed = u64(32), u64(40) == 0 else {
            throw LogitCacheError.corruptChunk(path: path, chunk: index, offset: o, reason: "chunk header fields out of range")
        }
        let info = ChunkInfo(offset: o, firstSequence: first, sequenceCount: u32(16), records: u32(20), rawSize: raw, compressedSize: packed)
        guard packed <= b.count - o - LogitCacheLayout.chunkHeaderSize else {
            throw LogitCacheError.corruptChunk(path: path, chunk: index, offset: o, reason: "chunk of \(packed) bytes runs past the end of the file")
        }
        let stored = UInt32(u32(4))
        let crc = ckpt_crc32c(0, b.baseAddress! + o + 8, Int64(LogitCacheLayout.chunkHeaderSize - 8 + packed))
        guard crc == stored else {
            throw LogitCacheError.corruptChunk(path: path, chunk: index, offset: o, reason: String(format8: crc, stored))
        }
        return info
    }

    /// Walks the chunks from `dataStart`, checking each checksum. Returns the good chunks
    /// and where the scan stopped; `problem` says why it stopped before `limit`.
    static func scan(_ file: MappedFile, dataStart: Int, limit: Int, header h: LogitCacheHeader)
        -> (chunks: [ChunkInfo], end: Int, problem: LogitCacheError?) {
        let b = file.bytes
        var out: [ChunkInfo] = []
        var at = dataStart
        var nextSequence = h.sequences.lowerBound
        while at < limit {
            do {
                let c = try parseChunkHeader(b, at: at, path: file.path, index: out.count)
                guard c.end <= limit else {
                    throw LogitCacheError.corruptChunk(path: file.path, chunk: out.count, offset: at, reason: "chunk runs past the data section")
                }
                guard c.firstSequence == nextSequence, c.sequenceCount > 0, c.sequences.upperBound <= h.sequences.upperBound else {
                    throw LogitCacheError.corruptChunk(path: file.path, chunk: out.count, offset: at,
                                                       reason: "holds sequences \(c.firstSequence)..<\(c.sequences.upperBound), expected to start at \(nextSequence)")
                }
                out.append(c)
                nextSequence = c.sequences.upperBound
                at = c.end
            } catch {
                return (out, at, error as? LogitCacheError)
            }
        }
        return (out, at, nil)
    }

    static func readIndex(_ file: MappedFile, dataStart: Int, header h: LogitCacheHeader) throws -> [ChunkInfo] {
        let b = file.bytes, path = file.path
        let t = LogitCacheLayout.trailerSize
        guard b.count >= dataStart + t, Array(b[(b.count - 8)..<b.count]) == LogitCacheLayout.trailerMagic else {
            throw LogitCacheError.incomplete(path: path, reason: "no index at the end: the build did not finish (run the same `ckpt logits build` again to resume it)")
        }
        var at = b.count - t
        let rawOffset = getU64(Array(b[at..<(at + 8)]), 0)
        guard rawOffset <= UInt64(at) else { throw LogitCacheError.malformed(path: path, reason: "index offset \(rawOffset) is out of range") }
        let indexOffset = Int(rawOffset)
        guard indexOffset >= dataStart, indexOffset + 16 <= at else { throw LogitCacheError.malformed(path: path, reason: "index offset \(indexOffset) is out of range") }
        at = indexOffset
        let head = Array(b[at..<(at + 16)])
        guard Array(head[0..<4]) == LogitCacheLayout.indexMagic else { throw LogitCacheError.malformed(path: path, reason: "no CIDX magic at the index offset") }
        let space = b.count - t - indexOffset - 16
        guard getU64(head, 8) <= UInt64(space / LogitCacheLayout.indexEntrySize) else {
            throw LogitCacheError.malformed(path: path, reason: "index of \(getU64(head, 8)) chunks does not fit its space")
        }
        let count = Int(getU64(head, 8))
        let size = count * LogitCacheLayout.indexEntrySize
        guard size == space else { throw LogitCacheError.malformed(path: path, reason: "index of \(count) chunks does not fit its space") }
        guard ckpt_crc32c(0, b.baseAddress! + at + 8, Int64(8 + size)) == getU32(head, 4) else {
            throw LogitCacheError.malformed(path: path, reason: "index checksum mismatch (the file is corrupt)")
        }
        let body = Array(b[(at + 16)..<(at + 16 + size)])
        var out: [ChunkInfo] = []
        var expect = dataStart, nextSequence = h.sequences.lowerBound
        for i in 0..<count {
            let e = i * LogitCacheLayout.indexEntrySize
            // Checked against what the previous entry implies before any arithmetic on them.
            guard getU64(body, e) == UInt64(expect), getU64(body, e + 8) == UInt64(nextSequence),
                  getU64(body, e + 24) <= UInt64(indexOffset - expect) else {
                throw LogitCacheError.malformed(path: path, reason: "index entry \(i) is inconsistent with the chunks before it")
            }
            let c = ChunkInfo(offset: expect, firstSequence: nextSequence, sequenceCount: Int(getU32(body, e + 16)),
                              records: Int(getU32(body, e + 20)), rawSize: -1, compressedSize: Int(getU64(body, e + 24)))
            guard c.end <= indexOffset, c.sequenceCount > 0 else {
                throw LogitCacheError.malformed(path: path, reason: "index entry \(i) is inconsistent with the chunks before it")
            }
            expect = c.end
            nextSequence = c.sequences.upperBound
            out.append(c)
        }
        guard expect == indexOffset else { throw LogitCacheError.malformed(path: path, reason: "chunks end at \(expect), index starts at \(indexOffset)") }
        guard nextSequence == h.sequences.upperBound else {
            throw LogitCacheError.malformed(path: path, reason: "chunks hold sequences up to \(nextSequence), header says \(h.sequences.upperBound)")
        }
        return out
    }

    /// The chunk holding sequence `s`.
    package func chunkIndex(forSequence s: Int) -> Int? {
        var lo = 0, hi = chunks.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if chunks[mid].sequences.upperBound <= s { lo = mid + 1 } else { hi = mid }
        }
        return lo < chunks.count && chunks[lo].sequences.contains(s) ? lo : nil
    }

    /// The uncompressed payload size of chunk `i`, from its header (not checked).
    package func rawSize(ofChunk i: Int) throws -> Int {
        let o = chunks[i].offset + 24
        return Int(getU64(Array(file.bytes[o..<(o + 8)]), 0))
    }

    /// Checks and decodes chunk `i`.
    package func chunk(_ i: Int) throws -> LogitChunk {
        let entry = chunks[i]
        let b = file.bytes
        let info = try Self.parseChunkHeader(b, at: entry.offset, path: path, index: i)
        guard info.firstSequence == entry.firstSequence, info.sequenceCount == entry.sequenceCount, info.records == entry.records,
              info.compressedSize == entry.compressedSize else {
            throw LogitCacheError.corruptChunk(path: path, chunk: i, offset: entry.offset, reason: "chunk header disagrees with the index")
        }
        let start = entry.offset + LogitCacheLayout.chunkHeaderSize
        let packed = UnsafeRawBufferPointer(rebasing: b[start..<(start + info.compressedSize)])
        guard info.rawSize <= 64 * max(info.records, 1) * (header.encoding.maxEntries + 4) + 1 << 20 else {
            throw LogitCacheError.corruptChunk(path: path, chunk: i, offset: entry.offset, reason: "raw size \(info.rawSize) is implausible")
        }
        let raw: [UInt8]
        do { raw = try header.codec.decompress(packed, originalSize: info.rawSize) } catch {
            throw LogitCacheError.corruptChunk(path: path, chunk: i, offset: entry.offset, reason: "\(error)")
        }
        try? file.advise(.dontNeed, range: entry.offset..<entry.end)
        do {
            return try ChunkPayload.decode(raw, firstSequence: info.firstSequence, sequences: info.sequenceCount, records: info.records,
                                           encoding: header.encoding, vocab: header.vocab)
        } catch {
            throw LogitCacheError.corruptChunk(path: path, chunk: i, offset: entry.offset, reason: error.reason)
        }
    }
}

extension String {
    init(format8 computed: UInt32, _ stored: UInt32) {
        func hex(_ v: UInt32) -> String {
            let s = String(v, radix: 16)
            return String(repeating: "0", count: 8 - s.count) + s
        }
        self = "checksum mismatch (CRC-32C \(hex(computed)), stored \(hex(stored))): the chunk is corrupt"
    }
}

/// Appends chunks to a cache file and finishes it with the index. Every chunk is fsynced
/// before the next begins, so a crash loses at most the chunk being written.
package final class LogitCacheAppender {
    package let path: String
    package let header: LogitCacheHeader
    package private(set) var chunks: [ChunkInfo]
    private let out: OutputFile
    private var end: Int

    /// Starts a new file at `path` (which must not exist).
    package init(creating path: String, header: LogitCacheHeader) throws {
        self.path = path
        self.header = header
        let file = try OutputFile(creating: path)
        let bytes = LogitCacheLayout.headerBytes(header)
        try bytes.withUnsafeBytes { try file.write($0, at: 0) }
        try file.sync()
        out = file
        end = bytes.count
        chunks = []
    }

    /// Reopens an unfinished file: keeps its good chunks, cuts whatever follows the last.
    /// Throws `mismatch` when it was started with other settings.
    package init(resuming path: String, header: LogitCacheHeader) throws {
        self.path = path
        self.header = header
        let file = try MappedFile(path: path)
        let (have, start) = try LogitCacheReader.readHeader(file)
        guard have == header else {
            throw LogitCacheError.mismatch(path: path, other: "this build", reason: have.firstDifference(from: header) ?? "sequences or shard differ")
        }
        let scan = LogitCacheReader.scan(file, dataStart: start, limit: file.size, header: header)
        chunks = scan.chunks
        end = scan.end
        out = try OutputFile(existing: path)
        try out.setSize(end)
        try out.sync()
    }

    package var sequencesDone: Int { chunks.last?.sequences.upperBound ?? header.sequences.lowerBound }

    /// Appends a sealed chunk (from `LogitCacheLayout.seal`) and makes it durable.
    package func append(sealed bytes: [UInt8], info: ChunkInfo) throws {
        try bytes.withUnsafeBytes { try out.write($0, at: end) }
        try out.sync()
        var c = info
        c.offset = end
        chunks.append(c)
        end += bytes.count
        CrashPoint.hit("logits.chunk")
    }

    /// Writes the index and trailer; the file is complete after this.
    package func finish() throws {
        var idx = LogitCacheLayout.indexMagic
        putU32(&idx, 0)
        putU64(&idx, UInt64(chunks.count))
        for c in chunks {
            putU64(&idx, UInt64(c.offset))
            putU64(&idx, UInt64(c.firstSequence))
            putU32(&idx, UInt32(c.sequenceCount))
            putU32(&idx, UInt32(c.records))
            putU64(&idx, UInt64(c.compressedSize))
        }
        let crc = idx.withUnsafeBytes { ckpt_crc32c(0, $0.baseAddress! + 8, Int64($0.count - 8)) }
        idx[4] = UInt8(crc & 0xFF); idx[5] = UInt8((crc >> 8) & 0xFF); idx[6] = UInt8((crc >> 16) & 0xFF); idx[7] = UInt8(crc >> 24)
        putU64(&idx, UInt64(end))
        idx += LogitCacheLayout.trailerMagic
        try idx.withUnsafeBytes { try out.write($0, at: end) }
        end += idx.count
        try out.setSize(end)
        try out.sync()
        try out.close()
    }
}
