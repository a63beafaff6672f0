import Foundation

/// Peak memory of a `ntk gram` run, estimated before any work from the sizes and options.
///
/// With R = N·k' rows and C = M·k' columns of the kernel (k' = k for the full kernel,
/// else 1), K ranks, B samples per tile side and f bytes of per-sample quantities
/// (structured: 8 Σ_l (n_in + k·n_out); explicit: 8 k P):
/// - every rank: its inputs (`InputPlan.bytes`: the data 8(N + M)d and the parameters); its cache of per-sample quantities,
///   min(f (N + M), cache bound); and either
///   - when rank 0 gathers the kernel (a symmetric kernel with an eigendecomposition by
///     LAPACK), its share of the tiles until the gather, 8RC/K (8RC/(2K) for a symmetric
///     kernel, whose tiles cover its upper triangle), or
///   - when every rank writes its tiles into kernel.npy as they finish (no
///     eigendecomposition, a cross kernel, or ScaLAPACK), the tile in flight and its two
///     products, 3·8(Bk')², and the pages of kernel.npy it has mapped,
///     min(8RC, 256 MiB + 4·8(Bk')²) (page cache: counted in the resident set, written back and
///     reclaimable); ScaLAPACK keeps the share of the tiles as well. The row-block writer
///     (`StripeKernelFile`, one node) holds instead the tiles that wait for their row block,
///     at most about 8RC/4 per node, and one row block 8·B·k'·C per rank; it is chosen only
///     when the kernel file takes at most half of the memory (`GramJob`), so that this fits
///     in the other half without being planned here;
/// - rank 0, only when it eigendecomposes (otherwise the ranks write their tiles into
///   kernel.npy themselves), instead of its tile share and per-sample quantities once the
///   tile loop and the gather have released them:
///   the assembled kernel 8RC; a gather buffer ≤ 8·B·k'·C; a copy of the kernel 8R² for
///   LAPACK and, with vectors, the larger of dsyevd's workspace 8(1 + 6R + 2R²) and the
///   symmetric copy 8R² of the residual check; for the full kernel a permuted copy 8RC.
/// - with `--eigen-solver scalapack` or `elpa`, every rank instead holds its share of the
///   block-cyclic matrix, eigenvectors and workspace, about 8·4R²/K.
/// - out of core (`--kernel-storage disk`, block Lanczos or the density), no rank keeps its
///   tiles: instead each holds two panels of kernel.npy and a staging buffer
///   (`KernelFileOperator.bufferBytes`: two panels of up to 64 MiB and the readers' staging
///   buffers, at most 160 MiB) while the solver runs.
/// The output files are streamed from these arrays without further copies. Every rank
/// also carries a fixed `baseline` (the Swift runtime, Open MPI and OpenBLAS buffers,
/// measured at about 45 MiB here).
public struct MemoryPlan: Sendable, Equatable {
    public var rank0Bytes: Int
    public var otherRankBytes: Int

    /// The memory of a rank before any array: runtime, MPI and BLAS buffers.
    public static let baseline = 48 << 20

