import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Finished tiles on disk, so that an interrupted job resumes without redoing them.
///
/// The directory holds `manifest.json` (what the tiles were computed from: sizes, tile
/// size, options and hashes of the data, model and parameters) and one file per
/// finished tile, `tile-<index>.bin`: a header (magic "NTKTILE1", tile index, row and
/// column block, value count, FNV-1a checksum of the values) followed by the values,
/// written to a temporary name and renamed, so a tile file is whole or absent after a
/// process dies; after a machine crash a torn tile fails its checksum and is recomputed. Any rank
/// may write and read any tile, so a job can resume with another rank count.
public struct Checkpoint: Sendable {
    /// What a checkpoint was made from; a resume must match it exactly.
    public struct Manifest: Codable, Equatable, Sendable {
        public var format = 1
        public var n: Int
        public var m: Int?
        public var inputWidth: Int
        public var tileSize: Int
        public var tiles: Int
        public var outputKernel: String
        public var method: String
        public var dataHash: String
        public var data2Hash: String?
        public var modelHash: String
        public var parametersHash: String

        enum CodingKeys: String, CodingKey {
            case format, n, m, tiles, method
            case inputWidth = "input_width", tileSize = "tile_size", outputKernel = "output_kernel"
            case dataHash = "data_hash", data2Hash = "data2_hash", modelHash = "model_hash", parametersHash = "parameters_hash"
        }
    }

    public let directory: String
    static let magic: UInt64 = 0x3145_4C49_544B_544E  // "NTKTILE1" little-endian
    static let headerWords = 7

    /// Prepares the directory on rank 0: with `resume`, keeps tiles whose manifest
    /// matches (refusing, 65, one made from different inputs); otherwise, or when there
    /// is nothing to resume, clears old tiles and writes a fresh manifest.
    /// Returns whether earlier tiles may be reused.
    public static func prepare(directory: String, manifest: Manifest, resume: Bool) throws(NTKError) -> Bool {
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw NTKError(.cannotCreate, "cannot create the checkpoint directory \(directory): \(OutputDirectory.reason(error))")
        }
        let manifestPath = directory + "/manifest.json"
        if resume, let bytes = FileManager.default.contents(atPath: manifestPath) {
            guard let existing = try? JSONDecoder().decode(Manifest.self, from: bytes) else {
                throw NTKError(.dataError, "the checkpoint manifest \(manifestPath) is unreadable; remove \(directory) to start over")
            }
            if existing != manifest {
                throw NTKError(.dataError, "the checkpoint in \(directory) was made from different inputs or options (\(differences(existing, manifest))); rerun without --resume to start over, or pass the original inputs")
            }
            return true
        }
        // A fresh start: no tile of another run may survive.
        if let names = try? FileManager.default.contentsOfDirectory(atPath: directory) {
            for name in names where name.hasPrefix("tile-") || name.hasPrefix(".tile-") { unlink(directory + "/" + name) }
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let output = try OutputDirectory(stagingIn: directory)
        try output.stage("manifest.json", (try? encoder.encode(manifest)) ?? Data())
        try output.commitStaged()
        return false
    }

    public init(directory: String) {
        self.directory = directory
    }

    func path(_ index: Int) -> String { "\(directory)/tile-\(index).bin" }

    /// Writes one finished tile (whole or not at all). Throws 74 on a failed write.
    public func save(index: Int, tile: TilePlan.Tile, values: [Double]) throws(NTKError) {
        var header: [UInt64] = [Self.magic, UInt64(index), UInt64(tile.row), UInt64(tile.column), UInt64(values.count),
                                Self.checksum(values), 0]
        header[6] = Self.checksum(header.prefix(6).map { Double(bitPattern: $0) })
        var data = Data(capacity: 8 * (header.count + values.count))
        header.withUnsafeBytes { data.append(contentsOf: $0) }
        values.withUnsafeBytes { data.append(contentsOf: $0) }
        let temporary = "\(directory)/.tile-\(index).bin.partial-\(getpid())"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw NTKError(.ioError, "cannot write checkpoint tile \(temporary): \(String(cString: strerror(errno)))") }
        var failure: String? = nil
        data.withUnsafeBytes { (buffer: UnsafeRawBufferPointer) in
            var offset = 0
            while offset < buffer.count {
                let written = write(fd, buffer.baseAddress! + offset, buffer.count - offset)
                if written < 0 {
                    if errno == EINTR { continue }
                    failure = String(cString: strerror(errno))
                    return
                }
                offset += written
            }
        }
        // No fsync per tile: a killed process's writes survive in the page cache, and a
        // tile torn by a machine crash fails its checksum and is recomputed on resume.
        // (An fsync per tile cost more than the tile products at small tile sizes.)
        close(fd)
        if failure == nil && rename(temporary, path(index)) != 0 { failure = String(cString: strerror(errno)) }
        if let failure {
            unlink(temporary)
            throw NTKError(.ioError, "writing checkpoint tile \(path(index)) failed: \(failure)")
        }
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
              words[4] == UInt64(count), words[6] == Self.checksum(words.prefix(6).map { Double(bitPattern: $0) }),
              words[5] == Self.checksum(values) else { return nil }
        return values
    }

    /// Removes the checkpoint's files (after a complete result was written).
    public func remove(directoryToo: Bool) {
        if let names = try? FileManager.default.contentsOfDirectory(atPath: directory) {
            for name in names where name.hasPrefix("tile-") || name.hasPrefix(".tile-") || name == "manifest.json" {
                unlink(directory + "/" + name)
            }
        }
        if directoryToo { rmdir(directory) }
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
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in data {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01B3
        }
        return String(hash, radix: 16)
    }

    static func differences(_ a: Manifest, _ b: Manifest) -> String {
        var fields: [String] = []
        if a.n != b.n || a.m != b.m || a.inputWidth != b.inputWidth { fields.append("data shape") }
        if a.dataHash != b.dataHash || a.data2Hash != b.data2Hash { fields.append("data") }
        if a.modelHash != b.modelHash { fields.append("model") }
        if a.parametersHash != b.parametersHash { fields.append("parameters") }
        if a.tileSize != b.tileSize { fields.append("--tile \(a.tileSize) before") }
        if a.outputKernel != b.outputKernel { fields.append("--output-kernel \(a.outputKernel) before") }
        if a.method != b.method { fields.append("--method \(a.method) before") }
        if a.format != b.format { fields.append("checkpoint format") }
        return fields.isEmpty ? "manifest differs" : fields.joined(separator: ", ") + " differ"
    }
}
