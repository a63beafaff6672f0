import Foundation
import NumPyIO
import Testing

/// Reference files written by NumPy (see Resources/generate.py).
enum Fixture {
    static func url(_ name: String) throws -> URL {
        let parts = name.split(separator: ".", maxSplits: 1).map(String.init)
        return try #require(Bundle.module.url(forResource: parts[0], withExtension: parts[1], subdirectory: "Resources"),
                            "missing test resource \(name)")
    }

    static func data(_ name: String) throws -> Data {
        try Data(contentsOf: url(name))
    }
}

/// Builds `.npy` bytes by hand: magic, version, length field, header text, then `body`.
///
/// The length field is 2 bytes for major version 1 and 4 bytes otherwise; it is the
/// header's byte count unless `headerLength` overrides it.
func craftNPY(header: String, major: UInt8 = 1, minor: UInt8 = 0, headerLength: Int? = nil,
              body: [UInt8] = []) -> Data {
    var data = Data([0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59, major, minor])
    let headerBytes = Array(header.utf8)
    let length = headerLength ?? headerBytes.count
    if major == 1 {
        withUnsafeBytes(of: UInt16(truncatingIfNeeded: length).littleEndian) { data.append(contentsOf: $0) }
    } else {
        withUnsafeBytes(of: UInt32(truncatingIfNeeded: length).littleEndian) { data.append(contentsOf: $0) }
    }
    data.append(contentsOf: headerBytes)
    data.append(contentsOf: body)
    return data
}

/// A header dictionary in NumPy's own spelling.
func headerText(descr: String, fortran: Bool = false, shape: String) -> String {
    "{'descr': '\(descr)', 'fortran_order': \(fortran ? "True" : "False"), 'shape': \(shape), }\n"
}

/// Little-endian bytes of fixed-width integers.
func littleEndianBytes<T: FixedWidthInteger>(_ values: [T]) -> [UInt8] {
    var bytes: [UInt8] = []
    for value in values {
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }
    return bytes
}

/// Big-endian bytes of fixed-width integers.
func bigEndianBytes<T: FixedWidthInteger>(_ values: [T]) -> [UInt8] {
    var bytes: [UInt8] = []
    for value in values {
        withUnsafeBytes(of: value.bigEndian) { bytes.append(contentsOf: $0) }
    }
    return bytes
}

/// The element offset of a multi-index in C order (last axis fastest).
func cOrderOffset(_ index: [Int], shape: [Int]) -> Int {
    var offset = 0
    for (axis, value) in index.enumerated() {
        offset = offset * shape[axis] + value
    }
    return offset
}

/// All multi-indices of a shape, in C order.
func allIndices(_ shape: [Int]) -> [[Int]] {
    var result: [[Int]] = [[]]
    for dimension in shape {
        result = result.flatMap { prefix in (0..<dimension).map { prefix + [$0] } }
    }
    return result
}

/// The element sequence of a C-order array rewritten in Fortran order (first axis fastest).
func fortranOrdered<T>(_ values: [T], shape: [Int]) -> [T] {
    let indices = allIndices(shape.reversed().map { $0 }).map { Array($0.reversed()) }
    return indices.map { values[cOrderOffset($0, shape: shape)] }
}

/// A small deterministic generator (SplitMix64) so failures are reproducible.
struct SplitMix64: RandomNumberGenerator {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

extension Data {
    /// Overwrites a little-endian integer at `offset`.
    mutating func setLittleEndian<T: FixedWidthInteger>(_ value: T, at offset: Int) {
        let bytes = littleEndianBytes([value])
        replaceSubrange(startIndex + offset..<startIndex + offset + bytes.count, with: bytes)
    }

    /// Reads a little-endian integer at `offset`.
    func littleEndian<T: FixedWidthInteger>(at offset: Int, as: T.Type = T.self) -> T {
        var value: T = 0
        for index in (0..<MemoryLayout<T>.size).reversed() {
            value = value << 8 | T(self[startIndex + offset + index])
        }
        return value
    }

    /// Offsets of every occurrence of a 4-byte little-endian signature.
    func offsets(ofSignature signature: UInt32) -> [Int] {
        let needle = littleEndianBytes([signature])
        guard count >= 4 else { return [] }
        return (0...(count - 4)).filter { offset in
            (0..<4).allSatisfy { self[startIndex + offset + $0] == needle[$0] }
        }
    }
}
