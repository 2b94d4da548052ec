import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Clients that come from a loopback address other than 127.0.0.1 (all of 127/8 is this host on Linux),
/// for tests where the server tells clients apart by address.
public enum SourceAddressClient {
    /// A socket bound to `source` and connected to 127.0.0.1:`port`; reads give up after `timeout`.
    public static func open(from source: String, port: Int, timeout: Duration = .seconds(15)) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestFailure("socket: \(String(cString: strerror(errno)))") }
        var limit = timeval(tv_sec: Int(timeout.components.seconds), tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        var local = sockaddr_in()
        local.sin_family = sa_family_t(AF_INET)
        local.sin_port = 0
        local.sin_addr.s_addr = inet_addr(source)
        let bound = withUnsafePointer(to: &local) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard bound == 0 else {
            close(fd)
            throw TestFailure("bind to \(source): \(String(cString: strerror(errno)))")
        }
        do {
            try connectLoopback(fd, port: port)
        } catch {
            close(fd)
            throw error
        }
        return fd
    }

    /// One request (`Connection: close`) from `source`.
    public static func request(
        from source: String,
        port: Int,
        _ method: String,
        _ path: String,
        headers: [(String, String)] = [],
        body: String? = nil
    ) throws -> TestResponse {
        let fd = try open(from: source, port: port)
        defer { close(fd) }
        try HTTPTestClient.send(
            fd,
            HTTPTestClient.requestBytes(method, path, headers: headers, body: body.map { Array($0.utf8) })
        )
        return try HTTPTestClient.readResponse(fd)
    }

    /// Whether the server has closed `fd` (end of file or reset) within `timeout`; bytes that arrive are
    /// read and dropped.
    public static func closedByServer(_ fd: Int32, within timeout: Duration) -> Bool {
        let deadline = ContinuousClock.now + timeout
        var buffer = [UInt8](repeating: 0, count: 4_096)
        while ContinuousClock.now < deadline {
            var descriptor = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&descriptor, 1, 100)
            if ready > 0 {
                let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
                if count == 0 || (count < 0 && errno != EAGAIN && errno != EINTR) { return true }
            }
        }
        return false
    }
}
