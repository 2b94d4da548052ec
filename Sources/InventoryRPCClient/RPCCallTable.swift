/// Where an RPC call is correlated: the client's bookkeeping as a state machine with no I/O and no clock
/// of its own. Events go in (a call starts, a reply or a return arrives, time passes, the connection comes
/// or goes), actions come out (publish, answer a call). `RPCChannel` feeds it and carries out what it
/// says; the tests feed it with made-up instants.
///
/// Every call is answered exactly once: by its reply, by its deadline, by a `mandatory` return (nobody
/// consumes the routing key), when the connection it was published on is lost, or when the table is
/// closed. A reply that arrives after its call was answered, or for a correlation id never issued, is
/// ignored.
///
/// A call started without a connection fails `notConnected` at once, or, with
/// `RPCDisconnectedPolicy.waitForConnection`, waits: it is published when the connection comes and
/// fails `notConnected` if its deadline comes first.
///
/// Deadlines are kept in a binary min-heap with lazy removal: starting a call is O(log n), a reply O(1)
/// (its heap entry stays until it reaches the top), expiry O(log n) per entry; nothing scans the calls
/// in flight except a lost connection.
public struct RPCCallTable<Context, Reply, Instant: InstantProtocol> {
    public enum Action {
        /// Publish the request now; it is due by `deadline`.
        case publish(correlationID: String, Context, deadline: Instant)
        case deliver(Context, Reply)
        case fail(Context, RPCFailure)
        /// Nothing to do yet: the call waits for a connection.
        case wait(correlationID: String)
        /// A reply or return nobody waits for any more (late or unknown): dropped.
        case ignore(correlationID: String)
    }

    private struct Call {
        var context: Context
        var deadline: Instant
        var published: Bool
        /// Tells this call's heap entry from that of an earlier call with the same correlation id.
        var sequence: UInt64
    }

    public let whileDisconnected: RPCDisconnectedPolicy
    public private(set) var isConnected = false
    private var calls: [String: Call] = [:]
    /// Correlation ids of calls waiting for a connection, oldest first; answered ones are skipped.
    private var waiting: [String] = []
    private var waitingCount = 0
    private var deadlines = DeadlineHeap<Instant>()
    private var nextSequence: UInt64 = 0

    public init(whileDisconnected: RPCDisconnectedPolicy = .failAtOnce) {
        self.whileDisconnected = whileDisconnected
    }

    /// Calls not answered yet (published or waiting).
    public var pendingCount: Int { calls.count }

    /// The earliest deadline of a call not answered yet: when the owner must wake up at the latest.
    public mutating func nextDeadline() -> Instant? {
        while let top = deadlines.top, calls[top.correlationID]?.sequence != top.sequence {
            deadlines.pop()
        }
        return deadlines.top?.deadline
    }

    /// A new call. Its correlation id must not be that of a call still pending.
    public mutating func start(correlationID: String, context: Context, deadline: Instant, now: Instant) -> Action {
        guard calls[correlationID] == nil else { return .fail(context, .duplicateCorrelationID) }
        if !isConnected && whileDisconnected == .failAtOnce { return .fail(context, .notConnected) }
        guard now < deadline else { return .fail(context, isConnected ? .timedOut : .notConnected) }
        nextSequence += 1
        calls[correlationID] = Call(
            context: context,
            deadline: deadline,
            published: isConnected,
            sequence: nextSequence
        )
        deadlines.push(deadline: deadline, sequence: nextSequence, correlationID: correlationID)
        guard isConnected else {
            waiting.append(correlationID)
            waitingCount += 1
            return .wait(correlationID: correlationID)
        }
        return .publish(correlationID: correlationID, context, deadline: deadline)
    }

    /// The connection is up: calls waiting for it whose deadline has not passed are published, oldest
    /// first; the others fail `notConnected`.
    public mutating func connectionEstablished(now: Instant) -> [Action] {
        isConnected = true
        var actions = expire(now: now)
        for correlationID in waiting {
            guard var call = calls[correlationID], !call.published else { continue }
            call.published = true
            calls[correlationID] = call
            actions.append(.publish(correlationID: correlationID, call.context, deadline: call.deadline))
        }
        waiting = []
        waitingCount = 0
        return actions
    }

