import TroveCore
import TroveStore

/// Walks of the commit graph and of trees, over any object source (the local store, a shared
/// store, a served project). Push, fetch and the server's checks are all built from these.
public enum Graph {
    /// Every commit reachable from `tips` (tips included) that `source` has; commits it lacks
    /// end the walk there (a shallow or partial history).
    public static func ancestry(of tips: [ObjectID], in source: ObjectSource) throws -> Set<ObjectID> {
        var seen = Set<ObjectID>()
        var stack = tips
        while let c = stack.popLast() {
            guard !seen.contains(c), try source.type(of: c) == .commit else { continue }
            seen.insert(c)
            stack.append(contentsOf: try source.commit(c).parents)
        }
        return seen
    }

    /// Commits reachable from `tips` and not in `known`, children before parents.
    public static func newCommits(from tips: [ObjectID], notIn known: Set<ObjectID>, in source: ObjectSource) throws -> [(ObjectID, Commit)] {
        var out: [(ObjectID, Commit)] = []
        var seen = known
        var stack = tips
        while let c = stack.popLast() {
            guard seen.insert(c).inserted else { continue }
            let commit = try source.commit(c)
            out.append((c, commit))
            stack.append(contentsOf: commit.parents)
        }
        return out
    }

    /// True when `ancestor` is `descendant` or one of its ancestors.
    public static func isAncestor(_ ancestor: ObjectID, of descendant: ObjectID, in source: ObjectSource) throws -> Bool {
        if ancestor == descendant { return true }
        return try ancestry(of: [descendant], in: source).contains(ancestor)
    }

    /// What `visitDelta` reports.
    public enum Item {
        case tree(ObjectID)
        /// A file or symlink: its blob, path and size.
        case blob(ObjectID, path: String, size: UInt64)
    }

    /// Reports the trees and blobs of tree `new` that differ from tree `old` (nil: all of
    /// them), descending only where the two differ. Each id is reported once per call.
    public static func visitDelta(_ new: ObjectID, from old: ObjectID?, in source: ObjectSource, path: String = "",
                                  visit: (Item) throws -> Void) throws {
        var seen = Set<ObjectID>()
        try delta(new, old, source, path, 0, &seen, visit)
    }

    /// Deeper trees are refused: a crafted chain of nested trees must not exhaust the stack.
    public static let maxDepth = 1024

    private static func delta(_ new: ObjectID, _ old: ObjectID?, _ source: ObjectSource, _ path: String, _ depth: Int,
                              _ seen: inout Set<ObjectID>, _ visit: (Item) throws -> Void) throws {
        guard depth <= maxDepth else {
            throw StoreError(.invalidInput, "tree \(new.short()) is nested more than \(maxDepth) folders deep", hint: "such a tree is refused")
        }
        guard new != old, seen.insert(new).inserted else { return }
        try visit(.tree(new))
        let tree = try source.tree(new)
        let before = try old.map { try source.tree($0) }
        for e in tree.entries {
            let p = path.isEmpty ? e.name : path + "/" + e.name
            let prior = before?[e.name]
            if let prior, prior.id == e.id, prior.kind == e.kind { continue }
            switch e.kind {
            case .directory:
                try delta(e.id, prior?.kind == .directory ? prior?.id : nil, source, p, depth + 1, &seen, visit)
            case .file, .symlink:
                if seen.insert(e.id).inserted { try visit(.blob(e.id, path: p, size: e.size)) }
            }
        }
    }
}

