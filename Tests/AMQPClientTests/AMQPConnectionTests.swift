import Foundation
import TestSupport
import Testing

@testable import AMQPClient

@Suite("AMQPConnection against the real broker") struct AMQPConnectionTests {
    @Test("a message round-trips with every property and header preserved, and is acked")
    func roundTrip() throws {
        try Broker.withConnection { connection in
            try Broker.withQueue(on: connection) { queue in
                let properties = AMQPProperties(
                    contentType: "application/json",
                    correlationID: "corr-1",
                    replyTo: "reply.queue",
                    expiration: "60000",
                    messageID: "msg-1",
                    persistent: true,
                    timestamp: 1_767_225_600,
                    type: "hold.request",
                    userID: connection.configuration.user,
                    headers: [
                        "x-deadline": .int(1_767_225_605_000), "idempotency-key": .string("key-ü"),
                        "flag": .bool(true), "ratio": .double(0.25), "negative": .int(-7),
                    ]
                )
                let body = Array(#"{"seatIds":["A1"]}"#.utf8) + [0, 255]
                #expect(
                    try connection.publish(exchange: "", routingKey: queue, body: body, properties: properties) == 0
                )
                let tag = try connection.consume(queue: queue)
                let message = try #require(try connection.nextDelivery())
                #expect(message.body == body)
                #expect(message.properties == properties)
                #expect(message.exchange == "")
                #expect(message.routingKey == queue)
                #expect(message.consumerTag == tag)
                #expect(message.redelivered == false)
                try connection.ack(deliveryTag: message.deliveryTag)
                try connection.cancel(consumerTag: tag)
                #expect(try connection.inspectQueue(queue) == (messageCount: 0, consumerCount: 0))
            }
        }
    }

    @Test("a 1 MB body spanning many frames round-trips intact")
    func largeBody() throws {
        try Broker.withConnection { connection in
            try Broker.withQueue(on: connection) { queue in
                let body = (0..<1_048_576).map { UInt8(truncatingIfNeeded: $0 &* 31) }
                try connection.publish(exchange: "", routingKey: queue, body: body)
                try connection.consume(queue: queue, noAck: true)
                #expect(try connection.nextDelivery()?.body == body)
            }
        }
    }

    @Test("a message without properties arrives with empty properties")
    func noProperties() throws {
        try Broker.withConnection { connection in
            try Broker.withQueue(on: connection) { queue in
                try connection.publish(exchange: "", routingKey: queue, body: [])
                try connection.consume(queue: queue, noAck: true)
                let message = try #require(try connection.nextDelivery())
                #expect(message.body.isEmpty)
                #expect(message.properties == AMQPProperties())
            }
        }
    }

    @Test("a rejected and requeued message comes back redelivered")
    func rejectRequeue() throws {
        try Broker.withConnection { connection in
            try Broker.withQueue(on: connection) { queue in
                try connection.publish(exchange: "", routingKey: queue, body: Array("once".utf8))
                try connection.consume(queue: queue)
                let first = try #require(try connection.nextDelivery())
                #expect(first.redelivered == false)
                try connection.reject(deliveryTag: first.deliveryTag, requeue: true)
                let second = try #require(try connection.nextDelivery())
                #expect(second.redelivered == true)
                #expect(second.body == Array("once".utf8))
                try connection.reject(deliveryTag: second.deliveryTag, requeue: false)
                #expect(try connection.inspectQueue(queue).messageCount == 0)
            }
        }
    }

    @Test("with prefetch 1 a second message waits until the first is acked")
    func prefetch() throws {
        try Broker.withConnection { connection in
            try Broker.withQueue(on: connection) { queue in
                try connection.setPrefetch(1)
                for text in ["one", "two"] {
                    try connection.publish(exchange: "", routingKey: queue, body: Array(text.utf8))
                }
                try connection.consume(queue: queue)
                let first = try #require(try connection.nextDelivery())
                #expect(first.body == Array("one".utf8))
                #expect(try connection.nextDelivery(within: .milliseconds(300)) == nil)
                try connection.ack(deliveryTag: first.deliveryTag)
                let second = try #require(try connection.nextDelivery())
                #expect(second.body == Array("two".utf8))
                try connection.ack(deliveryTag: second.deliveryTag)
            }
        }
    }

