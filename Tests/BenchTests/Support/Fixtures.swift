import Bench
import Foundation
import HTTPFacade
import InventoryRPC
import Logging
import TestSupport

let quietLogger = Logger(label: "bench.test") { _ in SwiftLogNoOpLogHandler() }

/// A new database with the schema, dropped afterwards.
func withMigratedDatabase<T>(_ body: (String) throws -> T) throws -> T {
    try withScratchDatabase(prefix: "inv_bench_test", prepare: { try Migrator.migrate($0, logger: quietLogger) }, body)
}

/// The facade's `JWT_SECRET` in these tests: authentication on, as by default.
let facadeJWTSecret = "bench-test-secret-0123456789abcdef0123456789"

/// Tokens for a run against that facade: each virtual user its own (with `inventory:purchase`, so the
/// mix may purchase the user's own holds), and an admin's for provisioning.
let facadeTokens: BenchTokens = {
    let minter = TokenMinter.hs256Blocking(secret: facadeJWTSecret)
    return BenchTokens(admin: try! minter.mint(subject: "bench-admin", scopes: [Scope.admin])) { user in
        try minter.mint(subject: user, scopes: [Scope.purchase])
    }
}()

/// `http-facade` on a port of its choosing (it prints the port it bound): the process and the port.
func startFacade(amqpURL: String) throws -> (process: ServerProcess, port: Int) {
    let facade = try ServerProcess(
        product: "http-facade",
        environment: [
            "RABBITMQ_URL": amqpURL, "PORT": "0", "FACADE_OPS_PORT": "0", "LOG_LEVEL": "warning",
            "AUTH_MODE": "jwt", "JWT_SECRET": facadeJWTSecret, "JWT_ISSUER": "", "JWT_AUDIENCE": "",
            // The benchmark's buyers come from one address at machine speed (as bench/ceilings.sh runs it).
            "RATE_LIMIT_ENABLED": "false",
        ]
    )
    do {
        // "Inventory service running on port N"
        return (facade, try facade.waitForNumber(after: "running on port ", timeout: .seconds(20)))
    } catch {
        facade.stop()
        throw error
    }
}
