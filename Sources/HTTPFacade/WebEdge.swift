import Contracts
import Foundation
import HTTPServer
import ServiceSupport

/// What the facade serves besides INTERFACE.md's routes (issue 17, decision 0020): the seat map page's
/// static files at `/` and their paths, and, only when `DEV_TOKEN_ENDPOINT=true`, `POST /dev/token`.
/// Asked only for paths no REST route has; nil means "not mine" (the caller answers 404 `NOT_FOUND`).
struct WebEdge: Sendable {
    let files: StaticFiles?
    let tokens: DevTokenIssuer?

    /// The answer and its metrics label, or nil when the path is neither a page file nor the token route.
    func answer(_ request: HTTPRequest) -> (RESTAnswer, label: String)? {
        if request.path == DevTokenIssuer.path, let tokens {
            guard request.method == "POST" else {
                var answer = RESTAnswer.error(
                    .methodNotAllowed,
                    "\(DevTokenIssuer.path) does not accept \(request.method)",
                    details: ["method": .string(request.method), "allow": "POST"]
                )
                answer.headers.append(("Allow", "POST"))
                return (answer, DevTokenIssuer.path)
            }
            return (tokens.answer(request), DevTokenIssuer.path)
        }
        guard let files, let file = files.file(at: request.path) else { return nil }
        guard request.method == "GET" || request.method == "HEAD" else {
            var answer = RESTAnswer.error(
                .methodNotAllowed,
                "\(request.path) does not accept \(request.method)",
                details: ["method": .string(request.method), "allow": "GET, HEAD"]
            )
            answer.headers.append(("Allow", "GET, HEAD"))
            return (answer, "/{static}")
        }
        var answer = RESTAnswer(status: 200, body: file.body, contentType: file.contentType)
        answer.headers = StaticFiles.headers(for: file)
        return (answer, "/{static}")
    }
}

/// The page's files, read once at start into memory. Only regular files whose every path segment is
/// `[A-Za-z0-9_-][A-Za-z0-9._-]*` (no dot files, no `..`, no symbolic links) and whose extension has a
/// known content type are served; a request path is looked up as a whole in that table, so no request
/// can name anything else (`/../`, `%2e%2e`, `//etc/passwd`, a symbolic link out of the directory).
/// Changing a file needs a restart of the facade.
struct StaticFiles: Sendable {
    struct File: Sendable {
        let contentType: String
        let body: [UInt8]
    }

    /// Bounds on what is loaded, so that a `WEB_ROOT` pointed at the wrong directory fails at start.
    static let maxFiles = 200
    static let maxTotalBytes = 16 << 20

    static let contentTypes: [String: String] = [
        "html": "text/html; charset=utf-8",
        "css": "text/css; charset=utf-8",
        "js": "text/javascript; charset=utf-8",
        "mjs": "text/javascript; charset=utf-8",
        "json": "application/json",
        "png": "image/png",
        "svg": "image/svg+xml",
        "ico": "image/x-icon",
        "txt": "text/plain; charset=utf-8",
    ]

    /// The page may load its own scripts and styles and talk to the facade (same origin) and to the
    /// gateway (another port, so another origin: `ws:` / `wss:`); nothing inline, no frames.
    static let contentSecurityPolicy =
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        + "connect-src 'self' ws: wss:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

    /// Request path (`/index.html`, `/js/app.js`) to file.
    let files: [String: File]

    init(files: [String: File]) {
        self.files = files
    }

    /// Reads `root`; throws a `ConfigurationError` naming `WEB_ROOT` when it holds too much.
    init(root: String) throws(ConfigurationError) {
        let base = URL(fileURLWithPath: root, isDirectory: true).standardizedFileURL
        var files: [String: File] = [:]
        var total = 0
        let keys: [URLResourceKey] = [.isRegularFileKey, .isSymbolicLinkKey, .isDirectoryKey]
        guard
            let walker = FileManager.default.enumerator(
                at: base,
                includingPropertiesForKeys: keys,
                options: [.skipsHiddenFiles]
            )
        else {
            self.files = [:]
            return
        }
        for case let url as URL in walker {
            let values = try? url.resourceValues(forKeys: Set(keys))
            if values?.isSymbolicLink == true {
                walker.skipDescendants()
                continue
            }
            guard values?.isRegularFile == true else { continue }
            let full = url.standardizedFileURL.path
            guard full.hasPrefix(base.path + "/") else { continue }
            let relative = String(full.dropFirst(base.path.count))
            guard Self.isServable(relative), let type = Self.contentType(of: relative),
                let data = FileManager.default.contents(atPath: full)
            else { continue }
            total += data.count
            guard files.count < Self.maxFiles, total <= Self.maxTotalBytes else {
                throw ConfigurationError(
                    variable: "WEB_ROOT",
                    source: root,
                    message:
                        "more than \(Self.maxFiles) files or \(Self.maxTotalBytes) bytes: is it the page's directory?"
                )
            }
            files[relative] = File(contentType: type, body: Array(data))
        }
        self.files = files
    }

    /// The file for a request path: `/` is `/index.html`; anything not in the table is nil.
    func file(at path: String) -> File? {
        files[path == "/" ? "/index.html" : path]
    }

