import CSystem
import Foundation
import MPI
import TileKernels
#if canImport(Glibc)
import Glibc
#endif

/// Out of core: a kernel that lives in an .npy file on disk (kernel.npy, written by the
/// ranks during the tile loop), used as an operator without any rank holding more than two
/// panels of it. docs/maths.md §11 and docs/scaling.md ("Out of core").
///
/// The file is cut into panels of whole sample rows [a, b). A symmetric kernel's panel
/// covers the columns [a, n): its diagonal block (whose lower half is taken from its upper
/// half, so the file's lower triangle is never needed) and the part of the upper triangle
/// right of it, so every pass reads each entry of the upper triangle once (half the file). A rectangular kernel's panel covers all columns. Each rank owns a contiguous
/// run of panels of equal area and streams them: a second thread reads the next panel while
/// the tile kernels multiply the current one (read-ahead into two buffers), with O_DIRECT
/// where the file system allows it (no page cache: measured 2.8 GB/s here against 0.63 GB/s
/// through the cache, whose filling costs about 2 s of CPU per GB on this VM). A panel
/// P (rows a..<b, columns c..<m) adds Y[:, a:b] += X[:, c:m] Pᵀ and, when symmetric, its
/// part right of the diagonal block also Y[:, b:m] += X[:, a:b] P[:, b−a:]; one reduction
/// per product sums the ranks' contributions.
///
/// The full kernel (`entry` k > 1) is stored as (n, m, k, k); its panels are permuted to
/// rows i·k + α, columns j·k + β as they are read.
final class KernelFileOperator: KernelOperator, @unchecked Sendable {
    let path: String
    let dataOffset: Int
    /// Samples along the rows and the columns (equal when symmetric).
    let samples: Int
    let columnSamples: Int
    let symmetric: Bool
    let entry: Int
    let world: Communicator
    /// This rank's panels, as sample row ranges, ascending.
    let panels: [Range<Int>]
    /// Whether the reads bypass the page cache.
    let direct: Bool

    /// What the reads cost so far on this rank.
    struct Statistics: Sendable {
        var passes = 0
        /// Bytes read from the file (with the alignment margins and any gaps read through).
        var bytesRead = 0
        /// Seconds the reading thread spent in pread.
        var readSeconds = 0.0
        /// Seconds the multiplying thread waited for a panel (I/O not hidden by the products).
        var waitSeconds = 0.0
        /// Seconds of the passes, first read to last product.
        var passSeconds = 0.0
    }
    private(set) var statistics = Statistics()
    private var cachedTrace: Double?
    private var cachedSquares: Double?

    private let fd: Int32
    /// Two panel buffers (read-ahead) and the readers' staging buffers.
    private let buffers: [UnsafeMutablePointer<Double>]
    private let staging: [UnsafeMutableRawPointer]
    private let panelCapacity: Int

    /// Bytes of one panel (two are held): rows are added to a panel while it stays below.
    static let panelBytes = 64 << 20
    /// Bytes of one read into a staging buffer, at most.
    static let stagingLimit = 4 << 20
    /// This operator's staging buffers' size.
    let stagingBytes: Int
    /// Reads in flight per rank: a panel's runs are dealt to this many threads (they wait on
    /// the device, not on a core). Measured on the development VM with O_DIRECT reads of
    /// 128 KiB: 1.5 GB/s one at a time, 2.5 GB/s with two, 3.4 GB/s with four (about the
    /// device's sequential rate); row segments shorter than a megabyte need several in
    /// flight. This operator at N = 16000 on 2 ranks read 1.8 GB/s with 4 readers per rank
    /// and 2.6 GB/s with 8.
    static let readers = 8
    /// Alignment of direct reads (a multiple of every logical block size in use).
    static let alignment = 4096

