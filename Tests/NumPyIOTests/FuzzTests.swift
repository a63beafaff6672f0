import Foundation
import NumPyIO
import Testing

/// Mutation fuzzing: damaged inputs must throw a typed error or decode to a consistent
/// array, never crash, hang or allocate without bound. Seeds are fixed so any failure
/// reproduces; set NUMPYIO_FUZZ_ITERATIONS to run longer locally.
@Suite("Fuzzing with mutated and truncated files")
struct FuzzTests {
    static var iterations: Int {
        ProcessInfo.processInfo.environment["NUMPYIO_FUZZ_ITERATIONS"].flatMap(Int.init) ?? 4000
    }

    static let interestingBytes: [UInt8] = [0x00, 0x01, 0x7F, 0x80, 0xFF, 0x20, 0x0A, 0x27, 0x28, 0x29, 0x2C, 0x2D, 0x7B, 0x7D, 0x3E]
    static let interestingWords: [UInt64] = [0, 1, 0x7F, 0xFF, 0xFFFF, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF,
                                             0x7FFF_FFFF_FFFF_FFFF, 0xFFFF_FFFF_FFFF_FFFF, 1 << 40]

    /// Applies one to four random mutations.
    static func mutate(_ input: Data, focusOnTail: Bool, using generator: inout SplitMix64) -> Data {
        var data = input
        for _ in 0..<Int.random(in: 1...4, using: &generator) {
            guard !data.isEmpty else { break }
            // ZIP structure lives mostly at the end; aim there half the time.
            let position: Int
            if focusOnTail && Bool.random(using: &generator) {
                position = Int.random(in: max(0, data.count - 200)..<data.count, using: &generator)
            } else {
                position = Int.random(in: 0..<data.count, using: &generator)
            }
            switch Int.random(in: 0..<8, using: &generator) {
            case 0:
                data[position] ^= 1 << UInt8.random(in: 0..<8, using: &generator)
            case 1:
                data[position] = UInt8.random(in: 0...255, using: &generator)
            case 2:
                data[position] = interestingBytes.randomElement(using: &generator)!
            case 3:
                data = data.prefix(Int.random(in: 0..<data.count, using: &generator))
            case 4:
                data.insert(UInt8.random(in: 0...255, using: &generator), at: position)
            case 5:
                let end = min(data.count, position + Int.random(in: 1...16, using: &generator))
                data.removeSubrange(position..<end)
            case 6:
                let width = [2, 4, 8].randomElement(using: &generator)!
                guard position + width <= data.count else { break }
                let word = interestingWords.randomElement(using: &generator)!
                for byte in 0..<width { data[position + byte] = UInt8(truncatingIfNeeded: word >> (8 * UInt64(byte))) }
            default:
                let length = min(data.count - position, Int.random(in: 1...32, using: &generator))
                let chunk = data[position..<(position + length)]
                data.insert(contentsOf: chunk, at: Int.random(in: 0...data.count, using: &generator))
            }
        }
        return data
    }

    static func checkConsistent(_ array: NPYArray) {
        #expect(array.rawBytes.count == array.count * array.dtype.itemSize)
        #expect(array.shape.reduce(1, *) == array.count)
        #expect(array.doubles().count == array.count)
        if array.dtype == .bool {
            #expect(array.rawBytes.allSatisfy { $0 <= 1 })
        }
    }

    static func npySeeds() throws -> [Data] {
        var seeds = try ["f64_2x3.npy", "fortran_f64_2x3x4.npy", "be_i4_3.npy", "bool_3.npy", "v3_i64_2.npy", "scalar_f64.npy",
                         "unsupported_structured.npy"].map(Fixture.data)
        seeds.append(NPYFormat.encode(NPYArray(shape: [3, 1, 2], int16s: [1, 2, 3, 4, 5, 6])))
        return seeds
    }

    static func npzSeeds() throws -> [Data] {
        var seeds = try ["savez.npz", "savez_compressed.npz"].map(Fixture.data)
        let arrays: [(name: String, array: NPYArray)] = [
            ("a", NPYArray(shape: [2, 2], doubles: [1, 2, 3, 4])), ("b", NPYArray(shape: [3], bools: [true, false, true])),
        ]
        seeds.append(try NPZFormat.encode(arrays, compressed: true, forceZip64: true))
        seeds.append(try NPZFormat.encode(arrays, compressed: false, forceZip64: true))
        return seeds
    }

    @Test("Mutated and truncated .npy files throw NPYError or decode consistently")
    func fuzzNPY() throws {
        var generator = SplitMix64(seed: 0x4E50_5921)
        let seeds = try Self.npySeeds()
        var decoded = 0
        let clock = ContinuousClock()
        let elapsed = clock.measure {
            for iteration in 0..<Self.iterations {
                let input = Self.mutate(seeds[iteration % seeds.count], focusOnTail: false, using: &generator)
                switch Result(catching: { () throws(NPYError) in try NPYFormat.decode(input) }) {
                case let .success(array):
                    Self.checkConsistent(array)
                    let again = Result(catching: { () throws(NPYError) in try NPYFormat.decode(NPYFormat.encode(array)) })
                    #expect(again == .success(array))
                    decoded += 1
                case let .failure(error):
                    #expect(!error.description.isEmpty)
                }
            }
        }
        print("fuzzNPY: \(Self.iterations) inputs, \(decoded) decoded, \(elapsed)")
    }

    @Test("Mutated and truncated .npz archives throw NPZError or decode consistently")
    func fuzzNPZ() throws {
        var generator = SplitMix64(seed: 0x4E50_5A21)
        let seeds = try Self.npzSeeds()
        var decoded = 0
        let clock = ContinuousClock()
        let elapsed = clock.measure {
            for iteration in 0..<Self.iterations {
                let input = Self.mutate(seeds[iteration % seeds.count], focusOnTail: true, using: &generator)
                switch Result(catching: { () throws(NPZError) in try NPZFormat.decodeMembers(input) }) {
                case let .success(members):
                    for (_, array) in members {
                        Self.checkConsistent(array)
                    }
                    decoded += 1
                case let .failure(error):
                    #expect(!error.description.isEmpty)
                }
            }
        }
        print("fuzzNPZ: \(Self.iterations) inputs, \(decoded) decoded, \(elapsed)")
    }

    @Test("Every prefix of a valid file is refused", arguments: ["f64_2x3.npy", "savez.npz", "savez_compressed.npz"])
    func everyTruncationThrows(file: String) throws {
        let data = try Fixture.data(file)
        for length in 0..<data.count {
            if file.hasSuffix(".npy") {
                #expect(throws: NPYError.self) { try NPYFormat.decode(data.prefix(length)) }
            } else {
                #expect(throws: NPZError.self) { try NPZFormat.decode(data.prefix(length)) }
            }
        }
    }
}
