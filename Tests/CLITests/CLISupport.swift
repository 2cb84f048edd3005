import CheckpointIO
import Foundation

/// What one run of the `ckpt` binary printed and returned.
struct CLIResult {
    let status: Int32
    let stdout: String
    let stderr: String
}

/// The `ckpt` binary beside the test bundle (or `CKPT_BIN`).
var ckptBinary: String {
    if let p = ProcessInfo.processInfo.environment["CKPT_BIN"] { return p }
    let bundle = CommandLine.arguments.first { $0.hasSuffix(".xctest") } ?? CommandLine.arguments[0]
    return FileSystem.join(FileSystem.directoryName(bundle), "ckpt")
}

/// Runs `ckpt` with `args`, optionally under a wrapper command (e.g. prlimit).
func runCkpt(_ args: [String], wrapper: [String] = []) throws -> CLIResult {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: wrapper.first ?? ckptBinary)
    p.arguments = wrapper.isEmpty ? args : Array(wrapper.dropFirst()) + [ckptBinary] + args
    // stderr goes to a file, so a chatty child can never block on a full pipe.
    let errPath = NSTemporaryDirectory() + "ckpt-stderr-\(UUID().uuidString)"
    FileManager.default.createFile(atPath: errPath, contents: nil)
    defer { try? FileManager.default.removeItem(atPath: errPath) }
    let out = Pipe()
    p.standardOutput = out
    p.standardError = FileHandle(forWritingAtPath: errPath)
    try p.run()
    let o = out.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    let errData = FileManager.default.contents(atPath: errPath) ?? Data()
    return CLIResult(status: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self), stderr: String(decoding: errData, as: UTF8.self))
}

/// Runs `ckpt` with `CKPT_CRASH_AFTER=k` (the k-th crash point ends it as `kill -9`
/// would, exit 137), or with the variable removed when `k` is nil; output discarded.
func runCkpt(_ args: [String], crashAfter k: Int?) throws -> Int32 {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: ckptBinary)
    p.arguments = args
    var env = ProcessInfo.processInfo.environment
    if let k { env["CKPT_CRASH_AFTER"] = String(k) } else { env.removeValue(forKey: "CKPT_CRASH_AFTER") }
    p.environment = env
    p.standardOutput = FileHandle.nullDevice
    p.standardError = FileHandle.nullDevice
    try p.run()
    p.waitUntilExit()
    return p.terminationStatus
}
