/// What the facade does to authorize one `POST /hold` before the RPC, exactly as `FacadeHandler` does
/// it (read `Authorization`, verify the token, check the route's requirement, put `sub` into the
/// body): for `inventory-bench jwt-cost`, which times it per request.
public struct HoldAuthorizationProbe: Sendable {
    private let authentication: Authentication

    public init(verifier: TokenVerifier) {
        authentication = .jwt(verifier)
    }

    /// The body the RPC would carry, or nil when the request would be refused.
    public func authorize(authorization: String, body: [UInt8]) -> [UInt8]? {
        guard
            case .success(let caller?) = AccessPolicy.authorize(
                route: .hold,
                authorization: authorization,
                authentication: authentication
            )
        else { return nil }
        return try? AccessPolicy.identified(route: .hold, caller: caller, body: body).get()
    }
}
