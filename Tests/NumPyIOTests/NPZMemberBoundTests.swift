import Foundation
@testable import NumPyIO
import Testing

@Suite("NPZ member size bounds")
struct NPZMemberBoundTests {
    /// 64 MiB of zeros, deflated about 1000:1, and the member's size with its .npy header.
    static let zeros: (archive: Data, memberBytes: Int) = {
        let array = NPYArray(shape: [8 << 20], doubles: [Double](repeating: 0, count: 8 << 20))
        let archive = try! NPZFormat.encode([("z", array)], compressed: true)
        return (archive, NPYFormat.encode(NPYArray(shape: [0], doubles: [])).count + (64 << 20))
    }()

    @Test("A 64 MiB deflated member over a 1 MiB bound is refused with memberTooLarge in under 0.5 s")
    func refusedQuickly() throws {
        let (archive, memberBytes) = Self.zeros
        #expect(archive.count < 100_000)
        var asked: [String] = []
        let clock = ContinuousClock()
        let start = clock.now
        #expect(throws: NPZError.memberTooLarge(name: "z", bytes: memberBytes, limit: 1 << 20)) {
            try NPZFormat.decodeMembers(archive, maximumMemberBytes: { name in
                asked.append(name)
                return 1 << 20
            })
        }
        #expect(clock.now - start < .milliseconds(500))
        #expect(asked == ["z"])
    }

    @Test("The bound is checked before inflating: a broken stream over the bound is still memberTooLarge")
    func checkedBeforeInflating() throws {
        var archive = Self.zeros.archive
        let entry = try #require(try archive.withUnsafeBytes { try ZipReader.entries(in: $0) }.first)
        for offset in entry.dataOffset..<(entry.dataOffset + entry.compressedSize) { archive[offset] = 0xFF }
        #expect(throws: NPZError.memberTooLarge(name: "z", bytes: Self.zeros.memberBytes, limit: 1 << 20)) {
            try NPZFormat.decodeMembers(archive, maximumMemberBytes: { _ in 1 << 20 })
        }
        // Without a bound the same archive is reported as corrupt, so the bound made the difference.
        let error = #expect(throws: NPZError.self) { try NPZFormat.decodeMembers(archive) }
        guard case .corrupt? = error else {
            Issue.record("expected corrupt, got \(String(describing: error))")
            return
        }
    }

    @Test("A member of exactly its bound, or with no bound, is read; one byte less refuses it", arguments: [false, true])
    func boundIsInclusive(compressed: Bool) throws {
        let a = NPYArray(shape: [2, 3], doubles: [1, 2, 3, 4, 5, 6])
        let b = NPYArray(shape: [4], int16s: [1, 2, 3, 4])
        let archive = try NPZFormat.encode([("a", a), ("b", b)], compressed: compressed)
        let size = NPYFormat.encode(a).count
        let members = try NPZFormat.decodeMembers(archive, maximumMemberBytes: { $0 == "a" ? size : nil })
        #expect(members.map(\.name) == ["a", "b"])
        #expect(members.map(\.array) == [a, b])
        #expect(throws: NPZError.memberTooLarge(name: "a", bytes: size, limit: size - 1)) {
            try NPZFormat.decodeMembers(archive, maximumMemberBytes: { $0 == "a" ? size - 1 : nil })
        }
    }

    @Test("A member recording a smaller size than its stream inflates to is refused once it reaches the recorded size")
    func falseSmallSize() throws {
        let (original, _) = Self.zeros
        var archive = original
        let local = try #require(archive.offsets(ofSignature: 0x0403_4B50).first)
        let central = try #require(archive.offsets(ofSignature: 0x0201_4B50).first)
        let declared = 4096
        archive.setLittleEndian(UInt32(declared), at: local + 22)
        archive.setLittleEndian(UInt32(declared), at: central + 24)
        // The bound admits the recorded size, so only the inflater's cap can stop the stream.
        let error = #expect(throws: NPZError.self) {
            try NPZFormat.decodeMembers(archive, maximumMemberBytes: { _ in declared })
        }
        #expect(error == .corrupt("member 'z.npy' cannot be decompressed: the decompressed data is longer than its recorded size"))
        // The inflater itself stops at the recorded size rather than after the stream's 64 MiB.
        let entry = try #require(try archive.withUnsafeBytes { try ZipReader.entries(in: $0) }.first)
        let result = archive.withUnsafeBytes { raw in
            Zlib.inflateRaw(UnsafeRawBufferPointer(rebasing: raw[entry.dataOffset..<(entry.dataOffset + entry.compressedSize)]),
                            expectedSize: declared)
        }
        guard case .failure(let failure) = result else {
            Issue.record("a stream longer than its recorded size was accepted")
            return
        }
        #expect(failure.produced == declared)
    }

    @Test("The memberTooLarge description is one sentence naming the array, its size and the limit")
    func description() {
        let text = NPZError.memberTooLarge(name: "x", bytes: 67_108_992, limit: 1_048_576).description
        #expect(text == "The array 'x' in the .npz archive takes 67108992 bytes uncompressed, more than the 1048576 bytes allowed for it.")
    }
}
