import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Finished tiles on disk, so that an interrupted job resumes without redoing them.
///
/// The directory holds `manifest.json` (what the tiles were computed from: sizes, tile
/// size, kernel, method, precision and hashes of the data, model and parameters) and one
/// file per finished tile, `tile-<index>.bin`: a header (magic "NTKTILE2", tile index, row
/// and column block, value count, FNV-1a checksum of the values, the manifest's hash, and
/// a checksum of the header) followed by the values, written to a temporary name and
/// renamed, so a tile file is whole or absent after a process dies; after a machine crash
/// a torn tile fails its checksum and is recomputed. The manifest hash binds every tile to
/// its run: a tile copied from a checkpoint of other inputs is never reused. Any rank may
/// write and read any tile, so a job can resume with another rank count.
///
/// Ownership: a checkpoint directory is either created by the tool, or an existing one
/// that holds one of its checkpoints (its manifest) or nothing at all; any other directory
/// is refused (73). Only the manifest and tile files the tool can recognize as its own
/// (by their magic) are ever removed, and the directory itself only when the tool created
/// it as the default `DIR/checkpoint`.
public struct Checkpoint: Sendable {
    /// What a checkpoint was made from; a resume must match it exactly.
    public struct Manifest: Codable, Equatable, Sendable {
        public var tool = "ntk-checkpoint"
        public var format = 2
        public var n: Int
        public var m: Int?
        public var inputWidth: Int
        public var tileSize: Int
        public var tiles: Int
        public var outputKernel: String
        /// empirical, analytic or nngp.
        public var kernel: String
        /// structured or explicit (empirical kernels).
        public var method: String
        /// f64 or f32.
        public var precision: String
        public var dataHash: String
        public var data2Hash: String?
        public var modelHash: String
        public var parametersHash: String

        enum CodingKeys: String, CodingKey {
            case tool, format, n, m, tiles, kernel, method, precision
            case inputWidth = "input_width", tileSize = "tile_size", outputKernel = "output_kernel"
            case dataHash = "data_hash", data2Hash = "data2_hash", modelHash = "model_hash", parametersHash = "parameters_hash"
        }

        public init(n: Int, m: Int?, inputWidth: Int, tileSize: Int, tiles: Int, outputKernel: String, kernel: String,
                    method: String, precision: String, dataHash: String, data2Hash: String?, modelHash: String,
                    parametersHash: String) {
            self.n = n; self.m = m; self.inputWidth = inputWidth; self.tileSize = tileSize; self.tiles = tiles
            self.outputKernel = outputKernel; self.kernel = kernel; self.method = method; self.precision = precision
            self.dataHash = dataHash; self.data2Hash = data2Hash; self.modelHash = modelHash; self.parametersHash = parametersHash
        }

        /// The canonical bytes (sorted keys), whose hash binds the tiles.
        var encoded: Data {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            return (try? encoder.encode(self)) ?? Data()
        }
    }

    public let directory: String
    /// The FNV-1a hash of the manifest's canonical bytes, stored in every tile header.
    let binding: UInt64
    static let magic: UInt64 = 0x3245_4C49_544B_544E  // "NTKTILE2" little-endian
    /// The first format's magic: its tiles are recognized as the tool's, never reused.
    static let formerMagic: UInt64 = 0x3145_4C49_544B_544E  // "NTKTILE1"
    static let headerWords = 8

