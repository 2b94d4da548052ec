import Foundation
import Logging
import Metrics

/// The access log (one info line per request) written by a thread of its own from a bounded queue, so a
/// slow or blocked log sink (a full pipe on stdout, a stalled collector) never holds up an answer
/// (decision 0024). When the queue is full a line is dropped and counted (`facade_access_log_dropped_total`);
/// once the writer gets through again it logs one warning with how many were lost.
///
/// The writer is woken by the first line queued and then gathers lines for up to `gather` (or until
/// `batch` wait) before writing them, so under load it wakes a few times a second, not once per request.
// @unchecked Sendable: the queue and the counters are touched only under `condition`'s lock.
final class AccessLog: @unchecked Sendable {
    struct Entry: Sendable {
        var method: String
        var route: String
        var status: Int
        var durationMilliseconds: Double
        var correlationID: String?
    }

    /// Lines waiting to be written, at most (about 100 bytes each).
    static let defaultCapacity = 8_192
    /// How long the writer gathers lines after the first one before writing them.
    static let gather: Duration = .milliseconds(50)
    /// Lines that end the gathering at once.
    static let batch = 256

    private let logger: Logger
    private let capacity: Int
    private let enabled: Bool
    private let droppedCounter = Counter(label: "facade_access_log_dropped_total")
    private let condition = NSCondition()
    private var queue: [Entry] = []
    private var writerIdle = false
    private var stopping = false
    private var finished = false
    private var dropped = 0
    private var droppedTotal = 0

    init(logger: Logger, capacity: Int = AccessLog.defaultCapacity) {
        self.logger = logger
        self.capacity = max(1, capacity)
        enabled = logger.logLevel <= .info
        queue.reserveCapacity(min(self.capacity, 1_024))
        guard enabled else {
            finished = true
            return
        }
        let thread = Thread { [self] in
            Thread.current.name = "facade-access-log"
            write()
        }
        thread.name = "facade-access-log"
        thread.start()
    }

    /// Queues the line, or drops and counts it when the queue is full. Never waits for the sink.
    func record(_ entry: Entry) {
        guard enabled else { return }
        condition.lock()
        guard !stopping, queue.count < capacity else {
            dropped += 1
            droppedTotal += 1
            condition.unlock()
            droppedCounter.increment()
            return
        }
        queue.append(entry)
        if writerIdle && (queue.count == 1 || queue.count == Self.batch) { condition.signal() }
        condition.unlock()
    }

    /// Lines dropped so far.
    var droppedCount: Int {
        condition.lock()
        defer { condition.unlock() }
        return droppedTotal
    }

    /// Lets the writer write what is queued, waiting at most `timeout` (a blocked sink is left behind).
    func stop(timeout: Duration = .seconds(1)) {
        condition.lock()
        stopping = true
        condition.broadcast()
        let deadline = Date().addingTimeInterval(timeout / .seconds(1))
        while !finished {
            guard condition.wait(until: deadline) else { break }
        }
        condition.unlock()
    }

    private func write() {
        var batch: [Entry] = []
        while true {
            condition.lock()
            while queue.isEmpty && !stopping {
                writerIdle = true
                condition.wait()
                writerIdle = false
            }
            if !stopping && queue.count < Self.batch {
                let until = Date().addingTimeInterval(Self.gather / .seconds(1))
                writerIdle = true
                while !stopping && queue.count < Self.batch && condition.wait(until: until) {}
                writerIdle = false
            }
            swap(&batch, &queue)
            let lost = dropped
            dropped = 0
            let done = batch.isEmpty && stopping
            if done {
                finished = true
                condition.broadcast()
            }
            condition.unlock()
            if lost > 0 {
                logger.warning(
                    "access log lines dropped: the log sink was slower than the requests",
                    metadata: ["access_log.dropped": "\(lost)"]
                )
            }
            if done { return }
            for entry in batch {
                logger.info(
                    "request",
                    metadata: [
                        "http.method": "\(entry.method)",
                        "http.route": "\(entry.route)",
                        "http.status": "\(entry.status)",
                        "duration_ms": "\((entry.durationMilliseconds * 1000).rounded() / 1000)",
                        "correlation_id": "\(entry.correlationID ?? "-")",
                    ]
                )
            }
            batch.removeAll(keepingCapacity: true)
        }
    }
}
