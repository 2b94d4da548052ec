import Contracts

/// The REST routes of INTERFACE.md on `PORT`. `template` is what logs and metrics show (bounded label
/// values). `/metrics` is not one of them: it is served on the operations port (`OpsServer`).
enum Route: String, CaseIterable, Sendable {
    case hold
    case release
    case purchase
    case holdGet
    case availability
    case seatsDefine
    case healthz
    case readyz
    // Venue features (issue 15).
    case holdExtend
    case seatHistory

    var template: String {
        switch self {
        case .hold: "/hold"
        case .release: "/release"
        case .purchase: "/purchase"
        case .holdGet: "/holds/{holdId}"
        case .availability: "/availability"
        case .seatsDefine: "/showtimes/{showtimeId}/seats"
        case .healthz: "/healthz"
        case .readyz: "/readyz"
        case .holdExtend: "/holds/{holdId}/extend"
        case .seatHistory: "/showtimes/{showtimeId}/seats/{seatId}/history"
        }
    }

    /// The one method the route answers (besides `OPTIONS`, the CORS preflight every route takes).
    var method: String {
        switch self {
        case .hold, .release, .purchase, .holdExtend: "POST"
        case .seatsDefine: "PUT"
        case .holdGet, .availability, .healthz, .readyz, .seatHistory: "GET"
        }
    }

    /// The `Allow` header of a 405 and of a preflight.
    var allow: String { "\(method), OPTIONS" }

    /// The RPC the route makes; nil for the routes the facade answers itself.
    var operation: RPCOperation? {
        switch self {
        case .hold: .hold
        case .release: .release
        case .purchase: .purchase
        case .holdGet: .holdGet
        case .availability: .availability
        case .seatsDefine: .seatsDefine
        case .holdExtend: .holdExtend
        case .seatHistory: .seatHistory
        case .healthz, .readyz: nil
        }
    }

    /// The status of a successful answer.
    var successStatus: Int { self == .hold ? 201 : 200 }
}

/// Where a request lands: the pure routing table, tested on its own.
enum RouteMatch: Equatable, Sendable {
    /// `pathParameter` is the `{holdId}` or `{showtimeId}` segment (percent-decoded by libmicrohttpd); for
    /// the seat history route, `{showtimeId}/{seatId}` (`Route.historyParameters` splits it: a segment never
    /// holds a `/`).
    case matched(Route, pathParameter: String?)
    /// A CORS preflight on a known path.
    case preflight(Route)
    case methodNotAllowed(Route)
    case notFound

    /// The label logs and metrics use: the route's template, or `unmatched` (so labels stay bounded).
    var routeLabel: String {
        switch self {
        case .matched(let route, _), .preflight(let route), .methodNotAllowed(let route): route.template
        case .notFound: "unmatched"
        }
    }
}

enum Router {
    static func match(method: String, path: String) -> RouteMatch {
        guard let (route, parameter) = resolve(path) else { return .notFound }
        if method == "OPTIONS" { return .preflight(route) }
        guard method == route.method else { return .methodNotAllowed(route) }
        return .matched(route, pathParameter: parameter)
    }

    /// The route of `path` whatever the method. A path parameter may be empty (`/holds/`): the route
    /// matches and validation answers 400 naming the parameter.
    static func resolve(_ path: String) -> (Route, String?)? {
        switch path {
        case "/hold": return (.hold, nil)
        case "/release": return (.release, nil)
        case "/purchase": return (.purchase, nil)
        case "/availability": return (.availability, nil)
        case "/healthz": return (.healthz, nil)
        case "/readyz": return (.readyz, nil)
        default: break
        }
        let segments = path.split(separator: "/", omittingEmptySubsequences: false)
        // "/holds/x" splits into ["", "holds", "x"].
        if segments.count == 3, segments[0].isEmpty, segments[1] == "holds" {
            return (.holdGet, String(segments[2]))
        }
        if segments.count == 4, segments[0].isEmpty, segments[1] == "showtimes", segments[3] == "seats" {
            return (.seatsDefine, String(segments[2]))
        }
        if segments.count == 4, segments[0].isEmpty, segments[1] == "holds", segments[3] == "extend" {
            return (.holdExtend, String(segments[2]))
        }
        if segments.count == 6, segments[0].isEmpty, segments[1] == "showtimes", segments[3] == "seats",
            segments[5] == "history"
        {
            return (.seatHistory, "\(segments[2])/\(segments[4])")
        }
        return nil
    }
}

extension Route {
    /// The `{showtimeId}` and `{seatId}` of the seat history route's path parameter.
    static func historyParameters(_ parameter: String?) -> (showtimeId: String, seatId: String) {
        let parts = (parameter ?? "").split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        return (parts.first.map(String.init) ?? "", parts.count > 1 ? String(parts[1]) : "")
    }
}
