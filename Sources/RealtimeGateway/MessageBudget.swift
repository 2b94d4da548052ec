/// How many messages one WebSocket client may send: a token bucket, `rate` a second with bursts of
/// `burst` (decision 0017). A browser sends a subscribe per showtime it shows and a ping now and then;
/// a client over the budget is flooding, and its connection is closed (1008, policy violation) before
/// its messages cost any parsing. Pure: the caller gives the time.
struct MessageBudget<Instant: InstantProtocol> where Instant.Duration == Duration {
    let rate: Int
    let burst: Int
    private var tokens: Double
    private var last: Instant?

    init(rate: Int, burst: Int) {
        self.rate = rate
        self.burst = burst
        tokens = Double(burst)
    }

    /// Takes one message's token; false when the budget is spent.
    mutating func take(now: Instant) -> Bool {
        if let last {
            let elapsed = last.duration(to: now)
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            tokens = min(Double(burst), tokens + max(0, seconds) * Double(rate))
        }
        last = now
        guard tokens >= 1 else { return false }
        tokens -= 1
        return true
    }
}
