#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What an `.npy` file's header says about its array, and where the data starts.
///
/// Made by ``NPYFormat/readHeader(fileDescriptor:)`` (and the in-memory decoder), which
/// check that the element count and byte size fit in `Int`.
public struct NPYFileHeader: Sendable, Equatable {
    /// The dimensions, outermost first. `[]` for a 0-d array.
    public let shape: [Int]
    /// The element type.
    public let dtype: NPYDType
    /// Whether the data is stored in Fortran (column-major) order.
    public let fortranOrder: Bool
    /// Whether the elements are stored big-endian (and must be byte-swapped).
    public let bigEndian: Bool
    /// The byte offset of the array data in the file: the end of the header.
    public let dataOffset: Int
    /// The number of elements: the product of the shape (1 for a 0-d array).
    public private(set) var count: Int
    /// The size of the data in bytes: `count * dtype.itemSize`.
    public private(set) var byteCount: Int

    /// - Throws: ``NPYError/negativeDimension(_:)`` or ``NPYError/shapeOverflow`` when the
    ///   shape's element count or byte size does not fit in `Int`.
    init(shape: [Int], dtype: NPYDType, fortranOrder: Bool, bigEndian: Bool, dataOffset: Int) throws(NPYError) {
        (count, byteCount) = try NPYArray.validate(shape: shape, itemSize: dtype.itemSize)
        self.shape = shape
        self.dtype = dtype
        self.fortranOrder = fortranOrder
        self.bigEndian = bigEndian
        self.dataOffset = dataOffset
    }

    /// The descr of the data as stored, in the quoted form header errors use (`'>i4'`).
    var storedDescr: String {
        let descr = dtype.descr
        return "'" + (bigEndian && descr.hasPrefix("<") ? ">" + descr.dropFirst() : descr) + "'"
    }

    /// Checks that exactly ``byteCount`` data bytes follow the header.
    /// - Throws: ``NPYError/truncatedData(expectedBytes:actualBytes:)`` or
    ///   ``NPYError/trailingBytes(_:)``.
    func checkDataSize(available: Int) throws(NPYError) {
        if available < byteCount {
            throw .truncatedData(expectedBytes: byteCount, actualBytes: max(0, available))
        }
        if available > byteCount {
            throw .trailingBytes(available - byteCount)
        }
    }
}

extension NPYFormat {
    /// The size of the pieces ``readDoubles(fileDescriptor:header:)`` reads at a time.
    static let readChunkBytes = 4 << 20

