import Foundation
import NumPyIO
import Testing

@Suite("NPZ archives")
struct NPZTests {
    static let arrays: [(name: String, array: NPYArray)] = [
        ("x", NPYArray(shape: [2, 3], doubles: [1, 2, 3, 4, 5, 6])),
        ("labels", NPYArray(shape: [4], int64s: [0, 1, 1, 0])),
        ("mask", NPYArray(shape: [2, 2], bools: [true, false, false, true])),
        ("scalar", NPYArray(shape: [], float32s: [0.5])),
        ("empty", NPYArray(shape: [0, 5], doubles: [])),
        ("zeros", NPYArray(shape: [50, 40], doubles: [Double](repeating: 0, count: 2000))),
        ("résumé", NPYArray(shape: [1], uint8s: [7])),
        ("group/inner", NPYArray(shape: [2], int16s: [-1, 1])),
    ]

    @Test("Stored and deflated archives round-trip every array, name and order", arguments: [false, true])
    func roundTrip(compressed: Bool) throws {
        let data = try NPZFormat.encode(Self.arrays, compressed: compressed)
        let members = try NPZFormat.decodeMembers(data)
        #expect(members.map { $0.name } == Self.arrays.map { $0.name })
        for (member, original) in zip(members, Self.arrays) {
            #expect(member.array == original.array, "\(original.name)")
        }
        let dictionary = try NPZFormat.decode(data)
        #expect(dictionary.count == Self.arrays.count)
        #expect(dictionary["labels"] == Self.arrays[1].array)
        let methods = try data.withUnsafeBytes { try ZipReader.entries(in: $0) }.map(\.method)
        #expect(methods == [Int](repeating: compressed ? 8 : 0, count: Self.arrays.count))
    }

    @Test("Compression shrinks redundant data and output is deterministic")
    func compressionAndDeterminism() throws {
        let stored = try NPZFormat.encode(Self.arrays)
        let deflated = try NPZFormat.encode(Self.arrays, compressed: true)
        #expect(deflated.count < stored.count / 4)
        #expect(try NPZFormat.encode(Self.arrays) == stored)
        #expect(try NPZFormat.encode(Self.arrays, compressed: true) == deflated)
    }

    @Test("Stored members are exactly the .npy encoding of each array")
    func storedMembersAreNPYFiles() throws {
        let data = try NPZFormat.encode(Self.arrays)
        let entries = try data.withUnsafeBytes { try ZipReader.entries(in: $0) }
        for (entry, original) in zip(entries, Self.arrays) {
            #expect(entry.name == original.name + ".npy")
            let member = data[entry.dataOffset..<(entry.dataOffset + entry.compressedSize)]
            #expect(member == NPYFormat.encode(original.array))
        }
    }

    @Test("An archive with no arrays is a valid empty ZIP")
    func emptyArchive() throws {
        let data = try NPZFormat.encode([])
        #expect(data.count == 22)
        #expect(try NPZFormat.decode(data).isEmpty)
    }

    @Test("ZIP64 records are written and read", arguments: [false, true])
    func zip64RoundTrip(compressed: Bool) throws {
        let data = try NPZFormat.encode(Self.arrays, compressed: compressed, forceZip64: true)
        #expect(data.offsets(ofSignature: 0x0606_4B50).count == 1)
        #expect(data.offsets(ofSignature: 0x0706_4B50).count == 1)
        let members = try NPZFormat.decodeMembers(data)
        #expect(members.map { $0.array } == Self.arrays.map { $0.array })
    }

    @Test("Non-.npy members such as directories and text files are ignored")
    func ignoresOtherMembers() throws {
        var writer = ZipWriter()
        try writer.addMember(name: "README.txt", header: Array("hello".utf8), body: Data(), compress: false)
        try writer.addMember(name: "dir/", header: [], body: Data(), compress: false)
        try writer.addMember(name: "a.npy", header: [], body: NPYFormat.encode(NPYArray(shape: [1], doubles: [2])), compress: true)
        try writer.addMember(name: "notes.npy.txt", header: Array("x".utf8), body: Data(), compress: true)
        let arrays = try NPZFormat.decode(writer.finish())
        #expect(arrays == ["a": NPYArray(shape: [1], doubles: [2])])
    }