    /// Whether a path (`/a/b.js`) is one the table may hold: every segment of safe characters, none
    /// starting with a dot.
    static func isServable(_ path: String) -> Bool {
        guard path.hasPrefix("/") else { return false }
        let segments = path.dropFirst().split(separator: "/", omittingEmptySubsequences: false)
        return !segments.isEmpty
            && segments.allSatisfy { segment in
                guard let first = segment.first, first != ".", segment.count <= 128 else { return false }
                return segment.unicodeScalars.allSatisfy {
                    $0.isASCII && ($0.properties.isAlphabetic || "0123456789._-".unicodeScalars.contains($0))
                }
            }
    }

    static func contentType(of path: String) -> String? {
        guard let dot = path.lastIndex(of: "."), !path[dot...].contains("/") else { return nil }
        return contentTypes[path[path.index(after: dot)...].lowercased()]
    }

    static func headers(for file: File) -> [(String, String)] {
        var headers: [(String, String)] = [
            ("Cache-Control", "no-cache"),
            ("X-Content-Type-Options", "nosniff"),
            ("Referrer-Policy", "no-referrer"),
        ]
        if file.contentType.hasPrefix("text/html") {
            headers.append(("Content-Security-Policy", contentSecurityPolicy))
            headers.append(("X-Frame-Options", "DENY"))
        }
        return headers
    }
}

/// `POST /dev/token {"userId"}`: a token for a demo user, for the seat map page on a developer's machine.
/// Exists only when `DEV_TOKEN_ENDPOINT=true` (never by default); answers loopback callers only (the TCP
/// peer in 127.0.0.0/8 or `::1`, no forwarding header, a loopback `Host`, and an `Origin`, when sent, of
/// that same host) and mints tokens with no scope (`sub` = the user, `exp` = now + `DEV_TOKEN_TTL_SECONDS`),
/// signed with `JWT_SECRET` like any other (INTERFACE.md, "Who may do what"). No CORS headers: only the
/// facade's own page may read the answer.
struct DevTokenIssuer: Sendable {
    static let path = "/dev/token"

    let minter: TokenMinter
    let ttlSeconds: Int
    let issuer: String?
    let audience: String?

    func answer(_ request: HTTPRequest, now: Date = Date()) -> RESTAnswer {
        guard Self.isLoopbackCaller(request) else {
            return .error(
                .forbidden,
                "\(Self.path) answers loopback callers only (development tokens)",
                details: ["reason": "not_loopback"]
            )
        }
        if request.bodyTooLarge {
            return .error(.payloadTooLarge, "The body is over \(RequestLimits.maxBodyBytes) bytes")
        }
        let user: String
        switch RequestDecoder.parse(request.body) {
        case .failure(let problem):
            return .error(.validation([problem]))
        case .success(let value):
            guard case .object(let object) = value, case .string(let userId)? = object["userId"] else {
                return .error(
                    .validation([ValidationProblem(field: "userId", rule: .required, message: "userId is required")])
                )
            }
            if let problem = Identifier.problem(userId, field: "userId") { return .error(.validation([problem])) }
            user = userId
        }
        guard
            let token = try? minter.mint(
                subject: user,
                ttlSeconds: ttlSeconds,
                issuer: issuer,
                audience: audience,
                now: now
            )
        else { return .error(.internalError, "Internal error") }
        let expires = Date(timeIntervalSince1970: TimeInterval(Int(now.timeIntervalSince1970) + ttlSeconds))
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime]
        let body: JSONValue = [
            "token": .string(token), "userId": .string(user), "scopes": [],
            "expiresAt": .string(formatter.string(from: expires)),
        ]
        var answer = RESTAnswer(status: 200, body: (try? ContractJSON.encode(body)) ?? [])
        answer.headers = [("Cache-Control", "no-store")]
        return answer
    }

    /// The TCP peer is this host, nothing says it forwards someone else, the `Host` is a loopback name
    /// (so a DNS-rebinding page cannot use it) and a browser's `Origin` is that same host.
    static func isLoopbackCaller(_ request: HTTPRequest) -> Bool {
        guard let peer = request.peerAddress, isLoopbackAddress(peer) else { return false }
        for header in ["x-forwarded-for", "forwarded", "x-real-ip"] where request.headers[header] != nil {
            return false
        }
        guard let host = request.headers["host"], isLoopbackHost(host) else { return false }
        if let origin = request.headers["origin"] {
            return origin == "http://\(host)" || origin == "https://\(host)"
        }
        return true
    }

    static func isLoopbackAddress(_ address: String) -> Bool {
        // 16 bytes, IPv4 mapped into IPv6: 127.0.0.0/8 (plain or mapped) or ::1.
        guard let bytes = AddressRange.address(address), bytes.count == 16 else { return false }
        let mapped: [UInt8] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF]
        if Array(bytes[0..<12]) == mapped { return bytes[12] == 127 }
        return bytes == [UInt8](repeating: 0, count: 15) + [1]
    }

    /// `localhost`, `127.x.y.z` or `[::1]`, with or without a port.
    static func isLoopbackHost(_ host: String) -> Bool {
        var name = host.lowercased()
        if name.hasPrefix("[") {
            guard let close = name.firstIndex(of: "]") else { return false }
            return name[name.index(after: name.startIndex)..<close] == "::1"
        }
        if let colon = name.lastIndex(of: ":") { name = String(name[..<colon]) }
        return name == "localhost" || isLoopbackAddress(name)
    }
}