    @Test("an RPC with direct reply-to works between two connections")
    func directReplyTo() throws {
        try Broker.withConnection("rpc-server") { server in
            try Broker.withQueue(on: server) { requests in
                try server.consume(queue: requests)
                try Broker.withConnection("rpc-client") { client in
                    // The reply consumer must exist before the request is published (else 406).
                    try client.consume(queue: "amq.rabbitmq.reply-to", noAck: true)
                    for round in 1...3 {
                        let correlationID = "call-\(round)"
                        try client.publish(
                            exchange: "",
                            routingKey: requests,
                            body: Array("ping \(round)".utf8),
                            properties: AMQPProperties(
                                contentType: "application/json",
                                correlationID: correlationID,
                                replyTo: "amq.rabbitmq.reply-to",
                                expiration: "5000"
                            )
                        )

                        let request = try #require(try server.nextDelivery())
                        let replyTo = try #require(request.properties.replyTo)
                        #expect(replyTo.hasPrefix("amq.rabbitmq.reply-to."))
                        try server.publish(
                            exchange: "",
                            routingKey: replyTo,
                            body: Array("pong \(round)".utf8),
                            properties: AMQPProperties(
                                contentType: "application/json",
                                correlationID: request.properties.correlationID
                            )
                        )
                        try server.ack(deliveryTag: request.deliveryTag)

                        let reply = try #require(try client.nextDelivery())
                        #expect(reply.properties.correlationID == correlationID)
                        #expect(reply.body == Array("pong \(round)".utf8))
                    }
                }
            }
        }
    }

    @Test("with publisher confirms every publish is acked, multiple acks included")
    func confirms() throws {
        try Broker.withConnection { connection in
            try Broker.withQueue(on: connection) { queue in
                try connection.enablePublisherConfirms()
                var outstanding = Set<UInt64>()
                for index in 0..<200 {
                    let tag = try connection.publish(exchange: "", routingKey: queue, body: Array("\(index)".utf8))
                    outstanding.insert(tag)
                }
                #expect(outstanding == Set(1...200))
                let clock = ContinuousClock()
                let deadline = clock.now.advanced(by: .seconds(5))
                var nacked = 0
                while !outstanding.isEmpty, clock.now < deadline {
                    switch try connection.nextEvent(timeout: clock.now.duration(to: deadline)) {
                    case .ack(let tag, let multiple)?:
                        if multiple { outstanding = outstanding.filter { $0 > tag } } else { outstanding.remove(tag) }
                    case .nack(let tag, let multiple)?:
                        nacked += 1
                        if multiple { outstanding = outstanding.filter { $0 > tag } } else { outstanding.remove(tag) }
                    default:
                        break
                    }
                }
                #expect(outstanding.isEmpty)
                #expect(nacked == 0)
                #expect(try connection.inspectQueue(queue).messageCount == 200)
            }
        }
    }