    @Test("Names without the UTF-8 flag are decoded as code page 437")
    func codePage437Names() {
        let bytes: [UInt8] = [0x80, 0x61, 0x9E, 0xE1, 0xFF]
        let name = bytes.withUnsafeBytes { ZipReader.decodeName($0, utf8: false) }
        #expect(name == "Ça₧ß\u{00A0}")
        let utf8 = Array("é".utf8).withUnsafeBytes { ZipReader.decodeName($0, utf8: true) }
        #expect(utf8 == "é")
        let all = Array(UInt8(0x80)...UInt8(0xFF)).withUnsafeBytes { ZipReader.decodeName($0, utf8: false) }
        #expect(all.unicodeScalars.count == 128)
    }

    // MARK: - Encoding errors

    @Test("Duplicate, empty and NUL-containing names are refused when encoding")
    func encodeRejectsBadNames() {
        let array = NPYArray(shape: [1], doubles: [1])
        #expect(throws: NPZError.duplicateMember("a")) { try NPZFormat.encode([("a", array), ("b", array), ("a", array)]) }
        #expect(throws: NPZError.invalidMemberName("the name is empty")) { try NPZFormat.encode([("", array)]) }
        #expect(throws: NPZError.invalidMemberName("the name contains a NUL character")) { try NPZFormat.encode([("a\0b", array)]) }
        let long = String(repeating: "n", count: 70_000)
        #expect(throws: NPZError.invalidMemberName("the name is longer than 65531 bytes")) { try NPZFormat.encode([(long, array)]) }
    }

    // MARK: - Decoding errors

    @Test("Data without a ZIP end record throws notAZip")
    func notAZip() throws {
        #expect(throws: NPZError.notAZip) { try NPZFormat.decode(Data()) }
        #expect(throws: NPZError.notAZip) { try NPZFormat.decode(Data(repeating: 0x41, count: 1000)) }
        #expect(throws: NPZError.notAZip) { try NPZFormat.decode(NPYFormat.encode(NPYArray(shape: [2], doubles: [1, 2]))) }
        let valid = try NPZFormat.encode(Self.arrays)
        #expect(throws: NPZError.notAZip) { try NPZFormat.decode(valid.dropLast(1)) }
        #expect(throws: NPZError.notAZip) { try NPZFormat.decode(valid.prefix(valid.count / 2)) }
    }

    @Test("A changed byte in member data fails the CRC check", arguments: [false, true])
    func crcMismatch(compressed: Bool) throws {
        var data = try NPZFormat.encode([("a", NPYArray(shape: [100], doubles: (0..<100).map(Double.init)))], compressed: compressed)
        let entry = try #require(try data.withUnsafeBytes { try ZipReader.entries(in: $0) }.first)
        data[entry.dataOffset + entry.compressedSize - 3] ^= 0x10
        let error = #expect(throws: NPZError.self) { try NPZFormat.decode(data) }
        guard case .corrupt(let detail)? = error else {
            Issue.record("expected corrupt, got \(String(describing: error))")
            return
        }
        #expect(detail.contains("'a.npy'"))
    }

    @Test("Removing bytes from the middle of an archive is reported as corruption")
    func cutArchive() throws {
        let valid = try NPZFormat.encode(Self.arrays)
        var cut = valid
        cut.removeSubrange(100..<140)
        let error = #expect(throws: NPZError.self) { try NPZFormat.decode(cut) }
        guard case .corrupt? = error else {
            Issue.record("expected corrupt, got \(String(describing: error))")
            return
        }
    }

