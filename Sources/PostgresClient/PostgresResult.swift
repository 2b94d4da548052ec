/// The values of one result, copied out of libpq's `PGresult` (which is freed at once), shared by its rows.
final class PostgresResultStorage: Sendable {
    let columnNames: [String]
    let columnIndex: [String: Int]
    /// Row-major; nil is SQL NULL.
    let values: [String?]

    init(columnNames: [String], values: [String?]) {
        self.columnNames = columnNames
        var index: [String: Int] = [:]
        index.reserveCapacity(columnNames.count)
        for (position, name) in columnNames.enumerated() where index[name] == nil {
            index[name] = position  // the first of duplicate names wins, as in most drivers
        }
        self.columnIndex = index
        self.values = values
    }
}

/// One row of a result. Columns are found by name (the first one wins when a name repeats).
public struct PostgresRow: Sendable {
    let storage: PostgresResultStorage
    let offset: Int

    /// The column names of the result, in order.
    public var columnNames: [String] { storage.columnNames }

    /// Decodes a column that must be present and non-NULL (or `T` is optional).
    public func decode<T: PostgresDecodable>(_ column: String, as: T.Type = T.self) throws(PostgresError) -> T {
        let position = try self.position(of: column)
        guard let text = storage.values[offset + position] else {
            if let nullable = T.self as? any PostgresNullable.Type { return nullable.postgresNull as! T }
            throw .decoding("column \"\(column)\" is NULL; use decodeIfPresent")
        }
        do {
            return try T(postgresText: text)
        } catch {
            throw PostgresError.decoding("column \"\(column)\" as \(T.self): \(error.message)")
        }
    }

    /// Decodes a column that may be NULL. A missing column is still an error.
    public func decodeIfPresent<T: PostgresDecodable>(
        _ column: String,
        as: T.Type = T.self
    ) throws(PostgresError)
        -> T?
    {
        let position = try self.position(of: column)
        guard let text = storage.values[offset + position] else { return nil }
        do {
            return try T(postgresText: text)
        } catch {
            throw PostgresError.decoding("column \"\(column)\" as \(T.self): \(error.message)")
        }
    }

    /// The raw text of a column; nil for NULL and for a column the result does not have.
    public subscript(column: String) -> String? {
        guard let position = storage.columnIndex[column] else { return nil }
        return storage.values[offset + position]
    }

    /// The raw text of the column at `position` (0-based); nil for NULL.
    public subscript(position: Int) -> String? {
        precondition(position >= 0 && position < storage.columnNames.count, "column \(position) out of range")
        return storage.values[offset + position]
    }

    /// Whether the result has a column of this name.
    public func contains(_ column: String) -> Bool { storage.columnIndex[column] != nil }

    private func position(of column: String) throws(PostgresError) -> Int {
        guard let position = storage.columnIndex[column] else {
            throw .decoding(
                "no column \"\(column)\" in result (columns: \(storage.columnNames.joined(separator: ", ")))"
            )
        }
        return position
    }
}

/// What a statement returned: its rows (empty for commands) and, for INSERT/UPDATE/DELETE/SELECT/MOVE/FETCH/COPY,
/// the number of rows it affected (`PQcmdTuples`; 0 otherwise).
public struct PostgresResult: Sendable {
    public var rows: [PostgresRow]
    public var affectedRows: Int
    /// The command tag, e.g. `INSERT 0 1`, `UPDATE 3`, `BEGIN`.
    public var commandTag: String
    /// The column names, in order (also for a query that returned no rows).
    public var columnNames: [String]

    public init(rows: [PostgresRow] = [], affectedRows: Int = 0, commandTag: String = "", columnNames: [String] = []) {
        self.rows = rows
        self.affectedRows = affectedRows
        self.commandTag = commandTag
        self.columnNames = columnNames
    }
}

/// A `NOTIFY` received on a channel this connection listens to.
public struct PostgresNotification: Sendable, Hashable {
    public var channel: String
    public var payload: String
    /// The process ID of the notifying server backend.
    public var pid: Int32

    public init(channel: String, payload: String, pid: Int32) {
        self.channel = channel
        self.payload = payload
        self.pid = pid
    }
}
