#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A read-only view of a whole file's bytes, backed by `mmap(MAP_PRIVATE)`.
///
/// This is the one owner of mapped memory in the project: every tensor view borrows
/// from a `MappedFile` and never outlives it. Pages are loaded on first touch, so
/// opening a 30 GB shard costs nothing until its tensors are read; `advise` lets
/// streaming code drop pages behind it so resident memory stays bounded.
///
/// A `MappedFile` can also wrap an in-memory copy of some bytes (tests and fuzzing
/// parse mutated headers without touching the disk).
public final class MappedFile: @unchecked Sendable {
    // Sendable: the bytes are immutable after init and released only in deinit.

    /// The path the file was opened with (or a label for in-memory buffers).
    public let path: String
    /// The file size in bytes.
    public let size: Int
    private let base: UnsafeRawPointer?
    private let isMapped: Bool
    /// The open descriptor behind the mapping (-1 for in-memory buffers): kernel-side
    /// copies read the very file that was mapped, even if its path is renamed over.
    public let descriptor: Int32

    /// Maps `path` read-only. An empty file maps to an empty buffer.
    public init(path: String) throws {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 {
            let code = errno
            if code == ENOENT { throw CheckpointError.notFound(path: path) }
            throw CheckpointError.system(path: path, operation: "open", errno: code)
        }
        var st = stat()
        if fstat(fd, &st) != 0 {
            let code = errno
            close(fd)
            throw CheckpointError.system(path: path, operation: "fstat", errno: code)
        }
        if (st.st_mode & S_IFMT) == S_IFDIR {
            close(fd)
            throw CheckpointError.system(path: path, operation: "map (it is a directory)", errno: EISDIR)
        }
        self.path = path
        self.size = Int(st.st_size)
        self.isMapped = size > 0
        self.descriptor = fd
        if size == 0 {
            self.base = nil
            return
        }
        guard let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), p != MAP_FAILED else {
            let code = errno
            close(fd)
            throw CheckpointError.system(path: path, operation: "mmap", errno: code)
        }
        self.base = UnsafeRawPointer(p)
    }

    /// Wraps a private copy of `bytes`, labelled `label` in error messages.
    public init(copying bytes: some Collection<UInt8>, label: String) {
        self.path = label
        self.size = bytes.count
        self.isMapped = false
        self.descriptor = -1
        if bytes.isEmpty {
            self.base = nil
            return
        }
        let p = UnsafeMutableRawPointer.allocate(byteCount: bytes.count, alignment: 64)
        let typed = p.bindMemory(to: UInt8.self, capacity: bytes.count)
        _ = UnsafeMutableBufferPointer(start: typed, count: bytes.count).initialize(from: bytes)
        self.base = UnsafeRawPointer(p)
    }

    deinit {
        if descriptor >= 0 { close(descriptor) }
        guard let base else { return }
        if isMapped {
            munmap(UnsafeMutableRawPointer(mutating: base), size)
        } else {
            UnsafeMutableRawPointer(mutating: base).deallocate()
        }
    }

    /// All bytes of the file. Valid for the lifetime of `self`.
    public var bytes: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: base, count: size)
    }

    /// The bytes in `range`, which the caller has checked lies within the file.
    public func bytes(in range: Range<Int>) -> UnsafeRawBufferPointer {
        precondition(range.lowerBound >= 0 && range.upperBound <= size, "range outside mapped file")
        return UnsafeRawBufferPointer(rebasing: bytes[range])
    }

    /// Kernel paging hints for a byte range of the mapping.
    public enum Advice: Sendable {
        case normal, sequential, random, willNeed
        /// Drop the pages: the next read faults them in again from the file.
        case dontNeed
    }

    /// Tells the kernel how a range will be used. The range is widened to whole pages.
    /// A no-op for in-memory buffers.
    public func advise(_ advice: Advice, range: Range<Int>? = nil) throws {
        guard isMapped, let base else { return }
        let r = range ?? 0..<size
        guard !r.isEmpty else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = (max(0, r.lowerBound) / page) * page
        let end = min(size, r.upperBound)
        let flag: Int32
        switch advice {
        case .normal: flag = Int32(MADV_NORMAL)
        case .sequential: flag = Int32(MADV_SEQUENTIAL)
        case .random: flag = Int32(MADV_RANDOM)
        case .willNeed: flag = Int32(MADV_WILLNEED)
        case .dontNeed: flag = Int32(MADV_DONTNEED)
        }
        let p = UnsafeMutableRawPointer(mutating: base + start)
        if madvise(p, end - start, flag) != 0 {
            throw CheckpointError.system(path: path, operation: "madvise", errno: errno)
        }
    }
}
