import Foundation
import TestSupport
import Testing

@testable import AMQPClient

/// `AMQPConnection.maxBodySize`: deliveries read frame by frame, a body over the limit dropped unread
/// (decision 0015).
@Suite("AMQPConnection with a body size limit") struct BoundedReadTests {
    @Test(
        "with maxBodySize, bodies up to the limit arrive whole and in order; one over it arrives empty, bodyDropped, with its size and properties"
    )
    func overLimitDropped() throws {
        try Broker.withConnection { connection in
            try Broker.withQueue(on: connection) { queue in
                let small = Array(#"{"a":1}"#.utf8)
                let atLimit = (0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
                let over = [UInt8](repeating: 42, count: 3 << 20)
                for (index, body) in [small, over, atLimit, small].enumerated() {
                    try connection.publish(
                        exchange: "",
                        routingKey: queue,
                        body: body,
                        properties: AMQPProperties(correlationID: "m\(index)", headers: ["n": .int(Int64(index))])
                    )
                }
                connection.maxBodySize = 300_000
                try connection.consume(queue: queue, noAck: true)
                var messages: [AMQPMessage] = []
                while messages.count < 4, let message = try connection.nextDelivery() { messages.append(message) }
                #expect(messages.map(\.properties.correlationID) == ["m0", "m1", "m2", "m3"])
                #expect(messages.map(\.bodyDropped) == [false, true, false, false])
                #expect(messages.map(\.bodySize) == [small.count, over.count, atLimit.count, small.count])
                #expect(messages[0].body == small && messages[2].body == atLimit && messages[3].body == small)
                #expect(messages[1].body.isEmpty)
                #expect(messages[1].properties.headers["n"] == .int(1))
                // The connection is still in step: it publishes and reads on.
                try connection.publish(exchange: "", routingKey: queue, body: small)
                #expect(try connection.nextDelivery()?.body == small)
            }
        }
    }
}
