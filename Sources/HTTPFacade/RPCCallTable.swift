/// The RPC client's bookkeeping, as a state machine with no I/O and no clock of its own: events go in
/// (a call starts, a reply or a return arrives, time passes, the connection comes or goes), actions come
/// out (publish, answer a call). The thread that owns the AMQP connection feeds it and carries out what
/// it says; the tests feed it with made-up instants.
///
/// Every call is answered exactly once: by its reply, by its deadline (timed out), by a `mandatory`
/// return (nobody consumes the operation), or when the connection it was published on is lost. A reply
/// that arrives after its call was answered, or for a correlation id never issued, is ignored.
struct RPCCallTable<Context, Reply, Instant: InstantProtocol> {
    typealias Failure = RPCFailure

    enum Action {
        /// Publish the request; its call is now pending.
        case publish(correlationID: String, Context)
        case deliver(Context, Reply)
        case fail(Context, Failure)
        /// A reply or return nobody waits for any more (late or unknown): dropped.
        case ignore(correlationID: String)
    }

    private struct Pending {
        var context: Context
        var deadline: Instant
    }

    private(set) var isConnected = false
    private var pending: [String: Pending] = [:]
    /// Deadlines in order (earliest first) from `head` on; entries whose call was answered stay until they
    /// reach the head (lazy removal keeps a reply O(1)).
    private var deadlines: [(deadline: Instant, correlationID: String)] = []
    private var head = 0

    init() {}

    var pendingCount: Int { pending.count }

    /// The earliest deadline of a pending call: when the owner must wake up at the latest.
    mutating func nextDeadline() -> Instant? {
        dropAnsweredHeads()
        return head < deadlines.count ? deadlines[head].deadline : nil
    }

    mutating func connectionEstablished() {
        isConnected = true
    }

    /// Every pending call fails `unavailable`: its reply would come on the lost connection.
    mutating func connectionLost() -> [Action] {
        isConnected = false
        let failed = pending.values.map { Action.fail($0.context, .unavailable) }
        pending = [:]
        deadlines = []
        head = 0
        return failed
    }

    /// A new call. `correlationID` must be unique for the life of the table.
    mutating func start(correlationID: String, context: Context, deadline: Instant, now: Instant) -> Action {
        guard isConnected else { return .fail(context, .unavailable) }
        guard now < deadline else { return .fail(context, .timedOut) }
        precondition(pending[correlationID] == nil, "correlation id \(correlationID) issued twice")
        pending[correlationID] = Pending(context: context, deadline: deadline)
        insertDeadline(deadline, correlationID: correlationID)
        return .publish(correlationID: correlationID, context)
    }

    mutating func replyArrived(correlationID: String, reply: Reply) -> Action {
        guard let call = pending.removeValue(forKey: correlationID) else {
            return .ignore(correlationID: correlationID)
        }
        return .deliver(call.context, reply)
    }

    /// The broker returned a `mandatory` request it could not route.
    mutating func requestReturned(correlationID: String) -> Action {
        guard let call = pending.removeValue(forKey: correlationID) else {
            return .ignore(correlationID: correlationID)
        }
        return .fail(call.context, .unroutable)
    }

    /// Calls whose deadline is at or before `now` fail `timedOut`.
    mutating func expire(now: Instant) -> [Action] {
        var failed: [Action] = []
        while head < deadlines.count, deadlines[head].deadline <= now {
            let id = deadlines[head].correlationID
            head += 1
            if let call = pending.removeValue(forKey: id) { failed.append(.fail(call.context, .timedOut)) }
        }
        compact()
        return failed
    }

    private mutating func insertDeadline(_ deadline: Instant, correlationID: String) {
        // Calls mostly share one timeout, so the new deadline almost always goes at the end.
        var index = deadlines.count
        if index > head, deadlines[index - 1].deadline > deadline {
            var low = head
            var high = deadlines.count
            while low < high {
                let middle = (low + high) / 2
                if deadlines[middle].deadline <= deadline { low = middle + 1 } else { high = middle }
            }
            index = low
        }
        deadlines.insert((deadline, correlationID), at: index)
    }

    private mutating func dropAnsweredHeads() {
        while head < deadlines.count, pending[deadlines[head].correlationID] == nil { head += 1 }
        compact()
    }

    private mutating func compact() {
        if head == deadlines.count {
            deadlines.removeAll(keepingCapacity: true)
            head = 0
        } else if head > 1024, head * 2 > deadlines.count {
            deadlines.removeFirst(head)
            head = 0
        }
    }
}

/// Why an RPC call got no reply.
enum RPCFailure: Equatable, Sendable {
    /// No broker connection: answered at once, never after a timeout.
    case unavailable
    /// The broker could not route the request: no core has declared the operation's queue.
    case unroutable
    /// No reply before the deadline.
    case timedOut
}