    @Test("A member that is not a valid .npy file throws badMember with its name and NPY error")
    func badMember() throws {
        var writer = ZipWriter()
        try writer.addMember(name: "ok.npy", header: [], body: NPYFormat.encode(NPYArray(shape: [1], doubles: [2])), compress: false)
        try writer.addMember(name: "bad.npy", header: Array("not numpy".utf8), body: Data(), compress: true)
        #expect(throws: NPZError.badMember(name: "bad", .badMagic)) { try NPZFormat.decode(writer.finish()) }

        var truncated = ZipWriter()
        let encoded = NPYFormat.encode(NPYArray(shape: [4], int32s: [1, 2, 3, 4]))
        try truncated.addMember(name: "t.npy", header: [], body: encoded.dropLast(2), compress: false)
        #expect(throws: NPZError.badMember(name: "t", .truncatedData(expectedBytes: 16, actualBytes: 14))) {
            try NPZFormat.decode(truncated.finish())
        }
    }

    @Test("Two members with the same name throw duplicateMember")
    func duplicateMember() throws {
        var writer = ZipWriter()
        let body = NPYFormat.encode(NPYArray(shape: [1], doubles: [2]))
        try writer.addMember(name: "w.npy", header: [], body: body, compress: false)
        try writer.addMember(name: "w.npy", header: [], body: body, compress: true)
        #expect(throws: NPZError.duplicateMember("w")) { try NPZFormat.decode(writer.finish()) }
    }

    @Test("Compression methods other than stored and deflate throw unsupportedCompression", arguments: [12, 14, 93, 99])
    func unsupportedCompression(method: Int) throws {
        var data = try NPZFormat.encode([("a", NPYArray(shape: [1], doubles: [2]))])
        for offset in data.offsets(ofSignature: 0x0403_4B50) { data.setLittleEndian(UInt16(method), at: offset + 8) }
        for offset in data.offsets(ofSignature: 0x0201_4B50) { data.setLittleEndian(UInt16(method), at: offset + 10) }
        #expect(throws: NPZError.unsupportedCompression(method)) { try NPZFormat.decode(data) }
    }

    @Test("Encrypted members are refused")
    func encrypted() throws {
        var data = try NPZFormat.encode([("a", NPYArray(shape: [1], doubles: [2]))])
        let central = try #require(data.offsets(ofSignature: 0x0201_4B50).first)
        data.setLittleEndian(UInt16(1), at: central + 8)
        #expect(throws: NPZError.corrupt("member 'a.npy' is encrypted, which is not supported")) { try NPZFormat.decode(data) }
    }

    @Test("Members sharing their data are refused as overlapping")
    func overlappingMembers() throws {
        // Two central directory entries for the same local header: the classic zip bomb trick.
        var writer = ZipWriter()
        try writer.addMember(name: "a.npy", header: [], body: NPYFormat.encode(NPYArray(shape: [1], doubles: [2])), compress: false)
        var data = writer.finish()
        let central = try #require(data.offsets(ofSignature: 0x0201_4B50).first)
        let end = try #require(data.offsets(ofSignature: 0x0605_4B50).last)
        let entry = data[central..<end]
        data.insert(contentsOf: entry, at: end)
        let newEnd = end + entry.count
        data.setLittleEndian(UInt16(2), at: newEnd + 8)
        data.setLittleEndian(UInt16(2), at: newEnd + 10)
        data.setLittleEndian(UInt32(2 * entry.count), at: newEnd + 12)
        #expect(throws: NPZError.corrupt("members 'a.npy' and 'a.npy' overlap")) { try NPZFormat.decode(data) }
    }

    @Test("A deflated member claiming an impossible uncompressed size is refused before allocating")
    func implausibleSize() throws {
        var data = try NPZFormat.encode([("a", NPYArray(shape: [1], doubles: [2]))], compressed: true)
        let central = try #require(data.offsets(ofSignature: 0x0201_4B50).first)
        data.setLittleEndian(UInt32(0xFFFF_FFF0), at: central + 24)
        #expect(throws: NPZError.corrupt("member 'a.npy' claims an impossible uncompressed size")) { try NPZFormat.decode(data) }
    }

    @Test("Recorded sizes that disagree with the deflate stream are refused", arguments: [-1, 1, 200])
    func wrongUncompressedSize(delta: Int) throws {
        var data = try NPZFormat.encode([("a", NPYArray(shape: [20], doubles: [Double](repeating: 1, count: 20)))], compressed: true)
        let central = try #require(data.offsets(ofSignature: 0x0201_4B50).first)
        let size = data.littleEndian(at: central + 24, as: UInt32.self)
        data.setLittleEndian(UInt32(Int(size) + delta), at: central + 24)
        let error = #expect(throws: NPZError.self) { try NPZFormat.decode(data) }
        guard case .corrupt(let detail)? = error else {
            Issue.record("expected corrupt, got \(String(describing: error))")
            return
        }
        #expect(detail.contains("cannot be decompressed"))
    }

    @Test("Highly compressible members larger than the initial 16 MiB buffer decompress exactly")
    func largeDeflatedMember() throws {
        var values = [Double](repeating: 0, count: 3_000_000) // 24 MB, compresses about 1000:1
        values[0] = 1
        values[2_999_999] = -1
        let array = NPYArray(shape: [3000, 1000], doubles: values)
        let data = try NPZFormat.encode([("z", array)], compressed: true)
        #expect(data.count < 100_000)
        #expect(try NPZFormat.decode(data) == ["z": array])
    }

    @Test("A false size claim on a damaged deflate stream is reported as corruption")
    func falseSizeClaim() throws {
        let array = NPYArray(shape: [100_000], doubles: [Double](repeating: 3, count: 100_000))
        var data = try NPZFormat.encode([("a", array)], compressed: true)
        let entry = try #require(try data.withUnsafeBytes { try ZipReader.entries(in: $0) }.first)
        let central = try #require(data.offsets(ofSignature: 0x0201_4B50).first)
        // Claim the largest size the ratio check allows and break the stream's end.
        data.setLittleEndian(UInt32(entry.compressedSize * 1100), at: central + 24)
        data.removeSubrange((entry.dataOffset + entry.compressedSize - 40)..<(entry.dataOffset + entry.compressedSize - 20))
        data.insert(contentsOf: [UInt8](repeating: 0xA5, count: 20), at: entry.dataOffset + entry.compressedSize - 40)
        let error = #expect(throws: NPZError.self) { try NPZFormat.decode(data) }
        guard case .corrupt(let detail)? = error else {
            Issue.record("expected corrupt, got \(String(describing: error))")
            return
        }
        #expect(detail.contains("cannot be decompressed"))
    }

    @Test("Garbage in a deflate stream is reported as corruption")
    func invalidDeflateData() throws {
        var data = try NPZFormat.encode([("a", NPYArray(shape: [64], doubles: (0..<64).map(Double.init)))], compressed: true)
        let entry = try #require(try data.withUnsafeBytes { try ZipReader.entries(in: $0) }.first)
        for offset in entry.dataOffset..<(entry.dataOffset + 8) { data[offset] = 0xFF }
        let error = #expect(throws: NPZError.self) { try NPZFormat.decode(data) }
        guard case .corrupt? = error else {
            Issue.record("expected corrupt, got \(String(describing: error))")
            return
        }
    }

    /// Builds a one-member archive by hand whose central directory entry has the given
    /// 32-bit sizes and offset and extra field (to plant hostile ZIP64 values).
    static func craftedArchive(compressedSize: UInt32, uncompressedSize: UInt32, localOffset: UInt32, extra: [UInt8]) -> Data {
        let npy = NPYFormat.encode(NPYArray(shape: [2, 3], doubles: [1, 2, 3, 4, 5, 6]))
        let name = Array("a.npy".utf8)
        let crc = UInt32(0) // never reached: the sizes are refused first
        var data = Data()
        data.append(contentsOf: littleEndianBytes([UInt32(0x0403_4B50)]))
        data.append(contentsOf: littleEndianBytes([UInt16(45), 0, 0, 0, 0x21]))
        data.append(contentsOf: littleEndianBytes([crc, UInt32(npy.count), UInt32(npy.count)]))
        data.append(contentsOf: littleEndianBytes([UInt16(name.count), 0]))
        data.append(contentsOf: name)
        data.append(npy)
        let directoryOffset = data.count
        data.append(contentsOf: littleEndianBytes([UInt32(0x0201_4B50)]))
        data.append(contentsOf: littleEndianBytes([UInt16(0x031E), 45, 0, 0, 0, 0x21]))
        data.append(contentsOf: littleEndianBytes([crc, compressedSize, uncompressedSize]))
        data.append(contentsOf: littleEndianBytes([UInt16(name.count), UInt16(extra.count), 0, 0, 0]))
        data.append(contentsOf: littleEndianBytes([UInt32(0x8180_0000), localOffset]))
        data.append(contentsOf: name)
        data.append(contentsOf: extra)
        let directorySize = data.count - directoryOffset
        data.append(contentsOf: littleEndianBytes([UInt32(0x0605_4B50)]))
        data.append(contentsOf: littleEndianBytes([UInt16(0), 0, 1, 1]))
        data.append(contentsOf: littleEndianBytes([UInt32(directorySize), UInt32(directoryOffset)]))
        data.append(contentsOf: littleEndianBytes([UInt16(0)]))
        return data
    }

    @Test("Hostile ZIP64 sizes and offsets are refused without crashing")
    func hostileZip64Values() {
        let zip64Sizes = littleEndianBytes([UInt16(1), 16]) + littleEndianBytes([UInt64(0xFFFF_FFFF_FFFF_FF00), 0xFFFF_FFFF_FFFF_FF00])
        let hugeSizes = Self.craftedArchive(compressedSize: .max, uncompressedSize: .max, localOffset: 0, extra: zip64Sizes)
        #expect(throws: NPZError.corrupt("member 'a.npy' records impossible sizes")) { try NPZFormat.decode(hugeSizes) }

        let zip64Offset = littleEndianBytes([UInt16(1), 8]) + littleEndianBytes([UInt64(0xFFFF_FFFF_FFFF_FFF0)])
        let hugeOffset = Self.craftedArchive(compressedSize: 176, uncompressedSize: 176, localOffset: .max, extra: zip64Offset)
        #expect(throws: NPZError.corrupt("member 'a.npy' records impossible sizes")) { try NPZFormat.decode(hugeOffset) }

        let bigButPossible = littleEndianBytes([UInt16(1), 8]) + littleEndianBytes([UInt64(1) << 40])
        let farOffset = Self.craftedArchive(compressedSize: 176, uncompressedSize: 176, localOffset: .max, extra: bigButPossible)
        #expect(throws: NPZError.corrupt("the local header of member 'a.npy' is missing")) { try NPZFormat.decode(farOffset) }

        let shortField = littleEndianBytes([UInt16(1), 4, 0, 0])
        let short = Self.craftedArchive(compressedSize: .max, uncompressedSize: 176, localOffset: 0, extra: shortField)
        #expect(throws: NPZError.corrupt("the ZIP64 extra field of member 'a.npy' is too short")) { try NPZFormat.decode(short) }

        let brokenExtra = littleEndianBytes([UInt16(1), 200])
        let broken = Self.craftedArchive(compressedSize: .max, uncompressedSize: 176, localOffset: 0, extra: brokenExtra)
        #expect(throws: NPZError.corrupt("the extra field of member 'a.npy' is damaged")) { try NPZFormat.decode(broken) }

        let fine = Self.craftedArchive(compressedSize: 176, uncompressedSize: 176, localOffset: 0, extra: [])
        #expect(throws: NPZError.corrupt("member 'a.npy' fails its CRC-32 check")) { try NPZFormat.decode(fine) }
    }

    @Test("A ZIP64 end record pointing outside the archive is refused")
    func hostileZip64EndRecord() throws {
        var data = try NPZFormat.encode(Self.arrays, compressed: false, forceZip64: true)
        let locator = try #require(data.offsets(ofSignature: 0x0706_4B50).last)
        data.setLittleEndian(UInt64.max, at: locator + 8)
        #expect(throws: NPZError.corrupt("the ZIP64 end-of-central-directory record is missing or misplaced")) {
            try NPZFormat.decode(data)
        }
        var sizes = try NPZFormat.encode(Self.arrays, compressed: false, forceZip64: true)
        let record = try #require(sizes.offsets(ofSignature: 0x0606_4B50).last)
        sizes.setLittleEndian(UInt64.max, at: record + 40)
        #expect(throws: NPZError.corrupt("the ZIP64 end-of-central-directory record holds impossible sizes")) {
            try NPZFormat.decode(sizes)
        }
        sizes.setLittleEndian(UInt64(1) << 40, at: record + 40)
        #expect(throws: NPZError.corrupt("the central directory lies outside the archive")) { try NPZFormat.decode(sizes) }
    }

    @Test("Central directory counts larger than the directory are refused")
    func hostileEntryCount() throws {
        var data = try NPZFormat.encode(Self.arrays)
        let end = try #require(data.offsets(ofSignature: 0x0605_4B50).last)
        data.setLittleEndian(UInt16(0xFFFE), at: end + 10)
        #expect(throws: NPZError.corrupt("the central directory is too short for its 65534 entries")) { try NPZFormat.decode(data) }
    }

    @Test("Every NPZ error description is one sentence without file names")
    func descriptionsAreSentences() {
        let errors: [NPZError] = [
            .notAZip, .corrupt("member 'a.npy' fails its CRC-32 check"), .badMember(name: "x", .badMagic),
            .duplicateMember("x"), .unsupportedCompression(12), .invalidMemberName("the name is empty"),
            .compressionFailed("zlib failed with status -2"),
        ]
        for error in errors {
            let text = error.description
            #expect(text.first?.isUppercase == true, "\(text)")
            #expect(text.hasSuffix("."), "\(text)")
            #expect(!text.contains("\n"), "\(text)")
        }
        #expect(NPZError.badMember(name: "x", .badMagic).description.contains(NPYError.badMagic.description))
    }
}
