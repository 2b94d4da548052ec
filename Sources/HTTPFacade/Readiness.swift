import Contracts
import InventoryRPCClient
import Synchronization

/// `/readyz`: ready when the broker connection is up and the core answers `ping.request`.
///
/// A ping's answer is kept for `cacheFor`, and concurrent checks share one ping, so a load balancer
/// polling hard does not turn into RPC load. A missing broker connection is answered at once, uncached.
final class Readiness: Sendable {
    struct Verdict: Sendable, Equatable {
        var ready: Bool
        var reason: String
    }

    private struct State {
        var cached: (verdict: Verdict, at: ContinuousClock.Instant)?
        /// Checks waiting for the ping in flight; nil when none is.
        var waiters: [@Sendable (Verdict) -> Void]?
    }

    private let rpc: RPCClient
    private let pingTimeout: Duration
    private let cacheFor: Duration
    private let state = Mutex(State())

    init(rpc: RPCClient, pingTimeout: Duration, cacheFor: Duration = .seconds(1)) {
        self.rpc = rpc
        self.pingTimeout = pingTimeout
        self.cacheFor = cacheFor
    }

    func check(_ completion: @escaping @Sendable (Verdict) -> Void) {
        guard rpc.isConnected else {
            completion(Verdict(ready: false, reason: "no connection to the message broker"))
            return
        }
        let now = ContinuousClock.now
        enum Next {
            case answer(Verdict)
            case wait, ping
        }
        let next = state.withLock { state -> Next in
            if let cached = state.cached, cached.at.duration(to: now) < cacheFor { return .answer(cached.verdict) }
            if state.waiters != nil {
                state.waiters!.append(completion)
                return .wait
            }
            state.waiters = [completion]
            return .ping
        }
        switch next {
        case .answer(let verdict): completion(verdict)
        case .wait: break
        case .ping: ping()
        }
    }

    private func ping() {
        rpc.call(RPCRequest(.ping, body: Array("{}".utf8), timeout: pingTimeout)) { [self] outcome in
            let verdict = Self.verdict(outcome)
            let waiters = state.withLock { state -> [@Sendable (Verdict) -> Void] in
                state.cached = (verdict, ContinuousClock.now)
                defer { state.waiters = nil }
                return state.waiters ?? []
            }
            for waiter in waiters { waiter(verdict) }
        }
    }

    static func verdict(_ outcome: Result<RPCResponse, RPCFailure>) -> Verdict {
        switch outcome {
        case .success(let reply):
            switch (try? ContractJSON.decode(RPCReply<PingReply>.self, from: reply.body))?.result {
            case .success(let reply) where reply.status == "ok":
                return Verdict(ready: true, reason: "ok")
            case .success(let reply):
                return Verdict(ready: false, reason: "the core answered ping with status \(reply.status)")
            case .failure(let error):
                return Verdict(ready: false, reason: "the core answered ping with \(error.code.rawValue)")
            case nil:
                return Verdict(ready: false, reason: "the core's ping reply does not fit the contract")
            }
        case .failure(.notConnected), .failure(.connectionLost), .failure(.stopped):
            return Verdict(ready: false, reason: "no connection to the message broker")
        case .failure(.unroutable):
            return Verdict(ready: false, reason: "no core has declared its queues")
        case .failure(.timedOut):
            return Verdict(ready: false, reason: "the core did not answer ping in time")
        case .failure(.duplicateCorrelationID):
            return Verdict(ready: false, reason: "the ping could not be sent (correlation id in use)")
        }
    }
}