    /// `panelBytes`, or NTK_PANEL_BYTES when set (tests: small panels, so that a small
    /// kernel has several per rank).
    static var panelLimit: Int {
        ProcessInfo.processInfo.environment["NTK_PANEL_BYTES"].flatMap { Int($0) }.map { Swift.max(64, $0) } ?? panelBytes
    }

    /// The panel size for a kernel of these sizes: `limit`, lowered so that each of the
    /// `ranks` gets about 4 panels (balance, and reads that overlap products), not below
    /// 1 MiB.
    static func panelSize(samples: Int, columns: Int, symmetric: Bool, entry: Int, ranks: Int, limit: Int = panelBytes) -> Int {
        let readBytes = 8 * Double(samples * entry) * Double(columns * entry) / (symmetric ? 2 : 1)
        return Swift.min(limit, Swift.max(1 << 20, Int(readBytes / Double(4 * Swift.max(1, ranks)))))
    }

    /// The staging buffer of each reader for panels of `panel` bytes: a share of the panel,
    /// between 64 KiB and `stagingLimit`, in whole alignment units.
    static func stagingSize(panel: Int) -> Int {
        let share = (panel / readers + alignment - 1) / alignment * alignment
        return Swift.min(stagingLimit, Swift.max(64 << 10, share))
    }

    /// The memory a rank holds for the operator beyond the solver's vectors: two panels
    /// (a panel holds at least one row) and the readers' staging buffers.
    static func bufferBytes(samples: Int, columns: Int, symmetric: Bool, entry: Int, ranks: Int, limit: Int = panelBytes) -> Int {
        let panel = panelSize(samples: samples, columns: columns, symmetric: symmetric, entry: entry, ranks: ranks, limit: limit)
        let largest = Swift.max(panel, 8 * columns * entry * entry)
        return 2 * largest + readers * stagingSize(panel: panel) + alignment
    }

    /// Opens the file of a kernel of `samples` rows and `columnSamples` columns (nil:
    /// symmetric) whose data start at `dataOffset`. Collective only in that every rank
    /// computes the same panels and takes its own.
    init(path: String, dataOffset: Int, samples: Int, columnSamples: Int? = nil, entry: Int, world: Communicator,
         panelBytes: Int = KernelFileOperator.panelBytes) throws(NTKError) {
        self.path = path
        self.dataOffset = dataOffset
        self.samples = samples
        self.columnSamples = columnSamples ?? samples
        self.symmetric = columnSamples == nil
        self.entry = entry
        self.world = world
        let panelBytes = Self.panelSize(samples: samples, columns: columnSamples ?? samples, symmetric: columnSamples == nil,
                                        entry: entry, ranks: world.size, limit: panelBytes)
        let stagingBytes = Self.stagingSize(panel: panelBytes)
        self.stagingBytes = stagingBytes
        let all = Self.panels(samples: samples, columns: columnSamples ?? samples, symmetric: columnSamples == nil,
                              entry: entry, panelBytes: panelBytes)
        self.panels = Self.share(all, symmetric: columnSamples == nil, columns: columnSamples ?? samples,
                                 rank: world.rank, ranks: world.size)
        let (descriptor, direct) = try Self.openForReading(path)
        self.fd = descriptor
        self.direct = direct
        let width = columnSamples ?? samples
        let capacity = all.map { $0.count * entry * (width - (columnSamples == nil ? $0.lowerBound : 0)) * entry }.max() ?? 1
        self.panelCapacity = capacity
        var buffers: [UnsafeMutablePointer<Double>] = []
        for _ in 0..<2 {
            var pointer: UnsafeMutableRawPointer? = nil
            guard posix_memalign(&pointer, Self.alignment, Swift.max(8, 8 * capacity)) == 0, let pointer else {
                close(descriptor)
                throw NTKError(.software, "cannot allocate a panel buffer of \(8 * capacity) bytes")
            }
            buffers.append(pointer.bindMemory(to: Double.self, capacity: capacity))
        }
        var staging: [UnsafeMutableRawPointer] = []
        for _ in 0..<Self.readers {
            var pointer: UnsafeMutableRawPointer? = nil
            guard posix_memalign(&pointer, Self.alignment, stagingBytes) == 0, let pointer else {
                close(descriptor)
                throw NTKError(.software, "cannot allocate a staging buffer")
            }
            staging.append(pointer)
        }
        self.buffers = buffers
        self.staging = staging
    }

