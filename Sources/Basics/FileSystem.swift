import CSystem
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The few path and directory operations the readers need, on plain POSIX calls
/// (no Foundation: it costs start-up time the `inspect` budget cannot spare).
public enum FileSystem {
    public enum Kind: Sendable { case missing, file, directory }

    public static func kind(of path: String) throws -> Kind {
        var st = stat()
        if stat(path, &st) != 0 {
            let code = errno
            if code == ENOENT || code == ENOTDIR { return .missing }
            throw CheckpointError.system(path: path, operation: "stat", errno: code)
        }
        return (st.st_mode & S_IFMT) == S_IFDIR ? .directory : .file
    }

    /// Names of the entries of a directory (no `.`/`..`), sorted.
    public static func list(directory path: String) throws -> [String] {
        guard let dir = opendir(path) else {
            throw CheckpointError.system(path: path, operation: "opendir", errno: errno)
        }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw -> String in
                String(cString: raw.bindMemory(to: CChar.self).baseAddress!)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted()
    }

    public static func join(_ dir: String, _ name: String) -> String {
        if dir.isEmpty || dir == "." { return name }
        return dir.hasSuffix("/") ? dir + name : dir + "/" + name
    }

    public static func directoryName(_ path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        if slash == path.startIndex { return "/" }
        return String(path[..<slash])
    }

    public static func baseName(_ path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return path }
        return String(path[path.index(after: slash)...])
    }

    /// Reads a whole small file (config.json, an index) into memory.
    public static func readFile(_ path: String, limit: Int = 256 << 20) throws -> [UInt8] {
        let file = try MappedFile(path: path)
        if file.size > limit {
            throw CheckpointError.malformed(path: path, reason: "file is \(file.size) bytes, more than the \(limit)-byte limit for this kind of file")
        }
        return Array(file.bytes)
    }

    /// Reads a file with read(2) until end of file: for /proc files and pipes, whose
    /// size says nothing about their contents.
    public static func readStream(_ path: String, limit: Int = 1 << 20) throws -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 { throw CheckpointError.system(path: path, operation: "open", errno: errno) }
        defer { close(fd) }
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while out.count < limit {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw CheckpointError.system(path: path, operation: "read", errno: errno)
            }
            if n == 0 { break }
            out += chunk[0..<n]
        }
        return out
    }
}

extension FileSystem {
    /// Creates a directory (mode 0755); fails if it exists.
    public static func makeDirectory(_ path: String) throws {
        if mkdir(path, 0o755) != 0 {
            throw CheckpointError.cannotCreate(path: path, operation: "mkdir", errno: errno)
        }
    }

    public static func rename(_ from: String, _ to: String) throws {
        if Glibc.rename(from, to) != 0 {
            throw CheckpointError.system(path: to, operation: "rename from \(from)", errno: errno)
        }
    }

    /// fsyncs a directory so the renames and creations in it are durable.
    public static func syncDirectory(_ path: String) throws {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if fd < 0 { throw CheckpointError.system(path: path, operation: "open directory", errno: errno) }
        defer { close(fd) }
        if fsync(fd) != 0 { throw CheckpointError.system(path: path, operation: "fsync directory", errno: errno) }
    }

    /// Removes a file or a directory tree; missing paths are fine. Best effort: used on
    /// clean-up paths where the first error is already being reported.
    public static func removeTree(_ path: String) {
        var st = stat()
        guard lstat(path, &st) == 0 else { return }
        if (st.st_mode & S_IFMT) == S_IFDIR {
            for name in (try? list(directory: path)) ?? [] { removeTree(join(path, name)) }
            rmdir(path)
        } else {
            unlink(path)
        }
    }

    /// Replaces (or creates) `path` with `bytes` so that a crash leaves the old file or the
    /// new one, never a torn one: a temporary file beside it, fsync, rename, fsync of the
    /// directory.
    public static func writeAtomically(_ path: String, _ bytes: [UInt8]) throws {
        let dir = directoryName(path)
        let temp = join(dir, ".\(baseName(path)).ckpt-tmp-\(getpid())")
        unlink(temp)
        do {
            try writeNewFile(temp, bytes)
            try rename(temp, path)
        } catch {
            unlink(temp)
            throw error
        }
        try syncDirectory(dir)
    }

    /// Writes `bytes` to a new file at `path` (which must not exist) and fsyncs it.
    public static func writeNewFile(_ path: String, _ bytes: [UInt8]) throws {
        let file = try OutputFile(creating: path)
        try bytes.withUnsafeBytes { try file.write($0, at: 0) }
        try file.sync()
    }
}

/// A file being written: positional writes (tensors arrive in any order), fsync, and an
/// error that names the path and errno (ENOSPC reads "No space left on device").
public final class OutputFile {
    public let path: String
    private var fd: Int32

    /// Creates `path`, which must not exist yet.
    public init(creating path: String) throws {
        self.path = path
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        if fd < 0 { throw CheckpointError.cannotCreate(path: path, operation: "create", errno: errno) }
    }

