import Contracts
import HTTPServer
import InventoryRPCClient
import Logging
import ServiceSupport
import Synchronization

/// Answers one REST request: routing, CORS, validation, then one RPC whose reply becomes the answer.
///
/// Runs on a libmicrohttpd thread and never blocks it: a request that needs the core starts its call
/// and returns; the RPC client's thread hands the reply to a reply worker, which answers through the
/// `HTTPResponder` (the connection stays suspended meanwhile, holding no thread). The access log line is
/// queued for a writer thread of its own (decision 0024).
final class FacadeHandler: Sendable {
    struct Settings: Sendable {
        var cors: CORSPolicy
        var limits: RequestLimits
        var rpcTimeout: Duration
        var authentication: Authentication = .disabled
        /// nil: no rate limits (`RATE_LIMIT_ENABLED=false`).
        var ratePolicies: RatePolicies?
        var trustedProxies: [AddressRange] = []
        /// Requests in flight per client address behind a trusted proxy (the per-address connection limit
        /// of requests that come through one); nil: none.
        var maxProxiedRequestsPerAddress: Int?
        /// The seat map page and the development token endpoint (decision 0020); nil: neither.
        var web: WebEdge?
        /// Threads that turn replies into answers (decision 0024).
        var replyThreads = 2
        /// Access log lines waiting for the sink at most; more are dropped and counted.
        var accessLogCapacity = AccessLog.defaultCapacity
    }

    private let settings: Settings
    private let rpc: RPCClient
    private let limiter: RateLimiter?
    private let readiness: Readiness
    private let metrics = FacadeMetrics()
    private let logger: Logger
    private let draining = Atomic<Bool>(false)
    private let proxied = ProxiedClients()
    private let replies: ReplyWorkers
    private let accessLog: AccessLog

    /// Starts the reply workers and the access log's writer; `stop()` ends them.
    init(settings: Settings, rpc: RPCClient, limiter: RateLimiter? = nil, logger: Logger) {
        self.settings = settings
        self.rpc = rpc
        self.limiter = settings.ratePolicies == nil ? nil : limiter
        self.logger = logger
        self.readiness = Readiness(rpc: rpc, pingTimeout: min(settings.rpcTimeout, .seconds(2)))
        replies = ReplyWorkers(threads: settings.replyThreads)
        accessLog = AccessLog(logger: logger, capacity: settings.accessLogCapacity)
    }

    /// Access log lines dropped because the sink was behind.
    var accessLogDropped: Int { accessLog.droppedCount }

    /// After the RPC client stopped: the reply workers answer what is queued and end, then the access log
    /// writes what it can within a second.
    func stop() {
        replies.stop()
        accessLog.stop()
    }

    /// From now on new requests are answered 503 with `Connection: close`.
    func beginDraining() {
        draining.store(true, ordering: .releasing)
    }

