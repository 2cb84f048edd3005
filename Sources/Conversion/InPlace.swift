import Basics
import CheckpointIO
#if canImport(Glibc)
import Glibc
#endif

/// Rewrites a checkpoint where it lies (a new dtype for every tensor), crash-safe, with
/// at most one extra file's worth of disk. The format of the journal, its states and the
/// recovery rules are in `Formats/journal.md`.
///
/// A single file (GGUF or safetensors) is rewritten beside itself and renamed over the
/// original: rename(2) leaves the old file or the new one. A directory of shards goes
/// shard by shard under a journal, `.ckpt-journal.json`, so that after a crash the
/// next `ckpt` command can finish the rewrite: every shard is either still old (its
/// new version is made again from it), or new, recognised by the header digest the
/// journal recorded before the rename.
package enum InPlaceRewrite {
    package static let journalName = SafetensorsCheckpoint.inPlaceJournalName

    struct Journal {
        enum State: String { case old, staged, new }
        struct File {
            var name: String
            var state: State
            var digest: String?
            var staging: String?
        }
        var dtype: String
        var files: [File]
        var index: String?

        func encoded() -> [UInt8] {
            var w = JSONWriter(pretty: true)
            w.beginObject()
            w.string("ckpt-inplace-journal", key: "format")
            w.int(1, key: "version")
            w.beginObject(key: "operation")
            w.string(dtype, key: "dtype")
            w.endObject()
            w.beginArray(key: "files")
            for f in files {
                w.beginObject()
                w.string(f.name, key: "name")
                w.string(f.state.rawValue, key: "state")
                if let d = f.digest { w.string(d, key: "header_digest") }
                if let s = f.staging { w.string(s, key: "staging") }
                w.endObject()
            }
            w.endArray()
            if let index { w.string(index, key: "index") } else { w.null(key: "index") }
            w.endObject()
            return Array((w.text + "\n").utf8)
        }

        static func decode(_ bytes: [UInt8], path: String) throws -> Journal {
            func bad(_ why: String) -> CheckpointError { .malformed(path: path, reason: "in-place journal: \(why)") }
            let json: JSONValue
            do { json = try JSONParser.parse(bytes) } catch { throw bad("invalid JSON: \(error)") }
            guard json["format"]?.stringValue == "ckpt-inplace-journal", json["version"]?.nonNegativeInt == 1 else {
                throw bad("not a version 1 ckpt journal")
            }
            guard let dtype = json["operation"]?["dtype"]?.stringValue, let items = json["files"]?.arrayValue else {
                throw bad("missing operation or files")
            }
            var files: [File] = []
            for item in items {
                guard let name = item["name"]?.stringValue, !name.contains("/"),
                      let state = item["state"]?.stringValue.flatMap(State.init(rawValue:)) else { throw bad("bad file entry") }
                let staging = item["staging"]?.stringValue
                guard staging.map({ !$0.contains("/") && $0 != ".." }) ?? true else { throw bad("bad staging name") }
                files.append(File(name: name, state: state, digest: item["header_digest"]?.stringValue, staging: staging))
            }
            let index = json["index"]?.stringValue
            guard index.map({ !$0.contains("/") && $0 != ".." }) ?? true else { throw bad("bad index name") }
            return Journal(dtype: dtype, files: files, index: index)
        }
    }

    /// Rewrites `path` in place with `dtype`; returns what was done.
    package static func run(path: String, dtype: String, log: (String) -> Void = { _ in }) throws -> ConversionSummary {
        guard DTypeChoice.parse(dtype) != nil else {
            throw CheckpointError.unsupported(path: path, reason: "unknown dtype '\(dtype)'")
        }
        switch try FileSystem.kind(of: path) {
        case .missing:
            throw CheckpointError.notFound(path: path)
        case .file:
            removeStaleStaging(for: path)
            if path.hasSuffix(".safetensors") {
                let siblings = try FileSystem.list(directory: FileSystem.directoryName(path))
                if siblings.contains(where: { $0.hasSuffix(".safetensors.index.json") }) {
                    throw CheckpointError.unsupported(path: path, reason: "this file is one shard of an indexed set: rewrite the directory in place instead, so the index and every shard stay consistent")
                }
            }
            let source = try openCheckpoint(path: path)
            if source.files.count > 1 {
                return try rewriteSplitSet(source, dtype: dtype, log: log)
            }
            return try convertFile(source, output: path, dtype: dtype)
        case .directory:
            return try rewriteUnderJournal(in: path, dtype: dtype, log: log) {
                let source = try SafetensorsCheckpoint(directory: path)
                return (source.files, source.indexPath.map(FileSystem.baseName))
            }
        }
    }

    /// A GGUF split set (its splits all lie in one directory, as GGUFCheckpoint finds them),
    /// split by split under the same journal as a shard directory; each split keeps its
    /// `split.*` keys.
    private static func rewriteSplitSet(_ source: any Checkpoint, dtype: String, log: (String) -> Void) throws -> ConversionSummary {
        try rewriteUnderJournal(in: FileSystem.directoryName(source.files[0].path), dtype: dtype, log: log) { (source.files, nil) }
    }

    /// Rewrites the files of one checkpoint in `dir` one by one under a journal, so that a
    /// crash leaves every file old or new and the next command finishes the set: finishes
    /// an earlier interrupted rewrite there first, then takes the directory's lock and lists
    /// the files (and the index) with `files`.
    private static func rewriteUnderJournal(in dir: String, dtype: String, log: (String) -> Void,
                                            files: () throws -> ([MappedFile], String?)) throws -> ConversionSummary {
        if try FileSystem.kind(of: FileSystem.join(dir, journalName)) == .file {
            _ = try recoverIfNeeded(path: dir, log: log)
        }
        let lock = try DirectoryLock(dir)
        guard lock.acquired else {
            throw CheckpointError.inconsistentSet(path: dir, reason: "another ckpt process is rewriting this checkpoint")
        }
        defer { lock.release() }
        let (members, index) = try files()
        // Plan every file before the journal exists: an error that would recur (a dtype the
        // format cannot hold, a tensor without a decoder) must leave the checkpoint
        // untouched, not locked behind a journal that cannot complete.
        for f in members {
            _ = try makeConverter(memberCheckpoint(f), output: f.path, dtype: dtype)
        }
        var journal = Journal(dtype: dtype, files: members.map { Journal.File(name: FileSystem.baseName($0.path), state: .old) }, index: index)
        try write(journal, in: dir)
        CrashPoint.hit("journal created")
        return try complete(&journal, in: dir, log: log)
    }

    /// One file of a set on its own: a safetensors shard, or a GGUF split with its own keys.
    private static func memberCheckpoint(_ file: MappedFile) throws -> any Checkpoint {
        file.path.hasSuffix(".gguf") ? try GGUFCheckpoint(singleFile: file) : try SafetensorsCheckpoint(file: file)
    }

    /// Finishes an interrupted in-place rewrite of `path` (a checkpoint directory, or a
    /// file in one: a shard, the index), if a journal says there is one, and removes
    /// staging files a killed rewrite of a single file left; returns whether a rewrite
    /// was finished. Every `ckpt` command calls this on the paths it is given.
    package static func recoverIfNeeded(path: String, log: (String) -> Void = { _ in }) throws -> Bool {
        let path = FileSystem.withoutTrailingSlash(path)
        let kind = try FileSystem.kind(of: path)
        // Staging a killed writer left beside this path (a file or a directory output).
        removeStaleStaging(for: path)
        if kind == .file {
            return try recoverIfNeeded(path: FileSystem.directoryName(path), log: log)
        }
        guard kind == .directory else { return false }
        let journalPath = FileSystem.join(path, journalName)
        guard try FileSystem.kind(of: journalPath) == .file else { return false }
        let lock = try DirectoryLock(path)
        guard lock.acquired else {
            log("another ckpt process is rewriting \(path); leaving it to finish")
            return false
        }
        defer { lock.release() }
        FileSystem.removeTree(journalPath + ".tmp")
        var journal = try Journal.decode(FileSystem.readFile(journalPath, limit: 16 << 20), path: journalPath)
        log("finishing an interrupted in-place rewrite of \(path) (to \(journal.dtype))")
        do {
            _ = try complete(&journal, in: path, log: log)
        } catch {
            if journal.files.allSatisfy({ $0.state == .old }) {
                // Nothing was published: abandon the rewrite rather than lock the checkpoint.
                for f in journal.files { removeStaleStaging(for: FileSystem.join(path, f.name)) }
                FileSystem.removeTree(journalPath)
                try? FileSystem.syncDirectory(path)
                log("the interrupted rewrite cannot be finished and nothing of it was published: abandoned, the checkpoint is unchanged")
            }
            throw error
        }
        return true
    }

    private static func complete(_ journal: inout Journal, in dir: String, log: (String) -> Void) throws -> ConversionSummary {
        var summary = ConversionSummary()
        let start = monotonicSeconds()
        for i in journal.files.indices where journal.files[i].state != .new {
            let name = journal.files[i].name
            let filePath = FileSystem.join(dir, name)
            if journal.files[i].state == .staged, let recorded = journal.files[i].digest {
                if try headerDigest(filePath) == recorded {
                    // Renamed before the crash; only the journal had not caught up.
                    journal.files[i].state = .new
                } else if let staging = journal.files[i].staging, try FileSystem.kind(of: FileSystem.join(dir, staging)) == .file,
                          try headerDigest(FileSystem.join(dir, staging)) == recorded {
                    // Complete and durable (fsynced before it was journalled): publish it.
                    try FileSystem.rename(FileSystem.join(dir, staging), filePath)
                    try FileSystem.syncDirectory(dir)
                    journal.files[i].state = .new
                }
                if journal.files[i].state == .new {
                    try write(journal, in: dir)
                    continue
                }
                journal.files[i].state = .old
            }
            removeStaleStaging(for: filePath)
            let source = try memberCheckpoint(MappedFile(path: filePath))
            let s = try convertFile(source, output: filePath, dtype: journal.dtype) { writer in
                journal.files[i].state = .staged
                journal.files[i].digest = try headerDigest(writer.stagedPath)
                journal.files[i].staging = FileSystem.baseName(writer.stagedPath)
                try write(journal, in: dir)
                CrashPoint.hit("shard \(name) staged")
            }
            CrashPoint.hit("shard \(name) renamed")
            journal.files[i].state = .new
            journal.files[i].staging = nil
            try write(journal, in: dir)
            CrashPoint.hit("shard \(name) journalled")
            summary.tensors += s.tensors
            summary.bytesRead += s.bytesRead
            summary.bytesWritten += s.bytesWritten
            summary.outputFiles.append(filePath)
        }
        if let index = journal.index {
            try rewriteIndex(FileSystem.join(dir, index), shards: journal.files.map { FileSystem.join(dir, $0.name) })
            CrashPoint.hit("index rewritten")
        }
        FileSystem.removeTree(FileSystem.join(dir, journalName))
        try FileSystem.syncDirectory(dir)
        summary.seconds = monotonicSeconds() - start
        return summary
    }

    private static func makeConverter(_ source: any Checkpoint, output: String, dtype: String) throws -> Converter {
        var options = ConversionOptions(target: source.format)
        options.dtype = DTypeChoice.parse(dtype)!
        options.overwrite = true
        options.includeSideFiles = false
        options.keepSplitMetadata = true
        return try Converter(source: source, output: output, options: options)
    }

    private static func convertFile(_ source: any Checkpoint, output: String, dtype: String,
                                    beforePublish: (CheckpointWriter) throws -> Void = { _ in }) throws -> ConversionSummary {
        try makeConverter(source, output: output, dtype: dtype).run(beforePublish: beforePublish)
    }

    /// The index's `total_size` follows the new shard sizes; the weight map is unchanged.
    private static func rewriteIndex(_ path: String, shards: [String]) throws {
        let json = try JSONParser.parse(FileSystem.readFile(path, limit: 64 << 20))
        guard let pairs = json.objectValue else { throw CheckpointError.malformed(path: path, reason: "the index is not a JSON object") }
        var total = 0
        for s in shards { total += try SafetensorsCheckpoint(file: MappedFile(path: s)).tensorBytes }
        var w = JSONWriter(pretty: true)
        w.beginObject()
        for (key, value) in pairs {
            if key == "metadata", var meta = value.objectValue {
                meta.removeAll { $0.key == "total_size" }
                w.beginObject(key: "metadata")
                w.int(total, key: "total_size")
                for (k, v) in meta { w.metadata(v.metadataValue, key: k, full: true) }
                w.endObject()
            } else {
                w.metadata(value.metadataValue, key: key, full: true)
            }
        }
        w.endObject()
        try replaceFile(path, contents: Array((w.text + "\n").utf8))
    }

    private static func write(_ journal: Journal, in dir: String) throws {
        try replaceFile(FileSystem.join(dir, journalName), contents: journal.encoded())
    }

    /// Writes a small file beside `path`, fsyncs it, renames it over `path`, fsyncs the directory.
    static func replaceFile(_ path: String, contents: [UInt8]) throws {
        let temp = FileSystem.join(FileSystem.directoryName(path), ".\(FileSystem.baseName(path)).tmp")
        FileSystem.removeTree(temp)
        try FileSystem.writeNewFile(temp, contents)
        try FileSystem.rename(temp, path)
        try FileSystem.syncDirectory(FileSystem.directoryName(path))
    }

    /// An exclusive, advisory lock on a checkpoint directory (flock on `.ckpt-journal.lock`),
    /// so that two ckpt processes never rewrite or recover the same checkpoint at once.
    final class DirectoryLock {
        private var fd: Int32
        private let path: String
        let acquired: Bool

        init(_ dir: String) throws {
            path = FileSystem.join(dir, ".ckpt-journal.lock")
            fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
            if fd < 0 { throw CheckpointError.cannotCreate(path: path, operation: "create lock", errno: errno) }
            acquired = flock(fd, LOCK_EX | LOCK_NB) == 0
            if !acquired { Glibc.close(fd); fd = -1 }
        }

        func release() {
            guard fd >= 0 else { return }
            unlink(path)
            Glibc.close(fd)
            fd = -1
        }

        deinit { release() }
    }

    /// Staging files a killed writer left beside `path` (`.NAME.ckpt-staging-PID`).
    static func removeStaleStaging(for path: String) {
        let dir = FileSystem.directoryName(path)
        let prefix = ".\(FileSystem.baseName(path)).ckpt-staging-"
        for name in (try? FileSystem.list(directory: dir)) ?? [] where name.hasPrefix(prefix) {
            // Leave the staging of a writer that is still running.
            if let pid = Int32(name.dropFirst(prefix.count)), pid != getpid(), kill(pid, 0) == 0 { continue }
            FileSystem.removeTree(FileSystem.join(dir, name))
        }
    }

    /// FNV-1a 64 of a file's size and its whole safetensors header (the first 64 KiB for
    /// other files): identifies "the new version is in place" for a deterministic rewrite,
    /// since the rewrite changes every tensor's dtype entry in the header.
    static func headerDigest(_ path: String) throws -> String {
        let file = try MappedFile(path: path)
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        func mix(_ b: UInt8) { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01B3 }
        withUnsafeBytes(of: UInt64(file.size).littleEndian) { for b in $0 { mix(b) } }
        var n = min(file.size, 1 << 16)
        if file.size >= 8, path.hasSuffix(".safetensors") {
            let headerLength = file.bytes.loadUnaligned(as: UInt64.self).littleEndian
            if headerLength <= UInt64(SafetensorsFile.maxHeaderLength) { n = min(file.size, 8 + Int(headerLength)) }
        }
        if n > 0 { for b in file.bytes(in: 0..<n) { mix(b) } }
        let hex = String(h, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }
}
