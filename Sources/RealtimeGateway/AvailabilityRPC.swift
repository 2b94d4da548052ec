import AMQPClient
import Contracts
import Foundation
import Logging
import ServiceSupport
import Synchronization

/// Snapshots through the core's `availability.request` RPC, on a thread that owns its own AMQP
/// connection (rabbitmq-c: one connection per thread). Other threads hand it requests through a
/// locked queue and an `EventFD`; it waits on the socket and the EventFD together.
///
/// Replies come by direct reply-to (`amq.rabbitmq.reply-to`, consumed before the first publish).
/// Requests are published `mandatory`, so with no core consuming the answer is an immediate
/// `SERVICE_UNAVAILABLE` instead of a timeout; each carries `expiration` and `x-deadline` so that a
/// request nobody waits for any more is not acted on.
final class AvailabilityRPC: AvailabilitySource {
    typealias Completion = @Sendable (Result<Availability, ErrorBody>) -> Void

    private struct Request: Sendable {
        var showtimeId: String
        var completion: Completion
        /// Set when the request is made: time spent waiting for a (re)connection counts too.
        var deadline: ContinuousClock.Instant
    }

    /// Requests made by other threads and not yet taken by the loop.
    private final class Queue: Sendable {
        private let requests = Mutex<[Request]>([])

        func append(_ request: Request) { requests.withLock { $0.append(request) } }

        func takeAll() -> [Request] {
            requests.withLock { requests in
                defer { requests = [] }
                return requests
            }
        }

        func takeExpired(now: ContinuousClock.Instant) -> [Request] {
            requests.withLock { requests in
                let expired = requests.filter { $0.deadline <= now }
                requests.removeAll { $0.deadline <= now }
                return expired
            }
        }
    }

    private let queue = Queue()
    private let wakeup: EventFD
    private let stop = ShutdownSignal()
    private let timeout: Duration
    private let thread: DedicatedThread

    init(amqp: AMQPConfiguration, timeout: Duration, logger: Logger) throws(AMQPError) {
        var amqp = amqp
        amqp.connectionName = (amqp.connectionName ?? "realtime-gateway") + " rpc"
        let wakeup = try EventFD()
        self.wakeup = wakeup
        self.timeout = timeout
        let loop = Loop(amqp: amqp, queue: queue, wakeup: wakeup, stop: stop, timeout: timeout, logger: logger)
        thread = DedicatedThread(name: "gateway-rpc") { loop.run() }
        stop.onTrigger { wakeup.signal() }
    }

    func requestAvailability(showtimeId: String, completion: @escaping Completion) {
        // Queued even while the broker is away: the loop sends it once connected, or fails it at its deadline.
        let request = Request(
            showtimeId: showtimeId,
            completion: completion,
            deadline: ContinuousClock.now.advanced(by: timeout)
        )
        queue.append(request)
        wakeup.signal()
    }

    func shutdown() async {
        stop.trigger()
        await thread.join()
    }

    static func unavailable(_ why: String) -> ErrorBody {
        ErrorBody(code: .serviceUnavailable, message: "Availability is unavailable: \(why)")
    }

    private struct Loop: Sendable {
        let amqp: AMQPConfiguration
        let queue: Queue
        let wakeup: EventFD
        let stop: ShutdownSignal
        let timeout: Duration
        let logger: Logger

        /// Waits `delay` before the next connection attempt, failing queued requests whose deadline passes
        /// meanwhile. Returns true when the gateway is stopping.
        private func waitDisconnected(_ delay: Duration, reason: String) -> Bool {
            let clock = ContinuousClock()
            let end = clock.now.advanced(by: delay)
            while clock.now < end {
                if stop.wait(timeout: min(clock.now.duration(to: end), .milliseconds(100))) { return true }
                for request in queue.takeExpired(now: clock.now) {
                    request.completion(.failure(AvailabilityRPC.unavailable(reason)))
                }
            }
            return stop.isTriggered
        }