    /// Prepares the directory on rank 0 and claims it for this run: with `resume`, keeps
    /// tiles whose manifest matches (refusing, 65, one made from different inputs);
    /// otherwise, or when there is nothing to resume, removes the tool's old tiles and
    /// writes a fresh manifest. Refuses (73) a directory that another run holds or that
    /// holds anything but one of the tool's checkpoints. Returns whether earlier tiles may
    /// be reused, and the claim (hold it until the run ends).
    public static func prepare(directory: String, manifest: Manifest, resume: Bool) throws(NTKError) -> (reusable: Bool, lock: DirectoryLock) {
        try FileSystem.makeDirectories(directory, role: "checkpoint")
        let lock = try DirectoryLock(directory: directory, role: "the checkpoint directory")
        let manifestPath = directory + "/manifest.json"
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).filter { $0 != DirectoryLock.fileName }
        var existing: Manifest? = nil
        if names.contains("manifest.json") {
            let bytes = FileManager.default.contents(atPath: manifestPath) ?? Data()
            let object = (try? JSONSerialization.jsonObject(with: bytes)) as? [String: Any]
            guard let object, object["tool"] as? String == "ntk-checkpoint" || object["tile_size"] != nil && object["parameters_hash"] != nil else {
                throw NTKError(.cannotCreate, "--checkpoint \(directory) holds a manifest.json that is not an ntk checkpoint's; ntk does not touch it: choose another directory")
            }
            existing = try? JSONDecoder().decode(Manifest.self, from: bytes)
            if existing == nil && resume {
                throw NTKError(.dataError, "the checkpoint in \(directory) was written by another version of ntk and cannot be resumed; rerun without --resume to start over")
            }
        } else if let foreign = names.first(where: { !isTileName($0) }) ?? names.first {
            throw NTKError(.cannotCreate, "--checkpoint \(directory) exists and is not an ntk checkpoint (it holds \(foreign)); ntk only uses a new or empty directory, or one of its own checkpoints")
        }
        if let foreign = names.first(where: { isTileName($0) && !isToolTile(directory + "/" + $0) }) {
            throw NTKError(.cannotCreate, "--checkpoint \(directory) holds \(foreign), which ntk did not write; move it away, or choose another directory")
        }
        if resume, let existing {
            if existing != manifest {
                throw NTKError(.dataError, "the checkpoint in \(directory) was made from different inputs or options (\(differences(existing, manifest))); rerun without --resume to start over, or pass the original inputs")
            }
            return (true, lock)
        }
        // A fresh start: no tile of another run may survive.
        Checkpoint(directory: directory, binding: 0).removeTiles()
        let output = try OutputDirectory(stagingIn: directory)
        try output.stage("manifest.json", manifest.encoded)
        try output.commitStaged()
        return (false, lock)
    }

    public init(directory: String, manifest: Manifest) {
        self.init(directory: directory, binding: Self.hash(manifest.encoded))
    }

    init(directory: String, binding: UInt64) {
        self.directory = directory
        self.binding = binding
    }

    func path(_ index: Int) -> String { "\(directory)/tile-\(index).bin" }

    /// `tile-<digits>.bin`, or a temporary `.tile-<digits>.bin.partial-<pid>`.
    static func isTileName(_ name: String) -> Bool {
        if name.hasPrefix("tile-") && name.hasSuffix(".bin") {
            let digits = name.dropFirst(5).dropLast(4)
            return !digits.isEmpty && digits.allSatisfy(\.isNumber)
        }
        return name.hasPrefix(".tile-") && OutputDirectory.isTemporary(name)
    }

    /// Whether the file starts with a tile magic of the tool (any format).
    static func isToolTile(_ path: String) -> Bool {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var word: UInt64 = 0
        guard pread(fd, &word, 8, 0) == 8 else { return OutputDirectory.isTemporary((path as NSString).lastPathComponent) }
        return word == magic || word == formerMagic
    }

    /// Writes one finished tile (whole or not at all). Throws 74 on a failed write.
    public func save(index: Int, tile: TilePlan.Tile, values: [Double]) throws(NTKError) {
        var header: [UInt64] = [Self.magic, UInt64(index), UInt64(tile.row), UInt64(tile.column), UInt64(values.count),
                                Self.checksum(values), binding, 0]
        header[7] = Self.checksum(header.prefix(7).map { Double(bitPattern: $0) })
        let temporary = "\(directory)/.tile-\(index).bin.partial-\(getpid())"
        var failure: NTKError? = nil
        header.withUnsafeBytes { h in
            values.withUnsafeBytes { v in
                // No fsync per tile: a killed process's writes survive in the page cache, and a
                // tile torn by a machine crash fails its checksum and is recomputed on resume.
                // (An fsync per tile cost more than the tile products at small tile sizes.)
                do throws(NTKError) { try FileSystem.writeFile(temporary, parts: [h, v], sync: false) } catch { failure = error }
            }
        }
        if failure == nil && rename(temporary, path(index)) != 0 {
            failure = NTKError(.ioError, SystemError.text(errno))
            unlink(temporary)
        }
        if let failure { throw NTKError(.ioError, "writing checkpoint tile \(path(index)) failed: \(failure.message)") }
    }

    /// A saved tile's values if its file is present and intact (right header, size and
    /// checksum); nil otherwise, and the tile is then recomputed.
    public func load(index: Int, tile: TilePlan.Tile, count: Int) -> [Double]? {
        guard let data = FileManager.default.contents(atPath: path(index)),
              data.count == 8 * (Self.headerWords + count) else { return nil }
        var words = [UInt64](repeating: 0, count: Self.headerWords)
        var values = [Double](repeating: 0, count: count)
        _ = words.withUnsafeMutableBytes { data.copyBytes(to: $0, from: 0..<(8 * Self.headerWords)) }
        _ = values.withUnsafeMutableBytes { data.copyBytes(to: $0, from: (8 * Self.headerWords)..<data.count) }
        guard words[0] == Self.magic, words[1] == UInt64(index), words[2] == UInt64(tile.row), words[3] == UInt64(tile.column),
              words[4] == UInt64(count), words[6] == binding, words[7] == Self.checksum(words.prefix(7).map { Double(bitPattern: $0) }),
              words[5] == Self.checksum(values) else { return nil }
        return values
    }

    /// Removes the tool's tile files (recognized by name and magic), nothing else.
    func removeTiles() {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return }
        for name in names where Self.isTileName(name) && Self.isToolTile(directory + "/" + name) {
            unlink(directory + "/" + name)
        }
    }

    /// Removes the checkpoint's files (after a complete result was written): its tiles and
    /// manifest, then releases `lock` and, with `directoryToo`, removes the directory if
    /// nothing else is left in it.
    public func remove(directoryToo: Bool, lock: DirectoryLock?) {
        removeTiles()
        unlink(directory + "/manifest.json")
        lock?.release()
        if directoryToo { rmdir(directory) }
    }

    /// FNV-1a over bytes.
    static func hash(_ data: Data) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in data {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01B3
        }
        return hash
    }

    /// FNV-1a over 64-bit words.
    static func checksum(_ values: [Double]) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for v in values {
            hash ^= v.bitPattern
            hash = hash &* 0x0000_0100_0000_01B3
        }
        return hash
    }

    /// A hex fingerprint of doubles (data and parameters).
    public static func fingerprint(_ values: [Double]) -> String {
        String(checksum(values), radix: 16)
    }

    /// A hex fingerprint of bytes (the model description).
    public static func fingerprint(_ data: Data) -> String {
        String(hash(data), radix: 16)
    }

    /// What differs between the checkpoint's manifest `a` and this run's `b`, naming the
    /// flag and both values where a flag decides it.
    static func differences(_ a: Manifest, _ b: Manifest) -> String {
        var fields: [String] = []
        if a.n != b.n || a.m != b.m || a.inputWidth != b.inputWidth { fields.append("the data shape differs") }
        else if a.dataHash != b.dataHash || a.data2Hash != b.data2Hash { fields.append("the data differ") }
        if a.modelHash != b.modelHash { fields.append("the model differs") }
        if a.parametersHash != b.parametersHash { fields.append("the parameters differ") }
        func flag(_ name: String, _ before: String, _ now: String) {
            if before != now { fields.append("\(name) was \(before), now \(now)") }
        }
        flag("--tile", String(a.tileSize), String(b.tileSize))
        flag("--output-kernel", a.outputKernel, b.outputKernel)
        flag("--kernel", a.kernel, b.kernel)
        flag("--method", a.method, b.method)
        flag("--precision", a.precision, b.precision)
        return fields.isEmpty ? "the manifest differs" : fields.joined(separator: "; ")
    }
}
