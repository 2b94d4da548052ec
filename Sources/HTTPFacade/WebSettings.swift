import Foundation
import ServiceSupport

/// The seat map page's settings (issue 17, decision 0020): where its static files are, and whether the
/// development token endpoint exists. Read like every other variable: the environment, then `.env.local`,
/// then `.env` in the working directory; an empty value counts as unset; a value that does not parse
/// stops the facade with one line naming the variable.
public struct WebSettings: Sendable, Equatable {
    /// `WEB_ROOT` (`web`, relative to the working directory): the directory whose files the facade serves
    /// at `/` and their paths. nil: no page (every such path is 404 `NOT_FOUND`). A directory that does
    /// not exist is the same as nil, with a warning at start.
    public var root: String?
    /// `DEV_TOKEN_ENDPOINT` (`false`): `true` adds `POST /dev/token`, which mints scope-less tokens for
    /// loopback callers (development only; `scripts/run.sh` turns it on and says so loudly).
    public var devTokenEndpoint: Bool
    /// `DEV_TOKEN_TTL_SECONDS` (`900`): the lifetime of a development token (60 to 3600).
    public var devTokenTTLSeconds: Int

    /// No page and no token endpoint: what in-process tests get unless they ask.
    public init(root: String? = nil, devTokenEndpoint: Bool = false, devTokenTTLSeconds: Int = 900) {
        self.root = root
        self.devTokenEndpoint = devTokenEndpoint
        self.devTokenTTLSeconds = devTokenTTLSeconds
    }

    /// The process's settings: `WEB_ROOT` defaults to `web` in the working directory.
    public static func load(
        environment: [String: String] = ProcessInfo.processInfo.environment,
        directory: String = FileManager.default.currentDirectoryPath
    ) throws(ConfigurationError) -> WebSettings {
        let sources = Self.sources(environment: environment, directory: directory)
        func lookup(_ name: String) -> (value: String, source: String)? {
            for (source, values) in sources {
                if let value = values[name], !value.isEmpty { return (value, source) }
            }
            return nil
        }
        var settings = WebSettings()
        let root = lookup("WEB_ROOT")?.value ?? "web"
        settings.root = root.hasPrefix("/") ? root : directory + "/" + root
        if let (raw, source) = lookup("DEV_TOKEN_ENDPOINT") {
            switch raw.lowercased() {
            case "true", "1", "yes", "on": settings.devTokenEndpoint = true
            case "false", "0", "no", "off": settings.devTokenEndpoint = false
            default:
                throw ConfigurationError(
                    variable: "DEV_TOKEN_ENDPOINT",
                    source: source,
                    message: "expected true or false, got '\(raw)'"
                )
            }
        }
        if let (raw, source) = lookup("DEV_TOKEN_TTL_SECONDS") {
            guard let value = Int(raw), (60...3600).contains(value) else {
                throw ConfigurationError(
                    variable: "DEV_TOKEN_TTL_SECONDS",
                    source: source,
                    message: "expected a whole number from 60 to 3600, got '\(raw)'"
                )
            }
            settings.devTokenTTLSeconds = value
        }
        return settings
    }

    /// The environment, then `.env.local`, then `.env` (`NAME=value` lines; `#` comments; `export `
    /// and one pair of surrounding quotes allowed), as `ServiceConfiguration` reads them.
    static func sources(environment: [String: String], directory: String) -> [(String, [String: String])] {
        var sources: [(String, [String: String])] = [("environment", environment)]
        for file in ServiceConfiguration.environmentFiles {
            guard let text = try? String(contentsOfFile: directory + "/" + file, encoding: .utf8) else { continue }
            var values: [String: String] = [:]
            for line in text.split(whereSeparator: \.isNewline) {
                var entry = line.trimmingCharacters(in: .whitespaces)
                guard !entry.hasPrefix("#") else { continue }
                if entry.hasPrefix("export ") { entry = String(entry.dropFirst(7)) }
                guard let split = entry.firstIndex(of: "=") else { continue }
                let name = entry[..<split].trimmingCharacters(in: .whitespaces)
                var value = entry[entry.index(after: split)...].trimmingCharacters(in: .whitespaces)
                if value.count >= 2, let first = value.first, first == "\"" || first == "'", value.last == first {
                    value = String(value.dropFirst().dropLast())
                }
                if values[name] == nil { values[name] = value }
            }
            sources.append((file, values))
        }
        return sources
    }
}