        func run() {
            let clock = ContinuousClock()
            var backoff = Backoff(initial: .milliseconds(100), maximum: .seconds(5))
            while !stop.isTriggered {
                let connection: AMQPConnection
                do {
                    connection = try AMQPConnection(configuration: amqp, logger: logger)
                    // The core declares it; the gateway's broker user may not (a passive declare needs no right).
                    try connection.declareExchange(RPCOperation.exchange, type: .direct, durable: true, passive: true)
                    // Direct reply-to: the consumer must exist before the first publish.
                    try connection.consume(queue: "amq.rabbitmq.reply-to", noAck: true)
                } catch {
                    let delay = backoff.nextDelay()
                    logger.warning(
                        "cannot reach the broker for availability requests; retrying",
                        metadata: ["error": "\(error)", "retry.in": "\(delay)"]
                    )
                    if waitDisconnected(delay, reason: "the gateway cannot reach the broker") { break }
                    continue
                }
                backoff.reset()
                var inFlight: [String: Request] = [:]
                do {
                    while !stop.isTriggered {
                        let wait =
                            inFlight.values.map { clock.now.duration(to: $0.deadline) }.min()
                            .map { max(.zero, min($0, .milliseconds(500))) } ?? .milliseconds(500)
                        let (readable, woken) = try connection.waitForInput(wakeup: wakeup, timeout: wait)
                        if woken { wakeup.drain() }
                        for request in queue.takeAll() {
                            let correlationID = UUID().uuidString
                            inFlight[correlationID] = request
                            try publish(request, correlationID: correlationID, on: connection)
                        }
                        if readable {
                            while let event = try connection.nextEvent(timeout: .zero) {
                                complete(event, &inFlight)
                            }
                        }
                        let now = clock.now
                        for (id, waiting) in inFlight where waiting.deadline <= now {
                            inFlight[id] = nil
                            waiting.completion(
                                .failure(
                                    ErrorBody(
                                        code: .upstreamTimeout,
                                        message: "The core did not answer the availability request in time"
                                    )
                                )
                            )
                        }
                    }
                } catch {
                    logger.warning(
                        "lost the broker connection of availability requests",
                        metadata: ["error": "\(error)"]
                    )
                }
                connection.close()
                // Requests sent on the lost connection cannot be answered any more; queued ones wait for the next.
                for request in inFlight.values {
                    request.completion(.failure(AvailabilityRPC.unavailable("lost the broker connection")))
                }
            }
            for request in queue.takeAll() {
                request.completion(.failure(AvailabilityRPC.unavailable("the gateway is stopping")))
            }
        }

        private func publish(_ request: Request, correlationID: String, on connection: AMQPConnection) throws(AMQPError)
        {
            // A showtimeId is a validated identifier: a plain JSON string.
            let body = Array(#"{"showtimeId":"\#(request.showtimeId)"}"#.utf8)
            let left = ContinuousClock.now.duration(to: request.deadline)
            let milliseconds = max(
                1,
                left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000
            )
            let deadline = Int64(Date().timeIntervalSince1970 * 1000) + milliseconds
            try connection.publish(
                exchange: RPCOperation.exchange,
                routingKey: RPCOperation.availability.routingKey,
                body: body,
                properties: AMQPProperties(
                    contentType: "application/json",
                    correlationID: correlationID,
                    replyTo: "amq.rabbitmq.reply-to",
                    expiration: "\(milliseconds)",
                    userID: connection.configuration.user,
                    headers: ["x-deadline": .int(deadline)]
                ),
                mandatory: true
            )
        }

        private func complete(_ event: AMQPEvent, _ inFlight: inout [String: Request]) {
            switch event {
            case .delivery(let message):
                guard let id = message.properties.correlationID, let waiting = inFlight.removeValue(forKey: id) else {
                    return  // a late reply to a request that timed out
                }
                do {
                    let reply = try ContractJSON.decode(RPCReply<Availability>.self, from: message.body)
                    waiting.completion(reply.result)
                } catch {
                    logger.error(
                        "the core's availability reply does not match the contract",
                        metadata: ["error": "\(error)"]
                    )
                    waiting.completion(
                        .failure(ErrorBody(code: .internalError, message: "The core's reply could not be read"))
                    )
                }
            case .returned(let returned):
                guard let id = returned.properties.correlationID, let waiting = inFlight.removeValue(forKey: id) else {
                    return
                }
                waiting.completion(.failure(AvailabilityRPC.unavailable("no core is consuming availability requests")))
            case .ack, .nack:
                break
            }
        }
    }
}
