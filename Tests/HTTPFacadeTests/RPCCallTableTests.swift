import Testing

@testable import HTTPFacade

/// A clock reading the tests set by hand.
struct FakeInstant: InstantProtocol {
    var milliseconds: Int64
    func advanced(by duration: Duration) -> FakeInstant {
        FakeInstant(
            milliseconds: milliseconds + duration.components.seconds * 1000
                + duration.components.attoseconds / 1_000_000_000_000_000
        )
    }
    func duration(to other: FakeInstant) -> Duration { .milliseconds(other.milliseconds - milliseconds) }
    static func < (lhs: FakeInstant, rhs: FakeInstant) -> Bool { lhs.milliseconds < rhs.milliseconds }
}

@Suite("RPC call table (correlation and deadlines)") struct RPCCallTableTests {
    typealias Table = RPCCallTable<String, String, FakeInstant>

    private func at(_ milliseconds: Int64) -> FakeInstant { FakeInstant(milliseconds: milliseconds) }

    /// The actions as text, so expectations read like the protocol.
    private func describe(_ actions: [Table.Action]) -> [String] {
        actions.map { action in
            switch action {
            case .publish(let id, let context): "publish \(id) \(context)"
            case .deliver(let context, let reply): "deliver \(context) \(reply)"
            case .fail(let context, let failure): "fail \(context) \(failure)"
            case .ignore(let id): "ignore \(id)"
            }
        }
    }

    private func connected() -> Table {
        var table = Table()
        table.connectionEstablished()
        return table
    }

    @Test("without a connection a call fails unavailable at once, nothing is published")
    func disconnected() {
        var table = Table()
        #expect(
            describe([table.start(correlationID: "1", context: "a", deadline: at(500), now: at(0))]) == [
                "fail a unavailable"
            ]
        )
        #expect(table.pendingCount == 0)
        #expect(table.nextDeadline() == nil)
    }

    @Test("a reply is matched to its call by correlation id, in any order")
    func replies() {
        var table = connected()
        #expect(
            describe([table.start(correlationID: "1", context: "a", deadline: at(500), now: at(0))]) == ["publish 1 a"]
        )
        _ = table.start(correlationID: "2", context: "b", deadline: at(600), now: at(10))
        #expect(describe([table.replyArrived(correlationID: "2", reply: "r2")]) == ["deliver b r2"])
        #expect(describe([table.replyArrived(correlationID: "1", reply: "r1")]) == ["deliver a r1"])
        #expect(table.pendingCount == 0)
        #expect(describe(table.expire(now: at(10_000))).isEmpty)
    }

    @Test("a call times out at its deadline; its late reply is ignored")
    func timeoutThenLateReply() {
        var table = connected()
        _ = table.start(correlationID: "1", context: "a", deadline: at(500), now: at(0))
        #expect(table.nextDeadline() == at(500))
        #expect(describe(table.expire(now: at(499))).isEmpty)
        #expect(describe(table.expire(now: at(500))) == ["fail a timedOut"])
        #expect(describe([table.replyArrived(correlationID: "1", reply: "late")]) == ["ignore 1"])
        #expect(table.nextDeadline() == nil)
    }

    @Test("replies for correlation ids never issued are ignored")
    func unknownReply() {
        var table = connected()
        _ = table.start(correlationID: "1", context: "a", deadline: at(500), now: at(0))
        #expect(describe([table.replyArrived(correlationID: "x", reply: "r")]) == ["ignore x"])
        #expect(table.pendingCount == 1)
    }

    @Test("deadlines expire in order even when calls have different timeouts")
    func mixedDeadlines() {
        var table = connected()
        _ = table.start(correlationID: "1", context: "slow", deadline: at(5000), now: at(0))
        _ = table.start(correlationID: "2", context: "ping", deadline: at(1000), now: at(1))
        _ = table.start(correlationID: "3", context: "mid", deadline: at(3000), now: at(2))
        #expect(table.nextDeadline() == at(1000))
        #expect(describe(table.expire(now: at(3000))) == ["fail ping timedOut", "fail mid timedOut"])
        #expect(table.nextDeadline() == at(5000))
    }

    @Test("an answered call no longer sets the next wake-up")
    func answeredDeadlineSkipped() {
        var table = connected()
        _ = table.start(correlationID: "1", context: "a", deadline: at(100), now: at(0))
        _ = table.start(correlationID: "2", context: "b", deadline: at(200), now: at(0))
        _ = table.replyArrived(correlationID: "1", reply: "r")
        #expect(table.nextDeadline() == at(200))
    }

    @Test("losing the connection fails every pending call unavailable; later replies are ignored")
    func connectionLost() {
        var table = connected()
        _ = table.start(correlationID: "1", context: "a", deadline: at(500), now: at(0))
        _ = table.start(correlationID: "2", context: "b", deadline: at(500), now: at(0))
        #expect(Set(describe(table.connectionLost())) == ["fail a unavailable", "fail b unavailable"])
        #expect(!table.isConnected)
        #expect(describe([table.replyArrived(correlationID: "1", reply: "r")]) == ["ignore 1"])
        #expect(
            describe([table.start(correlationID: "3", context: "c", deadline: at(900), now: at(1))]) == [
                "fail c unavailable"
            ]
        )
        table.connectionEstablished()
        #expect(
            describe([table.start(correlationID: "4", context: "d", deadline: at(900), now: at(1))]) == ["publish 4 d"]
        )
    }

    @Test("a request the broker returns (no core queue) fails unroutable, once")
    func returned() {
        var table = connected()
        _ = table.start(correlationID: "1", context: "a", deadline: at(500), now: at(0))
        #expect(describe([table.requestReturned(correlationID: "1")]) == ["fail a unroutable"])
        #expect(describe([table.requestReturned(correlationID: "1")]) == ["ignore 1"])
        #expect(describe(table.expire(now: at(1000))).isEmpty)
    }

    @Test("a call already past its deadline is not published")
    func pastDeadline() {
        var table = connected()
        #expect(
            describe([table.start(correlationID: "1", context: "a", deadline: at(5), now: at(5))]) == [
                "fail a timedOut"
            ]
        )
    }

    @Test("many calls: every one answered exactly once")
    func manyCalls() {
        var table = connected()
        var answered: [String: Int] = [:]
        func count(_ actions: [Table.Action]) {
            for case .deliver(let context, _) in actions { answered[context, default: 0] += 1 }
            for case .fail(let context, _) in actions { answered[context, default: 0] += 1 }
        }
        for index in 0..<5000 {
            count([
                table.start(
                    correlationID: "\(index)",
                    context: "\(index)",
                    deadline: at(Int64(index % 7) * 100 + 100),
                    now: at(0)
                )
            ])
            if index % 3 == 0 { count([table.replyArrived(correlationID: "\(index)", reply: "r")]) }
        }
        count(table.expire(now: at(350)))
        for index in stride(from: 1, to: 5000, by: 3) {
            count([table.replyArrived(correlationID: "\(index)", reply: "r")])
        }
        count(table.expire(now: at(10_000)))
        #expect(answered.count == 5000)
        #expect(answered.values.allSatisfy { $0 == 1 })
        #expect(table.pendingCount == 0)
    }
}
