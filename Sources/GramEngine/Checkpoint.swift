import CSystem
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Finished tiles on disk, so that an interrupted job resumes without redoing them.
///
/// The directory holds `manifest.json` (what the tiles were computed from: sizes, tile
/// size, kernel, method, precision and hashes of the data, model and parameters) and one
/// tile log per process that saved tiles, `tiles-<pid>[-<n>].log`: records appended one
/// after the other, each a header (magic "NTKTILE3", tile index, row and column block,
/// value count, FNV-1a checksum of the values, the manifest's hash, and a checksum of the
/// header), the values, and zeros up to a multiple of 4 KiB, written with direct I/O where
/// the file system takes it. A process killed mid-record leaves a torn last record, and a
/// machine crash a torn tail: such a record fails its checksums and is recomputed. The
/// manifest hash binds every record to its run: a tile copied from a checkpoint of other
/// inputs is never reused. Any rank may read any log, so a job can resume with another
/// rank count.
///
/// Why logs and not a file per tile (format 2): creating and renaming a file per tile cost
/// about as much CPU as writing the kernel itself (N = 16000 on 2 ranks: 2016 files, 2-3 s
/// of a 15 s run in ext4's inode allocator), and on cluster file systems a file per tile
/// loads the metadata server; appending to one file per rank does neither.
///
/// Ownership: a checkpoint directory is either created by the tool, or an existing one
/// that holds one of its checkpoints (its manifest) or nothing at all; any other directory
/// is refused (73). Only the manifest and tile files the tool can recognize as its own
/// (by their name and magic) are ever removed, and the directory itself only when the tool
/// created it as the default `DIR/checkpoint`.
public struct Checkpoint: Sendable {
    /// What a checkpoint was made from; a resume must match it exactly.
    public struct Manifest: Codable, Equatable, Sendable {
        public var tool = "ntk-checkpoint"
        public var format = 3
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
    static let magic: UInt64 = 0x3345_4C49_544B_544E  // "NTKTILE3" little-endian
    /// The earlier formats' magics (a file per tile): their files are recognized as the
    /// tool's (removed at a fresh start), never reused.
    static let formerMagic: UInt64 = 0x3145_4C49_544B_544E  // "NTKTILE1"
    static let formatTwoMagic: UInt64 = 0x3245_4C49_544B_544E  // "NTKTILE2"
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
            if existing.format != manifest.format {
                throw NTKError(.dataError, "the checkpoint in \(directory) was written by another version of ntk (format \(existing.format), this one writes \(manifest.format)) and cannot be resumed; rerun without --resume to start over")
            }
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
        log = TileLog(directory: directory)
        saved = SavedTiles(directory: directory, binding: binding)
    }

    /// This process's log (opened at the first save).
    let log: TileLog
    /// The records of every log in the directory (read at the first load).
    let saved: SavedTiles

    static let alignment = KernelFileOperator.alignment
    static let headerBytes = 8 * headerWords

    /// The bytes of a record of `count` values: header, values, zeros to the alignment.
    static func recordBytes(count: Int) -> Int {
        (headerBytes + 8 * count + alignment - 1) / alignment * alignment
    }

    /// A record's header words for tile `index`.
    func header(index: Int, tile: TilePlan.Tile, values: [Double]) -> [UInt64] {
        var header: [UInt64] = [Self.magic, UInt64(index), UInt64(tile.row), UInt64(tile.column), UInt64(values.count),
                                Self.checksum(values), binding, 0]
        header[7] = Self.checksum(header.prefix(7).map { Double(bitPattern: $0) })
        return header
    }

    /// Whether `words` is a header of this checkpoint (magic, binding, header checksum).
    func isHeader(_ words: [UInt64]) -> Bool {
        words.count == Self.headerWords && words[0] == Self.magic && words[6] == binding
            && words[7] == Self.checksum(words.prefix(7).map { Double(bitPattern: $0) })
    }

    /// Appends one finished tile to this process's log. No fsync per tile: a killed
    /// process's records survive (in the page cache or on the device), and a record torn by
    /// a machine crash fails its checksum and is recomputed. Throws 74 on a failed write.
    public func save(index: Int, tile: TilePlan.Tile, values: [Double]) throws(NTKError) {
        try log.append(header: header(index: index, tile: tile, values: values), values: values)
    }