    deinit {
        close(fd)
        for buffer in buffers { free(buffer) }
        for buffer in staging { free(buffer) }
    }

    var order: Int { samples * entry }

    /// The panels of the whole kernel: consecutive sample rows while the panel stays within
    /// `panelBytes` (at least one row).
    static func panels(samples: Int, columns: Int, symmetric: Bool, entry: Int, panelBytes: Int) -> [Range<Int>] {
        var result: [Range<Int>] = []
        var a = 0
        while a < samples {
            let width = columns - (symmetric ? a : 0)
            let rows = Swift.max(1, panelBytes / Swift.max(1, 8 * width * entry * entry))
            let b = Swift.min(samples, a + rows)
            result.append(a..<b)
            a = b
        }
        return result
    }

    /// Rank `rank`'s contiguous run of panels: the one whose share of the total area (the
    /// entries it reads) holds each panel's midpoint.
    static func share(_ panels: [Range<Int>], symmetric: Bool, columns: Int, rank: Int, ranks: Int) -> [Range<Int>] {
        share(panels, areas: panels.map { Double($0.count) * Double(columns - (symmetric ? $0.lowerBound : 0)) }, rank: rank, ranks: ranks)
    }

    /// Rank `rank`'s contiguous run of `items` of work `areas`: the one whose share of the
    /// total holds each item's midpoint.
    static func share<T>(_ items: [T], areas: [Double], rank: Int, ranks: Int) -> [T] {
        let total = areas.reduce(0, +)
        var before = 0.0
        var mine: [T] = []
        for (item, area) in zip(items, areas) {
            let owner = total > 0 ? Swift.min(ranks - 1, Int(Double(ranks) * (before + area / 2) / total)) : 0
            if owner == rank { mine.append(item) }
            before += area
        }
        return mine
    }

    /// The columns (in samples) of a panel starting at row `a`.
    private func columnStart(_ a: Int) -> Int { symmetric ? a : 0 }

    func apply(_ x: [Double], count: Int) throws -> [Double] {
        let n = order, input = columnSamples * entry
        precondition(x.count == count * input)
        var y = [Double](repeating: 0, count: count * n)
        var scratch = [Double](repeating: 0, count: Swift.max(1, count * input))
        var diagonal = 0.0, squares = 0.0
        let summing = cachedSquares == nil
        try x.withUnsafeBufferPointer { xp in
            try y.withUnsafeMutableBufferPointer { yp in
                try scratch.withUnsafeMutableBufferPointer { sp in
                    let s = sp.baseAddress!, xb = xp.baseAddress!, yb = yp.baseAddress!
                    func add(into start: Int, width: Int) {
                        for r in 0..<count {
                            let target = yb + r * n + start, source = s + r * width
                            for j in 0..<width { target[j] += source[j] }
                        }
                    }
                    try pass { rows, panel in
                        let c0 = columnStart(rows.lowerBound) * entry
                        let r0 = rows.lowerBound * entry
                        let height = rows.count * entry, width = input - c0
                        if symmetric {
                            for i in 0..<height { diagonal += panel[i * width + i] }
                        }
                        if summing {
                            // The diagonal block (in full) once, what lies right of it twice.
                            for i in 0..<height {
                                let row = panel + i * width, block = symmetric ? height : width
                                var inner = 0.0, outer = 0.0
                                for j in 0..<block { inner += row[j] * row[j] }
                                for j in block..<width { outer += row[j] * row[j] }
                                squares += inner + 2 * outer
                            }
                        }
                        guard count > 0 else { return }
                        // Y[:, rows] += X[:, c0..] Pᵀ: (count × width) times (width × height).
                        InnerProducts.multiplyTransposed(m: count, n: height, k: width, a: xb + c0, lda: input,
                                                         b: panel, ldb: width, c: s, ldc: height)
                        add(into: r0, width: height)
                        if symmetric && width > height {
                            // Y[:, after] += X[:, rows] P[:, height...]: right of the diagonal block.
                            InnerProducts.multiply(m: count, n: width - height, k: height, a: xb + r0, lda: input,
                                                   b: panel + height, ldb: width, c: s, ldc: width - height)
                            add(into: r0 + height, width: width - height)
                        }
                    }
                }
            }
        }
        if symmetric && cachedTrace == nil { cachedTrace = diagonal }
        if summing { cachedSquares = squares }
        if count > 0 { try world.allreduce(&y, .sum) }
        return y
    }

