internal import CLibPQ

/// One statement of a pipeline: SQL with parameters, or a statement made with `prepare`.
public struct PostgresStatement {
    enum Target {
        case sql(String)
        case prepared(String)
    }

    let target: Target
    let parameters: [(any PostgresEncodable)?]

    public static func query(_ sql: String, _ parameters: [(any PostgresEncodable)?] = []) -> PostgresStatement {
        PostgresStatement(target: .sql(sql), parameters: parameters)
    }

    public static func prepared(_ name: String, _ parameters: [(any PostgresEncodable)?] = []) -> PostgresStatement {
        PostgresStatement(target: .prepared(name), parameters: parameters)
    }
}

extension PostgresConnection {
    /// Sends every statement at once (libpq pipeline mode) and reads the answers in one round trip: one outcome
    /// per statement, in order.
    ///
    /// The server runs the statements in order and stops at the first failure: that statement's outcome is its
    /// error, and every later one fails with a `query` error "not run" carrying the same `isRetryable`.
    /// Statements without BEGIN/COMMIT form one implicit transaction (all or nothing). With BEGIN ... COMMIT in
    /// the list, a failure leaves the session in an aborted transaction block: if the pipeline began outside a
    /// transaction, it is rolled back here, so the connection is ready for the next call.
    ///
    /// Throws (and returns nothing) only when the connection breaks, or a parameter cannot be sent (before
    /// anything was sent); a break leaves unknown which statements ran.
    public func pipeline(
        _ statements: [PostgresStatement]
    ) throws(PostgresError)
        -> [Result<PostgresResult, PostgresError>]
    {
        let handle = try liveHandle()
        if statements.isEmpty { return [] }
        var encoded: [EncodedParameters] = []
        encoded.reserveCapacity(statements.count)
        for statement in statements { encoded.append(try EncodedParameters(statement.parameters)) }

        let startedIdle = PQtransactionStatus(handle) == PQTRANS_IDLE
        guard PQenterPipelineMode(handle) == 1 else { throw failure(handle) }
        inPipeline = true
        defer { inPipeline = false }

        for (statement, parameters) in zip(statements, encoded) {
            let sent: Int32 = parameters.withPointers { count, values in
                switch statement.target {
                case .sql(let sql):
                    // Not PQsendQuery: pipeline mode refuses the simple protocol.
                    return PQsendQueryParams(handle, sql, count, nil, values, nil, nil, 0)
                case .prepared(let name):
                    return PQsendQueryPrepared(handle, name, count, values, nil, nil, 0)
                }
            }
            guard sent == 1 else { throw abandonPipeline(handle) }
        }
        guard PQpipelineSync(handle) == 1 else { throw abandonPipeline(handle) }

        var outcomes: [Result<PostgresResult, PostgresError>] = []
        outcomes.reserveCapacity(statements.count)
        var firstFailure: PostgresError?
        for _ in statements {
            guard let result = PQgetResult(handle) else { throw abandonPipeline(handle) }
            if PQresultStatus(result) == PGRES_PIPELINE_ABORTED {
                PQclear(result)
                outcomes.append(
                    .failure(
                        PostgresError(
                            kind: .query,
                            message: "not run: an earlier statement in the pipeline failed",
                            isRetryable: firstFailure?.isRetryable ?? false
                        )
                    )
                )
            } else {
                do {
                    outcomes.append(.success(try consume(result, handle: handle)))
                } catch {
                    if error.kind == .connectionLost { throw abandonPipeline(handle) }
                    if firstFailure == nil { firstFailure = error }
                    outcomes.append(.failure(error))
                }
            }
            // Each statement's results end with a NULL.
            guard PQgetResult(handle) == nil else { throw abandonPipeline(handle) }
        }
        guard let sync = PQgetResult(handle) else { throw abandonPipeline(handle) }
        let syncStatus = PQresultStatus(sync)
        PQclear(sync)
        guard syncStatus == PGRES_PIPELINE_SYNC else { throw abandonPipeline(handle) }
        guard PQexitPipelineMode(handle) == 1 else { throw abandonPipeline(handle) }
        inPipeline = false

        if firstFailure != nil, startedIdle, PQtransactionStatus(handle) == PQTRANS_INERROR { rollbackQuietly() }
        return outcomes
    }

    /// After a pipeline went wrong part-way: the error to throw. A connection that is still up is reset to
    /// a known state (pipeline mode cannot be left with answers outstanding), so prepared statements and
    /// LISTENs are restored by `reset()` semantics; the owner learns of it through the thrown error.
    private func abandonPipeline(_ handle: OpaquePointer) -> PostgresError {
        if PQstatus(handle) != CONNECTION_OK { return lost(handle) }
        let error = failure(handle)
        inPipeline = false
        do {
            try reset()
        } catch {
            return error
        }
        var reported = error
        reported.kind = .connectionLost
        reported.isRetryable = true
        reported.message = "pipeline failed part-way (\(error.message)); the connection was reset"
        return reported
    }
}
