internal import CRabbitMQ

#if canImport(Glibc)
    import Glibc
#endif

/// Memory handed to rabbitmq-c for the duration of one call. `amqp_cstring_bytes` on a Swift String
/// would dangle; everything here is copied into allocations this arena owns and frees afterwards.
final class CArena {
    private var allocations: [UnsafeMutableRawPointer] = []

    func bytes(_ text: String) -> amqp_bytes_t {
        bytes(Array(text.utf8))
    }

    func bytes(_ source: [UInt8]) -> amqp_bytes_t {
        guard !source.isEmpty else { return amqp_bytes_t(len: 0, bytes: nil) }
        let pointer = UnsafeMutableRawPointer.allocate(byteCount: source.count, alignment: 1)
        source.withUnsafeBytes { pointer.copyMemory(from: $0.baseAddress!, byteCount: source.count) }
        allocations.append(pointer)
        return amqp_bytes_t(len: source.count, bytes: pointer)
    }

    func table(_ fields: [String: AMQPFieldValue]) -> amqp_table_t {
        guard !fields.isEmpty else { return amqp_table_t(num_entries: 0, entries: nil) }
        let entries = UnsafeMutablePointer<amqp_table_entry_t>.allocate(capacity: fields.count)
        allocations.append(UnsafeMutableRawPointer(entries))
        // Sorted keys: the encoding is then deterministic, which keeps wire captures comparable.
        for (index, key) in fields.keys.sorted().enumerated() {
            let value: amqp_field_value_t =
                switch fields[key]! {
                case .string(let text): crabbitmq_field_utf8(bytes(text))
                case .int(let number): crabbitmq_field_i64(number)
                case .bool(let flag): crabbitmq_field_bool(flag ? 1 : 0)
                case .double(let number): crabbitmq_field_f64(number)
                }
            (entries + index).initialize(to: amqp_table_entry_t(key: bytes(key), value: value))
        }
        return amqp_table_t(num_entries: Int32(fields.count), entries: entries)
    }

    func properties(_ properties: AMQPProperties) -> amqp_basic_properties_t {
        var result = amqp_basic_properties_t()
        var flags: UInt32 = 0
        if let value = properties.contentType {
            result.content_type = bytes(value)
            flags |= UInt32(AMQP_BASIC_CONTENT_TYPE_FLAG)
        }
        if let value = properties.correlationID {
            result.correlation_id = bytes(value)
            flags |= UInt32(AMQP_BASIC_CORRELATION_ID_FLAG)
        }
        if let value = properties.replyTo {
            result.reply_to = bytes(value)
            flags |= UInt32(AMQP_BASIC_REPLY_TO_FLAG)
        }
        if let value = properties.expiration {
            result.expiration = bytes(value)
            flags |= UInt32(AMQP_BASIC_EXPIRATION_FLAG)
        }
        if let value = properties.messageID {
            result.message_id = bytes(value)
            flags |= UInt32(AMQP_BASIC_MESSAGE_ID_FLAG)
        }
        if properties.persistent {
            result.delivery_mode = 2
            flags |= UInt32(AMQP_BASIC_DELIVERY_MODE_FLAG)
        }
        if let value = properties.timestamp {
            result.timestamp = UInt64(bitPattern: value)
            flags |= UInt32(AMQP_BASIC_TIMESTAMP_FLAG)
        }
        if let value = properties.type {
            result.type = bytes(value)
            flags |= UInt32(AMQP_BASIC_TYPE_FLAG)
        }
        if let value = properties.userID {
            result.user_id = bytes(value)
            flags |= UInt32(AMQP_BASIC_USER_ID_FLAG)
        }
        if !properties.headers.isEmpty {
            result.headers = table(properties.headers)
            flags |= UInt32(AMQP_BASIC_HEADERS_FLAG)
        }
        result._flags = flags
        return result
    }

    func free() {
        for pointer in allocations { pointer.deallocate() }
        allocations.removeAll()
    }
}

/// Runs `body` with an arena whose memory lives until `body` returns (the `defer` keeps it alive).
func withArena<R, E: Error>(_ body: (CArena) throws(E) -> R) throws(E) -> R {
    let arena = CArena()
    defer { arena.free() }
    return try body(arena)
}

