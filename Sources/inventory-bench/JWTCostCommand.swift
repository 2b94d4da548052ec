import ArgumentParser
import Foundation
import HTTPFacade
import JWTKit
import ServiceSupport

/// `inventory-bench jwt-cost`: what verifying one bearer token costs the facade's thread, in
/// microseconds (the same `TokenVerifier.verify` the facade calls on a libmicrohttpd thread).
struct JWTCostCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "jwt-cost",
        abstract: "Time TokenVerifier.verify (HS256, ES256) and a whole POST /hold authorization: microseconds each."
    )

    @Option(help: "Verifications per algorithm.")
    var iterations = 20_000

    func run() throws {
        let secret = "jwt-cost-secret-0123456789abcdef0123456789"
        let hs256 = try TokenVerifier.makeBlocking(settings: AuthSettings(jwtSecret: secret))
        let hsToken = try TokenMinter.hs256Blocking(secret: secret).mint(subject: "user_456", scopes: [Scope.purchase])

        let key = ES256PrivateKey()
        let path = NSTemporaryDirectory() + "jwt-cost-\(getpid()).pem"
        try key.publicKey.pemRepresentation.write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let es256 = try TokenVerifier.makeBlocking(settings: AuthSettings(jwtPublicKeyFile: path))
        let esMinter = TokenMinter(algorithm: try blockingKey(key))
        let esToken = try esMinter.mint(subject: "user_456", scopes: [Scope.purchase])

        for (name, verifier, token) in [("HS256", hs256, hsToken), ("ES256", es256, esToken)] {
            guard case .success = verifier.verify(token) else {
                throw ValidationError("\(name): the token does not verify")
            }
            // Warm-up, then the measured loop.
            for _ in 0..<min(1_000, iterations) { _ = verifier.verify(token) }
            let started = Timing()
            var verified = 0
            for _ in 0..<iterations {
                if case .success = verifier.verify(token) { verified += 1 }
            }
            print(
                "\(name): \(started.perCall(iterations)) per verify (\(verified) of \(iterations) verified, "
                    + "token \(token.utf8.count) bytes)"
            )
        }
        try timeHoldAuthorization(hs256, token: hsToken)
    }

    /// The facade's whole per-request step for `POST /hold`: header, verification, scope, `sub` into the body.
    private func timeHoldAuthorization(_ verifier: TokenVerifier, token: String) throws {
        let probe = HoldAuthorizationProbe(verifier: verifier)
        let header = "Bearer \(token)"
        let body = Array(#"{"showtimeId":"showtime_123","seatIds":["seat_1","seat_2"]}"#.utf8)
        guard probe.authorize(authorization: header, body: body) != nil else {
            throw ValidationError("the hold is not authorized")
        }
        for _ in 0..<min(1_000, iterations) { _ = probe.authorize(authorization: header, body: body) }
        let started = Timing()
        var authorized = 0
        for _ in 0..<iterations where probe.authorize(authorization: header, body: body) != nil { authorized += 1 }
        print(
            "HS256 POST /hold authorization (header, verify, scope, sub into the body): "
                + "\(started.perCall(iterations)) per request (\(authorized) of \(iterations))"
        )
    }

    private func blockingKey(_ key: ES256PrivateKey) throws -> any JWTAlgorithm {
        let result = BlockingResult<Result<any JWTAlgorithm, any Error>>()
        Task.detached {
            do {
                result.set(.success(try await JWTKeyCollection().add(ecdsa: key).getKey()))
            } catch {
                result.set(.failure(error))
            }
        }
        return try result.wait().get()
    }
}

/// Wall time and this thread's CPU time since `init`: on a shared machine the CPU time is what one call
/// costs, the wall time what it took with the other processes in the way.
struct Timing {
    let wall = ContinuousClock.now
    let cpu = Timing.threadCPU()

    static func threadCPU() -> Double {
        var spec = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &spec)
        return Double(spec.tv_sec) * 1e6 + Double(spec.tv_nsec) / 1e3
    }

    /// "X µs CPU (Y µs wall)" per call over `calls`.
    func perCall(_ calls: Int) -> String {
        let (seconds, attoseconds) = wall.duration(to: .now).components
        let wallMicros = (Double(seconds) * 1e6 + Double(attoseconds) / 1e12) / Double(calls)
        let cpuMicros = (Timing.threadCPU() - cpu) / Double(calls)
        return String(format: "%.2f µs CPU (%.2f µs wall)", cpuMicros, wallMicros)
    }
}
