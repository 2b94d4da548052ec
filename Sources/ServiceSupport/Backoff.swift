import Foundation

/// Delays between reconnect attempts: exponential from `initial`, capped at `maximum`, each shortened
/// by a random part of up to `jitter` so that many clients that lost the same server do not return at
/// the same instant. `reset()` after a success starts again from `initial`.
///
/// A value type with no clock and an injectable random source, so the sequence is testable:
///
/// ```swift
/// var backoff = Backoff()
/// while true {
///     do { try connect(); backoff.reset(); break }
///     catch { if shutdown.wait(timeout: backoff.nextDelay()) { return } }
/// }
/// ```
public struct Backoff: Sendable, Equatable {
    public var initial: Duration
    public var maximum: Duration
    public var multiplier: Double
    /// 0 gives exact delays; 0.2 gives each delay a random length between 80% and 100% of its step.
    public var jitter: Double
    /// Failed attempts since the last reset.
    public private(set) var attempts: Int = 0

    public init(
        initial: Duration = .milliseconds(100),
        maximum: Duration = .seconds(10),
        multiplier: Double = 2,
        jitter: Double = 0.2
    ) {
        precondition(initial > .zero && maximum >= initial, "Backoff needs 0 < initial <= maximum")
        precondition(multiplier >= 1, "Backoff needs multiplier >= 1")
        precondition((0...1).contains(jitter), "Backoff needs 0 <= jitter <= 1")
        self.initial = initial
        self.maximum = maximum
        self.multiplier = multiplier
        self.jitter = jitter
    }

    /// The delay before the next attempt, without jitter.
    public var currentStep: Duration {
        // An exponent past a few hundred only overflows to infinity, which `min` turns into the cap.
        let step = Self.seconds(initial) * pow(multiplier, Double(min(attempts, 1_000)))
        return step >= Self.seconds(maximum) ? maximum : .seconds(step)
    }

    /// The delay to wait now, counting one more failed attempt.
    public mutating func nextDelay<R: RandomNumberGenerator>(using random: inout R) -> Duration {
        let step = currentStep
        attempts += 1
        guard jitter > 0 else { return step }
        let shortening = jitter * Double.random(in: 0..<1, using: &random)
        return .seconds(Self.seconds(step) * (1 - shortening))
    }

    /// ``nextDelay(using:)`` with the system's random numbers.
    public mutating func nextDelay() -> Duration {
        var random = SystemRandomNumberGenerator()
        return nextDelay(using: &random)
    }

    /// After a success: the next delay is `initial` again.
    public mutating func reset() {
        attempts = 0
    }

    private static func seconds(_ duration: Duration) -> Double {
        let (seconds, attoseconds) = duration.components
        return Double(seconds) + Double(attoseconds) / 1e18
    }
}
