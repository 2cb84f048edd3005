import Basics
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CheckpointIO
import Models

/// A wrong command line: printed as `Error: …` plus a pointer to `--help`, exit 64.
struct UsageError: Error, CustomStringConvertible {
    let message: String
    let command: String?
    var description: String { message }
}

/// What a subcommand declares: its name, a one-line summary, usage text and options.
struct CommandSpec: Sendable {
    struct Option: Sendable {
        let name: String          // "--filter"
        let valueName: String?    // "GLOB"; nil for a flag
        let help: String
        let repeatable: Bool
        init(_ name: String, value: String? = nil, repeatable: Bool = false, help: String) {
            self.name = name; self.valueName = value; self.help = help; self.repeatable = repeatable
        }
    }

    let name: String
    let summary: String
    let usage: String
    let discussion: String
    let options: [Option]
    let positionals: ClosedRange<Int>

    var helpText: String {
        var s = "OVERVIEW: \(summary)\n\nUSAGE: ckpt \(usage)\n"
        if !discussion.isEmpty { s += "\n\(discussion)\n" }
        s += "\nOPTIONS:\n"
        let all = options + [Option("--help", help: "Show help information.")]
        let width = all.map { $0.name.count + ($0.valueName.map { $0.count + 3 } ?? 0) }.max() ?? 0
        for o in all {
            let left = o.name + (o.valueName.map { " <\($0)>" } ?? "")
            s += "  " + left.padding(to: width + 2) + o.help + "\n"
        }
        return s
    }
}

/// Parsed arguments of one subcommand.
struct ParsedArguments {
    /// The subcommand parsed for, named in usage errors.
    let command: String
    var positionals: [String] = []
    /// `--help` or `-h` appeared as an option (not as an option's value, not after `--`).
    private(set) var wantsHelp = false
    private var values: [String: [String]] = [:]
    private var flags: Set<String> = []

    /// Parses `args` against `spec`. `--name=value` and `--name value` both work;
    /// `--` ends options.
    init(_ args: [String], spec: CommandSpec) throws {
        command = spec.name
        var i = 0
        var onlyPositionals = false
        while i < args.count {
            let arg = args[i]
            i += 1
            if onlyPositionals || !arg.hasPrefix("-") || arg == "-" {
                // Paths: "out/" and "out" name the same checkpoint.
                positionals.append(FileSystem.withoutTrailingSlash(arg))
                continue
            }
            if arg == "--" { onlyPositionals = true; continue }
            if arg == "--help" || arg == "-h" { wantsHelp = true; continue }
            var name = arg
            var inline: String?
            if let eq = arg.firstIndex(of: "=") {
                name = String(arg[..<eq])
                inline = String(arg[arg.index(after: eq)...])
            }
            guard let option = spec.options.first(where: { $0.name == name }) else {
                throw UsageError(message: "unknown option '\(name)' for 'ckpt \(spec.name)'", command: spec.name)
            }
            if option.valueName != nil {
                let value: String
                if let inline {
                    value = inline
                } else {
                    guard i < args.count else {
                        throw UsageError(message: "option '\(name)' needs a value <\(option.valueName!)>", command: spec.name)
                    }
                    value = args[i]
                    i += 1
                }
                if values[name] != nil && !option.repeatable {
                    throw UsageError(message: "option '\(name)' given more than once", command: spec.name)
                }
                values[name, default: []].append(value)
            } else {
                if inline != nil { throw UsageError(message: "flag '\(name)' takes no value", command: spec.name) }
                flags.insert(name)
            }
        }
        if !wantsHelp && !spec.positionals.contains(positionals.count) {
            let expected = spec.positionals.lowerBound == spec.positionals.upperBound
                ? "\(spec.positionals.lowerBound)" : "\(spec.positionals.lowerBound) to \(spec.positionals.upperBound)"
            let what = positionals.isEmpty ? "none were given" : "got \(positionals.count): \(positionals.joined(separator: " "))"
            throw UsageError(message: "'ckpt \(spec.name)' takes \(expected) argument(s); \(what)", command: spec.name)
        }
    }