    /// tr Θ from the diagonal blocks of the panels (one pass over the file, unless a product
    /// has read them already). Collective.
    func trace() throws -> Double {
        precondition(symmetric)
        if cachedTrace == nil { _ = try apply([], count: 0) }
        return try world.allreduce(cachedTrace!, .sum)
    }

    /// ‖Θ‖_F (one pass over the file, unless a product has read it already). Collective.
    func frobeniusNorm() throws -> Double {
        if cachedSquares == nil { _ = try apply([], count: 0) }
        return try world.allreduce(cachedSquares!, .sum).squareRoot()
    }

    /// What streaming cost on all ranks, for summary.json. Collective.
    func report() throws -> GramSummary.OutOfCore {
        let bytes = try world.allreduce(Double(statistics.bytesRead), .sum)
        let read = try world.allreduce(statistics.readSeconds, .max)
        let passes = try world.allreduce(statistics.passSeconds, .max)
        let wait = try world.allreduce(statistics.waitSeconds, .max)
        let panels = try world.allreduce(Int64(self.panels.count), .sum)
        let direct = try world.allreduce(Int32(direct ? 1 : 0), .min) == 1
        return GramSummary.OutOfCore(directIO: direct, panels: Int(panels), passes: statistics.passes, bytesRead: bytes,
                                     readSeconds: read, passSeconds: passes, waitSeconds: wait,
                                     readBandwidth: read > 0 ? bytes / read : 0, streamBandwidth: passes > 0 ? bytes / passes : 0)
    }

    // MARK: Streaming

    /// Reading thread's and multiplying thread's shared state for one pass.
    private final class PassState: @unchecked Sendable {
        let filled = DispatchSemaphore(value: 0)
        let free = DispatchSemaphore(value: 2)
        let done = DispatchSemaphore(value: 0)
        let lock = NSLock()
        var error: Error?
        var cancelled = false
        var bytes = 0
        var seconds = 0.0
    }

    /// Calls `body` with each of this rank's panels in order, the next one being read
    /// meanwhile.
    private func pass(_ body: (Range<Int>, UnsafePointer<Double>) throws -> Void) throws {
        let start = Clock.now
        defer {
            statistics.passes += 1
            statistics.passSeconds += Clock.seconds(since: start)
        }
        guard !panels.isEmpty else { return }
        let state = PassState()
        let panels = self.panels
        let thread = Thread { [self] in
            for (i, rows) in panels.enumerated() {
                state.free.wait()
                state.lock.lock()
                let cancelled = state.cancelled
                state.lock.unlock()
                if cancelled { break }
                let readStart = Clock.now
                do {
                    let bytes = try read(rows, into: buffers[i % 2])
                    state.lock.lock()
                    state.bytes += bytes
                    state.seconds += Clock.seconds(since: readStart)
                    state.lock.unlock()
                } catch {
                    state.lock.lock()
                    state.error = error
                    state.lock.unlock()
                    state.filled.signal()
                    break
                }
                state.filled.signal()
            }
            state.done.signal()
        }
        thread.stackSize = 1 << 20
        thread.start()
        var failure: Error? = nil
        for (i, rows) in panels.enumerated() {
            let waitStart = Clock.now
            state.filled.wait()
            statistics.waitSeconds += Clock.seconds(since: waitStart)
            state.lock.lock()
            let error = state.error
            state.lock.unlock()
            if let error { failure = error; break }
            do { try body(rows, buffers[i % 2]) } catch { failure = error; break }
            state.free.signal()
        }
        if failure != nil {
            state.lock.lock()
            state.cancelled = true
            state.lock.unlock()
            state.free.signal()
            state.free.signal()
        }
        state.done.wait()
        statistics.bytesRead += state.bytes
        statistics.readSeconds += state.seconds
        if let failure { throw failure }
    }

