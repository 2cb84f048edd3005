/// Process exit codes, from BSD `sysexits.h`, so scripts can tell a bad call from bad data.
public enum ExitCode: Int32, Sendable {
    case success = 0
    /// Something failed that is neither the user's call nor the input (a bug).
    case failure = 1
    /// The command line asked for something wrong or impossible.
    case usage = 64
    /// The input was read and found malformed or inconsistent.
    case dataError = 65
    /// The input could not be opened (missing, unreadable).
    case noInput = 66
    /// The input is valid but uses something this build does not handle.
    case unsupported = 69
    /// The operating system refused a resource (a thread, memory for a mapping).
    case osError = 71
    /// The output could not be created (it exists, or its directory is missing or read-only).
    case cannotCreate = 73
    /// An operating-system error while reading or writing.
    case ioError = 74
}

/// An error a user can act on: a message that names the file, tensor or setting, and the
/// exit code a command that fails with it ends with. Every error type a library throws
/// to the CLI conforms, so the code is decided where the error is known, never by its text.
public protocol UserFacingError: Error, CustomStringConvertible {
    var exitCode: ExitCode { get }
}