    func flag(_ name: String) -> Bool { flags.contains(name) }
    func value(_ name: String) -> String? { values[name]?.last }
    func values(_ name: String) -> [String] { values[name] ?? [] }

    /// An integer option (at least `min`), or `default` when absent.
    func int(_ name: String, default d: Int, min: Int) throws -> Int {
        guard let s = value(name) else { return d }
        guard let v = Int(s), v >= min else {
            throw UsageError(message: "\(name) must be an integer ≥ \(min), got '\(s)'", command: command)
        }
        return v
    }

    /// An integer option that may be absent.
    func optionalInt(_ name: String, min: Int) throws -> Int? {
        try value(name).map { _ in try int(name, default: 0, min: min) }
    }

    /// `--threads`: at least 1, all online CPUs by default.
    func threads() throws -> Int {
        try int("--threads", default: Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))), min: 1)
    }

    /// A positive size option ("64M", "500MB", "2GiB"), or nil when absent.
    func size(_ name: String) throws -> Int? {
        try value(name).map { text in
            guard let v = ConvertCommand.parseSize(text), v > 0 else {
                throw UsageError(message: "\(name) takes a size such as 64M, 500MB or 2GiB, not '\(text)'", command: command)
            }
            return v
        }
    }

    /// A layer stream over `model` as `--max-resident` and `--f32-activations` ask: its
    /// layers' pages dropped behind use when the model is larger than the resident limit
    /// (by default half the machine's or cgroup's memory), activations rounded as
    /// llama.cpp rounds them unless f32 is asked for.
    func layerStream(_ model: DecoderModel) throws -> LayerStream {
        let cap: Int? = try size("--max-resident") ?? ResidentLimit.defaultBytes
        let stream = LayerStream(model: model, releaseLayers: cap.map { model.checkpoint.tensorBytes > $0 } ?? false)
        stream.llamaCppRounding = !flag("--f32-activations")
        return stream
    }

    /// The output path, given as `-o` or `--output`.
    var output: String? { value("-o") ?? value("--output") }
}

extension String {
    func padding(to width: Int) -> String {
        count >= width ? self : self + String(repeating: " ", count: width - count)
    }

    func leftPadding(to width: Int) -> String {
        count >= width ? self : String(repeating: " ", count: width - count) + self
    }
}

/// Standard streams. Data goes to stdout, everything for the person to stderr.
enum Console {
    /// Writes data to stdout. A reader that went away (EPIPE: `ckpt … | head`) ends the
    /// program quietly; any other failure (a full disk behind `>`) is an I/O error.
    static func out(_ s: String) {
        let code = write(fd: 1, s)
        if code == EPIPE { exit(0) }
        if code != 0 {
            _ = write(fd: 2, "Error: writing to standard output failed: \(String(cString: strerror(code)))\n")
            exit(ExitCode.ioError.rawValue)
        }
    }

    static func err(_ s: String) { _ = write(fd: 2, s) }

    /// Raw bytes to stdout (a generated token may be part of a UTF-8 sequence).
    static func outBytes(_ b: [UInt8]) {
        let code = b.withUnsafeBufferPointer { writeAll(fd: 1, $0) }
        if code == EPIPE { exit(0) }
        if code != 0 { exit(ExitCode.ioError.rawValue) }
    }

    /// Writes all of `s`, retrying short writes and EINTR; returns 0 or the errno.
    /// Output is built whole and written once, so no stdio buffering is involved.
    private static func write(fd: Int32, _ s: String) -> Int32 {
        var s = s
        return s.withUTF8 { writeAll(fd: fd, $0) }
    }

    private static func writeAll(fd: Int32, _ buf: UnsafeBufferPointer<UInt8>) -> Int32 {
        var done = 0
        while done < buf.count {
            let n = Glibc.write(fd, buf.baseAddress! + done, buf.count - done)
            if n < 0 {
                if errno == EINTR { continue }
                return errno
            }
            done += n
        }
        return 0
    }

