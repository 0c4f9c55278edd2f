import Glibc
import TroveCore
import TroveStore

/// `trove install` / `--uninstall` (Docs/git.md §Install): the filter and diff config, and the
/// hooks, chained in front of (or behind) any hook already there, never over it.
public enum GitInstall {
    /// The config `trove install` sets, in the repository's or the user's git config.
    public static let settings: [(key: String, value: String)] = [
        ("filter.trove.process", "trove filter-process"),
        ("filter.trove.required", "true"),
        ("diff.trove.textconv", "trove textconv"),
        // git keeps textconv output per blob (refs/notes/textconv/trove): `git log -p` hashes
        // each version once.
        ("diff.trove.cachetextconv", "true"),
    ]
    /// Sections that hold only Trove's keys, removed whole when they end up empty.
    static let sections = ["[filter \"trove\"]", "[diff \"trove\"]"]

    public struct Report: Sendable {
        public var configChanged: [String] = []
        public var hooksWritten: [String] = []
        public var hooksChained: [String] = []
        public var hooksRemoved: [String] = []
        public var hooksRestored: [String] = []
        public var hooksLeft: [String] = []
        public var hooksDirectory = ""
    }

    /// The folder git runs hooks from: `core.hooksPath` (relative to the working tree's top),
    /// else `.git/hooks` of the main repository.
    public static func hooksDirectory(_ repo: GitRepository) -> String {
        if let p = repo.config("core.hooksPath"), !p.isEmpty {
            var path = p
            if path.hasPrefix("~/"), let home = getenv("HOME") { path = String(cString: home) + path.dropFirst() }
            return FileIO.absolute(path, base: repo.workTree ?? repo.commonDirectory)
        }
        return repo.commonDirectory + "/hooks"
    }

    /// `config: false` writes only the hooks (the filter already runs from the global config).
    public static func install(_ repo: GitRepository, config: Bool = true) throws -> Report {
        var report = Report()
        if config { report.configChanged = try setConfig(try GitConfigFile.repository(repo)) }
        let dir = hooksDirectory(repo)
        report.hooksDirectory = dir
        try FileIO.mkdirs(dir)
        for name in HookScripts.names {
            let path = dir + "/" + name
            let chained = path + ".trove-chained"
            let script = Array(HookScripts.text(name).utf8)
            if let current = try? FileIO.readFile(path) {
                if current == script { continue }
                if isTroves(current) {
                    // Trove's hook, edited by someone: theirs now; left alone and named.
                    report.hooksLeft.append(name)
                    continue
                }
                if FileIO.exists(chained) {
                    throw StoreError(.conflict, "\(path) is not Trove's hook, and \(chained) is already taken",
                                     hint: "merge the two by hand, remove one, then run `trove install` again")
                }
                // Chain: the existing hook keeps running, from beside ours.
                try FileIO.rename(path, chained)
                try FileIO.atomicWrite(path, script, mode: 0o755)
                report.hooksChained.append(name)
            } else {
                try FileIO.atomicWrite(path, script, mode: 0o755)
                report.hooksWritten.append(name)
            }
        }
        return report
    }

    /// Undoes `install`: Trove's config keys (and sections left empty), its hooks, and puts
    /// chained hooks back where they were. A hook someone changed since is left alone.
    public static func uninstall(_ repo: GitRepository) throws -> Report {
        var report = Report()
        report.configChanged = try removeConfig(try GitConfigFile.repository(repo))
        let dir = hooksDirectory(repo)
        report.hooksDirectory = dir
        for name in HookScripts.names {
            let path = dir + "/" + name
            let chained = path + ".trove-chained"
            guard let current = try? FileIO.readFile(path) else {
                if FileIO.exists(chained) {
                    try FileIO.rename(chained, path)
                    report.hooksRestored.append(name)
                }
                continue
            }
            guard current == Array(HookScripts.text(name).utf8) else {
                report.hooksLeft.append(name)
                continue
            }
            if FileIO.exists(chained) {
                try FileIO.rename(chained, path)
                report.hooksRestored.append(name)
            } else {
                guard unlink(path) == 0 else { throw FileIO.ioError("remove", path) }
                report.hooksRemoved.append(name)
            }
        }
        return report
    }