extension amqp_bytes_t {
    /// A copy of the bytes; the library's memory may be recycled right after.
    var array: [UInt8] {
        guard len > 0, let bytes else { return [] }
        return Array(UnsafeRawBufferPointer(start: bytes, count: len))
    }

    var string: String {
        guard len > 0, let bytes else { return "" }
        return String(decoding: UnsafeRawBufferPointer(start: bytes, count: len), as: UTF8.self)
    }
}

extension AMQPProperties {
    /// Copies what rabbitmq-c decoded; nothing here refers to its memory afterwards.
    init(copying source: amqp_basic_properties_t) {
        let flags = source._flags
        func has(_ flag: Int32) -> Bool { flags & UInt32(flag) != 0 }
        self.init()
        if has(AMQP_BASIC_CONTENT_TYPE_FLAG) { contentType = source.content_type.string }
        if has(AMQP_BASIC_CORRELATION_ID_FLAG) { correlationID = source.correlation_id.string }
        if has(AMQP_BASIC_REPLY_TO_FLAG) { replyTo = source.reply_to.string }
        if has(AMQP_BASIC_EXPIRATION_FLAG) { expiration = source.expiration.string }
        if has(AMQP_BASIC_MESSAGE_ID_FLAG) { messageID = source.message_id.string }
        if has(AMQP_BASIC_DELIVERY_MODE_FLAG) { persistent = source.delivery_mode == 2 }
        if has(AMQP_BASIC_TIMESTAMP_FLAG) { timestamp = Int64(bitPattern: source.timestamp) }
        if has(AMQP_BASIC_TYPE_FLAG) { type = source.type.string }
        if has(AMQP_BASIC_USER_ID_FLAG) { userID = source.user_id.string }
        if has(AMQP_BASIC_HEADERS_FLAG) { headers = Self.fields(copying: source.headers) }
    }

    static func fields(copying table: amqp_table_t) -> [String: AMQPFieldValue] {
        guard table.num_entries > 0, let entries = table.entries else { return [:] }
        var result: [String: AMQPFieldValue] = [:]
        for index in 0..<Int(table.num_entries) {
            let entry = entries[index]
            let value = entry.value.value
            let converted: AMQPFieldValue? =
                switch UInt32(entry.value.kind) {
                case AMQP_FIELD_KIND_UTF8.rawValue, AMQP_FIELD_KIND_BYTES.rawValue: .string(value.bytes.string)
                case AMQP_FIELD_KIND_BOOLEAN.rawValue: .bool(value.boolean != 0)
                case AMQP_FIELD_KIND_I8.rawValue: .int(Int64(value.i8))
                case AMQP_FIELD_KIND_U8.rawValue: .int(Int64(value.u8))
                case AMQP_FIELD_KIND_I16.rawValue: .int(Int64(value.i16))
                case AMQP_FIELD_KIND_U16.rawValue: .int(Int64(value.u16))
                case AMQP_FIELD_KIND_I32.rawValue: .int(Int64(value.i32))
                case AMQP_FIELD_KIND_U32.rawValue: .int(Int64(value.u32))
                case AMQP_FIELD_KIND_I64.rawValue: .int(value.i64)
                case AMQP_FIELD_KIND_U64.rawValue, AMQP_FIELD_KIND_TIMESTAMP.rawValue:
                    .int(Int64(bitPattern: value.u64))
                case AMQP_FIELD_KIND_F32.rawValue: .double(Double(value.f32))
                case AMQP_FIELD_KIND_F64.rawValue: .double(value.f64)
                default: nil
                }
            if let converted { result[entry.key.string] = converted }
        }
        return result
    }
}

extension Duration {
    var timeval: timeval {
        let (seconds, attoseconds) = components
        guard seconds >= 0, self > .zero else { return Glibc.timeval(tv_sec: 0, tv_usec: 0) }
        return Glibc.timeval(tv_sec: Int(seconds), tv_usec: Int(attoseconds / 1_000_000_000_000))
    }

    /// Whole milliseconds, rounded up so a poll never wakes just before its deadline.
    var pollMilliseconds: Int32 {
        guard self > .zero else { return 0 }
        let (seconds, attoseconds) = components
        let millis = seconds * 1000 + (attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000
        return Int32(clamping: millis)
    }

    var wholeSeconds: Int32 {
        Int32(clamping: components.seconds)
    }
}

func libraryErrorText(_ status: Int32) -> String {
    String(cString: amqp_error_string2(status))
}
