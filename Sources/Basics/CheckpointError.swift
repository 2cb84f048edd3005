#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Everything that can go wrong while opening or reading a checkpoint, with enough
/// context (file, tensor or key, byte offset) for a user to act on it.
public enum CheckpointError: UserFacingError, Sendable, Equatable {
    /// A system call failed (open, fstat, mmap, read, …).
    case system(path: String, operation: String, errno: Int32)
    /// The path does not exist.
    case notFound(path: String)
    /// The file is not a format we read (wrong magic, not JSON, …).
    case unrecognizedFormat(path: String, reason: String)
    /// The file is structurally broken: truncated, bad lengths, bad JSON, bad counts.
    case malformed(path: String, reason: String)
    /// One tensor's description is wrong (shape, dtype, range).
    case badTensor(path: String, tensor: String, reason: String)
    /// One metadata entry is wrong.
    case badMetadata(path: String, key: String, reason: String)
    /// Valid, but uses something this build does not handle.
    case unsupported(path: String, reason: String)
    /// A set of files (shards, GGUF splits, index) does not fit together.
    case inconsistentSet(path: String, reason: String)
    /// The output exists and replacing it was not asked for.
    case outputExists(path: String)
    /// The output could not be made: its directory is missing or read-only, a create failed.
    case cannotCreate(path: String, operation: String, errno: Int32)

    public var description: String {
        switch self {
        case let .system(path, operation, code):
            return "\(path): \(operation) failed: \(String(cString: strerror(code))) (errno \(code))"
        case let .notFound(path):
            return "\(path): no such file or directory"
        case let .unrecognizedFormat(path, reason):
            return "\(path): not a checkpoint we can read: \(reason)"
        case let .malformed(path, reason):
            return "\(path): malformed file: \(reason)"
        case let .badTensor(path, tensor, reason):
            return "\(path): tensor '\(tensor)': \(reason)"
        case let .badMetadata(path, key, reason):
            return "\(path): metadata key '\(key)': \(reason)"
        case let .unsupported(path, reason):
            return "\(path): unsupported: \(reason)"
        case let .inconsistentSet(path, reason):
            return "\(path): \(reason)"
        case let .outputExists(path):
            return "\(path): the output exists and is left as it is"
        case let .cannotCreate(path, operation, code):
            return "\(path): \(operation) failed: \(String(cString: strerror(code))) (errno \(code))"
        }
    }

    public var exitCode: ExitCode {
        switch self {
        case .notFound: return .noInput
        case .system: return isMissingInput ? .noInput : .ioError
        case .unsupported: return .unsupported
        case .outputExists, .cannotCreate: return .cannotCreate
        case .unrecognizedFormat, .malformed, .badTensor, .badMetadata, .inconsistentSet: return .dataError
        }
    }

    /// The input could not be found or read at all, as opposed to read and found wrong.
    public var isMissingInput: Bool {
        switch self {
        case .notFound: return true
        case let .system(_, _, code): return code == ENOENT || code == EACCES || code == EISDIR
        default: return false
        }
    }
}
