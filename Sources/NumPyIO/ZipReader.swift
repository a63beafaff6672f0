import Foundation

/// One member of a ZIP archive, as described by its central directory entry and checked
/// against its local header.
package struct ZipEntry: Equatable, Sendable {
    package var name: String
    package var method: Int
    package var flags: Int
    package var crc32: UInt32
    package var compressedSize: Int
    package var uncompressedSize: Int
    package var localHeaderOffset: Int
    /// Offset of the member's (compressed) data in the archive.
    package var dataOffset: Int
}

/// A minimal, defensive ZIP reader: it walks the end-of-central-directory record (with
/// ZIP64 extensions), the central directory and each local header, checking every offset
/// and size against the buffer before use.
///
/// Sizes always come from the central directory (local headers written by Python's
/// `zipfile` with `force_zip64=True`, as NumPy does, carry placeholder sizes). Members may
/// not overlap, and a deflated member may not claim more than about 1100 times its
/// compressed size (deflate's limit is 1032:1), which bounds the memory a hostile
/// archive can make the reader allocate. Multi-disk archives, encryption and data before
/// the first member (self-extracting archives) are not supported.
package enum ZipReader {
    static let localHeaderSignature: UInt32 = 0x0403_4B50
    static let centralHeaderSignature: UInt32 = 0x0201_4B50
    static let endSignature: UInt32 = 0x0605_4B50
    static let zip64EndSignature: UInt32 = 0x0606_4B50
    static let zip64LocatorSignature: UInt32 = 0x0706_4B50

    /// Lists the archive's members in central directory order.
    package static func entries(in raw: UnsafeRawBufferPointer) throws(NPZError) -> [ZipEntry] {
        let total = raw.count
        guard let end = findEndRecord(raw) else { throw .notAZip }

        var diskNumber = Int(raw.u16(end + 4))
        var directoryDisk = Int(raw.u16(end + 6))
        var entryCount = Int(raw.u16(end + 10))
        var directorySize = Int(raw.u32(end + 12))
        var directoryOffset = Int(raw.u32(end + 16))
        var directoryLimit = end // the central directory must end before this offset

        if end >= 20 && raw.u32(end - 20) == zip64LocatorSignature {
            let recordOffset64 = raw.u64(end - 12)
            guard recordOffset64 <= UInt64(end - 20), end - 20 - Int(recordOffset64) >= 56,
                  raw.u32(Int(recordOffset64)) == zip64EndSignature
            else { throw .corrupt("the ZIP64 end-of-central-directory record is missing or misplaced") }
            let record = Int(recordOffset64)
            guard let count = Int(exactly: raw.u64(record + 32)),
                  let size = Int(exactly: raw.u64(record + 40)),
                  let offset = Int(exactly: raw.u64(record + 48))
            else { throw .corrupt("the ZIP64 end-of-central-directory record holds impossible sizes") }
            diskNumber = Int(raw.u32(record + 16))
            directoryDisk = Int(raw.u32(record + 20))
            entryCount = count
            directorySize = size
            directoryOffset = offset
            directoryLimit = record
        }
        guard diskNumber == 0, directoryDisk == 0 else {
            throw .corrupt("it is split over several disks, which is not supported")
        }
        guard directoryOffset <= directoryLimit, directorySize <= directoryLimit - directoryOffset else {
            throw .corrupt("the central directory lies outside the archive")
        }
        guard entryCount <= directorySize / 46 else {
            throw .corrupt("the central directory is too short for its \(entryCount) entries")
        }

        var entries: [ZipEntry] = []
        entries.reserveCapacity(entryCount)
        var cursor = directoryOffset
        let directoryEnd = directoryOffset + directorySize
        for _ in 0..<entryCount {
            guard directoryEnd - cursor >= 46, raw.u32(cursor) == centralHeaderSignature else {
                throw .corrupt("a central directory entry is damaged")
            }
            let flags = Int(raw.u16(cursor + 8))
            let method = Int(raw.u16(cursor + 10))
            let crc = raw.u32(cursor + 16)
            var compressedSize = UInt64(raw.u32(cursor + 20))
            var uncompressedSize = UInt64(raw.u32(cursor + 24))
            let nameLength = Int(raw.u16(cursor + 28))
            let extraLength = Int(raw.u16(cursor + 30))
            let commentLength = Int(raw.u16(cursor + 32))
            var localOffset = UInt64(raw.u32(cursor + 42))
            let nameStart = cursor + 46
            guard directoryEnd - nameStart >= nameLength + extraLength + commentLength else {
                throw .corrupt("a central directory entry is damaged")
            }
            let nameBytes = UnsafeRawBufferPointer(rebasing: raw[nameStart..<nameStart + nameLength])
            let name = decodeName(nameBytes, utf8: flags & 0x800 != 0)

            // ZIP64: the 32-bit fields that are all ones are stored in extra field 0x0001.
            let all32 = UInt64(UInt32.max)
            if uncompressedSize == all32 || compressedSize == all32 || localOffset == all32 {
                var extra = nameStart + nameLength
                let extraEnd = extra + extraLength
                while extraEnd - extra >= 4 {
                    let id = raw.u16(extra)
                    let size = Int(raw.u16(extra + 2))
                    guard extraEnd - extra - 4 >= size else {
                        throw .corrupt("the extra field of member '\(name)' is damaged")
                    }
                    if id == 0x0001 {
                        var field = extra + 4
                        let fieldEnd = field + size
                        func next() throws(NPZError) -> UInt64 {
                            guard fieldEnd - field >= 8 else {
                                throw .corrupt("the ZIP64 extra field of member '\(name)' is too short")
                            }
                            defer { field += 8 }
                            return raw.u64(field)
                        }
                        if uncompressedSize == all32 { uncompressedSize = try next() }
                        if compressedSize == all32 { compressedSize = try next() }
                        if localOffset == all32 { localOffset = try next() }
                        break
                    }
                    extra += 4 + size
                }
                // Without a ZIP64 field the all-ones value stays and fails the bounds checks below.
            }
            guard let compressed = Int(exactly: compressedSize),
                  let uncompressed = Int(exactly: uncompressedSize),
                  let local = Int(exactly: localOffset)
            else { throw .corrupt("member '\(name)' records impossible sizes") }

            // The local header: signature, then name and extra lengths at offsets 26 and 28.
            guard local <= total, total - local >= 30, raw.u32(local) == localHeaderSignature else {
                throw .corrupt("the local header of member '\(name)' is missing")
            }
            let localNameLength = Int(raw.u16(local + 26))
            let localExtraLength = Int(raw.u16(local + 28))
            let dataOffset = local + 30 + localNameLength + localExtraLength
            guard dataOffset <= total else {
                throw .corrupt("the local header of member '\(name)' is cut short")
            }
            guard localNameLength == nameLength,
                  memcmpEqual(UnsafeRawBufferPointer(rebasing: raw[(local + 30)..<(local + 30 + nameLength)]), nameBytes)
            else { throw .corrupt("member '\(name)' has different names in its local header and the central directory") }
            guard compressed <= total - dataOffset else {
                throw .corrupt("member '\(name)' extends past the end of the archive")
            }
            entries.append(ZipEntry(name: name, method: method, flags: flags, crc32: crc,
                                    compressedSize: compressed, uncompressedSize: uncompressed,
                                    localHeaderOffset: local, dataOffset: dataOffset))
            cursor = nameStart + nameLength + extraLength + commentLength
        }

        // Overlapping members would let a small archive expand to many copies of one stream.
        let byOffset = entries.sorted { $0.localHeaderOffset < $1.localHeaderOffset }
        for (previous, next) in zip(byOffset, byOffset.dropFirst())
        where next.localHeaderOffset < previous.dataOffset + previous.compressedSize {
            throw .corrupt("members '\(previous.name)' and '\(next.name)' overlap")
        }
        return entries
    }

    /// Checks a member's method, sizes and CRC and passes its uncompressed bytes to `body`.
    ///
    /// At most the recorded uncompressed size is ever produced: a deflate stream that
    /// inflates to more is refused as corrupt once it reaches that size.
    static func withContents<R>(
        of entry: ZipEntry, in raw: UnsafeRawBufferPointer,
        _ body: (UnsafeRawBufferPointer) -> R
    ) throws(NPZError) -> R {
        if entry.flags & 0x1 != 0 {
            throw .corrupt("member '\(entry.name)' is encrypted, which is not supported")
        }
        let compressed = UnsafeRawBufferPointer(
            rebasing: raw[entry.dataOffset..<(entry.dataOffset + entry.compressedSize)])
        switch entry.method {
        case 0:
            guard entry.compressedSize == entry.uncompressedSize else {
                throw .corrupt("stored member '\(entry.name)' has different compressed and uncompressed sizes")
            }
            guard Zlib.crc32(compressed) == entry.crc32 else {
                throw .corrupt("member '\(entry.name)' fails its CRC-32 check")
            }
            return body(compressed)
        case 8:
            let (limit, overflow) = entry.compressedSize.multipliedReportingOverflow(by: 1100)
            guard overflow || entry.uncompressedSize <= limit + 1024 else {
                throw .corrupt("member '\(entry.name)' claims an impossible uncompressed size")
            }
            let inflated: Data
            switch Zlib.inflateRaw(compressed, expectedSize: entry.uncompressedSize) {
            case let .success(data): inflated = data
            case let .failure(failure): throw .corrupt("member '\(entry.name)' cannot be decompressed: \(failure.reason)")
            }
            guard inflated.withUnsafeBytes({ Zlib.crc32($0) }) == entry.crc32 else {
                throw .corrupt("member '\(entry.name)' fails its CRC-32 check")
            }
            return inflated.withUnsafeBytes { body($0) }
        default:
            throw .unsupportedCompression(entry.method)
        }
    }

    /// Finds the end-of-central-directory record: the last signature within the final
    /// 64 KiB + 22 bytes whose comment fits in the data.
    private static func findEndRecord(_ raw: UnsafeRawBufferPointer) -> Int? {
        let total = raw.count
        guard total >= 22 else { return nil }
        let lowest = max(0, total - 22 - 65535)
        var position = total - 22
        while position >= lowest {
            if raw[position] == 0x50, raw[position + 1] == 0x4B, raw[position + 2] == 0x05, raw[position + 3] == 0x06,
               position + 22 + Int(raw.u16(position + 20)) <= total {
                return position
            }
            position -= 1
        }
        return nil
    }

    private static func memcmpEqual(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer) -> Bool {
        a.count == b.count && a.elementsEqual(b)
    }

    /// Decodes a member name: UTF-8 when the archive says so (flag bit 11), otherwise
    /// code page 437 as the ZIP specification requires (ASCII is the same in both).
    package static func decodeName(_ bytes: UnsafeRawBufferPointer, utf8: Bool) -> String {
        if utf8 || !bytes.contains(where: { $0 >= 0x80 }) {
            return String(decoding: bytes, as: UTF8.self)
        }
        var name = ""
        for byte in bytes {
            if byte < 0x80 {
                name.unicodeScalars.append(Unicode.Scalar(byte))
            } else {
                name.unicodeScalars.append(cp437High[Int(byte) - 0x80])
            }
        }
        return name
    }

    /// Code page 437, bytes 0x80...0xFF.
    private static let cp437High: [Unicode.Scalar] = Array(
        "ÇüéâäàåçêëèïîìÄÅÉæÆôöòûùÿÖÜ¢£¥₧ƒáíóúñÑªº¿⌐¬½¼¡«»░▒▓│┤╡╢╖╕╣║╗╝╜╛┐└┴┬├─┼╞╟╚╔╩╦╠═╬╧╨╤╥╙╘╒╓╫╪┘┌█▄▌▐▀αßΓπΣσµτΦΘΩδ∞φε∩≡±≥≤⌠⌡÷≈°∙·√ⁿ²■\u{00A0}"
            .unicodeScalars)
}

extension UnsafeRawBufferPointer {
    /// Little-endian loads; callers check bounds first.
    func u16(_ offset: Int) -> UInt16 { UInt16(littleEndian: loadUnaligned(fromByteOffset: offset, as: UInt16.self)) }
    func u32(_ offset: Int) -> UInt32 { UInt32(littleEndian: loadUnaligned(fromByteOffset: offset, as: UInt32.self)) }
    func u64(_ offset: Int) -> UInt64 { UInt64(littleEndian: loadUnaligned(fromByteOffset: offset, as: UInt64.self)) }
}
