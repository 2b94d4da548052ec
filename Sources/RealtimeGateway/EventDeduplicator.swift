/// Remembers the last `capacity` event ids: delivery from the broker is at least once, so the same
/// event can arrive twice (a redelivery after the core's outbox relay retried, or the same event seen
/// again across a reconnect). Oldest ids are forgotten first; a duplicate older than `capacity`
/// distinct events would pass, which only re-sends a state change clients already applied.
///
/// A value type with no locking: the one AMQP consumer thread owns it.
public struct EventDeduplicator: Sendable {
    public let capacity: Int
    private var seen: Set<String>
    /// The ids in arrival order, as a ring: `ring[next]` is the oldest once the ring is full.
    private var ring: [String]
    private var next = 0

    public init(capacity: Int) {
        precondition(capacity > 0, "EventDeduplicator needs a capacity above 0")
        self.capacity = capacity
        self.seen = Set(minimumCapacity: capacity)
        self.ring = []
        ring.reserveCapacity(capacity)
    }

    /// True when `eventId` was not among the last `capacity` ids (and remembers it); false for a duplicate.
    public mutating func firstSighting(of eventId: String) -> Bool {
        guard !seen.contains(eventId) else { return false }
        if ring.count < capacity {
            ring.append(eventId)
        } else {
            seen.remove(ring[next])
            ring[next] = eventId
            next = (next + 1) % capacity
        }
        seen.insert(eventId)
        return true
    }

    public var count: Int { seen.count }
}