    @Test("a mandatory publish nobody can route comes back as returned, then is acked")
    func mandatoryReturn() throws {
        try Broker.withConnection { connection in
            try Broker.withExchange(on: connection) { exchange in
                try connection.enablePublisherConfirms()
                let tag = try connection.publish(
                    exchange: exchange,
                    routingKey: "nobody.listens",
                    body: Array("lost".utf8),
                    properties: AMQPProperties(correlationID: "c-9", headers: ["n": .int(9)]),
                    mandatory: true
                )
                let events = try connection.collectEvents { events in
                    events.contains { if case .ack = $0 { true } else { false } }
                }
                try #require(events.count == 2)
                guard case .returned(let returned) = events[0] else {
                    Issue.record("expected a return first, got \(events[0])")
                    return
                }
                #expect(returned.replyCode == 312)
                #expect(returned.replyText == "NO_ROUTE")
                #expect(returned.exchange == exchange)
                #expect(returned.routingKey == "nobody.listens")
                #expect(returned.body == Array("lost".utf8))
                #expect(returned.properties.correlationID == "c-9")
                #expect(returned.properties.headers == ["n": .int(9)])
                guard case .ack(let ackedTag, _) = events[1] else {
                    Issue.record("expected an ack after the return, got \(events[1])")
                    return
                }
                #expect(ackedTag == tag)
            }
        }
    }

    @Test("a message with expiration 1 ms that nobody consumes is gone shortly after")
    func expiration() throws {
        try Broker.withConnection { connection in
            try Broker.withQueue(on: connection) { queue in
                try connection.enablePublisherConfirms()
                try connection.publish(
                    exchange: "",
                    routingKey: queue,
                    body: Array("stale".utf8),
                    properties: AMQPProperties(expiration: "1")
                )
                try connection.publish(exchange: "", routingKey: queue, body: Array("fresh".utf8))
                _ = try connection.collectEvents { events in
                    events.contains {
                        if case .ack(2, _) = $0 { true } else if case .ack(_, true) = $0 { true } else { false }
                    }
                }
                let clock = ContinuousClock()
                let deadline = clock.now.advanced(by: .seconds(2))
                var count = try connection.inspectQueue(queue).messageCount
                while count > 1, clock.now < deadline {
                    _ = try connection.nextEvent(timeout: .milliseconds(20))
                    count = try connection.inspectQueue(queue).messageCount
                }
                #expect(count == 1)
                try connection.consume(queue: queue, noAck: true)
                #expect(try connection.nextDelivery()?.body == Array("fresh".utf8))
            }
        }
    }

    @Test("server-named queues are made when the name is empty")
    func serverNamedQueue() throws {
        try Broker.withConnection { connection in
            let name = try connection.declareQueue("", durable: false, exclusive: true, autoDelete: true)
            #expect(name.hasPrefix("amq.gen-"))
            try connection.deleteQueue(name)
        }
    }

    @Test("a topic exchange binding routes by pattern")
    func topicBinding() throws {
        try Broker.withConnection { connection in
            try Broker.withExchange(on: connection, type: .topic) { exchange in
                try Broker.withQueue(on: connection) { queue in
                    try connection.bindQueue(queue, exchange: exchange, routingKey: "hold.*")
                    try connection.publish(exchange: exchange, routingKey: "seats.purchased", body: [1])
                    try connection.publish(exchange: exchange, routingKey: "hold.created", body: [2])
                    try connection.consume(queue: queue, noAck: true)
                    let message = try #require(try connection.nextDelivery())
                    #expect(message.body == [2])
                    #expect(message.routingKey == "hold.created")
                    #expect(message.exchange == exchange)
                }
            }
        }
    }
}

