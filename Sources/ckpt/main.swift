import Basics
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CheckpointIO
import LogitCache
import Training
import CKernels
import Conversion
import Models
import Pruning

let version = "0.1.0"

/// Every subcommand: its spec and what runs it.
let commands: [(spec: CommandSpec, run: @Sendable (ParsedArguments) throws -> Void)] = [
    (InspectCommand.spec, InspectCommand.run),
    (ConvertCommand.spec, ConvertCommand.run),
    (TokenizeCommand.spec, TokenizeCommand.run),
    (EvalCommand.spec, EvalCommand.run),
    (GenerateCommand.spec, GenerateCommand.run),
    (ImportanceCommand.spec, ImportanceCommand.run),
    (PruneCommand.spec, PruneCommand.run),
    (LogitsCommand.spec, LogitsCommand.run),
    (DistillCommand.spec, DistillCommand.run),
]

@MainActor func mainHelp() -> String {
    var s = """
    OVERVIEW: ckpt — make big language models small on an ordinary machine.

    USAGE: ckpt <subcommand> [options]

    SUBCOMMANDS:

    """
    for c in commands { s += "  " + c.spec.name.padding(to: 12) + c.spec.summary + "\n" }
    s += """
      help        Show help for a subcommand.

    OPTIONS:
      --version   Show the version.
      --help      Show help information.

    See 'ckpt help <subcommand>' for detailed help.

    """
    return s
}

/// What the user can type to get past an error, in this command's flags: library
/// messages speak of settings, never of the CLI's spelling of them.
func hint(for error: any UserFacingError, command: CommandSpec) -> String {
    func has(_ flag: String) -> Bool { command.options.contains { $0.name == flag } }
    switch error {
    case CheckpointError.outputExists where has("--force"): return "; pass --force to replace it"
    case is MemoryPlan.Failure: return " (--memory-budget)"
    case Perplexity.Failure.tooFewTokens, Perplexity.Failure.badContext: return " (--ctx)"
    case ModelError.contextTooLong where has("--ctx"): return " (--ctx)"
    case ModelError.contextTooLong where has("--seq"): return " (--seq)"
    case ImportanceError.calibrationTooShort: return " (--samples, --seq)"
    case ConversionError.noNameMap where has("--keep-names"): return "; --keep-names writes it under its own names"
    case PruneError.needsStatistics: return " (--importance STATS)"
    case PruneError.badLayerList: return " (--drop-layers)"
    case PruneError.headsNotDivisible: return " (--heads)"
    default: return ""
    }
}

func fail(_ message: String, code: ExitCode) -> Never {
    Console.err("Error: \(message)\n")
    exit(code.rawValue)
}

@MainActor func runMain(_ argv: [String]) -> Never {
    guard let first = argv.first else {
        Console.err(mainHelp())
        exit(ExitCode.usage.rawValue)
    }
    switch first {
    case "--help", "-h":
        Console.out(mainHelp()); exit(0)
    case "--version":
        var level = ["scalar", "avx2", "avx512"][Int(ckpt_kernel_level())]
        // The AVX-512 extensions some kernels take when present (int8 training products, BF16 weights).
        let extras = [ckpt_cpu_has_avx512vnni() != 0 ? "vnni" : nil, ckpt_matmul_bf16_available() != 0 ? "bf16" : nil].compactMap { $0 }
        if Int(ckpt_kernel_level()) == Int(CKPT_LEVEL_AVX512), !extras.isEmpty { level += " + " + extras.joined(separator: ", ") }
        Console.out("ckpt \(version) (kernels: \(level))\n"); exit(0)
    case "help":
        if argv.count == 1 { Console.out(mainHelp()); exit(0) }
        guard let c = commands.first(where: { $0.spec.name == argv[1] }) else {
            fail("unknown subcommand '\(argv[1])'; see 'ckpt --help'", code: .usage)
        }
        Console.out(c.spec.helpText); exit(0)
    default:
        break
    }
    guard let command = commands.first(where: { $0.spec.name == first }) else {
        fail("unknown subcommand '\(first)'; see 'ckpt --help'", code: .usage)
    }
    let rest = Array(argv.dropFirst())
    do {
        let args = try ParsedArguments(rest, spec: command.spec)
        if args.wantsHelp {
            Console.out(command.spec.helpText); exit(0)
        }
        // Any checkpoint named on the command line whose in-place rewrite was interrupted
        // is finished first, so no command ever reads a mixture of old and new shards.
        for path in args.positionals + args.values("--model") {
            _ = try InPlaceRewrite.recoverIfNeeded(path: path) { Console.err("ckpt: \($0)\n") }
        }
        try command.run(args)
        exit(0)
    } catch let e as UsageError {
        Console.err("Error: \(e.message)\nSee 'ckpt \(e.command ?? "") --help'.\n")
        exit(ExitCode.usage.rawValue)
    } catch let e as any UserFacingError {
        fail(e.description + hint(for: e, command: command.spec), code: e.exitCode)
    } catch {
        fail("\(error)", code: .failure)
    }
}

// A closed pipe (`ckpt inspect … | head`) should end quietly, not with SIGPIPE noise.
signal(SIGPIPE, SIG_DFL)
// Past a file-size limit, let write() fail with EFBIG (reported, staging removed)
// instead of the default SIGXFSZ kill that would leave a staging file behind.
signal(SIGXFSZ, SIG_IGN)
runMain(Array(CommandLine.arguments.dropFirst()))