    static var stderrIsTerminal: Bool { isatty(2) != 0 }
}

/// A one-line progress bar on stderr (only when stderr is a terminal): fraction,
/// count, byte rate and ETA, redrawn at most ten times a second.
final class ProgressBar {
    private let label: String
    private let total: Int
    private let totalBytes: Int
    private let start = monotonicSeconds()
    private var lastDraw = 0.0
    private let enabled = Console.stderrIsTerminal

    init(label: String, total: Int, totalBytes: Int) {
        self.label = label
        self.total = total
        self.totalBytes = totalBytes
    }

    func update(done: Int, bytesDone: Int, force: Bool = false, detail: String? = nil) {
        guard enabled else { return }
        let now = monotonicSeconds()
        if !force && now - lastDraw < 0.1 { return }
        lastDraw = now
        let elapsed = max(now - start, 1e-6)
        let frac = totalBytes > 0 ? Double(bytesDone) / Double(totalBytes) : (total > 0 ? Double(done) / Double(total) : 1)
        let width = 24
        let filled = min(width, Int(frac * Double(width)))
        let rate = min(Double(bytesDone) / elapsed, 1e18)
        let eta = frac > 0 ? elapsed * (1 - frac) / frac : 0
        let bar = String(repeating: "█", count: filled) + String(repeating: "░", count: width - filled)
        Console.err("\r\(label) \(bar) \(Int(frac * 100))% \(done)/\(total) \(detail ?? "\(formatBytes(Int(rate)))/s") ETA \(formatDuration(eta))\u{1B}[K")
    }

    func finish() {
        guard enabled else { return }
        Console.err("\r\u{1B}[K")
    }
}

func formatDuration(_ s: Double) -> String {
    if !s.isFinite { return "?" }
    let t = Int(s.rounded())
    if t < 60 { return "\(t)s" }
    if t < 3600 { return "\(t / 60)m\(t % 60)s" }
    return "\(t / 3600)h\((t % 3600) / 60)m"
}

/// Binary units, one decimal: `93.8 MiB`.
func formatBytes(_ n: Int) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]
    var v = Double(n)
    var u = 0
    while v >= 1024 && u < units.count - 1 { v /= 1024; u += 1 }
    return u == 0 ? "\(n) B" : formatFixed(v, digits: 1) + " " + units[u]
}

/// Decimal units for counts: `134.5 M`.
func formatCount(_ n: Int) -> String {
    let units = ["", " K", " M", " B", " T"]
    var v = Double(n)
    var u = 0
    while v >= 1000 && u < units.count - 1 { v /= 1000; u += 1 }
    return u == 0 ? "\(n)" : formatFixed(v, digits: 1) + units[u]
}

func formatFixed(_ v: Double, digits: Int) -> String {
    if !v.isFinite { return v.isNaN ? "nan" : (v > 0 ? "inf" : "-inf") }
    var scale = 1.0
    for _ in 0..<digits { scale *= 10 }
    let r = (abs(v) * scale).rounded()
    let ip = Int(r / scale)
    let fp = Int(r - Double(ip) * scale)
    var frac = String(fp)
    frac = String(repeating: "0", count: max(0, digits - frac.count)) + frac
    return (v < 0 && r != 0 ? "-" : "") + String(ip) + (digits > 0 ? "." + frac : "")
}

/// Short scientific-or-plain formatting for statistics columns.
func formatStat(_ v: Double?) -> String {
    guard let v else { return "-" }
    if v == 0 { return "0" }
    let a = abs(v)
    if a >= 1e-3 && a < 1e5 { return formatFixed(v, digits: a >= 100 ? 2 : 5) }
    var e = 0
    var m = a
    while m >= 10 { m /= 10; e += 1 }
    while m < 1 { m *= 10; e -= 1 }
    return (v < 0 ? "-" : "") + formatFixed(m, digits: 3) + "e" + (e < 0 ? "-" : "+") + (abs(e) < 10 ? "0" : "") + String(abs(e))
}