    /// The estimate for a job of these sizes. `inputBytes` is what each rank holds for
    /// its inputs (`InputPlan.bytes`: data and parameters); without it, the data alone.
    /// The arithmetic is in doubles, so absurd sizes give huge estimates (refused), never
    /// wrapped ones; the result saturates at `Int.max`.
    public static func estimate(n: Int, m: Int?, inputWidth d: Int, outputs k: Int, outputKernel: OutputKernel,
                                eigen: EigenOutput, solver: EigenSolver = .lapack, top: Int? = nil,
                                density: (probes: Int, steps: Int, top: Int?)? = nil, outOfCore: Bool = false, ranks: Int, tileSize: Int, perSampleBytes: Double,
                                cacheBytes: Int, inputBytes: Double? = nil) -> MemoryPlan {
        let entry = Double(outputKernel == .full ? k : 1)
        let rows = Double(n) * entry
        let columns = Double(m ?? n) * entry
        let symmetric = m == nil
        let ranks = Double(ranks), tileSize = Double(tileSize)
        let kernelBytes = 8 * rows * columns
        let tileBytes = 8 * tileSize * entry * tileSize * entry
        let share = symmetric ? kernelBytes / (2 * ranks) + tileBytes : kernelBytes / ranks
        let samples = Double(n + (m ?? 0))
        let inputs = inputBytes ?? 8 * samples * Double(d)
        let cache = Swift.min(perSampleBytes * samples, Swift.max(Double(cacheBytes), 2 * perSampleBytes * tileSize))
        // Streamed: the ranks write their tiles into kernel.npy as they finish.
        let distributed = symmetric && eigen != .none && (solver.isBlockCyclic || solver == .krylov)
        let streamed = !symmetric || eigen == .none || distributed
        // The tiles a rank holds: its share when a distributed solver keeps them in memory,
        // else those in flight (and, out of core, the panels the solver streams).
        let panels = KernelFileOperator.bufferBytes(samples: n, columns: m ?? n, symmetric: symmetric, entry: Int(entry), ranks: Int(ranks))
        let held = outOfCore ? 3 * tileBytes + Double(panels)
            : streamed && !distributed ? 3 * tileBytes : share
        let mapped = streamed ? Swift.min(kernelBytes, Double(ParallelKernelFile.Writer.windowLimit) + 4 * tileBytes) : 0
        var common = Double(baseline) + inputs + held + cache + mapped
        if let density, symmetric {
            // Stochastic Lanczos quadrature: every rank keeps its tiles (its share) and each
            // probe's basis of `steps` vectors of length R, the block and its product; the
            // block Lanczos basis of the deflated top eigenpairs too.
            let probes = Double(density.probes)
            common += (outOfCore ? 0 : share - held) + 8 * probes * (Double(density.steps) + 4) * rows
            if let top = density.top, top > 0 { common += 2 * 8 * 8 * Double(Swift.max(top + 8, 16)) * rows }
            return MemoryPlan(rank0Bytes: clamp(common), otherRankBytes: clamp(common))
        }
        if distributed && solver == .krylov {
            // Block Lanczos: every rank keeps its tiles (its share) and the basis and its
            // products, 2 · 8 blocks of b = K + 8 vectors of length R, plus small matrices.
            let block = Double(Swift.max((top ?? 0) + 8, 16))
            common += 2 * 8 * 8 * block * rows + 8 * 3 * (8 * block) * (8 * block)
            return MemoryPlan(rank0Bytes: clamp(common), otherRankBytes: clamp(common))
        }
        if symmetric && eigen != .none && solver.isBlockCyclic {
            // ScaLAPACK or ELPA: every rank holds its piece of the matrix, of the
            // eigenvectors and the workspace, about 4 R²/K doubles (ELPA: the matrix, its
            // transpose while the lower half is filled, the vectors and the band or
            // tridiagonal work), and no rank the whole kernel.
            common += 8 * 4 * rows * rows / ranks
            return MemoryPlan(rank0Bytes: clamp(common), otherRankBytes: clamp(common))
        }
        var rank0 = common
        if symmetric && eigen != .none {
            // Rank 0 assembles the kernel for LAPACK (otherwise every rank writes its own
            // tiles into kernel.npy and rank 0 holds no more than the others). Its tiles
            // are released as they are gathered, so the peak is the larger of the two phases.
            var finish = kernelBytes + 8 * Swift.min(tileSize * entry, rows) * columns + 8 * rows * rows
            // With vectors: dsyevd's workspace, or later the symmetric copy the residual
            // check multiplies by, whichever is larger (they are not held together).
            if eigen == .vectors { finish += Swift.max(8 * (1 + 6 * rows + 2 * rows * rows), 8 * rows * rows) }
            if outputKernel == .full { finish += kernelBytes }
            // The per-sample quantities are released before the gather.
            rank0 = Double(baseline) + inputs + Swift.max(cache + share, finish)
        }
        return MemoryPlan(rank0Bytes: clamp(rank0), otherRankBytes: clamp(common))
    }

    /// A byte count as an integer, saturating at Int.max.
    static func clamp(_ bytes: Double) -> Int { bytes >= 9.2e18 ? Int.max : Int(bytes) }

    /// Bytes the node holding rank 0 needs when `localRanks` ranks share it.
    public func nodeBytes(localRanks: Int) -> Int {
        Self.clamp(Double(rank0Bytes) + Double(max(0, localRanks - 1)) * Double(otherRankBytes))
    }

    /// Memory this process may still use: the smaller of MemAvailable and the cgroup
    /// limit minus current usage; nil when neither can be read.
    public static func availableBytes() -> Int? {
        var candidates: [Int] = []
        if let text = try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8) {
            for line in text.split(separator: "\n") where line.hasPrefix("MemAvailable:") {
                let parts = line.split(separator: " ")
                if parts.count >= 2, let kb = Int(parts[1]) { candidates.append(kb * 1024) }
            }
        }
        if let max = try? String(contentsOfFile: "/sys/fs/cgroup/memory.max", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines),
           let limit = Int(max),
           let current = (try? String(contentsOfFile: "/sys/fs/cgroup/memory.current", encoding: .utf8))
               .flatMap({ Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) }) {
            candidates.append(limit - current)
        }
        return candidates.min()
    }

    static func format(_ bytes: Int) -> String { format(Double(bytes)) }

    static func format(_ bytes: Double) -> String {
        let gib = bytes / Double(1 << 30)
        if gib >= Double(1 << 20) { return String(format: "%.3g PiB", gib / Double(1 << 20)) }
        return gib >= 1 ? String(format: "%.2f GiB", gib) : String(format: "%.1f MiB", bytes / Double(1 << 20))
    }
}
