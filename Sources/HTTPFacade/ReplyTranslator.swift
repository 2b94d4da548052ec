import Contracts

/// A REST answer before CORS and the other per-request headers are added.
struct RESTAnswer: Sendable, Equatable {
    var status: Int
    var body: [UInt8]
    var contentType: String = ContractHeaders.contentType
    var headers: [(String, String)] = []

    static func == (lhs: RESTAnswer, rhs: RESTAnswer) -> Bool {
        lhs.status == rhs.status && lhs.body == rhs.body && lhs.contentType == rhs.contentType
            && lhs.headers.map { "\($0.0): \($0.1)" } == rhs.headers.map { "\($0.0): \($0.1)" }
    }

    static func error(_ error: ErrorBody, headers: [(String, String)] = []) -> RESTAnswer {
        RESTAnswer(status: error.code.httpStatus, body: error.restBody(), headers: headers)
    }

    static func error(_ code: ErrorCode, _ message: String, details: [String: JSONValue]? = nil) -> RESTAnswer {
        .error(ErrorBody(code: code, message: message, details: details))
    }
}

/// Turns the core's reply (`{"ok": true, "data": ...}` / `{"ok": false, "error": ...}`) into the REST
/// answer: the `data` with the route's status, or `{"error": ...}` with the error table's status.
///
/// The reply's bytes are passed on, not decoded and encoded again (decision 0024): `ReplyScan` finds
/// `data` (or `error` and its code, which gives the status) in one structural pass, and the body is those
/// bytes. That the core's bytes fit the contract is checked by tests (`ReplyContractTests`) instead of on
/// every reply. What the scan does not recognise (not one envelope, an unknown code, an error without
/// `details`, a hold whose `userId` needs unescaping or is not the owner's) goes the old way, `decoded`:
/// decoded into the route's contract type and encoded again, so an off-contract reply is still a logged
/// 500, never a malformed body to the browser.
enum ReplyTranslator {
    /// `owner`: the user a hold in the reply must belong to (`GET /holds/{holdId}` by a caller that is
    /// not an admin); another user's hold is answered 403 HOLD_NOT_OWNED, as the core answers a release.
    static func answer(
        route: Route,
        replyBody: [UInt8],
        replayed: Bool,
        owner: String? = nil
    ) -> Result<RESTAnswer, ReplyProblem> {
        guard let envelope = ReplyScan.envelope(replyBody) else {
            return decoded(route: route, replyBody: replyBody, replayed: replayed, owner: owner)
        }
        var answer: RESTAnswer
        switch envelope {
        case .ok(let data):
            if let owner {
                // The owner check reads one string; anything but the owner's plain id is decided by decoding.
                guard let user = ReplyScan.plainString("userId", inObjectAt: data, of: replyBody),
                    user.elementsEqual(owner.utf8)
                else { return decoded(route: route, replyBody: replyBody, replayed: replayed, owner: owner) }
            }
            answer = RESTAnswer(status: route.successStatus, body: Array(replyBody[data]))
        case .error(let object, let code):
            var body: [UInt8] = []
            body.reserveCapacity(object.count + 10)
            body += Self.errorPrefix
            body += replyBody[object]
            body.append(UInt8(ascii: "}"))
            answer = RESTAnswer(status: code.httpStatus, body: body)
        }
        // A refusal a key kept (rule 9) is replayed like a success, and marked the same way.
        if replayed { answer.headers.append((ContractHeaders.idempotentReplayed, "true")) }
        return .success(answer)
    }

    private static let errorPrefix = Array(#"{"error":"#.utf8)

    /// The answer by decoding the reply into the route's contract type and encoding it again: the path of
    /// every reply before decision 0024, now of those `ReplyScan` does not recognise. The tests compare the
    /// two paths.
    static func decoded(
        route: Route,
        replyBody: [UInt8],
        replayed: Bool,
        owner: String? = nil
    ) -> Result<RESTAnswer, ReplyProblem> {
        switch route {
        case .hold, .release, .purchase, .holdGet, .holdExtend:
            if let owner, case .ok(let hold)? = try? ContractJSON.decode(RPCReply<Hold>.self, from: replyBody),
                hold.userId != owner
            {
                return .success(
                    .error(
                        ErrorBody(
                            code: .holdNotOwned,
                            message: "The hold belongs to another user",
                            details: ["holdId": .string(hold.holdId)]
                        )
                    )
                )
            }
            return translate(RPCReply<Hold>.self, route: route, replyBody: replyBody, replayed: replayed)
        case .availability:
            return translate(RPCReply<Availability>.self, route: route, replyBody: replyBody, replayed: replayed)
        case .seatsDefine:
            return translate(RPCReply<SeatsDefined>.self, route: route, replyBody: replyBody, replayed: replayed)
        case .seatHistory:
            return translate(RPCReply<SeatHistory>.self, route: route, replyBody: replyBody, replayed: replayed)
        case .healthz, .readyz:
            return translate(RPCReply<PingReply>.self, route: route, replyBody: replyBody, replayed: replayed)
        }
    }

    private static func translate<T: Codable & Sendable>(
        _ type: RPCReply<T>.Type,
        route: Route,
        replyBody: [UInt8],
        replayed: Bool
    ) -> Result<RESTAnswer, ReplyProblem> {
        let reply: RPCReply<T>
        do {
            reply = try ContractJSON.decode(type, from: replyBody)
        } catch {
            return .failure(ReplyProblem(description: "the core's reply does not fit the contract: \(error)"))
        }
        switch reply {
        case .ok(let data):
            do {
                var answer = RESTAnswer(status: route.successStatus, body: try ContractJSON.encode(data))
                if replayed { answer.headers.append((ContractHeaders.idempotentReplayed, "true")) }
                return .success(answer)
            } catch {
                return .failure(ReplyProblem(description: "the reply's data could not be encoded: \(error)"))
            }
        case .error(let error):
            // A refusal a key kept (rule 9) is replayed like a success, and marked the same way.
            var answer = RESTAnswer.error(error)
            if replayed { answer.headers.append((ContractHeaders.idempotentReplayed, "true")) }
            return .success(answer)
        }
    }
}

/// A reply the facade cannot pass on (answered 500 INTERNAL and logged).
struct ReplyProblem: Error, CustomStringConvertible, Sendable {
    var description: String
}
