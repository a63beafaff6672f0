import Foundation

/// Reads and writes NumPy `.npz` archives: ZIP files whose members are `.npy` files, as
/// written by `np.savez` (stored) and `np.savez_compressed` (deflated).
///
/// Array names are the member names without the `.npy` suffix (`np.savez(f, x=a)` stores
/// `x.npy`, read back as `"x"`). Members whose names do not end in `.npy`, such as
/// directories, are ignored, as `np.load` does for arrays. ZIP64 archives are read and,
/// when a member or the archive passes 4 GiB, written.
public enum NPZFormat {
    /// Decodes an `.npz` archive into a dictionary from array name to array.
    ///
    /// - Parameter data: the complete archive (a slice is fine).
    /// - Throws: ``NPZError/notAZip`` if the data is not a ZIP archive,
    ///   ``NPZError/corrupt(_:)`` for an inconsistent or damaged archive (including CRC
    ///   mismatches), ``NPZError/unsupportedCompression(_:)``,
    ///   ``NPZError/duplicateMember(_:)`` if a name occurs twice, and
    ///   ``NPZError/badMember(name:_:)`` wrapping the ``NPYError`` of a member that is
    ///   not a valid `.npy` array.
    public static func decode(_ data: Data) throws(NPZError) -> [String: NPYArray] {
        var arrays: [String: NPYArray] = [:]
        for (name, array) in try decodeMembers(data) {
            arrays[name] = array
        }
        return arrays
    }

    /// Decodes an `.npz` archive into `(name, array)` pairs in archive order.
    /// - Throws: the same errors as ``decode(_:)``.
    public static func decodeMembers(_ data: Data) throws(NPZError) -> [(name: String, array: NPYArray)] {
        try decodeMembers(data, maximumMemberBytes: { _ in nil })
    }

    /// Decodes an `.npz` archive into `(name, array)` pairs in archive order, refusing
    /// members larger than the caller allows before decompressing them.
    ///
    /// - Parameter maximumMemberBytes: given an array name (without `.npy`), the largest
    ///   uncompressed size in bytes, `.npy` header included, allowed for that member, or
    ///   `nil` for no limit. A member is refused on the size its ZIP entry records; a
    ///   deflated member never inflates past that recorded size either, so a false record
    ///   cannot make the reader produce more.
    /// - Throws: ``NPZError/memberTooLarge(name:bytes:limit:)`` for a member whose recorded
    ///   size exceeds its limit, otherwise the same errors as ``decode(_:)``.
    public static func decodeMembers(
        _ data: Data, maximumMemberBytes: (String) -> Int?
    ) throws(NPZError) -> [(name: String, array: NPYArray)] {
        let result = data.withUnsafeBytes { raw in
            Result { () throws(NPZError) -> [(name: String, array: NPYArray)] in
                try decodeMembers(bytes: raw, maximumMemberBytes: maximumMemberBytes)
            }
        }
        return try result.get()
    }

    /// Encodes arrays as an `.npz` archive, like `np.savez` (stored) or, with
    /// `compressed: true`, like `np.savez_compressed` (deflated).
    ///
    /// Each array is written as the member `name + ".npy"`, in the given order. The output
    /// is deterministic (member timestamps are fixed at 1980-01-01).
    /// - Throws: ``NPZError/invalidMemberName(_:)`` for an empty name, a name containing
    ///   a NUL character or one too long for ZIP; ``NPZError/duplicateMember(_:)`` if two
    ///   arrays share a name; ``NPZError/compressionFailed(_:)`` if zlib fails.
    public static func encode(_ arrays: [(name: String, array: NPYArray)], compressed: Bool = false) throws(NPZError) -> Data {
        try encode(arrays, compressed: compressed, forceZip64: false)
    }

    /// ``encode(_:compressed:)`` with the option to write ZIP64 records for small archives.
    package static func encode(_ arrays: [(name: String, array: NPYArray)], compressed: Bool,
                               forceZip64: Bool) throws(NPZError) -> Data {
        var seen = Set<String>()
        var estimate = 22
        for (name, array) in arrays {
            guard !name.isEmpty else { throw .invalidMemberName("the name is empty") }
            guard !name.unicodeScalars.contains("\0") else {
                throw .invalidMemberName("the name contains a NUL character")
            }
            guard name.utf8.count + 4 <= 0xFFFF else {
                throw .invalidMemberName("the name is longer than 65531 bytes")
            }
            guard seen.insert(name).inserted else { throw .duplicateMember(name) }
            if !compressed {
                estimate += 2 * (name.utf8.count + 4) + 150 + 128 + array.rawBytes.count
            }
        }
        var writer = ZipWriter(capacity: estimate, forceZip64: forceZip64)
        for (name, array) in arrays {
            try writer.addMember(name: name + ".npy", header: NPYFormat.headerBytes(for: array),
                                 body: array.rawBytes, compress: compressed)
        }
        return writer.finish()
    }

    /// Reads and decodes an `.npz` file. The file is memory-mapped when possible.
    /// - Throws: the file system's error if the file cannot be read, otherwise an ``NPZError``.
    public static func read(contentsOf url: URL) throws -> [String: NPYArray] {
        let data = try Data(contentsOf: url, options: .mappedIfSafe)
        return try decode(data)
    }

    /// Encodes arrays as an `.npz` archive and writes it to a file atomically.
    /// - Throws: an ``NPZError`` from ``encode(_:compressed:)``, or the file system's error
    ///   if the file cannot be written.
    public static func write(_ arrays: [(name: String, array: NPYArray)], compressed: Bool = false, to url: URL) throws {
        try encode(arrays, compressed: compressed).write(to: url, options: .atomic)
    }

    private static func decodeMembers(
        bytes raw: UnsafeRawBufferPointer, maximumMemberBytes: (String) -> Int?
    ) throws(NPZError) -> [(name: String, array: NPYArray)] {
        let entries = try ZipReader.entries(in: raw)
        var seen = Set<String>()
        var arrays: [(name: String, array: NPYArray)] = []
        for entry in entries where entry.name.hasSuffix(".npy") {
            let name = String(entry.name.dropLast(4))
            guard seen.insert(name).inserted else { throw .duplicateMember(name) }
            if let limit = maximumMemberBytes(name), entry.uncompressedSize > limit {
                throw .memberTooLarge(name: name, bytes: entry.uncompressedSize, limit: limit)
            }
            let decoded = try ZipReader.withContents(of: entry, in: raw) { bytes in
                Result { () throws(NPYError) -> NPYArray in try NPYFormat.decode(bytes: bytes) }
            }
            switch decoded {
            case let .success(array): arrays.append((name, array))
            case let .failure(error): throw .badMember(name: name, error)
            }
        }
        return arrays
    }
}
