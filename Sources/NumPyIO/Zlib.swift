import CZlib
import Foundation

/// Thin wrappers over the system zlib: CRC-32 and raw (headerless) deflate streams as
/// used inside ZIP archives.
enum Zlib {
    /// zlib's length parameters are 32-bit; larger buffers are processed in chunks.
    private static let chunkLimit = 1 << 30

    /// Updates a CRC-32 (ZIP / zlib polynomial) with `buffer`.
    static func crc32(_ buffer: UnsafeRawBufferPointer, initial: UInt32 = 0) -> UInt32 {
        var crc = uLong(initial)
        guard let base = buffer.baseAddress else { return initial }
        var offset = 0
        while offset < buffer.count {
            let length = min(buffer.count - offset, chunkLimit)
            crc = CZlib.crc32(crc, (base + offset).assumingMemoryBound(to: Bytef.self), uInt(length))
            offset += length
        }
        return UInt32(truncatingIfNeeded: crc)
    }

    /// Inflates a raw deflate stream that must decompress to exactly `expectedSize` bytes.
    ///
    /// The output buffer starts at `min(expectedSize, max(16 MiB, 8 × input))` and grows
    /// (by `realloc`) only as data is actually produced, so a false size claim costs no
    /// more memory than the stream really expands to. zlib is never given room beyond
    /// `expectedSize`, so a stream that would inflate further stops there and is refused:
    /// no more than `expectedSize` bytes are ever produced.
    /// - Returns: the data, or a description of what is wrong with the stream.
    static func inflateRaw(_ input: UnsafeRawBufferPointer, expectedSize: Int) -> Result<Data, ZlibFailure> {
        var stream = z_stream()
        guard inflateInit2_(&stream, -MAX_WBITS, zlibVersion(), Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            return .failure(ZlibFailure("zlib could not start decompressing"))
        }
        defer { inflateEnd(&stream) }
        let (scaledInput, overflow) = input.count.multipliedReportingOverflow(by: 8)
        // zlib rejects a null output pointer even with no room, so keep at least one byte.
        var capacity = max(1, min(expectedSize, max(16 << 20, overflow ? Int.max : scaledInput)))
        guard var buffer = malloc(capacity) else { return .failure(ZlibFailure("there is not enough memory")) }
        let inputBase = input.baseAddress.map { UnsafeMutablePointer(mutating: $0.assumingMemoryBound(to: Bytef.self)) }
        var failure: ZlibFailure?
        while true {
            let consumed = Int(stream.total_in)
            let produced = Int(stream.total_out)
            if produced == capacity && capacity < expectedSize {
                let grownCapacity = capacity > expectedSize / 2 ? expectedSize : capacity * 2
                guard let grown = realloc(buffer, grownCapacity) else {
                    failure = ZlibFailure("there is not enough memory")
                    break
                }
                buffer = grown
                capacity = grownCapacity
            }
            stream.next_in = inputBase.map { $0 + consumed }
            stream.avail_in = uInt(min(input.count - consumed, chunkLimit))
            stream.next_out = (buffer + produced).assumingMemoryBound(to: Bytef.self)
            stream.avail_out = uInt(min(min(capacity, expectedSize) - produced, chunkLimit))
            let status = inflate(&stream, Z_NO_FLUSH)
            if status == Z_STREAM_END {
                if Int(stream.total_out) != expectedSize {
                    failure = ZlibFailure("the decompressed data is shorter than its recorded size")
                }
                break
            }
            if status == Z_OK || status == Z_BUF_ERROR {
                if Int(stream.total_in) == consumed && Int(stream.total_out) == produced {
                    failure = produced == expectedSize
                        ? ZlibFailure("the decompressed data is longer than its recorded size")
                        : ZlibFailure("the compressed data ends early")
                    break
                }
            } else if status == Z_DATA_ERROR || status == Z_NEED_DICT {
                failure = ZlibFailure("the compressed data is invalid")
                break
            } else {
                failure = ZlibFailure("zlib failed with status \(status)")
                break
            }
        }
        if var failure {
            free(buffer)
            failure.produced = Int(stream.total_out)
            return .failure(failure)
        }
        if expectedSize == 0 {
            free(buffer)
            return .success(Data())
        }
        return .success(Data(bytesNoCopy: buffer, count: expectedSize, deallocator: .free))
    }

    /// Compresses the concatenation of `parts` into one raw deflate stream at zlib's
    /// default level (as Python's `zipfile` does for `np.savez_compressed`).
    static func deflateRaw(_ parts: [UnsafeRawBufferPointer]) -> Result<Data, ZlibFailure> {
        let parts = parts.isEmpty ? [UnsafeRawBufferPointer(start: nil, count: 0)] : parts
        var stream = z_stream()
        guard deflateInit2_(&stream, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -MAX_WBITS, 8, Z_DEFAULT_STRATEGY,
                            zlibVersion(), Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            return .failure(ZlibFailure("zlib could not start compressing"))
        }
        defer { deflateEnd(&stream) }
        let totalInput = parts.reduce(0) { $0 + $1.count }
        let bound = Int(deflateBound(&stream, uLong(totalInput))) + 64
        var output = Data(count: bound)
        let failure: ZlibFailure? = output.withUnsafeMutableBytes { out in
            let outputBase = out.baseAddress!.assumingMemoryBound(to: Bytef.self)
            var produced = 0
            for (partIndex, part) in parts.enumerated() {
                let isLastPart = partIndex == parts.count - 1
                var offset = 0
                repeat {
                    let length = min(part.count - offset, chunkLimit)
                    let finish = isLastPart && offset + length == part.count
                    stream.next_in = part.baseAddress.map {
                        UnsafeMutablePointer(mutating: ($0 + offset).assumingMemoryBound(to: Bytef.self))
                    }
                    stream.avail_in = uInt(length)
                    // Drain this chunk (and, when finishing, the whole stream).
                    while true {
                        let room = min(bound - produced, chunkLimit)
                        stream.next_out = outputBase + produced
                        stream.avail_out = uInt(room)
                        let status = deflate(&stream, finish ? Z_FINISH : Z_NO_FLUSH)
                        let written = room - Int(stream.avail_out)
                        produced += written
                        if status == Z_STREAM_END { break }
                        guard status == Z_OK || status == Z_BUF_ERROR else {
                            return ZlibFailure("zlib failed with status \(status)")
                        }
                        if !finish && stream.avail_in == 0 { break }
                        if written == 0 && status == Z_BUF_ERROR {
                            return ZlibFailure("the output buffer is too small")
                        }
                    }
                    offset += length
                } while offset < part.count
            }
            return nil
        }
        if let failure { return .failure(failure) }
        output.count = Int(stream.total_out)
        return .success(output)
    }
}

/// Why a zlib operation failed, as a phrase for an error message.
struct ZlibFailure: Error, Equatable {
    let reason: String
    /// How many bytes inflating produced before it failed (0 when compressing).
    var produced = 0
    init(_ reason: String) { self.reason = reason }
}
