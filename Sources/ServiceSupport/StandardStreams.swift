#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Whole lines to standard output or error in one `write` each, unbuffered, so a reader of a pipe
/// (a test, `scripts/run.sh`) sees them at once.
public enum StandardStreams {
    /// Prints `line` on standard output, for the start-up lines INTERFACE.md promises.
    public static func printLine(_ line: String) {
        write(line + "\n", to: 1)
    }

    /// Prints `line` on standard error, for the one-line failures before logging is set up.
    public static func printError(_ line: String) {
        write(line + "\n", to: 2)
    }

    static func write(_ text: String, to descriptor: Int32) {
        var bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeMutableBytes { buffer in
                systemWrite(descriptor, buffer.baseAddress! + offset, buffer.count - offset)
            }
            if written < 0 {
                if errno == EINTR { continue }
                return
            }
            offset += written
        }
    }
}

#if canImport(Glibc)
private let systemWrite = Glibc.write
#elseif canImport(Darwin)
private let systemWrite = Darwin.write
#endif
