import Glibc
import TroveCore

/// A Trove store on local disk: packs, refs, config and the SQLite index, with an optional
/// working tree. Reads verify every object against its id.
public final class Store: @unchecked Sendable {
    /// The store directory (`.trove` or `.git/trove`).
    public let root: String
    /// The working tree's top, when the store has one.
    public let workTree: String?
    public private(set) var config: StoreConfig
    public let index: ObjectIndex
    public let parameters: ChunkerParameters
    let packFiles: PackFiles
    let alternates: [AlternateStore]

    public var packsDirectory: String { root + "/packs" }
    public var refs: Refs { Refs(root: root) }
    /// Chunks received from a peer, verified and written by this process (see `VerifiedSet`).
    public let verifiedThisSession = VerifiedSet()
    public var configPath: String { root + "/config" }

    public static let directoryName = ".trove"

    init(root: String, workTree: String?) throws {
        self.root = root
        self.workTree = workTree
        guard FileIO.exists(root + "/config") else {
            throw StoreError(.notAStore, "\(root) is not a trove store (no config file)", hint: "run `trove init` first")
        }
        config = try StoreConfig.parse(try FileIO.readText(root + "/config"), path: root + "/config")
        guard config.values["format.version"] == "1" else {
            throw StoreError(.invalidInput, "store \(root) has format version \(config["format.version"] ?? "?"); this trove reads version 1",
                             hint: "upgrade trove")
        }
        parameters = try config.chunkerParameters()
        index = try ObjectIndex(path: root + "/index.db")
        packFiles = PackFiles(directory: root + "/packs")
        alternates = try Store.readAlternates(root).map { AlternateStore(root: $0) }
        try reconcileIndex()
    }

    /// Creates a store at `root`. Chunker parameters are recorded and fixed from here on.
    @discardableResult
    public static func initialize(root: String, workTree: String?, parameters: ChunkerParameters = .default) throws -> Store {
        try createLayout(root: root, parameters: parameters, extra: [:])
        return try Store(root: root, workTree: workTree)
    }

    /// Makes a store's folders, HEAD and config (Docs/format.md §Layout); `extra` config keys
    /// mark, e.g., a bare store.
    static func createLayout(root: String, parameters: ChunkerParameters, extra: [String: String]) throws {
        do { try parameters.validate() } catch let e as CoreError { throw StoreError(.invalidInput, e.message) }
        if FileIO.exists(root + "/config") {
            throw StoreError(.conflict, "a trove store already exists at \(root)")
        }
        for dir in ["", "/packs", "/refs/heads", "/refs/tags", "/logs"] { try FileIO.mkdirs(root + dir) }
        let config = StoreConfig.newStore(parameters: parameters, extra: extra)
        try FileIO.atomicWrite(root + "/HEAD", Array("ref: refs/heads/main\n".utf8))
        // The config file is written last: its presence marks a complete store.
        try FileIO.atomicWrite(root + "/config", Array(config.render().utf8))
    }

    public static func open(root: String, workTree: String?) throws -> Store {
        try Store(root: root, workTree: workTree)
    }

    /// Finds the store for `directory`: `$TROVE_DIR`, else the nearest `.trove/` or `.git/trove/`
    /// above it.
    public static func discover(from directory: String, environment: [String: String]) throws -> Store {
        if let dir = environment["TROVE_DIR"], !dir.isEmpty {
            let root = FileIO.absolute(dir)
            let work = environment["TROVE_WORK_TREE"].map { FileIO.absolute($0) }
                ?? (FileIO.basename(root) == directoryName ? FileIO.dirname(root) : nil)
            return try Store(root: root, workTree: work)
        }
        var dir = FileIO.absolute(directory)
        while true {
            if FileIO.exists(dir + "/\(directoryName)/config") {
                return try Store(root: dir + "/\(directoryName)", workTree: dir)
            }
            if FileIO.exists(dir + "/.git/trove/config") {
                return try Store(root: dir + "/.git/trove", workTree: dir)
            }
            if dir == "/" { break }
            dir = FileIO.dirname(dir)
        }
        throw StoreError(.notAStore, "no trove store in \(FileIO.absolute(directory)) or any folder above it",
                         hint: "run `trove init` to create one, or set TROVE_DIR")
    }

    /// The store-wide lock: shared for commands that read or add, exclusive for gc.
    public func lock(exclusive: Bool = false, wait: Bool = true) throws -> StoreLock {
        try StoreLock(path: root + "/lock", exclusive: exclusive, wait: wait)
    }

    public func setConfig(_ key: String, _ value: String?) throws {
        if let known = StoreConfig.known.first(where: { $0.name == key }), known.immutable {
            throw StoreError(.invalidInput, "\(key) is fixed when the store is created",
                             hint: "create a new store with `trove init --chunk-avg ...` to use other chunker settings")
        }
        var c = config
        c[key] = value
        let ranges: [String: ClosedRange<Int>] = [
            "pack.size": (1 << 20)...(4 << 30), "pack.compression-level": 1...19,
            "core.threads": 1...1024, "gc.grace-seconds": 0...Int(Int32.max),
        ]
        if let range = ranges[key], let value {
            guard let v = Int(value), range.contains(v) else {
                throw StoreError(.invalidInput, "\(key) takes a whole number in \(range.lowerBound)...\(range.upperBound), not \(value)")
            }
        }
        try FileIO.atomicWrite(configPath, Array(c.render().utf8))
        config = c
    }

    var packTargetSize: Int { (try? config.int("pack.size")) ?? nil ?? 64 << 20 }
    var compressionLevel: Int { (try? config.int("pack.compression-level")) ?? nil ?? 3 }
    public var threads: Int {
        if let t = (try? config.int("core.threads")) ?? nil, t > 0 { return t }
        return max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
    }

