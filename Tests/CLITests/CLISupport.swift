import Basics
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

/// A PNG as `Drawing` writes it (RGB, 8 bits, filter 0 rows, stored deflate blocks),
/// decoded independently: every chunk's CRC-32 computed bit by bit, the zlib stream's
/// Adler-32 checked. Nil when anything does not check out.
func decodeStoredPNG(_ d: [UInt8]) -> (width: Int, height: Int, rgb: [UInt8])? {
    func be(_ i: Int) -> Int { Int(d[i]) << 24 | Int(d[i + 1]) << 16 | Int(d[i + 2]) << 8 | Int(d[i + 3]) }
    func crc(_ bytes: ArraySlice<UInt8>) -> UInt32 {
        var c: UInt32 = 0xFFFF_FFFF
        for b in bytes {
            c ^= UInt32(b)
            for _ in 0..<8 { c = (c >> 1) ^ (c & 1 == 1 ? 0xEDB8_8320 : 0) }
        }
        return ~c
    }
    guard d.count > 8, Array(d[0..<8]) == [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] else { return nil }
    var at = 8, width = 0, height = 0, z: [UInt8] = []
    while at + 12 <= d.count {
        let n = be(at), type = String(decoding: d[(at + 4)..<(at + 8)], as: UTF8.self)
        guard at + 12 + n <= d.count, crc(d[(at + 4)..<(at + 8 + n)]) == UInt32(be(at + 8 + n)) else { return nil }
        if type == "IHDR" { width = be(at + 8); height = be(at + 12); guard d[at + 16] == 8, d[at + 17] == 2 else { return nil } }
        if type == "IDAT" { z += d[(at + 8)..<(at + 8 + n)] }
        at += 12 + n
    }
    guard z.count > 6, z[0] == 0x78 else { return nil }
    var raw: [UInt8] = [], p = 2
    while true {
        let final = z[p] & 1, n = Int(z[p + 1]) | Int(z[p + 2]) << 8
        guard z[p] & 6 == 0, n == Int(~(UInt16(z[p + 3]) | UInt16(z[p + 4]) << 8)) else { return nil }
        raw += z[(p + 5)..<(p + 5 + n)]
        p += 5 + n
        if final == 1 { break }
    }
    var a: UInt32 = 1, b: UInt32 = 0
    for x in raw { a = (a + UInt32(x)) % 65521; b = (b + a) % 65521 }
    let hi = UInt32(z[p]) << 24 | UInt32(z[p + 1]) << 16
    let stored = hi | UInt32(z[p + 2]) << 8 | UInt32(z[p + 3])
    guard stored == b << 16 | a, raw.count == height * (1 + 3 * width) else { return nil }
    var rgb: [UInt8] = []
    let stride = 1 + 3 * width
    for y in 0..<height {
        let row = y * stride
        guard raw[row] == 0 else { return nil }
        rgb += raw[(row + 1)..<(row + stride)]
    }
    return (width, height, rgb)
}