    /// Every published call fails `connectionLost`: its reply would come on the lost connection. Calls
    /// waiting for a connection go on waiting.
    public mutating func connectionLost() -> [Action] {
        isConnected = false
        var actions: [Action] = []
        for (correlationID, call) in calls where call.published {
            calls[correlationID] = nil
            actions.append(.fail(call.context, .connectionLost))
        }
        dropDeadlinesIfIdle()
        return actions
    }

    /// The owner stops: every call, published or waiting, fails `stopped`.
    public mutating func close() -> [Action] {
        isConnected = false
        let actions = calls.values.map { Action.fail($0.context, .stopped) }
        calls = [:]
        waiting = []
        waitingCount = 0
        dropDeadlinesIfIdle()
        return actions
    }

    public mutating func replyArrived(correlationID: String, reply: Reply) -> Action {
        guard let call = removePublished(correlationID) else { return .ignore(correlationID: correlationID) }
        return .deliver(call.context, reply)
    }

    /// The broker returned a `mandatory` request it could not route.
    public mutating func requestReturned(correlationID: String) -> Action {
        guard let call = removePublished(correlationID) else { return .ignore(correlationID: correlationID) }
        return .fail(call.context, .unroutable)
    }

    /// Calls whose deadline is at or before `now` fail: `timedOut` once published, `notConnected` while
    /// still waiting for a connection.
    public mutating func expire(now: Instant) -> [Action] {
        var actions: [Action] = []
        while let top = deadlines.top, top.deadline <= now {
            deadlines.pop()
            guard let call = calls[top.correlationID], call.sequence == top.sequence else { continue }
            calls[top.correlationID] = nil
            if !call.published { waitingCount -= 1 }
            actions.append(.fail(call.context, call.published ? .timedOut : .notConnected))
        }
        if waiting.count > 64 && waiting.count > 2 * waitingCount {
            waiting.removeAll { calls[$0]?.published != false }
        }
        dropDeadlinesIfIdle()
        return actions
    }

    private mutating func removePublished(_ correlationID: String) -> Call? {
        guard let call = calls[correlationID], call.published else { return nil }
        calls[correlationID] = nil
        dropDeadlinesIfIdle()
        return call
    }

    /// With no call pending every heap entry is stale: drop them at once rather than one by one.
    private mutating func dropDeadlinesIfIdle() {
        if calls.isEmpty { deadlines.removeAll() }
    }
}

/// What the client does with a call made while it has no broker connection.
public enum RPCDisconnectedPolicy: Sendable, Equatable {
    /// Fail it `notConnected` at once (the facade: a 503 now beats one after the timeout).
    case failAtOnce
    /// Keep it until a connection comes (then publish it) or its deadline passes (then fail it
    /// `notConnected`).
    case waitForConnection
}

/// A binary min-heap of deadlines; ties keep the order calls started in.
struct DeadlineHeap<Instant: InstantProtocol> {
    struct Entry {
        var deadline: Instant
        var sequence: UInt64
        var correlationID: String

        func precedes(_ other: Entry) -> Bool {
            deadline < other.deadline || (deadline == other.deadline && sequence < other.sequence)
        }
    }

    private var entries: [Entry] = []

    var top: Entry? { entries.first }
    var count: Int { entries.count }

    mutating func push(deadline: Instant, sequence: UInt64, correlationID: String) {
        entries.append(Entry(deadline: deadline, sequence: sequence, correlationID: correlationID))
        var child = entries.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard entries[child].precedes(entries[parent]) else { break }
            entries.swapAt(child, parent)
            child = parent
        }
    }

    mutating func pop() {
        guard !entries.isEmpty else { return }
        entries.swapAt(0, entries.count - 1)
        entries.removeLast()
        var parent = 0
        while true {
            let left = 2 * parent + 1
            let right = left + 1
            var first = parent
            if left < entries.count && entries[left].precedes(entries[first]) { first = left }
            if right < entries.count && entries[right].precedes(entries[first]) { first = right }
            guard first != parent else { return }
            entries.swapAt(parent, first)
            parent = first
        }
    }

    mutating func removeAll() {
        entries.removeAll(keepingCapacity: true)
    }
}