    // MARK: index upkeep

    /// Brings the index in line with the pack files: indexes packs it lacks (a crash between
    /// rename and index), drops rows of packs that are gone.
    func reconcileIndex() throws {
        // The index first, then the folder: a pack that another process finishes in between is
        // then seen on disk (and indexed again, harmlessly), never taken for a vanished one.
        let indexed = Set(try index.packs().map(\.name))
        let onDisk = Set(try FileIO.listDirectory(packsDirectory).filter { $0.hasSuffix(".pack") && !$0.hasPrefix("tmp-") }
            .map { String($0.dropLast(5)) })
        for name in onDisk.subtracting(indexed).sorted() {
            let (size, records) = try Store.readPackIndex(path: packFiles.path(name), name: name)
            try index.addPack(name: name, size: size, records: records)
        }
        let gone = indexed.subtracting(onDisk)
        if !gone.isEmpty { try index.removePacks(Array(gone)) }
        if try index.meta("stage.ready") == nil { try resetStageToHead() }
    }

    /// Reads a pack's trailer: footer, then index, checked against the footer checksum.
    static func readPackIndex(path: String, name: String) throws -> (UInt64, [PackFormat.IndexRecord]) {
        let fd = try FileIO.open(path, O_RDONLY)
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw FileIO.ioError("stat", path) }
        let size = UInt64(st.st_size)
        guard size >= UInt64(PackFormat.headerSize + PackFormat.footerSize) else {
            throw StoreError(.integrity, "pack \(path) is truncated (\(size) bytes)")
        }
        return try decoding("pack \(path)") {
            try PackFormat.checkHeader(try FileIO.pread(fd, count: PackFormat.headerSize, offset: 0, path: path), pack: path)
            let footer = try PackFormat.parseFooter(try FileIO.pread(fd, count: PackFormat.footerSize, offset: size - UInt64(PackFormat.footerSize), path: path),
                                                    fileSize: size, pack: path)
            guard footer.checksum.hex == name else {
                throw CoreError(.integrity, "pack \(path) is named \(name) but its checksum is \(footer.checksum.hex)")
            }
            let trailer = try FileIO.pread(fd, count: footer.trailerLength(fileSize: size), offset: footer.indexOffset, path: path)
            return (size, try PackFormat.parseIndex(trailer, footer: footer, pack: path))
        }
    }

    /// The records of pack `name` in the store at `root`, checked against the pack's checksum.
    public static func packIndex(root: String, name: String) throws -> [PackFormat.IndexRecord] {
        try readPackIndex(path: "\(root)/packs/\(name).pack", name: name).1
    }

    /// Recreates the object index from the pack files.
    public func rebuildIndex() throws -> (packs: Int, objects: Int) {
        try index.clearObjects()
        var objects = 0, packs = 0
        for name in try FileIO.listDirectory(packsDirectory).sorted() where name.hasSuffix(".pack") && !name.hasPrefix("tmp-") {
            let n = String(name.dropLast(5))
            let (size, records) = try Store.readPackIndex(path: packFiles.path(n), name: n)
            try index.addPack(name: n, size: size, records: records)
            objects += records.count
            packs += 1
        }
        return (packs, objects)
    }

    // MARK: alternates

    static func readAlternates(_ root: String) throws -> [String] {
        let path = root + "/alternates"
        guard FileIO.exists(path) else { return [] }
        return try FileIO.readText(path).split(separator: "\n").map { $0.trimmingCharacters(in: " \t\r") }
            .filter { !$0.isEmpty && !$0.hasPrefix("#") }
            .map { FileIO.absolute($0, base: root) }
    }

    public func setAlternates(_ paths: [String]) throws {
        for p in paths where !FileIO.isDirectory(p + "/packs") {
            throw StoreError(.invalidInput, "\(p) is not a trove store (no packs folder)")
        }
        try FileIO.atomicWrite(root + "/alternates", Array(paths.map { $0 + "\n" }.joined().utf8))
    }

    // MARK: reading

    typealias Located = ObjectLocation

    public func locate(_ id: ObjectID) throws -> ObjectLocation? {
        if let loc = try index.locate(id) { return ObjectLocation(files: packFiles, location: loc) }
        for alt in alternates { if let l = try alt.locate(id) { return l } }
        return nil
    }

    public func locateMany(_ ids: [ObjectID]) throws -> [ObjectLocation?] {
        var out = try index.locate(ids).map { $0.map { ObjectLocation(files: packFiles, location: $0) } }
        if !alternates.isEmpty {
            for i in out.indices where out[i] == nil {
                for alt in alternates { if let l = try alt.locate(ids[i]) { out[i] = l; break } }
            }
        }
        return out
    }
}

extension Store: ObjectSource {}

/// Another store whose packs this one reads from (a shared cache on scratch, say), through a
/// `PackTable`; its SQLite index, if any, is not touched.
final class AlternateStore: @unchecked Sendable {
    let table: PackTable

    init(root: String) { table = PackTable(directory: root + "/packs") }

    func locate(_ id: ObjectID) throws -> ObjectLocation? { try table.locate(id) }
}

/// Ids of chunks this process received, checked against their ids and wrote into its own
/// packs. A command that materialises them right after (clone, pull) does not hash them a
/// second time; every later command does.
public final class VerifiedSet: @unchecked Sendable {
    private var ids = Set<ObjectID>()
    private let lock = Mutex()
    public init() {}
    func insert<S: Sequence>(_ more: S) where S.Element == ObjectID { lock.withLock { ids.formUnion(more) } }
    public func contains(_ id: ObjectID) -> Bool { lock.withLock { ids.contains(id) } }
}
