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
            problems += RequestDecoder.problems(in: value, fields: SeatsDefineBody.fields, limits: limits)
            if problems.isEmpty {
                return encoded(
                    RequestDecoder.decode(SeatsDefineBody.self, from: value, limits: limits)
                        .map { $0.request(showtimeId: showtimeID) }
                )
            }
        }
        return .failure(.validation(problems))
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