@Suite("AMQPConnection when things go wrong") struct AMQPConnectionFailureTests {
    @Test("a wrong password fails with authenticationFailed in the broker's words")
    func wrongPassword() throws {
        var configuration = try Broker.configuration("wrong-password")
        configuration.password = "definitely-not-the-password"
        let error = #expect(throws: AMQPError.self) {
            try AMQPConnection(configuration: configuration, logger: Broker.quietLogger)
        }
        #expect(error?.kind == .authenticationFailed)
        #expect(error?.replyCode == 403)
        #expect(error?.message.contains("ACCESS_REFUSED") == true)
        #expect(error?.isRetryable == false)
        #expect(error.map { !$0.description.contains("definitely-not") } == true)
    }

    @Test("an unknown vhost fails with the broker's words")
    func unknownVhost() throws {
        var configuration = try Broker.configuration("unknown-vhost")
        configuration.vhost = "no-such-vhost-\(UUID().uuidString)"
        let error = #expect(throws: AMQPError.self) {
            try AMQPConnection(configuration: configuration, logger: Broker.quietLogger)
        }
        #expect(error?.kind == .connectionFailed)
        #expect(error?.replyCode == 530)
        #expect(error?.message.contains("NOT_ALLOWED") == true)
    }

    @Test("nothing listening fails with connectionFailed, fast")
    func nothingListening() throws {
        var configuration = try AMQPConfiguration(url: "amqp://guest:guest@127.0.0.1:5999/")
        // Refused at once, not after the connect timeout: a long timeout tells the two apart on a loaded machine.
        configuration.connectTimeout = .seconds(30)
        let clock = ContinuousClock()
        let started = clock.now
        let error = #expect(throws: AMQPError.self) {
            try AMQPConnection(configuration: configuration, logger: Broker.quietLogger)
        }
        #expect(started.duration(to: clock.now) < .seconds(15))
        #expect(error?.kind == .connectionFailed)
        #expect(error?.isRetryable == true)
        #expect(error?.message.contains("127.0.0.1:5999") == true)
    }

    @Test("a passive declare of a missing queue throws 404 and closes the connection for good")
    func missingQueue() throws {
        try Broker.withConnection { connection in
            let missing = Broker.uniqueName("missing")
            let error = #expect(throws: AMQPError.self) { try connection.inspectQueue(missing) }
            #expect(error?.kind == .channelClosed)
            #expect(error?.replyCode == 404)
            #expect(error?.message.contains("NOT_FOUND") == true)
            #expect(error?.isRetryable == false)
            #expect(!connection.isOpen)

            let clock = ContinuousClock()
            let started = clock.now
            for call in [
                { _ = try connection.declareQueue("") }, { _ = try connection.nextEvent(timeout: .seconds(30)) },
                { _ = try connection.publish(exchange: "", routingKey: "x", body: []) },
                { _ = try connection.waitForInput(wakeup: nil, timeout: .seconds(30)) },
            ] {
                let later = #expect(throws: AMQPError.self) { try call() }
                #expect(later?.kind == .connectionClosed)
                #expect(later?.message.contains("NOT_FOUND") == true)
            }
            // Each of these would wait 30 s on a live connection; on a closed one they must fail at once
            // (half of one wait is the bound: a loaded machine's scheduling never comes near it).
            #expect(started.duration(to: clock.now) < .seconds(15))
            connection.close()
            connection.close()
        }
    }

    @Test("publishing to a missing exchange surfaces the broker's 404 from nextEvent")
    func missingExchange() throws {
        try Broker.withConnection { connection in
            try connection.publish(exchange: Broker.uniqueName("no-exchange"), routingKey: "k", body: [1])
            let error = #expect(throws: AMQPError.self) { _ = try connection.nextEvent(timeout: .seconds(3)) }
            #expect(error?.kind == .channelClosed)
            #expect(error?.replyCode == 404)
            #expect(error?.message.contains("no exchange") == true)
            #expect(!connection.isOpen)
        }
    }

    @Test("publishing for a direct reply without its consumer is refused with 406")
    func directReplyWithoutConsumer() throws {
        try Broker.withConnection { connection in
            try connection.publish(
                exchange: "",
                routingKey: "amq.rabbitmq.reply-to.nobody",
                body: [1],
                properties: AMQPProperties(replyTo: "amq.rabbitmq.reply-to")
            )
            let error = #expect(throws: AMQPError.self) { _ = try connection.declareQueue("", exclusive: true) }
            #expect(error?.kind == .channelClosed)
            #expect(error?.replyCode == 406)
        }
    }

    @Test("user_id arrives as published when it is the connection's login")
    func userIDOfTheLogin() throws {
        try Broker.withConnection { connection in
            try Broker.withQueue(on: connection) { queue in
                let login = connection.configuration.user
                try connection.publish(
                    exchange: "",
                    routingKey: queue,
                    body: [1],
                    properties: AMQPProperties(userID: login)
                )
                try connection.consume(queue: queue, noAck: true)
                #expect(try connection.nextDelivery()?.properties.userID == login)
            }
        }
    }

    @Test("the broker refuses a user_id other than the connection's login (406) and delivers nothing")
    func forgedUserID() throws {
        try Broker.withConnection { connection in
            try Broker.withQueue(on: connection) { queue in
                try connection.publish(
                    exchange: "",
                    routingKey: queue,
                    body: [1],
                    properties: AMQPProperties(userID: "inventory-core")
                )
                let error = #expect(throws: AMQPError.self) { _ = try connection.inspectQueue(queue) }
                #expect(error?.kind == .channelClosed)
                #expect(error?.replyCode == 406)
                #expect(error?.message.contains("user_id") == true, "\(String(describing: error))")
                // The forged message never reached the queue.
                let left = try Broker.withConnection("count") { observer in
                    try observer.inspectQueue(queue).messageCount
                }
                #expect(left == 0)
            }
        }
    }

    @Test("redeclaring a queue with other arguments is refused with 406 PRECONDITION_FAILED")
    func inequivalentArguments() throws {
        try Broker.withConnection { connection in
            try Broker.withQueue(on: connection, arguments: ["x-message-ttl": .int(60_000)]) { queue in
                // Same arguments: fine (and proves the table reached the broker as the same value).
                try connection.declareQueue(queue, durable: false, arguments: ["x-message-ttl": .int(60_000)])
                let error = #expect(throws: AMQPError.self) {
                    try connection.declareQueue(queue, durable: false, arguments: ["x-message-ttl": .int(1_000)])
                }
                #expect(error?.kind == .channelClosed)
                #expect(error?.replyCode == 406)
                #expect(error?.message.contains("PRECONDITION_FAILED") == true)
                #expect(error?.message.contains("x-message-ttl") == true)
            }
        }
    }

    @Test("close is idempotent and later calls throw connectionClosed at once")
    func closeTwice() throws {
        let connection = try Broker.connect()
        connection.close()
        connection.close()
        #expect(!connection.isOpen)
        let error = #expect(throws: AMQPError.self) {
            try connection.publish(exchange: "", routingKey: "anything", body: [1])
        }
        #expect(error?.kind == .connectionClosed)
        #expect(error?.message.contains("closed by the application") == true)
    }

    @Test(
        "the broker closing the connection gives a clear error, then connectionClosed",
        .enabled(
            if: FileManager.default.isExecutableFile(atPath: "/usr/sbin/rabbitmqctl"),
            "needs rabbitmqctl (as root)"
        )
    )
    func brokerClosesConnection() throws {
        try Broker.withConnection { connection in
            let (local, peer) = try #require(connection.socketEndpoints())
            let name = "\(local) -> \(peer)"
            // rabbitmqctl closes by connection pid: find ours by its name (our own socket's endpoints).
            let listing = try runProcess(
                "/usr/sbin/rabbitmqctl",
                ["list_connections", "pid", "name", "--no-table-headers", "-q"]
            )
            let line = listing.output.split(separator: "\n").first { $0.hasSuffix("\t" + name) }
            let pid = try #require(
                line?.split(separator: "\t").first.map(String.init),
                "\(name) not in \(listing.output)"
            )
            let result = try runProcess(
                "/usr/sbin/rabbitmqctl",
                ["close_connection", pid, "closed by amqp-client-tests"]
            )
            try #require(result.status == 0, "rabbitmqctl: \(result.output)")
            let error = #expect(throws: AMQPError.self) {
                while try connection.nextEvent(timeout: .seconds(5)) != nil {}
                Issue.record("no error within 5 s")
            }
            #expect(error?.kind == .connectionClosed)
            #expect(error?.replyCode == 320)
            #expect(error?.message.contains("closed by amqp-client-tests") == true)
            #expect(error?.isRetryable == true)
            #expect(!connection.isOpen)
            let later = #expect(throws: AMQPError.self) { try connection.declareExchange("x", type: .direct) }
            #expect(later?.kind == .connectionClosed)
        }
    }
}

