import Synchronization

/// Answers one request exactly once, from any thread (resumes the suspended connection).
///
/// Later calls are ignored (and logged at debug level).
// @unchecked Sendable: every stored property is immutable or atomic; the connection pointer inside is
// only ever handed to `MHD_resume_connection`, under the rules `DaemonCore.respond` documents.
public final class HTTPResponder: @unchecked Sendable {
    private enum Target {
        case connection(DaemonCore, requestID: UInt64, ConnectionHandle)
        case callback(@Sendable (HTTPResponse) -> Void)
    }

    private let target: Target
    private let answered = Atomic<Bool>(false)

    init(core: DaemonCore, requestID: UInt64, connection: ConnectionHandle) {
        target = .connection(core, requestID: requestID, connection)
    }

    /// A responder not tied to a connection: `respond` hands the first response to `callback`.
    /// For testing handlers without a server, or adapting them.
    public init(_ callback: @escaping @Sendable (HTTPResponse) -> Void) {
        target = .callback(callback)
    }

    public func respond(_ response: HTTPResponse) {
        let first = !answered.exchange(true, ordering: .acquiringAndReleasing)
        switch target {
        case .connection(let core, let requestID, let connection):
            guard first else {
                core.logger.debug("second answer to a request ignored", metadata: ["http.request": "\(requestID)"])
                return
            }
            core.respond(requestID: requestID, connection: connection, response: response)
        case .callback(let callback):
            if first {
                callback(response)
            }
        }
    }
}