    static func isTroves(_ bytes: [UInt8]) -> Bool {
        String(decoding: bytes.prefix(400), as: UTF8.self).contains(HookScripts.marker)
    }

    /// Sets the filter and diff keys; returns those that changed.
    public static func setConfig(_ file: GitConfigFile) throws -> [String] {
        var changed: [String] = []
        for (key, value) in settings where file.get(key) != value {
            try file.set(key, value)
            changed.append(key)
        }
        return changed
    }

    /// Removes the filter and diff keys, and their sections when nothing else is in them.
    public static func removeConfig(_ file: GitConfigFile) throws -> [String] {
        var changed: [String] = []
        for (key, _) in settings where file.get(key) != nil {
            try file.remove(key)
            changed.append(key)
        }
        try removeEmptySections(file.path)
        return changed
    }

    /// git and libgit2 leave `[filter "trove"]` behind when its last key goes.
    static func removeEmptySections(_ path: String, sections: [String] = GitInstall.sections) throws {
        guard let text = try? FileIO.readText(path) else { return }
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        var i = 0
        var changed = false
        while i < lines.count {
            let header = lines[i].trimmingCharacters(in: .whitespaces)
            if sections.contains(header) {
                var j = i + 1
                while j < lines.count, lines[j].trimmingCharacters(in: .whitespaces).isEmpty { j += 1 }
                if j == lines.count || lines[j].trimmingCharacters(in: .whitespaces).hasPrefix("[") {
                    lines.remove(at: i)
                    changed = true
                    continue
                }
            }
            i += 1
        }
        guard changed else { return }
        try FileIO.atomicWrite(path, Array(lines.joined(separator: "\n").utf8))
    }
}

/// `trove track` / `untrack`: the `.gitattributes` lines that route paths through Trove.
public enum GitAttributes {
    public static let suffix = "filter=trove diff=trove merge=trove -text"

    /// The patterns tracked by the `.gitattributes` at `top`.
    public static func trackedPatterns(top: String) -> [String] {
        lines(top).compactMap(pattern(of:))
    }

    static func lines(_ top: String) -> [String] {
        guard let text = try? FileIO.readText(top + "/.gitattributes") else { return [] }
        var l = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        if l.last == "" { l.removeLast() }
        return l
    }

    /// The pattern of a line that sends it through Trove's filter.
    static func pattern(of line: String) -> String? {
        let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
        guard let first = fields.first, !first.hasPrefix("#"), fields.dropFirst().contains("filter=trove") else { return nil }
        return first
    }

    /// The pattern as written in `.gitattributes`: spaces become `[[:space:]]`, as git-lfs does.
    static func escape(_ pattern: String) -> String {
        pattern.replacingOccurrences(of: " ", with: "[[:space:]]")
    }

    /// Adds a line per new pattern; returns those added.
    public static func track(_ patterns: [String], top: String) throws -> [String] {
        var current = lines(top)
        let existing = Set(current.compactMap(pattern(of:)))
        var added: [String] = []
        for p in patterns.map(escape) where !existing.contains(p) && !added.contains(p) {
            current.append("\(p) \(suffix)")
            added.append(p)
        }
        if !added.isEmpty { try FileIO.atomicWrite(top + "/.gitattributes", Array((current.joined(separator: "\n") + "\n").utf8)) }
        return added
    }

    /// Removes the lines of `patterns`; returns those removed.
    public static func untrack(_ patterns: [String], top: String) throws -> [String] {
        let wanted = Set(patterns.map(escape))
        var removed: [String] = []
        let kept = lines(top).filter { line in
            guard let p = pattern(of: line), wanted.contains(p) else { return true }
            removed.append(p)
            return false
        }
        if !removed.isEmpty { try FileIO.atomicWrite(top + "/.gitattributes", Array((kept.isEmpty ? "" : kept.joined(separator: "\n") + "\n").utf8)) }
        return removed
    }
}
