#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A mutex and its condition variable, each in a heap allocation that never moves.
/// pthread objects must not be moved or copied once initialised; a stored
/// `pthread_mutex_t` property passed with `&` gives no such guarantee, this does.
public final class Monitor: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)

    public init() {
        mutex.initialize(to: pthread_mutex_t())
        condition.initialize(to: pthread_cond_t())
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(condition, nil)
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        condition.deallocate()
        mutex.deallocate()
    }

    /// Takes and releases the lock, for the rare loop that must let go of it midway
    /// (a worker running a job unlocked); otherwise use `withLock`.
    public func lock() { pthread_mutex_lock(mutex) }
    public func unlock() { pthread_mutex_unlock(mutex) }

    /// Runs `body` holding the lock; `body` may `wait()`.
    public func withLock<T>(_ body: () throws -> T) rethrows -> T {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body()
    }

    /// Releases the lock until a `broadcast()`, then takes it again. Call only holding
    /// the lock, in a loop over the condition waited for (wake-ups may be spurious).
    public func wait() { pthread_cond_wait(condition, mutex) }

    /// Wakes every waiter. Call inside `withLock`, after changing the state they wait on.
    public func broadcast() { pthread_cond_broadcast(condition) }
}

/// The system would not start a thread (a process or memory limit).
public struct ThreadStartError: UserFacingError, Sendable {
    public let description: String
    public var exitCode: ExitCode { .osError }

    init(purpose: String, code: Int32) {
        description = "could not start a thread for \(purpose): \(String(cString: strerror(code))) (errno \(code))"
    }
}

/// A thread started to run one closure, to be joined once.
public struct WorkerThread: @unchecked Sendable {
    private let handle: pthread_t

    /// Starts `body` on a new thread, or throws when the system refuses one.
    public init(purpose: String, _ body: @escaping @Sendable () -> Void) throws {
        final class Box { let body: @Sendable () -> Void; init(_ b: @escaping @Sendable () -> Void) { body = b } }
        let box = Unmanaged.passRetained(Box(body)).toOpaque()
        var t = pthread_t()
        let rc = pthread_create(&t, nil, { arg in
            Unmanaged<Box>.fromOpaque(arg!).takeRetainedValue().body()
            return nil
        }, box)
        if rc != 0 {
            Unmanaged<Box>.fromOpaque(box).release()
            throw ThreadStartError(purpose: purpose, code: rc)
        }
        handle = t
    }

    /// Waits for the thread to end.
    public func join() { pthread_join(handle, nil) }
}