    /// Opens an existing file for writing, to append to or truncate (a resumed build).
    public init(existing path: String) throws {
        self.path = path
        fd = open(path, O_WRONLY | O_CLOEXEC)
        if fd < 0 { throw CheckpointError.system(path: path, operation: "open for writing", errno: errno) }
    }

    deinit { if fd >= 0 { Glibc.close(fd) } }

    public func write(_ bytes: UnsafeRawBufferPointer, at offset: Int) throws {
        var done = 0
        while done < bytes.count {
            let n = pwrite(fd, bytes.baseAddress! + done, bytes.count - done, off_t(offset + done))
            if n < 0 {
                if errno == EINTR { continue }
                throw CheckpointError.system(path: path, operation: "write", errno: errno)
            }
            done += n
        }
    }

    /// Sets the file's size (the data section's holes are filled by later writes).
    public func setSize(_ size: Int) throws {
        if ftruncate(fd, off_t(size)) != 0 { throw CheckpointError.system(path: path, operation: "truncate", errno: errno) }
    }

    /// Copies `count` bytes of the file at `sourcePath` from `sourceOffset` to `offset`
    /// here, inside the kernel (copy_file_range: no pages pass through this process,
    /// and file systems that can share extents do), falling back to read/write.
    public func copy(from sourcePath: String, sourceOffset: Int, count: Int, to offset: Int) throws {
        let src = open(sourcePath, O_RDONLY | O_CLOEXEC)
        if src < 0 { throw CheckpointError.system(path: sourcePath, operation: "open", errno: errno) }
        defer { Glibc.close(src) }
        try copy(fromDescriptor: src, sourcePath: sourcePath, sourceOffset: sourceOffset, count: count, to: offset)
    }

    /// The same from a mapped file: its own descriptor (the bytes that were mapped), or
    /// its memory for an in-memory buffer.
    public func copy(from file: MappedFile, sourceOffset: Int, count: Int, to offset: Int) throws {
        if file.descriptor < 0 {
            try withExtendedLifetime(file) { try write(file.bytes(in: sourceOffset..<(sourceOffset + count)), at: offset) }
            return
        }
        try copy(fromDescriptor: file.descriptor, sourcePath: file.path, sourceOffset: sourceOffset, count: count, to: offset)
    }

    private func copy(fromDescriptor src: Int32, sourcePath: String, sourceOffset: Int, count: Int, to offset: Int) throws {
        var inOff = Int64(sourceOffset), outOff = Int64(offset)
        var left = count
        while left > 0 {
            let n = ckpt_copy_file_range(src, &inOff, fd, &outOff, left)
            if n > 0 { left -= n; continue }
            if n == 0 { throw CheckpointError.system(path: sourcePath, operation: "copy (source ended early)", errno: EIO) }
            if errno == EINTR { continue }
            if errno == EXDEV || errno == ENOSYS || errno == EOPNOTSUPP || errno == EINVAL {
                return try copyByReading(src, from: Int(inOff), count: left, to: Int(outOff), sourcePath: sourcePath)
            }
            throw CheckpointError.system(path: path, operation: "copy_file_range from \(sourcePath)", errno: errno)
        }
    }

    private func copyByReading(_ src: Int32, from: Int, count: Int, to: Int, sourcePath: String) throws {
        let chunk = 8 << 20
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: chunk, alignment: 4096)
        defer { buffer.deallocate() }
        var done = 0
        while done < count {
            let n = pread(src, buffer, min(chunk, count - done), off_t(from + done))
            if n < 0 { if errno == EINTR { continue }; throw CheckpointError.system(path: sourcePath, operation: "read", errno: errno) }
            if n == 0 { throw CheckpointError.system(path: sourcePath, operation: "read (source ended early)", errno: EIO) }
            try write(UnsafeRawBufferPointer(start: buffer, count: n), at: to + done)
            done += n
        }
    }

    public func sync() throws {
        if fsync(fd) != 0 { throw CheckpointError.system(path: path, operation: "fsync", errno: errno) }
    }

    /// Drops written pages from the page cache once they are on disk, so a long
    /// rewrite does not push everything else out of memory.
    public func dropCache() {
        _ = fdatasync(fd)
        _ = posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED)
    }

    public func close() throws {
        guard fd >= 0 else { return }
        let r = Glibc.close(fd)
        fd = -1
        if r != 0 { throw CheckpointError.system(path: path, operation: "close", errno: errno) }
    }
}

extension FileSystem {
    /// The directory a checkpoint lives in: `path` itself for a shard directory, else the
    /// directory of the file (where config.json and tokenizer files sit beside it).
    public static func checkpointDirectory(_ path: String) throws -> String {
        try kind(of: path) == .directory ? path : directoryName(path)
    }

    /// `path` without trailing slashes ("out/" → "out"; "/" stays "/").
    public static func withoutTrailingSlash(_ path: String) -> String {
        var p = path
        while p.count > 1 && p.hasSuffix("/") { p.removeLast() }
        return p
    }
}
