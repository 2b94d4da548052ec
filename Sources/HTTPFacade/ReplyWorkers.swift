import Foundation

/// Threads that turn the core's replies into HTTP answers, so the RPC client's thread, which reads the
/// broker for every request in flight, only hands each reply over (decision 0024).
///
/// One queue, `threads` workers. A worker takes what is queued (up to `batch` jobs) and runs it; `submit`
/// wakes a worker only when one is idle, so under load replies are handed over in batches with no wake-up
/// each. Not the cooperative pool: the jobs call into libmicrohttpd (resume) and may take a lock.
// @unchecked Sendable: the queue and the flags are touched only under `condition`'s lock.
final class ReplyWorkers: @unchecked Sendable {
    typealias Job = @Sendable () -> Void

    private let condition = NSCondition()
    private var jobs: [Job] = []
    private var idle = 0
    private var stopping = false
    private var running = 0
    private let batch: Int

    init(threads: Int, batch: Int = 64, name: String = "facade-reply") {
        self.batch = max(1, batch)
        running = max(1, threads)
        for index in 0..<running {
            let threadName = "\(name)-\(index)"
            let thread = Thread { [self] in
                // Named from inside: on Linux that is what names the thread for the kernel (and `top -H`).
                Thread.current.name = threadName
                work()
            }
            thread.name = threadName
            thread.start()
        }
    }

    /// Queues `job`; after `stop` it runs right here (every request is answered exactly once).
    func submit(_ job: @escaping Job) {
        condition.lock()
        guard !stopping else {
            condition.unlock()
            job()
            return
        }
        jobs.append(job)
        if idle > 0 { condition.signal() }
        condition.unlock()
    }

    /// Lets the workers finish what is queued, then waits (at most `timeout`) for them to end.
    func stop(timeout: Duration = .seconds(2)) {
        condition.lock()
        stopping = true
        condition.broadcast()
        let deadline = Date().addingTimeInterval(timeout / .seconds(1))
        while running > 0 {
            guard condition.wait(until: deadline) else { break }
        }
        condition.unlock()
    }

    private func work() {
        var taken: [Job] = []
        while true {
            condition.lock()
            while jobs.isEmpty && !stopping {
                idle += 1
                condition.wait()
                idle -= 1
            }
            if jobs.isEmpty {
                running -= 1
                condition.broadcast()
                condition.unlock()
                return
            }
            if jobs.count <= batch {
                swap(&taken, &jobs)
            } else {
                taken.append(contentsOf: jobs.prefix(batch))
                jobs.removeFirst(batch)
                // More than one batch waits: another worker may take the rest.
                if idle > 0 { condition.signal() }
            }
            condition.unlock()
            for job in taken { job() }
            taken.removeAll(keepingCapacity: true)
        }
    }
}