@Suite("waiting for input and heartbeats") struct AMQPWaitTests {
    @Test("waitForInput is woken by an EventFD signalled from another thread")
    func wokenByEventFD() throws {
        try Broker.withConnection { connection in
            let wakeup = try EventFD()
            let signaller = Thread {
                Thread.sleep(forTimeInterval: 0.1)
                wakeup.signal()
            }
            let clock = ContinuousClock()
            let started = clock.now
            signaller.start()
            let result = try connection.waitForInput(wakeup: wakeup, timeout: .seconds(30))
            #expect(result.woken)
            #expect(!result.readable)
            // Woken, not timed out: well before the 30 s.
            #expect(started.duration(to: clock.now) < .seconds(15))
            wakeup.drain()
            let quiet = try connection.waitForInput(wakeup: wakeup, timeout: .milliseconds(50))
            #expect(quiet == (readable: false, woken: false))
        }
    }

    @Test("waitForInput reports a delivery as readable, and buffered frames without waiting")
    func readableOnDelivery() throws {
        try Broker.withConnection { connection in
            try Broker.withQueue(on: connection) { queue in
                try connection.consume(queue: queue, noAck: true)
                for index in 0..<5 {
                    try connection.publish(exchange: "", routingKey: queue, body: [UInt8(index)])
                }
                var bodies: [[UInt8]] = []
                let clock = ContinuousClock()
                let deadline = clock.now.advanced(by: .seconds(15))
                while bodies.count < 5, clock.now < deadline {
                    let result = try connection.waitForInput(wakeup: nil, timeout: .seconds(1))
                    guard result.readable else { continue }
                    while case .delivery(let message)? = try connection.nextEvent(timeout: .zero) {
                        bodies.append(message.body)
                    }
                }
                #expect(bodies == (0..<5).map { [UInt8($0)] })
            }
        }
    }

