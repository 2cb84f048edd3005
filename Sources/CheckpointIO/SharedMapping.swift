import Basics
import CSystem
#if canImport(Glibc)
import Glibc
#endif

/// A writable file mapped `MAP_SHARED`: working state (a trainer's weights, gradients
/// and optimizer moments) that lives on disk and is paged in a slice at a time.
///
/// Writes land in the page cache and reach the file when the kernel writes them back, so
/// `release` can drop a slice's pages from the process without losing anything: the
/// next touch reads them back. That is what keeps a process's resident memory to the
/// slice in use while the whole state is far larger.
public final class SharedMapping: @unchecked Sendable {
    // Sendable: callers partition the bytes between threads; the mapping itself is
    // created in init and unmapped only in deinit.

    public let path: String
    public let size: Int
    public let base: UnsafeMutableRawPointer
    private let descriptor: Int32
    private let page = Int(sysconf(Int32(_SC_PAGESIZE)))
    /// The file system cannot punch holes: zeroing writes zeros instead.
    private var punchFails = false

    /// Creates (or truncates) `path` to `size` bytes of zeros and maps it.
    public init(creating path: String, size: Int) throws {
        let fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        if fd < 0 { throw CheckpointError.cannotCreate(path: path, operation: "create", errno: errno) }
        if ftruncate(fd, off_t(max(size, 1))) != 0 {
            let code = errno
            close(fd)
            throw CheckpointError.system(path: path, operation: "truncate", errno: code)
        }
        guard let p = mmap(nil, max(size, 1), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), p != MAP_FAILED else {
            let code = errno
            close(fd)
            throw CheckpointError.system(path: path, operation: "mmap", errno: code)
        }
        self.path = path
        self.size = size
        self.base = p
        self.descriptor = fd
    }

    deinit {
        munmap(base, max(size, 1))
        close(descriptor)
    }

    /// Whole pages covering `range`, clamped to the mapping.
    private func pages(_ range: Range<Int>) -> Range<Int> {
        let start = (max(0, range.lowerBound) / page) * page
        let end = min(size, range.upperBound)
        return start..<max(start, end)
    }

    /// Drops the pages of `range` from the process (their contents stay in the file and
    /// the page cache). Widening to whole pages is safe: a shared mapping loses nothing.
    public func release(_ range: Range<Int>? = nil) {
        let r = pages(range ?? 0..<size)
        guard !r.isEmpty else { return }
        _ = madvise(base + r.lowerBound, r.count, MADV_DONTNEED)
    }

    /// Makes `range` read as zeros. A hole punched in the file does it without dirtying a
    /// page (and frees the disk blocks); where the file system cannot, zeros are written.
    public func zero(_ range: Range<Int>? = nil) {
        let r = range ?? 0..<size
        guard !r.isEmpty else { return }
        if !punchFails && ckpt_punch_hole(descriptor, Int64(r.lowerBound), Int64(r.count)) == 0 { return }
        punchFails = true
        memset(base + r.lowerBound, 0, r.count)
    }

    /// Writes dirty pages of `range` to the file and waits.
    public func sync(_ range: Range<Int>? = nil) throws {
        let r = pages(range ?? 0..<size)
        guard !r.isEmpty else { return }
        if msync(base + r.lowerBound, r.count, MS_SYNC) != 0 {
            throw CheckpointError.system(path: path, operation: "msync", errno: errno)
        }
    }
}
