import Foundation
import Testing

@testable import AMQPClient

/// Throughput probes, off by default: `AMQP_BENCH=1 swift test --filter AMQPBenchmarks`
/// (add `-c release` for representative numbers). They print, they do not assert speed.
@Suite("AMQP benchmarks", .enabled(if: ProcessInfo.processInfo.environment["AMQP_BENCH"] != nil))
struct AMQPBenchmarks {
    @Test("RPC over direct reply-to, one request in flight, server on its own thread")
    func rpcRoundTrips() throws {
        let rounds = 5_000
        try Broker.withConnection("bench-client") { client in
            let requests = try client.declareQueue(Broker.uniqueName("bench-rpc"), durable: false, autoDelete: true)
            let ready = DispatchSemaphore(value: 0)
            let server = Thread {
                // The server thread owns its own connection, as the service's workers do.
                guard let connection = try? Broker.connect("bench-server") else {
                    ready.signal()
                    return
                }
                defer { connection.close() }
                _ = try? connection.consume(queue: requests, noAck: true)
                ready.signal()
                var served = 0
                while served < rounds,
                    case .delivery(let request)? = (try? connection.nextEvent(timeout: .seconds(5))) ?? nil
                {
                    _ = try? connection.publish(
                        exchange: "", routingKey: request.properties.replyTo ?? "", body: request.body,
                        properties: AMQPProperties(correlationID: request.properties.correlationID))
                    served += 1
                }
            }
            server.start()
            ready.wait()
            try client.consume(queue: "amq.rabbitmq.reply-to", noAck: true)
            let clock = ContinuousClock()
            var latencies: [Duration] = []
            latencies.reserveCapacity(rounds)
            let started = clock.now
            for round in 0..<rounds {
                let sent = clock.now
                try client.publish(
                    exchange: "", routingKey: requests, body: Array("{}".utf8),
                    properties: AMQPProperties(correlationID: "\(round)", replyTo: "amq.rabbitmq.reply-to"))
                let reply = try #require(try client.nextDelivery(within: .seconds(5)))
                #expect(reply.properties.correlationID == "\(round)")
                latencies.append(sent.duration(to: clock.now))
            }
            let elapsed = started.duration(to: clock.now)
            latencies.sort()
            print(
                "AMQP RPC: \(rounds) round trips in \(elapsed), \(Int(Double(rounds) / seconds(elapsed)))/s,",
                "p50 \(latencies[rounds / 2]), p99 \(latencies[rounds * 99 / 100])")
        }
    }

    @Test("confirmed publishing with up to 256 outstanding")
    func confirmedPublishing() throws {
        let count = 20_000
        try Broker.withConnection { connection in
            try Broker.withQueue(on: connection) { queue in
                try connection.enablePublisherConfirms()
                var outstanding = Set<UInt64>()
                let clock = ContinuousClock()
                let started = clock.now
                var published = 0
                func settle(_ event: AMQPEvent?) {
                    switch event {
                    case .ack(let tag, let multiple)?, .nack(let tag, let multiple)?:
                        if multiple { outstanding = outstanding.filter { $0 > tag } } else { outstanding.remove(tag) }
                    default: break
                    }
                }
                while published < count || !outstanding.isEmpty {
                    if published < count && outstanding.count < 256 {
                        outstanding.insert(
                            try connection.publish(
                                exchange: "", routingKey: queue, body: [UInt8](repeating: 7, count: 200)))
                        published += 1
                        settle(try connection.nextEvent(timeout: .zero))
                    } else {
                        settle(try connection.nextEvent(timeout: .seconds(5)))
                    }
                }
                let elapsed = started.duration(to: clock.now)
                print(
                    "AMQP confirms: \(count) confirmed publishes in \(elapsed), \(Int(Double(count) / seconds(elapsed)))/s"
                )
            }
        }
    }
}

private func seconds(_ duration: Duration) -> Double {
    let (whole, fraction) = duration.components
    return Double(whole) + Double(fraction) / 1e18
}