    @Test(
        "a thread looping on waitForInput (and nextEvent(.zero)) keeps a 1 s heartbeat alive",
        arguments: [
            (wait: Duration.milliseconds(3500), drain: false),  // one long wait, never entering nextEvent
            (wait: Duration.milliseconds(100), drain: true),  // the worker loop: short waits, then drain
        ]
    )
    func heartbeatWhileWaiting(wait: Duration, drain: Bool) throws {
        try Broker.withConnection(heartbeat: .seconds(1)) { connection in
            let clock = ContinuousClock()
            let deadline = clock.now.advanced(by: .milliseconds(3500))
            while clock.now < deadline {
                _ = try connection.waitForInput(wakeup: nil, timeout: min(wait, clock.now.duration(to: deadline)))
                if drain {
                    while try connection.nextEvent(timeout: .zero) != nil {}
                }
            }
            #expect(connection.isOpen)
            let name = try connection.declareQueue("", durable: false, exclusive: true)
            try connection.deleteQueue(name)
        }
    }

    @Test("control: a thread that stays out of the library loses a 1 s heartbeat connection")
    func heartbeatLostWhenIdle() throws {
        try Broker.withConnection(heartbeat: .seconds(1)) { connection in
            Thread.sleep(forTimeInterval: 3.5)
            let error = #expect(throws: AMQPError.self) {
                while try connection.nextEvent(timeout: .seconds(2)) != nil {}
                _ = try connection.declareQueue("", durable: false, exclusive: true)
            }
            #expect(error?.kind == .connectionClosed)
            #expect(!connection.isOpen)
        }
    }
}
