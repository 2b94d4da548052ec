import AMQPClient
import Contracts
import Foundation
import Synchronization
import TestSupport
import Testing

@testable import InventoryRPC

/// Rule 4 when the broker nacks part of a pipelined batch: found by the cluster fault run (a quorum queue's
/// leader change nacked `hold.created` and acked the `hold.released` behind it; decision 0027).
@Suite("Outbox relay: one event per hold in a batch")
struct OutboxBatchUnitTests {
    private func event(_ id: Int64, _ hold: String, _ type: String = "hold.created") -> OutboxEvent {
        OutboxEvent(id: id, eventID: "e\(id)", holdID: hold, type: type, payload: [])
    }

    @Test("a batch stops before a hold's second event; events of different holds all go")
    func cutBeforeSecondEventOfAHold() {
        let events = [event(1, "a"), event(2, "b"), event(3, "a", "hold.released"), event(4, "c")]
        #expect(OutboxRelay.onePerHold(events).map(\.id) == [1, 2])
        let distinct = [event(1, "a"), event(2, "b"), event(3, "c")]
        #expect(OutboxRelay.onePerHold(distinct).map(\.id) == [1, 2, 3])
        #expect(OutboxRelay.onePerHold([]).isEmpty)
        #expect(OutboxRelay.onePerHold([event(7, "a"), event(8, "a", "hold.expired")]).map(\.id) == [7])
    }
}

extension CoreServiceTests {
    @Suite("Core outbox order under nacks")
    struct CoreOutboxOrderTests {
        @Test(
            "a subscriber's queue that refuses publishes while full (the broker nacks some messages of a batch and acks later ones): it still gets every hold's events, created before released"
        )
        func nacksKeepPerHoldOrder() async throws {
            try await withCore(workers: 4, outboxPollInterval: .milliseconds(100)) { core in
                let holds = 40
                let showtimeID = try await core.showtime(seats: holds)
                // The subscriber: at most 2 messages queued, taken one at a time, 2 ms each. A publish that
                // finds it full is refused and nacked (reject-publish); a later one of the same batch that finds
                // a slot freed is enqueued and acked.
                let listener = try AMQPConnection(configuration: AMQPConfiguration(url: core.rabbitmqURL), logger: testLogger)
                let queue = try listener.declareQueue(
                    "",
                    durable: false,
                    exclusive: true,
                    arguments: ["x-max-length": .int(2), "x-overflow": .string("reject-publish")]
                )
                try listener.bindQueue(queue, exchange: EventType.exchange, routingKey: "#")
                try listener.setPrefetch(1)
                _ = try listener.consume(queue: queue, noAck: false)
                let received = Mutex<[(type: String, hold: String)]>([])
                let stop = Atomic<Bool>(false)
                // `listener` moves to the consuming thread, which alone uses it from here on.
                nonisolated(unsafe) let consumer = listener
                let consuming = Thread {
                    defer { consumer.close() }
                    while !stop.load(ordering: .relaxed) {
                        guard let event = try? consumer.nextEvent(timeout: .milliseconds(50)),
                            case .delivery(let message) = event
                        else { continue }
                        let payload = try? JSONSerialization.jsonObject(with: Data(message.body)) as? [String: Any]
                        let hold = payload?["holdId"] as? String ?? "?"
                        received.withLock { $0.append((message.routingKey, hold)) }
                        usleep(2_000)
                        try? consumer.ack(deliveryTag: message.deliveryTag)
                    }
                }
                consuming.start()
                defer { stop.store(true, ordering: .relaxed) }

                // Each hold made and released at once, all at the same time: the outbox gets both events of
                // many holds close together, so a relay batch would carry both.
                let ids = try await withThrowingTaskGroup(of: String.self) { group in
                    for seat in 1...holds {
                        group.addTask {
                            let answer = try await core.hold(showtimeID, ["s\(seat)"], user: "user-\(seat)")
                            let hold = try answer.decode(Hold.self).result.get()
                            let released = try await core.client.call(
                                .release,
                                ReleaseRequest(holdId: hold.holdId, userId: "user-\(seat)")
                            )
                            #expect(try released.decode(Hold.self).result.get().status == .released)
                            return hold.holdId
                        }
                    }
                    var ids: [String] = []
                    for try await id in group { ids.append(id) }
                    return ids
                }

                // Every event published (confirmed) and received by the subscriber (bounded polls).
                func published() throws -> Bool {
                    try core.query("SELECT count(*) AS n FROM outbox WHERE published_at IS NULL").first?["n"] == "0"
                }
                func complete() -> Bool {
                    Set(received.withLock { $0.map { "\($0.type) \($0.hold)" } }).count >= 2 * holds
                }
                let deadline = ContinuousClock.now + .seconds(90)
                while ContinuousClock.now < deadline {
                    if try published(), complete() { break }
                    try await Task.sleep(for: .milliseconds(100))
                }
                #expect(try published(), "the outbox was not published within 90 s")
                #expect(complete(), "the subscriber did not get both events of every hold within 90 s")
                let order = received.withLock { $0 }
                for id in ids {
                    let created = order.firstIndex { $0.hold == id && $0.type == "hold.created" }
                    let released = order.firstIndex { $0.hold == id && $0.type == "hold.released" }
                    #expect(created != nil && released != nil, "hold \(id): \(String(describing: created)) \(String(describing: released))")
                    if let created, let released {
                        #expect(created < released, "hold \(id): hold.released (#\(released)) arrived before hold.created (#\(created))")
                    }
                }
                // The refusals happened: every nack makes the relay publish again what followed it, which the
                // fixture's own (unlimited) subscriber then receives twice. Without a nack the test shows nothing.
                let republished = core.events.messages.count - Set(core.events.all.map(\.eventId)).count
                #expect(republished > 0, "no event was published twice: the broker nacked nothing")
            }
        }
    }
}