    /// Reads and checks the header of the `.npy` file open as `fd`, without reading its data.
    ///
    /// Reads (with `pread`, so the file offset is unchanged) at most 12 bytes of magic,
    /// version and length field, then exactly the header length the field gives, which is
    /// refused beyond ``maxHeaderLength`` before anything more is read. The file's size
    /// (from `fstat`) must be the header's end plus the data size the shape and dtype
    /// require, so a header claiming more data than the file holds costs no allocation.
    /// - Throws: ``NPYError/readFailed(_:)`` if `pread` or `fstat` fails; otherwise
    ///   ``NPYError/badMagic``, ``NPYError/truncatedHeader``,
    ///   ``NPYError/unsupportedVersion(major:minor:)``, ``NPYError/headerTooLarge(_:)``,
    ///   ``NPYError/malformedHeader(_:)``, ``NPYError/unsupportedDType(_:)``,
    ///   ``NPYError/negativeDimension(_:)``, ``NPYError/shapeOverflow``,
    ///   ``NPYError/truncatedData(expectedBytes:actualBytes:)`` or
    ///   ``NPYError/trailingBytes(_:)``, as the file requires.
    public static func readHeader(fileDescriptor fd: Int32) throws(NPYError) -> NPYFileHeader {
        let start = UnsafeMutableRawBufferPointer.allocate(byteCount: maxPreambleLength, alignment: 8)
        defer { start.deallocate() }
        let startCount = try readFully(fd, into: start, at: 0)
        let preamble = try parsePreamble(UnsafeRawBufferPointer(rebasing: start[0..<startCount]))
        let dictionary = UnsafeMutableRawBufferPointer.allocate(byteCount: preamble.headerLength, alignment: 8)
        defer { dictionary.deallocate() }
        guard try readFully(fd, into: dictionary, at: preamble.headerStart) == dictionary.count else {
            throw .truncatedHeader
        }
        let header = try parseHeader(UnsafeRawBufferPointer(dictionary), preamble: preamble)
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw .readFailed(systemError()) }
        try header.checkDataSize(available: Int(info.st_size) - header.dataOffset)
        return header
    }

    /// Reads the data of the `.npy` file open as `fd` as doubles in C order.
    ///
    /// The data is read with `pread` in pieces of 4 MiB and converted as it arrives, so
    /// the file is never held in memory as a whole: float64 is read straight into the
    /// result; other dtypes pass through one 4 MiB buffer. A Fortran-order array takes one
    /// more buffer of `count` doubles for the transpose. Every dtype converts exactly except
    /// `int64` values beyond ±2⁵³, which round to the nearest double.
    /// - Parameter header: the file's header, from ``readHeader(fileDescriptor:)``.
    /// - Throws: ``NPYError/unsupportedDType(_:)`` for `bool` data;
    ///   ``NPYError/truncatedData(expectedBytes:actualBytes:)`` if the file ends before the
    ///   data does; ``NPYError/readFailed(_:)`` if `pread` fails;
    ///   ``NPYError/shapeOverflow`` if `count` doubles do not fit in memory's address range.
    public static func readDoubles(fileDescriptor fd: Int32, header: NPYFileHeader) throws(NPYError) -> [Double] {
        guard header.dtype != .bool else { throw .unsupportedDType(header.storedDescr) }
        let count = header.count
        guard !count.multipliedReportingOverflow(by: MemoryLayout<Double>.size).overflow else { throw .shapeOverflow }
        var failure: NPYError?
        let values = [Double](unsafeUninitializedCapacity: count) { buffer, initialized in
            do throws(NPYError) {
                try readElements(fd, header: header, into: buffer)
                initialized = count
            } catch {
                failure = error
                initialized = 0
            }
        }
        if let failure { throw failure }
        guard header.fortranOrder && header.shape.count > 1 && count > 0 else { return values }
        return [Double](unsafeUninitializedCapacity: count) { buffer, initialized in
            values.withUnsafeBytes { source in
                fortranToC(source: source, destination: UnsafeMutableRawBufferPointer(buffer),
                           shape: header.shape, itemSize: MemoryLayout<Double>.size)
            }
            initialized = count
        }
    }

    /// Reads the elements in file order and stores them as doubles in `destination`
    /// (which holds `header.count` elements).
    private static func readElements(_ fd: Int32, header: NPYFileHeader,
                                     into destination: UnsafeMutableBufferPointer<Double>) throws(NPYError) {
        let itemSize = header.dtype.itemSize
        let elementsPerChunk = readChunkBytes / itemSize
        // float64 in the host's byte order (or swapped in place) needs no conversion.
        #if _endian(little)
        let direct = header.dtype == .float64
        #else
        let direct = false
        #endif
        let scratch = UnsafeMutableRawBufferPointer.allocate(
            byteCount: direct ? 0 : min(readChunkBytes, header.byteCount), alignment: 8)
        defer { scratch.deallocate() }
        var done = 0
        while done < header.count {
            let elements = min(elementsPerChunk, header.count - done)
            let bytes = elements * itemSize
            let output = UnsafeMutablePointer(destination.baseAddress! + done)
            let chunk = direct
                ? UnsafeMutableRawBufferPointer(start: output, count: bytes)
                : UnsafeMutableRawBufferPointer(rebasing: scratch[0..<bytes])
            let read = try readFully(fd, into: chunk, at: header.dataOffset + done * itemSize)
            guard read == bytes else {
                throw .truncatedData(expectedBytes: header.byteCount, actualBytes: done * itemSize + read)
            }
            if header.bigEndian {
                NPYArray.swapByteOrder(chunk, itemSize: itemSize)
            }
            if !direct {
                NPYArray.storeDoubles(UnsafeRawBufferPointer(chunk), dtype: header.dtype, into: output)
            }
            done += elements
        }
    }

    /// Fills `buffer` from `fd` starting at `offset`, retrying interrupted and partial
    /// reads. Returns the number of bytes read: less than `buffer.count` only at the end
    /// of the file.
    /// - Throws: ``NPYError/readFailed(_:)`` with the system's error text.
    private static func readFully(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer,
                                  at offset: Int) throws(NPYError) -> Int {
        var total = 0
        while total < buffer.count {
            let result = pread(fd, buffer.baseAddress! + total, buffer.count - total, off_t(offset + total))
            if result < 0 {
                if errno == EINTR { continue }
                throw .readFailed(systemError())
            }
            if result == 0 { break }
            total += result
        }
        return total
    }

    /// The text of the current `errno`.
    private static func systemError() -> String {
        String(cString: strerror(errno))
    }
}
