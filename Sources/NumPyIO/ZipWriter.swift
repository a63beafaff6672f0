import Foundation

/// Writes a ZIP archive in memory, the way Python's `zipfile` does for `np.savez`:
/// stored or raw-deflated members, UTF-8 names flagged as such, ZIP64 records only when
/// a size or offset needs them (or always, with `forceZip64`, which the tests use).
///
/// Timestamps are fixed at 1980-01-01 00:00 so that the same arrays always produce the
/// same bytes.
package struct ZipWriter {
    private var output: Data
    private var directory = Data()
    private var memberCount = 0
    private let forceZip64: Bool

    private static let all16 = 0xFFFF
    private static let all32 = 0xFFFF_FFFF
    /// DOS date of 1980-01-01 (day 1, month 1, year 0) and time 00:00:00.
    private static let dosDate: UInt16 = (1 << 5) | 1
    private static let dosTime: UInt16 = 0

    /// - Parameters:
    ///   - capacity: bytes to reserve for the archive.
    ///   - forceZip64: write ZIP64 size, offset and end records even when not needed.
    package init(capacity: Int = 0, forceZip64: Bool = false) {
        self.output = Data(capacity: capacity)
        self.forceZip64 = forceZip64
    }

    /// Appends a member whose contents are `header` followed by `body`.
    /// - Throws: ``NPZError/compressionFailed(_:)`` if zlib fails.
    package mutating func addMember(name: String, header: [UInt8], body: Data, compress: Bool) throws(NPZError) {
        let nameBytes = Array(name.utf8)
        let flags: UInt16 = nameBytes.contains(where: { $0 >= 0x80 }) ? 0x800 : 0
        let uncompressedSize = header.count + body.count
        var crc = header.withUnsafeBytes { Zlib.crc32($0) }
        crc = body.withUnsafeBytes { Zlib.crc32($0, initial: crc) }

        var compressedData: Data?
        if compress {
            let result = header.withUnsafeBytes { headerBytes in
                body.withUnsafeBytes { bodyBytes in Zlib.deflateRaw([headerBytes, bodyBytes]) }
            }
            switch result {
            case let .success(data): compressedData = data
            case let .failure(failure): throw .compressionFailed(failure.reason)
            }
        }
        let compressedSize = compressedData?.count ?? uncompressedSize
        let offset = output.count
        let sizesNeedZip64 = forceZip64 || uncompressedSize >= Self.all32 || compressedSize >= Self.all32
        let offsetNeedsZip64 = forceZip64 || offset >= Self.all32
        let version: UInt16 = sizesNeedZip64 || offsetNeedsZip64 ? 45 : 20
        let method: UInt16 = compress ? 8 : 0

        // Local file header.
        var localExtra = Data()
        if sizesNeedZip64 {
            localExtra.appendLittleEndian(UInt16(0x0001))
            localExtra.appendLittleEndian(UInt16(16))
            localExtra.appendLittleEndian(UInt64(uncompressedSize))
            localExtra.appendLittleEndian(UInt64(compressedSize))
        }
        output.appendLittleEndian(ZipReader.localHeaderSignature)
        output.appendLittleEndian(version)
        output.appendLittleEndian(flags)
        output.appendLittleEndian(method)
        output.appendLittleEndian(Self.dosTime)
        output.appendLittleEndian(Self.dosDate)
        output.appendLittleEndian(crc)
        output.appendLittleEndian(UInt32(sizesNeedZip64 ? Self.all32 : compressedSize))
        output.appendLittleEndian(UInt32(sizesNeedZip64 ? Self.all32 : uncompressedSize))
        output.appendLittleEndian(UInt16(nameBytes.count))
        output.appendLittleEndian(UInt16(localExtra.count))
        output.append(contentsOf: nameBytes)
        output.append(localExtra)
        if let compressedData {
            output.append(compressedData)
        } else {
            output.append(contentsOf: header)
            output.append(body)
        }

        // Central directory entry.
        var centralExtra = Data()
        if sizesNeedZip64 || offsetNeedsZip64 {
            var fields = Data()
            if sizesNeedZip64 {
                fields.appendLittleEndian(UInt64(uncompressedSize))
                fields.appendLittleEndian(UInt64(compressedSize))
            }
            if offsetNeedsZip64 {
                fields.appendLittleEndian(UInt64(offset))
            }
            centralExtra.appendLittleEndian(UInt16(0x0001))
            centralExtra.appendLittleEndian(UInt16(fields.count))
            centralExtra.append(fields)
        }
        directory.appendLittleEndian(ZipReader.centralHeaderSignature)
        directory.appendLittleEndian(UInt16(3 << 8) | version) // made by: Unix
        directory.appendLittleEndian(version)
        directory.appendLittleEndian(flags)
        directory.appendLittleEndian(method)
        directory.appendLittleEndian(Self.dosTime)
        directory.appendLittleEndian(Self.dosDate)
        directory.appendLittleEndian(crc)
        directory.appendLittleEndian(UInt32(sizesNeedZip64 ? Self.all32 : compressedSize))
        directory.appendLittleEndian(UInt32(sizesNeedZip64 ? Self.all32 : uncompressedSize))
        directory.appendLittleEndian(UInt16(nameBytes.count))
        directory.appendLittleEndian(UInt16(centralExtra.count))
        directory.appendLittleEndian(UInt16(0)) // comment length
        directory.appendLittleEndian(UInt16(0)) // disk number start
        directory.appendLittleEndian(UInt16(0)) // internal attributes
        directory.appendLittleEndian(UInt32(0o100644) << 16) // external: regular file, rw-r--r--
        directory.appendLittleEndian(UInt32(offsetNeedsZip64 ? Self.all32 : offset))
        directory.append(contentsOf: nameBytes)
        directory.append(centralExtra)
        memberCount += 1
    }

    /// Appends the central directory and end records and returns the archive.
    package mutating func finish() -> Data {
        let directoryOffset = output.count
        let directorySize = directory.count
        output.append(directory)
        if forceZip64 || memberCount >= Self.all16 || directoryOffset >= Self.all32 || directorySize >= Self.all32 {
            let recordOffset = output.count
            output.appendLittleEndian(ZipReader.zip64EndSignature)
            output.appendLittleEndian(UInt64(44)) // size of the rest of this record
            output.appendLittleEndian(UInt16(3 << 8 | 45))
            output.appendLittleEndian(UInt16(45))
            output.appendLittleEndian(UInt32(0)) // this disk
            output.appendLittleEndian(UInt32(0)) // disk with the central directory
            output.appendLittleEndian(UInt64(memberCount))
            output.appendLittleEndian(UInt64(memberCount))
            output.appendLittleEndian(UInt64(directorySize))
            output.appendLittleEndian(UInt64(directoryOffset))
            output.appendLittleEndian(ZipReader.zip64LocatorSignature)
            output.appendLittleEndian(UInt32(0))
            output.appendLittleEndian(UInt64(recordOffset))
            output.appendLittleEndian(UInt32(1)) // total disks
        }
        output.appendLittleEndian(ZipReader.endSignature)
        output.appendLittleEndian(UInt16(0))
        output.appendLittleEndian(UInt16(0))
        output.appendLittleEndian(UInt16(min(memberCount, Self.all16)))
        output.appendLittleEndian(UInt16(min(memberCount, Self.all16)))
        output.appendLittleEndian(UInt32(min(directorySize, Self.all32)))
        output.appendLittleEndian(UInt32(min(directoryOffset, Self.all32)))
        output.appendLittleEndian(UInt16(0)) // comment length
        return output
    }
}

extension Data {
    mutating func appendLittleEndian<T: FixedWidthInteger>(_ value: T) {
        Swift.withUnsafeBytes(of: value.littleEndian) { append(contentsOf: $0) }
    }
}
