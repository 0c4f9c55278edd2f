import TroveCore

/// Revision syntax: a full id or a unique prefix of ≥ 7 hex digits, `HEAD`, a branch, tag or any
/// ref (`main`, `heads/main`, `tags/v1`, `runs/x`, `refs/heads/main`), followed by any number of
/// `~N` / `^` (first-parent steps). `REV:PATH` names a path in that commit's tree.
extension RefStore {
    public func resolve(_ text: String) throws -> ObjectID {
        var base = text
        var steps = 0
        while let i = base.lastIndex(where: { $0 == "~" || $0 == "^" }) {
            let suffix = base[base.index(after: i)...]
            if base[i] == "^" {
                guard suffix.isEmpty || suffix == "1" else { throw badRevision(text) }
                steps += 1
            } else if suffix.isEmpty {
                steps += 1
            } else if let n = Int(suffix), n >= 0 {
                steps += n
            } else {
                throw badRevision(text)
            }
            base = String(base[..<i])
        }
        var id = try resolveName(base)
        for k in 0..<steps {
            guard let parent = try commit(id).parents.first else {
                throw StoreError(.notFound, "revision \(text) goes back \(steps) commit(s), but history ends after \(k)")
            }
            id = parent
        }
        return id
    }

    func badRevision(_ text: String) -> StoreError {
        StoreError(.invalidInput, "\(text.debugDescription) is not a valid revision",
                   hint: "use an id (or ≥7-digit prefix), a branch or tag name, HEAD, optionally with ~N")
    }

    func resolveName(_ name: String) throws -> ObjectID {
        if name.isEmpty { throw badRevision(name) }
        if name == "HEAD" || name == "@" {
            guard let id = try refs.headCommit() else {
                throw StoreError(.notFound, "HEAD has no commits yet", hint: "add files and run `trove commit -m MESSAGE`")
            }
            return id
        }
        // NAME@vN, NAME@latest, NAME@ALIAS: a model's or dataset's version (Docs/registry.md).
        if let at = name.lastIndex(of: "@"), at != name.startIndex, !name.contains("@{"), !name.contains("/") {
            let base = String(name[..<at]), selector = String(name[name.index(after: at)...])
            // Local refs first, then those fetched from remotes (a clone's).
            let remotes = ((try? FileIO.listDirectory(root + "/refs/remotes")) ?? []).sorted().map { "remotes/\($0)/" }
            for kind in ["models", "datasets"] {
                for prefix in [""] + remotes {
                    let dir = "\(prefix)\(kind)/\(base)/"
                    if selector == "latest" {
                        let versions = try refs.list(prefix: dir).compactMap { r -> (Int, ObjectID)? in
                            let rest = r.name.dropFirst(dir.count)
                            guard rest.hasPrefix("v"), let n = Int(rest.dropFirst()) else { return nil }
                            return (n, r.id)
                        }
                        if let top = versions.max(by: { $0.0 < $1.0 }) { return top.1 }
                        continue
                    }
                    let ref = selector.hasPrefix("v") && Int(selector.dropFirst()) != nil ? dir + selector : dir + "alias/" + selector
                    if (try? Refs.validate(ref)) != nil, let id = try refs.read(ref) { return id }
                }
            }
            throw StoreError(.notFound, "no model or dataset version \(name)", hint: "`trove model list` and `trove dataset list` show what there is")
        }
        let bare = name.hasPrefix("refs/") ? String(name.dropFirst(5)) : name
        if (try? Refs.validate(bare)) != nil {
            for candidate in [bare, "heads/\(bare)", "tags/\(bare)", "remotes/\(bare)"] {
                if let id = try refs.read(candidate) { return id }
            }
        }
        if let id = ObjectID(hex: name) {
            guard try has(id) else { throw StoreError(.notFound, "commit \(id.hex) is not in the store") }
            return id
        }
        if ObjectID.isHexPrefix(name) && name.count >= 7 {
            let hits = try ids(withPrefix: name, type: .commit, limit: 2)
            if hits.count > 1 {
                throw StoreError(.invalidInput, "the id prefix \(name) is ambiguous", hint: "type more digits")
            }
            if let id = hits.first { return id }
        }
        throw StoreError(.notFound, "unknown revision \(name.debugDescription)",
                         hint: "`trove branch`, `trove tag` and `trove log` list what exists")
    }

}

extension Store {
    /// Splits `REV:PATH` (PATH may be empty: the root tree). Without a colon: (text, nil).
    public static func splitRevisionPath(_ text: String) -> (rev: String, path: String?) {
        guard let i = text.firstIndex(of: ":") else { return (text, nil) }
        let path = String(text[text.index(after: i)...]).split(separator: "/").joined(separator: "/")
        return (String(text[..<i]), path)
    }

}

extension RefStore {
    /// The entry at `path` in a commit's tree; "" is the root, returned as a directory entry.
    public func entry(at path: String, inCommit commitID: ObjectID) throws -> Tree.Entry {
        let c = try commit(commitID)
        var current = Tree.Entry(name: "", kind: .directory, id: c.tree, size: 0)
        current.size = try tree(c.tree).size
        for comp in path.split(separator: "/") {
            guard current.kind == .directory, let next = try tree(current.id)[String(comp)] else {
                throw StoreError(.notFound, "path \(path) does not exist in \(commitID.short())")
            }
            current = next
        }
        return current
    }
}