    /// Reads panel `rows` into `panel` (row-major, (rows·k, width·k)); returns the bytes read
    /// from the file. Runs on the reading thread, which deals the panel's runs of rows to
    /// `readers` threads (reads in flight).
    private func read(_ rows: Range<Int>, into panel: UnsafeMutablePointer<Double>) throws(NTKError) -> Int {
        let k2 = entry * entry
        let c0 = columnStart(rows.lowerBound)
        let segment = 8 * k2 * (columnSamples - c0)
        let gap = 8 * k2 * c0
        let dataOffset = self.dataOffset, columnSamples = self.columnSamples
        @Sendable func segmentStart(_ i: Int) -> Int { dataOffset + 8 * k2 * (i * columnSamples + c0) }
        // Runs of rows read as one span: consecutive rows while the gaps between their
        // segments (read and dropped) are at most a quarter of the segments and the span
        // fits a staging buffer; otherwise each row's segment alone.
        var runs: [Range<Int>] = []
        var first = rows.lowerBound
        while first < rows.upperBound {
            var last = first + 1
            while last < rows.upperBound && 4 * gap <= segment
                    && segmentStart(last) + segment - segmentStart(first) + 2 * Self.alignment <= stagingBytes {
                last += 1
            }
            runs.append(first..<last)
            first = last
        }
        let readers = Swift.min(Self.readers, runs.count)
        final class Outcome: @unchecked Sendable {
            var bytes: [Int]
            var errors: [NTKError?]
            init(_ count: Int) { bytes = Array(repeating: 0, count: count); errors = Array(repeating: nil, count: count) }
        }
        let outcome = Outcome(readers)
        let panelAddress = UInt(bitPattern: panel)
        let group = DispatchGroup()
        let runList = runs
        @Sendable func work(_ t: Int) {
            let runs = runList
            let panel = UnsafeMutablePointer<Double>(bitPattern: panelAddress)!
            var bytes = 0
            do {
                for run in stride(from: t, to: runs.count, by: readers) {
                    bytes += try read(run: runs[run], panelRows: rows, segment: segment, segmentStart: segmentStart,
                                      staging: staging[t], into: panel)
                }
            } catch {
                outcome.errors[t] = error
            }
            outcome.bytes[t] = bytes
        }
        for t in 1..<Swift.max(1, readers) {
            group.enter()
            let thread = Thread { work(t); group.leave() }
            thread.stackSize = 1 << 20
            thread.start()
        }
        if readers > 0 { work(0) }
        group.wait()
        if let error = outcome.errors.compactMap({ $0 }).first { throw error }
        if symmetric {
            // The diagonal block from its upper triangle alone: the file's lower triangle may
            // not be written (`ParallelKernelFile.Writer` without `mirror`).
            let ld = (columnSamples - c0) * entry, height = rows.count * entry
            for r in 0..<height { for c in 0..<r { panel[r * ld + c] = panel[c * ld + r] } }
        }
        return outcome.bytes.reduce(0, +)
    }

