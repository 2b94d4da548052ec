import Contracts

/// Turns a REST request into the body of its RPC, or into the 400 that keeps it from the core.
///
/// Pure: everything it needs is in its arguments, so the idempotency rules are tested without a server.
enum RPCRequestBuilder {
    /// The RPC body for `route` (an RPC route), encoded with `ContractJSON`. `holdGetUser` is the
    /// `userId` of a `hold.get` (the authenticated caller's; nil for an admin or with `AUTH_MODE=none`).
    static func body(
        for route: Route,
        pathParameter: String?,
        query: [String: String],
        headers: [String: String],
        body: [UInt8],
        limits: RequestLimits,
        holdGetUser: String? = nil
    ) -> Result<[UInt8], ErrorBody> {
        switch route {
        case .hold:
            return holdBody(headers: headers, body: body, limits: limits)
        case .release:
            return encoded(RequestDecoder.decode(ReleaseRequest.self, from: body, limits: limits))
        case .purchase:
            return encoded(RequestDecoder.decode(PurchaseRequest.self, from: body, limits: limits))
        case .holdGet:
            var object: [String: JSONValue] = ["holdId": .string(pathParameter ?? "")]
            if let holdGetUser { object["userId"] = .string(holdGetUser) }
            let value: JSONValue = .object(object)
            return encoded(RequestDecoder.decode(HoldGetRequest.self, from: value, limits: limits))
        case .availability:
            var object: [String: JSONValue] = [:]
            if let showtimeID = query["showtimeId"] { object["showtimeId"] = .string(showtimeID) }
            return encoded(RequestDecoder.decode(AvailabilityRequest.self, from: .object(object), limits: limits))
        case .seatsDefine:
            return seatsDefineBody(showtimeID: pathParameter ?? "", body: body, limits: limits)
        case .holdExtend:
            // The hold is the path's; a body, if any, is ignored (the route takes none).
            var object: [String: JSONValue] = ["holdId": .string(pathParameter ?? "")]
            if let holdGetUser { object["userId"] = .string(holdGetUser) }
            return encoded(RequestDecoder.decode(HoldExtendRequest.self, from: .object(object), limits: limits))
        case .seatHistory:
            return seatHistoryBody(pathParameter: pathParameter, query: query, limits: limits)
        case .healthz, .readyz:
            return .success(Array("{}".utf8))
        }
    }

    /// `POST /hold`: the key may come from the body, `Idempotency-Key` or the seed's `idempotencyKey`
    /// header; all that are given must agree (Contracts' `mergingIdempotencyKey`: problems at
    /// `idempotencyKey`, rule `pattern` or `mismatch`). The agreed key travels in the RPC body.
    static func holdBody(headers: [String: String], body: [UInt8], limits: RequestLimits) -> Result<[UInt8], ErrorBody>
    {
        let headerKeys = [headers[ContractHeaders.httpIdempotencyKey], headers[ContractHeaders.httpIdempotencyKeySeed]]
        if case .success(let value) = RequestDecoder.parse(body), BestAvailableHoldRequest.isBestAvailable(value) {
            return encoded(
                RequestDecoder.decode(BestAvailableHoldRequest.self, from: value, limits: limits)
                    .flatMap { $0.mergingIdempotencyKey(headers: headerKeys) }
            )
        }
        return encoded(
            RequestDecoder.decode(HoldRequest.self, from: body, limits: limits)
                .flatMap { $0.mergingIdempotencyKey(headers: headerKeys) }
        )
    }

    /// `PUT /showtimes/{showtimeId}/seats`: the showtime from the path, the seats from the body.
    static func seatsDefineBody(showtimeID: String, body: [UInt8], limits: RequestLimits) -> Result<[UInt8], ErrorBody>
    {
        var problems: [ValidationProblem] = []
        if let problem = Identifier.problem(showtimeID, field: "showtimeId") { problems.append(problem) }
        switch RequestDecoder.parse(body) {
        case .failure(let problem):
            problems.append(problem)
        case .success(let value):
            problems += RequestDecoder.problems(
                in: value,
                fields: SeatsDefineBody.fields,
                limits: limits,
                exactlyOneOf: SeatsDefineBody.exactlyOneOf
            )
            if problems.isEmpty {
                return encoded(
                    RequestDecoder.decode(SeatsDefineBody.self, from: value, limits: limits)
                        .map { $0.request(showtimeId: showtimeID) }
                )
            }
        }
        return .failure(.validation(problems))
    }

    /// `GET /showtimes/{showtimeId}/seats/{seatId}/history?limit=&before=`: the seat from the path, the page
    /// from the query (whole numbers; anything else is VALIDATION_FAILED naming the parameter).
    static func seatHistoryBody(
        pathParameter: String?,
        query: [String: String],
        limits: RequestLimits
    ) -> Result<[UInt8], ErrorBody> {
        let (showtimeID, seatID) = Route.historyParameters(pathParameter)
        var object: [String: JSONValue] = ["showtimeId": .string(showtimeID), "seatId": .string(seatID)]
        for name in ["limit", "before"] {
            guard let text = query[name] else { continue }
            if let number = Int(text) {
                object[name] = .number(Double(number))
            } else {
                object[name] = .string(text)  // Reported as a type problem naming the parameter.
            }
        }
        return encoded(RequestDecoder.decode(SeatHistoryRequest.self, from: .object(object), limits: limits))
    }

    private static func encoded<T: Encodable>(_ result: Result<T, ErrorBody>) -> Result<[UInt8], ErrorBody> {
        result.flatMap { request in
            do {
                return .success(try ContractJSON.encode(request))
            } catch {
                return .failure(ErrorBody(code: .internalError, message: "The request could not be encoded"))
            }
        }
    }
}