    /// A saved tile's values if a record of it is present and intact (right header, size
    /// and checksum); nil otherwise, and the tile is then recomputed.
    public func load(index: Int, tile: TilePlan.Tile, count: Int) -> [Double]? {
        guard let place = saved.find(index: index, checkpoint: self) else { return nil }
        let fd = open(place.path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var words = [UInt64](repeating: 0, count: Self.headerWords)
        var values = [Double](repeating: 0, count: count)
        let headerRead = words.withUnsafeMutableBytes { pread(fd, $0.baseAddress!, $0.count, off_t(place.offset)) }
        guard headerRead == Self.headerBytes, isHeader(words), words[1] == UInt64(index), words[2] == UInt64(tile.row),
              words[3] == UInt64(tile.column), words[4] == UInt64(count) else { return nil }
        let wanted = 8 * count
        var done = 0
        let ok = values.withUnsafeMutableBytes { buffer -> Bool in
            while done < wanted {
                let got = pread(fd, buffer.baseAddress! + done, wanted - done, off_t(place.offset + Self.headerBytes + done))
                if got < 0 && errno == EINTR { continue }
                if got <= 0 { return false }
                done += got
            }
            return true
        }
        guard ok, words[5] == Self.checksum(values) else { return nil }
        return values
    }

    /// `tiles-<digits>.log` or `tiles-<digits>-<digits>.log` (logs); `tile-<digits>.bin` or a
    /// temporary `.tile-<digits>.bin.partial-<pid>` (format 2's files).
    static func isTileName(_ name: String) -> Bool {
        if name.hasPrefix("tiles-") && name.hasSuffix(".log") {
            let middle = name.dropFirst(6).dropLast(4).split(separator: "-", omittingEmptySubsequences: false)
            return (1...2).contains(middle.count) && middle.allSatisfy { !$0.isEmpty && $0.allSatisfy { $0.isASCII && $0.isNumber } }
        }
        if name.hasPrefix("tile-") && name.hasSuffix(".bin") {
            let digits = name.dropFirst(5).dropLast(4)
            return !digits.isEmpty && digits.allSatisfy { $0.isASCII && $0.isNumber }
        }
        return name.hasPrefix(".tile-") && OutputDirectory.isTemporary(name)
    }

    /// Whether the file starts with a tile magic of the tool (any format); an empty log
    /// (its process died before its first record) counts as the tool's, and so does a log
    /// whose first record was zeroed by a crash (its first word is 0).
    static func isToolTile(_ path: String) -> Bool {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var word: UInt64 = 0
        let name = (path as NSString).lastPathComponent
        guard pread(fd, &word, 8, 0) == 8 else { return OutputDirectory.isTemporary(name) || name.hasPrefix("tiles-") }
        return word == magic || word == formerMagic || word == formatTwoMagic || (word == 0 && name.hasPrefix("tiles-"))
    }

    /// Removes the tool's tile files (recognized by name and magic), nothing else.
    func removeTiles() {
        log.close()
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

    /// One process's tile log: created at the first record (exclusively, under a name no
    /// other process holds), then appended to. Records go out with O_DIRECT from one reused
    /// aligned buffer where the file system takes it (the page cache would cost about as
    /// much CPU as the kernel's own writes), by ordinary writes otherwise (tmpfs).
    final class TileLog: @unchecked Sendable {
        let directory: String
        private let lock = NSLock()
        private var fd: Int32 = -1
        private var direct = false
        private var path = ""
        private var end = 0
        private var buffer: UnsafeMutableRawPointer? = nil
        private var capacity = 0

        init(directory: String) { self.directory = directory }
        deinit {
            if fd >= 0 { Glibc.close(fd) }
            free(buffer)
        }

        func close() {
            lock.lock()
            defer { lock.unlock() }
            if fd >= 0 { Glibc.close(fd) }
            fd = -1
        }

        private func create() throws(NTKError) {
            let pid = getpid()
            let buffered = ProcessInfo.processInfo.environment["NTK_TEST_BUFFERED_CHECKPOINT"] != nil
            for attempt in 0..<1000 {
                let name = attempt == 0 ? "tiles-\(pid).log" : "tiles-\(pid)-\(attempt).log"
                let candidate = directory + "/" + name
                // Created first, then switched to direct I/O where the file system takes it
                // (an O_CREAT | O_DIRECT open that fails leaves the new file behind).
                let descriptor = open(candidate, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o644)
                if descriptor >= 0 {
                    direct = !buffered && ntk_set_direct(descriptor) == 0
                    fd = descriptor
                    path = candidate
                    return
                }
                if errno != EEXIST { throw NTKError(.ioError, "cannot create the checkpoint log \(candidate): \(SystemError.text(errno))") }
            }
            throw NTKError(.ioError, "cannot create a checkpoint log in \(directory): every name is taken")
        }

        func append(header: [UInt64], values: [Double]) throws(NTKError) {
            lock.lock()
            defer { lock.unlock() }
            if fd < 0 { try create() }
            let exact = 8 * (header.count + values.count)
            let rounded = (exact + Checkpoint.alignment - 1) / Checkpoint.alignment * Checkpoint.alignment
            if rounded > capacity {
                free(buffer)
                buffer = nil
                capacity = 0
                var pointer: UnsafeMutableRawPointer? = nil
                guard posix_memalign(&pointer, Checkpoint.alignment, rounded) == 0, let pointer else {
                    throw NTKError(.software, "cannot allocate a checkpoint buffer of \(rounded) bytes")
                }
                buffer = pointer
                capacity = rounded
            }
            let base = buffer!
            header.withUnsafeBytes { base.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
            values.withUnsafeBytes { (base + 8 * header.count).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
            if rounded > exact { (base + exact).initializeMemory(as: UInt8.self, repeating: 0, count: rounded - exact) }
            var failure = FileSystem.writeAll(fd, UnsafeRawBufferPointer(start: base, count: rounded), at: end)
            if failure != nil && direct && errno == EINVAL {
                // The device wants another alignment: ordinary writes from now on.
                Glibc.close(fd)
                fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW)
                direct = false
                failure = fd < 0 ? SystemError.text(errno)
                    : FileSystem.writeAll(fd, UnsafeRawBufferPointer(start: base, count: rounded), at: end)
            }
            if let failure { throw NTKError(.ioError, "writing the checkpoint log \(path) failed: \(failure)") }
            end += rounded
        }
    }

    /// Where each saved tile is: every log's records, read once (headers only) at the first
    /// lookup. A log is read up to its first record that is not whole (a torn tail).
    final class SavedTiles: @unchecked Sendable {
        let directory: String
        let binding: UInt64
        private let lock = NSLock()
        private var places: [Int: (path: String, offset: Int)]? = nil

        init(directory: String, binding: UInt64) {
            self.directory = directory
            self.binding = binding
        }

        func find(index: Int, checkpoint: Checkpoint) -> (path: String, offset: Int)? {
            lock.lock()
            defer { lock.unlock() }
            if places == nil { places = scan(checkpoint) }
            return places![index]
        }

        private func scan(_ checkpoint: Checkpoint) -> [Int: (path: String, offset: Int)] {
            var found: [Int: (path: String, offset: Int)] = [:]
            let names = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [])
                .filter { $0.hasPrefix("tiles-") && Checkpoint.isTileName($0) }.sorted()
            for name in names {
                let path = directory + "/" + name
                let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
                guard fd >= 0 else { continue }
                defer { Glibc.close(fd) }
                var status = stat()
                guard fstat(fd, &status) == 0 else { continue }
                let size = Int(status.st_size)
                var offset = 0
                var words = [UInt64](repeating: 0, count: Checkpoint.headerWords)
                while offset + Checkpoint.headerBytes <= size {
                    let got = words.withUnsafeMutableBytes { pread(fd, $0.baseAddress!, $0.count, off_t(offset)) }
                    guard got == Checkpoint.headerBytes, checkpoint.isHeader(words) else { break }
                    let record = Checkpoint.recordBytes(count: Int(words[4]))
                    guard offset + Checkpoint.headerBytes + 8 * Int(words[4]) <= size else { break }
                    found[Int(words[1])] = (path, offset)
                    offset += record
                }
            }
            return found
        }
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

extension Checkpoint {
    /// Saves tiles on a thread of its own (`BackgroundQueue`), so that the tile loop does
    /// not wait for the disk (a direct-I/O write returns only when the device has the data).
    /// At most 4 tiles wait; `submit` blocks beyond that. The first failure is reported by
    /// the next `submit` or by `finish`, and no later tile is written.
    func backgroundSaver() -> BackgroundQueue<(index: Int, tile: TilePlan.Tile, values: [Double])> {
        BackgroundQueue(depth: 4) { item in
            do throws(NTKError) { try save(index: item.index, tile: item.tile, values: item.values) } catch { return error }
            return nil
        }
    }
}
