import Testing

@testable import ServiceSupport

/// Always the same number: 0 gives no shortening, `.max` the most.
private struct FixedRandom: RandomNumberGenerator {
    var value: UInt64
    mutating func next() -> UInt64 { value }
}

@Suite("Back-off")
struct BackoffTests {
    @Test("without jitter the delays double up to the cap and stay there")
    func sequence() {
        var backoff = Backoff(initial: .milliseconds(100), maximum: .seconds(1), multiplier: 2, jitter: 0)
        var random = FixedRandom(value: 0)
        let delays = (0..<7).map { _ in backoff.nextDelay(using: &random) }
        #expect(
            delays == [
                .milliseconds(100), .milliseconds(200), .milliseconds(400), .milliseconds(800),
                .seconds(1), .seconds(1), .seconds(1),
            ]
        )
        #expect(backoff.attempts == 7)
    }

    @Test("reset after a success starts again from the initial delay")
    func reset() {
        var backoff = Backoff(initial: .milliseconds(50), maximum: .seconds(5), jitter: 0)
        _ = backoff.nextDelay()
        _ = backoff.nextDelay()
        #expect(backoff.nextDelay() == .milliseconds(200))
        backoff.reset()
        #expect(backoff.attempts == 0)
        #expect(backoff.nextDelay() == .milliseconds(50))
    }

    @Test("jitter only shortens a delay, by at most its share")
    func jitterBounds() {
        var backoff = Backoff(initial: .seconds(1), maximum: .seconds(8), multiplier: 2, jitter: 0.5)
        var none = FixedRandom(value: 0)
        var most = FixedRandom(value: .max)
        #expect(backoff.nextDelay(using: &none) == .seconds(1))
        let shortened = backoff.nextDelay(using: &most)
        #expect(shortened > .milliseconds(999) && shortened < .milliseconds(1001))  // 2 s less just under 50%

        var system = Backoff(initial: .seconds(1), maximum: .seconds(1), jitter: 0.2)
        for _ in 0..<100 {
            let delay = system.nextDelay()
            #expect(delay >= .milliseconds(800) && delay <= .seconds(1))
        }
    }

    @Test("thousands of failures neither overflow nor pass the cap")
    func manyFailures() {
        var backoff = Backoff(initial: .nanoseconds(1), maximum: .seconds(30), multiplier: 10, jitter: 0)
        for _ in 0..<5_000 { _ = backoff.nextDelay() }
        #expect(backoff.nextDelay() == .seconds(30))
    }
}
