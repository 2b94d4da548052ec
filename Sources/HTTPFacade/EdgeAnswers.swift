import Contracts
import HTTPServer

/// The contract's JSON bodies for what the HTTP daemon refuses before routing (`HTTPRejection`): framing
/// errors and control characters are 400 VALIDATION_FAILED, a long target 414 URI_TOO_LONG, a big head
/// 431 HEADERS_TOO_LARGE. libmicrohttpd's own refusals (a head over its memory pool, a bad chunk, an
/// unparsable Content-Length, an unsupported HTTP version) never reach this code: the README lists them.
enum EdgeAnswers {
    static func rejection(_ rejection: HTTPRejection, limits: HTTPServerConfiguration) -> HTTPResponse {
        let error: ErrorBody
        switch rejection.kind {
        case .targetTooLong:
            error = ErrorBody(
                code: .uriTooLong,
                message: rejection.message,
                details: ["limit": .number(Double(limits.maxTargetBytes))]
            )
        case .headersTooLarge:
            error = ErrorBody(
                code: .headersTooLarge,
                message: rejection.message,
                details: ["limit": .number(Double(limits.maxHeaderBytes))]
            )
        case .framing:
            error = .validation([
                ValidationProblem(field: field(rejection.location), rule: .framing, message: rejection.message)
            ])
        case .controlCharacter:
            error = .validation([
                ValidationProblem(field: field(rejection.location), rule: .pattern, message: rejection.message)
            ])
        }
        return HTTPResponse(
            status: error.code.httpStatus,
            headers: [("Content-Type", ContractHeaders.contentType)],
            body: error.restBody()
        )
    }

    /// The problem's `field`: a query argument's name, a header's name, `path`, or `$` (the request).
    private static func field(_ location: HTTPRejection.Location) -> String {
        switch location {
        case .path: "path"
        case .query(let name): name.isEmpty ? "query" : name
        case .header(let name): name
        case .request: "$"
        }
    }
}
