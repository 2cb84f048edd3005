#if canImport(Glibc)
import Glibc
#endif

/// A test hook for crash safety: with `CKPT_CRASH_AFTER=k` in the environment, the k-th
/// call to `hit` ends the process at once (`_exit`, no clean-up, as `kill -9` would).
/// Tests run a rewrite with k = 1, 2, … and check that every state it leaves is
/// recovered. Without the variable, `hit` is a counter increment.
public enum CrashPoint {
    nonisolated(unsafe) private static var remaining: Int = {
        guard let v = getenv("CKPT_CRASH_AFTER"), let k = Int(String(cString: v)), k > 0 else { return -1 }
        return k
    }()

    public static func hit(_ label: String) {
        guard remaining > 0 else { return }
        remaining -= 1
        if remaining == 0 {
            if getenv("CKPT_CRASH_VERBOSE") != nil {
                let message = "ckpt: simulated crash after: \(label)\n"
                _ = message.withCString { write(2, $0, strlen($0)) }
            }
            _exit(137)
        }
    }
}
