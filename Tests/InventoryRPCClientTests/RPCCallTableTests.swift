import Testing

@testable import InventoryRPCClient

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

@Suite("RPC call table: correlation, deadlines, returns, connection changes")
struct RPCCallTableTests {
    typealias Table = RPCCallTable<String, String, FakeInstant>

    private func at(_ milliseconds: Int64) -> FakeInstant { FakeInstant(milliseconds: milliseconds) }

    /// The actions as text, so expectations read like the protocol.
    private func describe(_ actions: [Table.Action]) -> [String] {
        actions.map { action in
            switch action {
            case .publish(let id, let context, let deadline): "publish \(id) \(context) by \(deadline.milliseconds)"
            case .deliver(let context, let reply): "deliver \(context) \(reply)"
            case .fail(let context, let failure): "fail \(context) \(failure.caseName)"
            case .wait(let id): "wait \(id)"
            case .ignore(let id): "ignore \(id)"
            }
        }
    }

    private func describe(_ action: Table.Action) -> String { describe([action])[0] }

    private func connected(_ policy: RPCDisconnectedPolicy = .failAtOnce) -> Table {
        var table = Table(whileDisconnected: policy)
        #expect(table.connectionEstablished(now: at(0)).isEmpty)
        return table
    }

    @Test("without a connection a call fails notConnected at once, nothing is published")
    func disconnected() {
        var table = Table()
        #expect(
            describe(table.start(correlationID: "1", context: "a", deadline: at(500), now: at(0)))
                == "fail a notConnected"
        )
        #expect(table.pendingCount == 0)
        #expect(table.nextDeadline() == nil)
    }

    @Test("a reply is matched to its call by correlation id, in any order")
    func replies() {
        var table = connected()
        #expect(
            describe(table.start(correlationID: "1", context: "a", deadline: at(500), now: at(0)))
                == "publish 1 a by 500"
        )
        _ = table.start(correlationID: "2", context: "b", deadline: at(600), now: at(10))
        #expect(describe(table.replyArrived(correlationID: "2", reply: "r2")) == "deliver b r2")
        #expect(describe(table.replyArrived(correlationID: "1", reply: "r1")) == "deliver a r1")
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
        #expect(describe(table.replyArrived(correlationID: "1", reply: "late")) == "ignore 1")
        #expect(table.nextDeadline() == nil)
    }

    @Test("replies for correlation ids never issued are ignored")
    func unknownReply() {
        var table = connected()
        _ = table.start(correlationID: "1", context: "a", deadline: at(500), now: at(0))
        #expect(describe(table.replyArrived(correlationID: "x", reply: "r")) == "ignore x")
        #expect(table.pendingCount == 1)
    }

    @Test("deadlines expire in order, whatever order calls with different timeouts started in")
    func mixedDeadlines() {
        var table = connected()
        _ = table.start(correlationID: "1", context: "slow", deadline: at(5000), now: at(0))
        _ = table.start(correlationID: "2", context: "ping", deadline: at(1000), now: at(1))
        _ = table.start(correlationID: "3", context: "mid", deadline: at(3000), now: at(2))
        _ = table.start(correlationID: "4", context: "mid2", deadline: at(3000), now: at(3))
        #expect(table.nextDeadline() == at(1000))
        #expect(
            describe(table.expire(now: at(3000))) == ["fail ping timedOut", "fail mid timedOut", "fail mid2 timedOut"]
        )
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

    @Test("losing the connection fails every published call connectionLost; later replies are ignored")
    func connectionLost() {
        var table = connected()
        _ = table.start(correlationID: "1", context: "a", deadline: at(500), now: at(0))
        _ = table.start(correlationID: "2", context: "b", deadline: at(500), now: at(0))
        #expect(Set(describe(table.connectionLost())) == ["fail a connectionLost", "fail b connectionLost"])
        #expect(!table.isConnected)
        #expect(table.pendingCount == 0)
        #expect(describe(table.replyArrived(correlationID: "1", reply: "r")) == "ignore 1")
        #expect(
            describe(table.start(correlationID: "3", context: "c", deadline: at(900), now: at(1)))
                == "fail c notConnected"
        )
        #expect(table.connectionEstablished(now: at(2)).isEmpty)
        #expect(
            describe(table.start(correlationID: "4", context: "d", deadline: at(900), now: at(2)))
                == "publish 4 d by 900"
        )
    }

    @Test("a request the broker returns (nobody consumes its routing key) fails unroutable, once")
    func returned() {
        var table = connected()
        _ = table.start(correlationID: "1", context: "a", deadline: at(500), now: at(0))
        #expect(describe(table.requestReturned(correlationID: "1")) == "fail a unroutable")
        #expect(describe(table.requestReturned(correlationID: "1")) == "ignore 1")
        #expect(describe(table.expire(now: at(1000))).isEmpty)
    }

    @Test("a call already past its deadline is not published")
    func pastDeadline() {
        var table = connected()
        #expect(
            describe(table.start(correlationID: "1", context: "a", deadline: at(5), now: at(5))) == "fail a timedOut"
        )
    }

    @Test("a correlation id still pending is refused for a new call; once answered it may be used again")
    func duplicateCorrelationID() {
        var table = connected()
        _ = table.start(correlationID: "1", context: "a", deadline: at(100), now: at(0))
        // Another call stays pending, so the first call's heap entry outlives its answer.
        _ = table.start(correlationID: "other", context: "o", deadline: at(2000), now: at(0))
        #expect(
            describe(table.start(correlationID: "1", context: "b", deadline: at(900), now: at(0)))
                == "fail b duplicateCorrelationID"
        )
        #expect(describe(table.replyArrived(correlationID: "1", reply: "r")) == "deliver a r")
        // The new call's deadline is its own, not the first call's stale heap entry.
        _ = table.start(correlationID: "1", context: "c", deadline: at(900), now: at(10))
        #expect(describe(table.expire(now: at(100))).isEmpty)
        #expect(table.nextDeadline() == at(900))
        #expect(describe(table.expire(now: at(900))) == ["fail c timedOut"])
    }

    @Test("waiting for a connection: calls are published when it comes, oldest first, with their own deadlines")
    func waitForConnection() {
        var table = Table(whileDisconnected: .waitForConnection)
        #expect(describe(table.start(correlationID: "1", context: "a", deadline: at(500), now: at(0))) == "wait 1")
        #expect(describe(table.start(correlationID: "2", context: "b", deadline: at(300), now: at(10))) == "wait 2")
        #expect(describe(table.start(correlationID: "3", context: "c", deadline: at(900), now: at(20))) == "wait 3")
        #expect(table.pendingCount == 3)
        #expect(table.nextDeadline() == at(300))
        #expect(describe(table.expire(now: at(300))) == ["fail b notConnected"])
        #expect(describe(table.connectionEstablished(now: at(400))) == ["publish 1 a by 500", "publish 3 c by 900"])
        #expect(describe(table.expire(now: at(500))) == ["fail a timedOut"])
        #expect(describe(table.replyArrived(correlationID: "3", reply: "r")) == "deliver c r")
    }

    @Test("waiting calls whose deadline passed before the connection came fail notConnected, not published")
    func waitExpiredOnConnect() {
        var table = Table(whileDisconnected: .waitForConnection)
        _ = table.start(correlationID: "1", context: "a", deadline: at(100), now: at(0))
        #expect(describe(table.connectionEstablished(now: at(150))) == ["fail a notConnected"])
        #expect(table.pendingCount == 0)
    }

    @Test("a lost connection fails the published calls; calls still waiting go on waiting for the next")
    func lostWhileSomeWait() {
        var table = connected(.waitForConnection)
        _ = table.start(correlationID: "1", context: "sent", deadline: at(900), now: at(0))
        #expect(describe(table.connectionLost()) == ["fail sent connectionLost"])
        #expect(
            describe(table.start(correlationID: "2", context: "queued", deadline: at(900), now: at(10))) == "wait 2"
        )
        #expect(table.connectionLost().isEmpty)
        #expect(describe(table.connectionEstablished(now: at(20))) == ["publish 2 queued by 900"])
    }

    @Test("closing fails every call stopped: the published ones, and those waiting for a connection")
    func close() {
        var table = connected(.waitForConnection)
        _ = table.start(correlationID: "1", context: "sent", deadline: at(900), now: at(0))
        _ = table.start(correlationID: "2", context: "sent2", deadline: at(800), now: at(0))
        #expect(Set(describe(table.close())) == ["fail sent stopped", "fail sent2 stopped"])
        #expect(!table.isConnected)
        #expect(table.nextDeadline() == nil)
        _ = table.start(correlationID: "3", context: "queued", deadline: at(900), now: at(1))
        #expect(describe(table.close()) == ["fail queued stopped"])
        #expect(table.pendingCount == 0)
        #expect(table.connectionEstablished(now: at(2)).isEmpty)
    }

    @Test("many calls with mixed timeouts, replies, returns and expiry: every one answered exactly once")
    func manyCalls() {
        var table = connected()
        var answered: [String: Int] = [:]
        func count(_ actions: [Table.Action]) {
            for action in actions {
                switch action {
                case .deliver(let context, _), .fail(let context, _): answered[context, default: 0] += 1
                case .publish, .wait, .ignore: break
                }
            }
        }
        var generator = SeededLCG(seed: 42)
        for index in 0..<5000 {
            let deadline = at(Int64(generator.next() % 700) + 100)
            count([table.start(correlationID: "\(index)", context: "\(index)", deadline: deadline, now: at(0))])
            if index % 3 == 0 { count([table.replyArrived(correlationID: "\(index)", reply: "r")]) }
            if index % 11 == 0 { count([table.requestReturned(correlationID: "\(index)")]) }
        }
        count(table.expire(now: at(350)))
        for index in stride(from: 1, to: 5000, by: 3) {
            count([table.replyArrived(correlationID: "\(index)", reply: "r")])
        }
        var last = at(0)
        while let deadline = table.nextDeadline() {
            #expect(last <= deadline)
            last = deadline
            count(table.expire(now: deadline))
        }
        #expect(answered.count == 5000)
        #expect(answered.values.allSatisfy { $0 == 1 })
        #expect(table.pendingCount == 0)
    }
}

extension RPCFailure {
    /// The case's name, for expectations that read like the protocol.
    var caseName: String {
        switch self {
        case .notConnected: "notConnected"
        case .connectionLost: "connectionLost"
        case .unroutable: "unroutable"
        case .timedOut: "timedOut"
        case .stopped: "stopped"
        case .duplicateCorrelationID: "duplicateCorrelationID"
        }
    }
}

/// A seeded linear congruential generator (Knuth's MMIX constants): the same deadlines every run.
struct SeededLCG {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        return state >> 33
    }
}
