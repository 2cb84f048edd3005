import Basics
import CheckpointIO
#if canImport(Glibc)
import Glibc
#endif

/// Whole-file operations on caches: integrity checks and merging shards.
package enum LogitCacheTools {
    /// What `verify` found without a teacher.
    package struct Integrity: Sendable {
        package var chunks: Int
        package var sequences: Int
        package var records: Int
        package var entries: Int
        package var rawBytes: Int
        package var fileBytes: Int
        /// The first problem found, or nil when every check passed.
        package var problem: String?
    }

    /// Checks the header, the index against a walk of the chunks, every chunk's checksum,
    /// and decodes every chunk (which checks the payload's structure).
    package static func checkIntegrity(path: String) throws -> Integrity {
        let file = try MappedFile(path: path)
        let (header, start) = try LogitCacheReader.readHeader(file)
        var report = Integrity(chunks: 0, sequences: 0, records: 0, entries: 0, rawBytes: 0, fileBytes: file.size, problem: nil)
        let reader: LogitCacheReader
        do { reader = try LogitCacheReader(path: path) } catch {
            // Say how far the chunks are good, which is what a resumed build would keep.
            let scan = LogitCacheReader.scan(file, dataStart: start, limit: file.size, header: header)
            report.chunks = scan.chunks.count
            report.sequences = scan.chunks.reduce(0) { $0 + $1.sequenceCount }
            report.problem = "\(error)" + (scan.problem.map { "; walking the chunks: \($0)" } ?? "; \(scan.chunks.count) chunks before it are intact")
            return report
        }
        let limit = reader.chunks.last?.end ?? start
        let scan = LogitCacheReader.scan(file, dataStart: start, limit: limit, header: header)
        if let p = scan.problem { report.problem = "\(p)"; return report }
        guard scan.chunks.map(\.offset) == reader.chunks.map(\.offset) else {
            report.problem = "the index lists other chunks than the file holds"
            return report
        }
        for (i, info) in scan.chunks.enumerated() {
            do {
                let c = try reader.chunk(i)
                report.chunks += 1
                report.sequences += c.sequenceCount
                report.records += c.records
                report.entries += c.ids.count
                report.rawBytes += info.rawSize
            } catch {
                report.problem = "\(error)"
                return report
            }
        }
        if report.sequences != header.sequences.count {
            report.problem = "holds \(report.sequences) sequences, header promises \(header.sequences.count)"
        }
        return report
    }

    /// Concatenates caches of one teacher, text and settings (shards built apart) into
    /// `output`. Chunks are copied as they are, after their checksums are checked.
    package static func merge(_ inputs: [String], output: String) throws -> LogitCacheHeader {
        guard !inputs.isEmpty else { throw LogitCacheError.badSettings("merge needs at least one input cache") }
        var readers = try inputs.map { try LogitCacheReader(path: $0) }
        let key = readers[0].header.compatibilityKey
        for r in readers.dropFirst() where r.header.compatibilityKey != key {
            throw LogitCacheError.mismatch(path: r.path, other: readers[0].path,
                                           reason: r.header.firstDifference(from: readers[0].header) ?? "headers differ")
        }
        // A shard with fewer chunks than shards can be empty; it adds nothing.
        let nonEmpty = readers.filter { !$0.header.sequences.isEmpty }
        if !nonEmpty.isEmpty { readers = nonEmpty }
        readers.sort { $0.header.sequences.lowerBound < $1.header.sequences.lowerBound }
        for (a, b) in zip(readers, readers.dropFirst()) where a.header.sequences.upperBound != b.header.sequences.lowerBound {
            let what = a.header.sequences.upperBound > b.header.sequences.lowerBound ? "overlap" : "leave a gap"
            throw LogitCacheError.mismatch(path: b.path, other: a.path,
                                           reason: "sequences \(a.header.sequences) and \(b.header.sequences) \(what)")
        }
        var h = readers[0].header
        h.sequences = readers.first!.header.sequences.lowerBound..<readers.last!.header.sequences.upperBound
        h.shard = nil
        if try FileSystem.kind(of: output) != .missing { throw LogitCacheError.exists(path: output) }
        let dir = FileSystem.directoryName(output)
        let temp = FileSystem.join(dir, ".\(FileSystem.baseName(output)).ckpt-tmp-\(getpid())")
        unlink(temp)
        do {
            let out = try LogitCacheAppender(creating: temp, header: h)
            for r in readers {
                for (i, c) in r.chunks.enumerated() {
                    let info = try LogitCacheReader.parseChunkHeader(r.file.bytes, at: c.offset, path: r.path, index: i)
                    let bytes = Array(r.file.bytes[c.offset..<c.end])
                    try out.append(sealed: bytes, info: info)
                    try? r.file.advise(.dontNeed, range: c.offset..<c.end)
                }
            }
            try out.finish()
            try FileSystem.rename(temp, output)
        } catch {
            unlink(temp)
            throw error
        }
        try FileSystem.syncDirectory(dir)
        return h
    }
}
