import CSystem
import Foundation
import MPI
#if canImport(Glibc)
import Glibc
#endif

extension ParallelKernelFile {
    /// Completes a symmetric kernel file of which only the upper tiles were written (the
    /// writer without `mirror`): every entry below the diagonal, Θ[i, j] = Θ[j, i] for j < i
    /// (Θ[i, j, α, β] = Θ[j, i, β, α] for the full kernel). Collective.
    ///
    /// Why: while the tiles are computed, a mirrored tile lands in pieces of one tile row
    /// (2 KiB at B = 256) in 4 KiB pages that the tiles beside it fill minutes later. When the
    /// file exceeds the page cache those pages are evicted half written and read back, which
    /// at N = 60000 (28.8 GB on a 24 GiB machine) took 755 s of a 1303 s tile loop; on a
    /// 24000-sample kernel under a 3 GiB memory limit, 65–70 s against 2.8 s without the
    /// mirrored half. Here the rows are completed whole instead: each rank takes stripes of
    /// consecutive rows [a, b), reads the column block rows [0, b) × columns [a, b) of the
    /// upper triangle (O_DIRECT, 8 reads in flight) and writes each row's part left of the
    /// diagonal, row i's [0, i), as one contiguous write. Only the two pages where such a
    /// segment meets its neighbours are read back.
    static func fillLowerTriangle(path: String, dataOffset: Int, samples n: Int, entry k: Int, world: Communicator,
                                  stripeBytes: Int = 256 << 20) throws(NTKError) {
        let k2 = k * k
        // Stripes of equal height, each holding b · S · k² doubles at most.
        let height = Swift.max(1, Swift.min(n, stripeBytes / Swift.max(1, 8 * k2 * n)))
        var stripes: [Range<Int>] = []
        var a = 0
        while a < n { stripes.append(a..<Swift.min(n, a + height)); a += height }
        // Contiguous runs of equal work (the block read, b · S) per rank.
        let mine = KernelFileOperator.share(stripes, areas: stripes.map { Double($0.count) * Double($0.upperBound) },
                                            rank: world.rank, ranks: world.size)
        guard !mine.isEmpty else { return }

        let (input, direct) = try KernelFileOperator.openForReading(path)
        let alignment = direct ? KernelFileOperator.alignment : 8
        defer { close(input) }
        let writeFD = open(path, O_WRONLY | O_CLOEXEC)
        guard writeFD >= 0 else { throw NTKError(.ioError, "cannot open \(path) to complete its lower triangle: \(String(cString: strerror(errno)))") }
        defer { close(writeFD) }

        let readers = 8
        let segmentDoubles = height * k2
        let stagingBytes = (8 * segmentDoubles + 2 * alignment + alignment - 1) / alignment * alignment
        var staging: [UnsafeMutableRawPointer] = []
        defer { for buffer in staging { free(buffer) } }
        for _ in 0..<readers {
            var pointer: UnsafeMutableRawPointer? = nil
            guard posix_memalign(&pointer, 4096, stagingBytes) == 0, let pointer else {
                throw NTKError(.software, "cannot allocate a staging buffer of \(stagingBytes) bytes")
            }
            staging.append(pointer)
        }
        let blockCount = mine.map { $0.upperBound * $0.count * k2 }.max()!
        let block = UnsafeMutablePointer<Double>.allocate(capacity: blockCount)
        defer { block.deallocate() }
        var row = [Double](repeating: 0, count: n * k2)

        final class Failures: @unchecked Sendable {
            var errors: [NTKError?]
            init(_ count: Int) { errors = Array(repeating: nil, count: count) }
        }
        let blockAddress = UInt(bitPattern: block)
        let stagingAddresses = staging.map { UInt(bitPattern: $0) }
        for stripe in mine {
            let a = stripe.lowerBound, b = stripe.upperBound, width = stripe.count * k2
            // The column block: rows j < b, the samples of the stripe as columns.
            let failures = Failures(readers)
            let group = DispatchGroup()
            @Sendable func work(_ t: Int) {
                let block = UnsafeMutablePointer<Double>(bitPattern: blockAddress)!
                let buffer = UnsafeMutableRawPointer(bitPattern: stagingAddresses[t])!
                for j in stride(from: t, to: b, by: readers) {
                    let offset = dataOffset + 8 * k2 * (j * n + a), length = 8 * width
                    let start = offset / alignment * alignment
                    let end = (offset + length + alignment - 1) / alignment * alignment
                    do {
                        _ = try KernelFileOperator.readFully(input, path: path, offset: start, length: end - start,
                                                             minimum: offset + length - start, into: buffer)
                    } catch {
                        failures.errors[t] = error
                        return
                    }
                    (block + j * width).update(from: (buffer + (offset - start)).assumingMemoryBound(to: Double.self), count: width)
                }
            }
            for t in 1..<readers {
                group.enter()
                let thread = Thread { work(t); group.leave() }
                thread.stackSize = 1 << 20
                thread.start()
            }
            work(0)
            group.wait()
            if let error = failures.errors.compactMap({ $0 }).first { throw error }
            // Row i, columns [0, i): Θ[i, j, α, β] = Θ[j, i, β, α], one write per row.
            for i in stripe where i > 0 {
                let s = i - a
                row.withUnsafeMutableBufferPointer { r in
                    for j in 0..<i {
                        let source = block + j * width + s * k2
                        if k == 1 {
                            r[j] = source[0]
                        } else {
                            for alpha in 0..<k { for beta in 0..<k { r[(j * k + alpha) * k + beta] = source[beta * k + alpha] } }
                        }
                    }
                }
                let failure = row.withUnsafeBytes { FileSystem.writeAll(writeFD, UnsafeRawBufferPointer(rebasing: $0[0..<(8 * i * k2)]), at: dataOffset + 8 * k2 * i * n) }
                if let failure { throw NTKError(.ioError, "writing \(path) failed: \(failure)") }
            }
            // Start writing this stripe's pages back while the next one is read.
            _ = ntk_start_writeback(writeFD, Int64(dataOffset + 8 * k2 * a * n), Int64(8 * k2 * stripe.count * n))
        }
    }
}