    func handle(_ request: HTTPRequest, _ responder: HTTPResponder) {
        let started = ContinuousClock.now
        let match = Router.match(method: request.method, path: request.path)
        let origin = request.headers["origin"]
        metrics.requestStarted()

        // Behind a trusted proxy, many clients share its connections: each client address may have at most
        // `maxProxiedRequestsPerAddress` requests in flight, as a direct client may have that many
        // connections.
        let proxiedAddress: String?
        switch admitProxied(request) {
        case .direct:
            proxiedAddress = nil
        case .admitted(let address):
            proxiedAddress = address
        case .refused(let limit):
            metrics.rateLimited(policy: ProxiedClients.policyName)
            respond(
                ProxiedClients.limitedAnswer(limit: limit),
                correlationID: nil,
                request: request,
                match: match,
                origin: origin,
                started: started,
                responder: responder
            )
            return
        }

        let finish: @Sendable (RESTAnswer, String?) -> Void = { [self] answer, correlationID in
            if let proxiedAddress { proxied.leave(proxiedAddress) }
            respond(
                answer,
                correlationID: correlationID,
                request: request,
                match: match,
                origin: origin,
                started: started,
                responder: responder
            )
        }

        if draining.load(ordering: .acquiring) {
            var answer = RESTAnswer.error(.serviceUnavailable, "The service is shutting down")
            answer.headers.append(("Connection", "close"))
            finish(answer, nil)
            return
        }

        // The page's files and `POST /dev/token`: only on paths no REST route has.
        if case .notFound = match, let web = settings.web, let (answer, label) = web.answer(request) {
            if let proxiedAddress { proxied.leave(proxiedAddress) }
            respond(
                answer,
                correlationID: nil,
                request: request,
                match: match,
                origin: origin,
                started: started,
                responder: responder,
                label: label,
                cors: false
            )
            return
        }

        switch match {
        case .notFound:
            finish(.error(.notFound, "No route \(request.path)", details: ["path": .string(request.path)]), nil)
        case .methodNotAllowed(let route):
            var answer = RESTAnswer.error(
                .methodNotAllowed,
                "\(route.template) does not accept \(request.method)",
                details: ["method": .string(request.method), "allow": .string(route.allow)]
            )
            answer.headers.append(("Allow", route.allow))
            finish(answer, nil)
        case .preflight(let route):
            var answer = RESTAnswer(status: 204, body: [], contentType: "")
            answer.headers = settings.cors.preflightHeaders(origin: origin, route: route)
            finish(answer, nil)
        case .matched(_, _) where request.bodyTooLarge:
            finish(
                .error(
                    .payloadTooLarge,
                    "The body is over \(RequestLimits.maxBodyBytes) bytes",
                    details: ["limit": .number(Double(RequestLimits.maxBodyBytes))]
                ),
                nil
            )
        case .matched(.healthz, _):
            finish(RESTAnswer(status: 200, body: Array(#"{"status":"ok"}"#.utf8)), nil)
        case .matched(.readyz, _):
            readiness.check { verdict in
                if verdict.ready {
                    finish(RESTAnswer(status: 200, body: Array(#"{"status":"ok"}"#.utf8)), nil)
                } else {
                    finish(
                        .error(
                            .serviceUnavailable,
                            "Not ready: \(verdict.reason)",
                            details: ["reason": .string(verdict.reason)]
                        ),
                        nil
                    )
                }
            }
        case .matched(let route, let parameter):
            guard let operation = route.operation else {
                finish(.error(.internalError, "Route without an operation"), nil)
                return
            }
            // Who calls (401 / 403 before anything reaches the core), and the body with their userId.
            let caller: Caller?
            switch AccessPolicy.authorize(
                route: route,
                authorization: request.headers["authorization"],
                authentication: settings.authentication
            ) {
            case .success(let verified): caller = verified
            case .failure(let denied):
                finish(denied.answer, nil)
                return
            }
            var requestBody = request.body
            if let caller {
                switch AccessPolicy.identified(route: route, caller: caller, body: request.body) {
                case .success(let identified): requestBody = identified
                case .failure(let error):
                    finish(.error(error), nil)
                    return
                }
            }
            let owner = route == .holdGet || route == .holdExtend ? AccessPolicy.holdGetUser(caller: caller) : nil
            let body: [UInt8]
            switch RPCRequestBuilder.body(
                for: route,
                pathParameter: parameter,
                query: request.query,
                headers: request.headers,
                body: requestBody,
                limits: settings.limits,
                holdGetUser: owner
            ) {
            case .success(let encoded): body = encoded
            case .failure(let error):
                finish(.error(error), nil)
                return
            }
            let startCall: @Sendable () -> Void = { [self] in
                let correlationID = rpc.makeCorrelationID()
                let call = RPCRequest(operation, body: body, timeout: settings.rpcTimeout, correlationID: correlationID)
                rpc.call(call) { [self] outcome in
                    // On the RPC client's thread: hand over, nothing more.
                    replies.submit { [self] in
                        finish(answer(for: outcome, route: route, operation: operation, owner: owner), correlationID)
                    }
                }
            }
            let address = ClientAddress.resolve(
                peer: request.peerAddress,
                forwardedFor: request.headers["x-forwarded-for"],
                trusted: settings.trustedProxies
            )
            guard let limiter,
                let check = settings.ratePolicies?.check(route: route, user: caller?.subject, address: address)
            else {
                startCall()
                return
            }
            // The connection stays suspended while Redis decides; the daemon thread goes on at once.
            limiter.check(check) { [self] decision in
                switch decision {
                case .allowed, .failedOpen:
                    startCall()
                case .limited(let policy, let retryAfter, let reset):
                    metrics.rateLimited(policy: policy.name)
                    finish(
                        RatePolicies.limitedAnswer(policy: policy, retryAfterSeconds: retryAfter, resetSeconds: reset),
                        nil
                    )
                }
            }
        }
    }

    private enum ProxiedAdmission {
        /// Not through a trusted proxy (or no limit): the connection limits apply instead.
        case direct
        case admitted(String)
        case refused(limit: Int)
    }

    private func admitProxied(_ request: HTTPRequest) -> ProxiedAdmission {
        guard let limit = settings.maxProxiedRequestsPerAddress, let peer = request.peerAddress,
            settings.trustedProxies.contains(where: { $0.contains(peer) })
        else { return .direct }
        let address = ClientAddress.resolve(
            peer: peer,
            forwardedFor: request.headers["x-forwarded-for"],
            trusted: settings.trustedProxies
        )
        guard address != peer else { return .direct }
        return proxied.enter(address, limit: limit) ? .admitted(address) : .refused(limit: limit)
    }

    private func answer(
        for outcome: Result<RPCResponse, RPCFailure>,
        route: Route,
        operation: RPCOperation,
        owner: String?
    ) -> RESTAnswer {
        switch outcome {
        case .success(let reply):
            switch ReplyTranslator.answer(
                route: route,
                replyBody: reply.body,
                replayed: reply.isIdempotentReplay,
                owner: owner
            ) {
            case .success(let answer):
                return answer
            case .failure(let problem):
                logger.error(
                    "reply from the core not passed on",
                    metadata: ["rpc.operation": "\(operation.routingKey)", "error": "\(problem)"]
                )
                return .error(.internalError, "Internal error")
            }
        case .failure(.notConnected), .failure(.connectionLost), .failure(.stopped):
            return .error(
                .serviceUnavailable,
                "The inventory service is unavailable: no connection to the message broker"
            )
        case .failure(.unroutable):
            return .error(
                .serviceUnavailable,
                "The inventory service is unavailable: no core serves \(operation.routingKey)"
            )
        case .failure(.duplicateCorrelationID):
            logger.error(
                "RPC call refused: correlation id in use",
                metadata: ["rpc.operation": "\(operation.routingKey)"]
            )
            return .error(.internalError, "Internal error")
        case .failure(.timedOut):
            metrics.rpcTimedOut()
            let milliseconds =
                settings.rpcTimeout.components.seconds * 1000
                + settings.rpcTimeout.components.attoseconds / 1_000_000_000_000_000
            return .error(
                .upstreamTimeout,
                "No reply from the inventory core within \(milliseconds) ms",
                details: ["timeoutMs": .number(Double(milliseconds))]
            )
        }
    }

    private func respond(
        _ answer: RESTAnswer,
        correlationID: String?,
        request: HTTPRequest,
        match: RouteMatch,
        origin: String?,
        started: ContinuousClock.Instant,
        responder: HTTPResponder,
        label: String? = nil,
        cors: Bool = true
    ) {
        var headers: [(String, String)] = []
        if !answer.contentType.isEmpty { headers.append(("Content-Type", answer.contentType)) }
        if case .preflight = match {
            headers += answer.headers
        } else if cors {
            headers += settings.cors.responseHeaders(origin: origin)
            headers += answer.headers
        } else {
            headers += answer.headers
        }
        let routeLabel = label ?? match.routeLabel
        responder.respond(HTTPResponse(status: answer.status, headers: headers, body: answer.body))

        let duration = started.duration(to: .now)
        metrics.requestFinished(route: routeLabel, status: answer.status, duration: duration)
        let (seconds, attoseconds) = duration.components
        accessLog.record(
            AccessLog.Entry(
                method: request.method,
                route: routeLabel,
                status: answer.status,
                durationMilliseconds: Double(seconds) * 1000 + Double(attoseconds) / 1e15,
                correlationID: correlationID
            )
        )
    }
}
