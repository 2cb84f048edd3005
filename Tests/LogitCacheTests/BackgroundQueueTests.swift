import Basics
import LogitCache
import Synchronization
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// The writer thread behind the teacher pass: jobs run in order on one thread while the
/// producer goes on, the queue holds at most `capacity`, and the first error ends it.
final class BackgroundQueueTests: XCTestCase {
    struct Boom: Error, Equatable { let job: Int }

    func testJobsRunInOrderAndTheProducerIsHeldBack() throws {
        let queue = try BackgroundQueue(capacity: 2)
        let done = Mutex<[Int]>([])
        let waiting = Mutex(0), mostWaiting = Mutex(0)
        for i in 0..<200 {
            waiting.withLock { $0 += 1; let w = $0; mostWaiting.withLock { $0 = max($0, w) } }
            try queue.submit {
                waiting.withLock { $0 -= 1 }
                if i % 50 == 0 { usleep(2000) }  // a slow write: the producer must wait, not pile up
                done.withLock { $0.append(i) }
            }
        }
        try queue.finish()
        XCTAssertEqual(done.withLock { $0 }, Array(0..<200))
        // Two queued and one running at most (plus the one being submitted).
        XCTAssertLessThanOrEqual(mostWaiting.withLock { $0 }, 4)
    }

    func testFirstErrorStopsTheQueueAndIsRethrown() throws {
        let queue = try BackgroundQueue(capacity: 1)
        let ran = Mutex<[Int]>([])
        var thrownBySubmit: (any Error)?
        for i in 0..<50 {
            do {
                try queue.submit {
                    ran.withLock { $0.append(i) }
                    if i == 3 { throw Boom(job: 3) }
                    if i == 7 { throw Boom(job: 7) }
                }
            } catch {
                thrownBySubmit = error
                break
            }
        }
        XCTAssertThrowsError(try queue.finish()) { XCTAssertEqual($0 as? Boom, Boom(job: 3)) }
        if let thrownBySubmit { XCTAssertEqual(thrownBySubmit as? Boom, Boom(job: 3)) }
        // Nothing after the failing job runs: its output would follow a hole.
        XCTAssertEqual(ran.withLock { $0 }, [0, 1, 2, 3])
    }

    func testMonitorHandsOffBetweenThreads() throws {
        let monitor = Monitor()
        let state = UnsafeMutablePointer<Int>.allocate(capacity: 1)
        defer { state.deallocate() }
        state.pointee = 0
        let box = UncheckedBox(state)
        let thread = try WorkerThread(purpose: "test") {
            for k in stride(from: 1, to: 2000, by: 2) {
                monitor.withLock {
                    while box.pointer.pointee != k - 1 { monitor.wait() }
                    box.pointer.pointee = k
                    monitor.broadcast()
                }
            }
        }
        for k in stride(from: 2, through: 2000, by: 2) {
            monitor.withLock {
                while state.pointee != k - 1 { monitor.wait() }
                state.pointee = k
                monitor.broadcast()
            }
        }
        thread.join()
        XCTAssertEqual(state.pointee, 2000)
    }
}

private struct UncheckedBox: @unchecked Sendable {
    let pointer: UnsafeMutablePointer<Int>
    init(_ p: UnsafeMutablePointer<Int>) { pointer = p }
}