    /// Reads the segments of the rows `run` (one span, in chunks of the staging buffer) and
    /// copies them into their rows of the panel; returns the bytes read.
    private func read(run: Range<Int>, panelRows rows: Range<Int>, segment: Int, segmentStart: (Int) -> Int,
                      staging: UnsafeMutableRawPointer, into panel: UnsafeMutablePointer<Double>) throws(NTKError) -> Int {
        let k = entry, k2 = entry * entry
        let ld = (columnSamples - columnStart(rows.lowerBound)) * k
        let spanStart = segmentStart(run.lowerBound), spanEnd = segmentStart(run.upperBound - 1) + segment
        var bytes = 0
        var position = spanStart
        while position < spanEnd {
            let chunkStart = position / Self.alignment * Self.alignment
            let chunkEnd = Swift.min((spanEnd + Self.alignment - 1) / Self.alignment * Self.alignment, chunkStart + stagingBytes)
            let got = try readFully(offset: chunkStart, length: chunkEnd - chunkStart,
                                    minimum: Swift.min(spanEnd, chunkEnd) - chunkStart, into: staging)
            bytes += got
            let validEnd = Swift.min(chunkStart + got, spanEnd)
            // Each segment's part inside [position, validEnd).
            for i in run {
                let s = segmentStart(i), e = s + segment
                let x0 = Swift.max(s, position), x1 = Swift.min(e, validEnd)
                guard x0 < x1 else { continue }
                let source = (staging + (x0 - chunkStart)).assumingMemoryBound(to: Double.self)
                let e0 = (x0 - s) / 8, count = (x1 - x0) / 8
                let row = i - rows.lowerBound
                if k == 1 {
                    (panel + row * ld + e0).update(from: source, count: count)
                } else {
                    for t in 0..<count {
                        let e = e0 + t
                        let j = e / k2, alpha = (e / k) % k, beta = e % k
                        panel[(row * k + alpha) * ld + j * k + beta] = source[t]
                    }
                }
            }
            position = validEnd
        }
        return bytes
    }

    private func readFully(offset: Int, length: Int, minimum: Int, into buffer: UnsafeMutableRawPointer) throws(NTKError) -> Int {
        try Self.readFully(fd, path: path, offset: offset, length: length, minimum: minimum, into: buffer)
    }

    /// Opens `path` for reading with O_DIRECT where the file system allows it (probed with
    /// one read: some accept the flag at open and refuse the reads), else buffered.
    static func openForReading(_ path: String) throws(NTKError) -> (fd: Int32, direct: Bool) {
        var descriptor = ntk_open_read_direct(path)
        if descriptor >= 0 {
            var probe: UnsafeMutableRawPointer? = nil
            if posix_memalign(&probe, alignment, alignment) == 0, let probe {
                if pread(descriptor, probe, alignment, 0) < 0 { close(descriptor); descriptor = -1 }
                free(probe)
            }
        }
        let direct = descriptor >= 0
        if descriptor < 0 { descriptor = open(path, O_RDONLY | O_CLOEXEC) }
        guard descriptor >= 0 else { throw NTKError(.ioError, "cannot open \(path) to read the kernel: \(String(cString: strerror(errno)))") }
        return (descriptor, direct)
    }

    /// Reads [offset, offset + length) of `fd` into `buffer`, stopping early only at the end
    /// of the file and never before `minimum` bytes.
    static func readFully(_ fd: Int32, path: String, offset: Int, length: Int, minimum: Int,
                          into buffer: UnsafeMutableRawPointer) throws(NTKError) -> Int {
        var done = 0
        while done < length {
            let got = pread(fd, buffer + done, length - done, off_t(offset + done))
            if got < 0 {
                if errno == EINTR { continue }
                throw NTKError(.ioError, "reading the kernel from \(path) at byte \(offset + done) failed: \(String(cString: strerror(errno)))")
            }
            if got == 0 { break }
            done += got
        }
        guard done >= minimum else {
            throw NTKError(.ioError, "\(path) ends at byte \(offset + done), before the kernel's end: the file was truncated")
        }
        return done
    }
}
