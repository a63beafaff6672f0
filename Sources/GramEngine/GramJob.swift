import CSystem
import DistributedEigen
import Foundation
import LearningDynamics
import LinearAlgebra
import MPI
import Network
import NumPyIO
import TileKernels

/// Where a job's network architecture comes from.
public enum ModelSource: Sendable {
    case file(String)
    case spec(ModelSpec)
}

/// Where a job's network parameters come from.
public enum ParameterSource: Sendable {
    /// A .npz file of raw trainable arrays W0, b0, W1, ….
    case file(String)
    /// Drawn from the parameterization's distributions with this seed.
    case seed(UInt64)
}

/// Everything `ntk gram` needs to know.
public struct GramOptions: Sendable {
    public var data: String
    public var data2: String?
    public var model: ModelSource
    public var parameters: ParameterSource
    public var output: String
    public var outputKernel: OutputKernel = .mean
    /// Empirical (default), or an infinite-width kernel of the same architecture.
    public var kernel: KernelKind = .empirical
    public var eigen: EigenOutput = .values
    /// LAPACK on rank 0 (default) or ScaLAPACK over all ranks.
    public var eigenSolver: EigenSolver = .auto
    /// Only the K largest eigenpairs (nil: all).
    public var eigenTop: Int?
    /// The spectral density by stochastic Lanczos quadrature on the distributed kernel
    /// (`--eigen density`; `eigen` is then .none: no rank gathers the kernel).
    public var density: SpectralDensityOptions?
    /// Where the distributed kernel of --eigen-top (block Lanczos) and --eigen density lives
    /// while the solver runs: the ranks' memory, or kernel.npy on disk (out of core).
    public var kernelStorage: KernelStorage = .auto
    public var force = false
    /// No report on stdout.
    public var quiet = false
    /// Tiles, per-sample cache, checkpoints, memory budget, progress.
    public var engine = EngineOptions()

    /// The number of top eigenpairs computed, when not the whole spectrum.
    var topCount: Int? { eigenTop ?? density?.topK }

    /// The checkpoint directory in use.
    public var effectiveCheckpointDirectory: String { engine.checkpointDirectory(output: output) }

    public static let defaultTileSize = EngineOptions.defaultTileSize

    public init(data: String, model: ModelSource, parameters: ParameterSource, output: String) {
        self.data = data
        self.model = model
        self.parameters = parameters
        self.output = output
    }
}

/// `--eigen density`: stochastic Lanczos quadrature (docs/maths.md §9).
public struct SpectralDensityOptions: Sendable {
    /// Rademacher probe vectors (the estimates' standard errors shrink as 1/√probes).
    public var probes: Int = 16
    /// Lanczos steps per probe (Gauss nodes per probe's rule).
    public var steps: Int = 80
    /// The probes' seed.
    public var seed: UInt64 = 1
    /// Also the K largest eigenvalues, by block Lanczos on the same tiles (`--eigen-top`).
    public var topK: Int?
    public init() {}

    /// How many of the largest eigenpairs are computed exactly and deflated from the
    /// quadrature: K with --eigen-top K, else 16 when 10 · 16 ≤ the order, else none.
    public func deflationCount(order: Int) -> Int {
        if let topK { return Swift.min(topK, order) }
        return 10 * Self.defaultDeflation <= order ? Self.defaultDeflation : 0
    }
    public static let defaultDeflation = 16
}

/// The machine-readable record of a run, written as summary.json.
public struct GramSummary: Codable, Sendable {
    public struct Spectrum: Codable, Sendable {
        public var min: Double
        public var max: Double
        public var trace: Double
        public var conditionNumber: Double?
        enum CodingKeys: String, CodingKey { case min, max, trace, conditionNumber = "condition_number" }
    }
    public var tool = "ntk"
    public var kernel = "empirical"
    public var method: String
    public var outputKernel: String
    public var n: Int
    public var m: Int?
    public var inputWidth: Int
    public var outputs: Int
    public var parameters: Int
    public var parameterization: String
    public var kernelShape: [Int]
    public var ranks: Int
    public var tileSize: Int
    public var tiles: Int
    /// Tiles taken from a checkpoint instead of computed (with --resume).
    public var tilesReused: Int
    public var blasCore: String
    /// Who chose `blasCore`: "ntk", "environment" (OPENBLAS_CORETYPE) or "openblas".
    public var blasCoreChoice: String = "openblas"
    /// BLAS threads of rank 0's eigendecomposition (its node's ranks' cores).
    public var blasThreadsEigen: Int?
    /// The eigensolver that ran: lapack, scalapack, elpa-1stage, elpa-2stage or krylov.
    public var eigenSolver: String?
    /// The tile kernels' instruction set, chosen at run time: avx512, avx2 or baseline.
    public var tileKernels: String = InnerProducts.level.rawValue
    /// The block Lanczos run, when it computed the top eigenpairs: cycles, products with
    /// blocks of vectors, block size and the largest residual ‖Θx − θx‖ (a bound on every
    /// eigenvalue's error).
    public var krylov: Krylov?
    /// With `--seeds`: the draws and their spread around the mean kernel.
    public var ensemble: EnsembleSummary?
    /// With `--eigen density`: the estimates of stochastic Lanczos quadrature.
    public var density: DensitySummary?
    /// Where the distributed solvers found the kernel: "memory" (the ranks' tiles) or
    /// "disk" (kernel.npy, streamed); nil when no distributed solver ran.
    public var kernelStorage: String?
    /// Out of core: what streaming the kernel from disk cost.
    public var outOfCore: OutOfCore?

    public struct OutOfCore: Codable, Sendable {
        /// Whether the reads bypassed the page cache (O_DIRECT).
        public var directIO: Bool
        /// Panels of the file (all ranks) and passes over it (products with Θ, plus a trace).
        public var panels: Int
        public var passes: Int
        /// Bytes read from disk by all ranks.
        public var bytesRead: Double
        /// The slowest rank's seconds in reads (its reading thread), in passes, and waiting
        /// for a panel (reads the products did not hide).
        public var readSeconds: Double
        public var passSeconds: Double
        public var waitSeconds: Double
        /// bytes_read / read_seconds: the rate the disk delivered to all ranks while they read.
        public var readBandwidth: Double
        /// bytes_read / pass_seconds: the rate of the whole passes, reading and products.
        public var streamBandwidth: Double
        enum CodingKeys: String, CodingKey {
            case directIO = "direct_io", panels, passes, bytesRead = "bytes_read", readSeconds = "read_seconds"
            case passSeconds = "pass_seconds", waitSeconds = "wait_seconds", readBandwidth = "read_bytes_per_second"
            case streamBandwidth = "stream_bytes_per_second"
        }
    }

    public struct Krylov: Codable, Sendable {
        public var cycles: Int
        public var blockProducts: Int
        public var blockSize: Int
        public var maxResidual: Double
        enum CodingKeys: String, CodingKey {
            case cycles, blockProducts = "block_products", blockSize = "block_size", maxResidual = "max_residual"
        }
    }
    public var seconds: [String: Double]
    public var spectrum: Spectrum?
    /// Spectral diagnostics (effective rank, decay exponent, largest stable learning rate, …).
    public var diagnostics: SpectralDiagnostics?
    /// 2c/λ_max with c = N·k: the largest stable gradient-descent learning rate for the MSE loss.
    public var maxStableLearningRate: Double?
    /// The memory planner's estimate (bytes) for rank 0 and every other rank.
    public var memoryEstimate: [String: Double]?
    /// The empirical kernel's layers: where each is, its factor form, and whether its
    /// signals collapse to one row (docs/maths.md §6).
    public var layers: [LayerRecord]?
    /// Multiply-adds of the empirical kernel: per sample pair and per sample (the useful
    /// work, to count GFLOP/s against).
    public var work: [String: Double]?
    public var files: [String]

    public struct LayerRecord: Codable, Sendable {
        public var layer: String
        public var positions: Int
        public var form: String
        public var collapsed: Bool
    }

    enum CodingKeys: String, CodingKey {
        case tool, kernel, method, n, m, parameters, parameterization, ranks, tiles, seconds, spectrum, files
        case outputKernel = "output_kernel", inputWidth = "input_width", outputs = "outputs_k"
        case kernelShape = "kernel_shape", tileSize = "tile_size", blasCore = "blas_core", tilesReused = "tiles_reused"
        case blasCoreChoice = "blas_core_choice", blasThreadsEigen = "blas_threads_eigen", krylov = "krylov", ensemble, density
        case kernelStorage = "kernel_storage", outOfCore = "out_of_core"
        case eigenSolver = "eigen_solver", tileKernels = "tile_kernels"
        case diagnostics, maxStableLearningRate = "max_stable_learning_rate", memoryEstimate = "memory_estimate", layers, work
    }
}

/// `ntk gram`: the distributed empirical NTK, end to end.
public enum GramJob {
    /// Runs the job. Every rank calls it; every rank returns the same status. Errors are
    /// printed once (by the first rank that saw them) to stderr.
    public static func run(_ options: GramOptions, world: Communicator) -> ExitStatus {
        JobRunner.run(world: world) { try execute(options, world: world) }
    }

    struct Loaded {
        var data: DataSet
        var data2: DataSet?
        var spec: ModelSpec
        /// The finite network (empirical kernels only).
        var network: Network?
        /// The infinite-width kernel (analytic and nngp only).
        var infinite: InfiniteWidthKernel?
    }

    static func execute(_ options: GramOptions, world: Communicator) throws {
        let agreement = Agreement(world: world)
        let totalStart = Clock.now
        BLASLibrary.setThreadCount(1)
        if world.isRoot && BLASLibrary.isGenericFallback {
            Report.warning("OpenBLAS runs its generic '\(BLASLibrary.coreName)' kernel, several times slower than this CPU allows; set OPENBLAS_CORETYPE (e.g. Haswell or SkylakeX) before starting ntk")
        } else if world.isRoot && options.eigen != .none, let faster = BLASLibrary.fasterCore {
            // Only the eigendecomposition uses BLAS; the tiles and per-sample passes do not.
            Report.warning("OpenBLAS runs its '\(BLASLibrary.coreName)' kernel on a CPU with AVX-512: the eigendecomposition would run about 1.3-1.6x faster with OPENBLAS_CORETYPE=\(faster) set before starting ntk")
        }

        // Sizes first, from the headers and the model: nothing large is read or allocated
        // before the memory plan has accepted the run. Any rank's failure stops all.
        let inputs: InputPlan = try agreement.stage { () throws(NTKError) -> InputPlan in
            try InputPlan.inspect(data: options.data, data2: options.data2, model: options.model,
                                  parameters: options.kernel == .empirical ? options.parameters : nil)
        }
        let n = inputs.n
        let m = inputs.m
        let k = inputs.spec.outputCount
        let entry = options.outputKernel == .full ? k : 1
        let tileSize = options.engine.tileSize(rows: n, columns: m ?? n, blocks: options.kernel == .empirical ? 4 : 8)
        // The memory plan of a solver; `auto` consults LAPACK's, and a run that cannot fit
        // rank 0's node is refused below, before any work.
        let localRanksForPlan = (try? world.nodeLocal().size) ?? 1
        let perSampleBytes = inputs.perSampleBytes(options.engine.method, forms: options.engine.layerForms, outputKernel: options.outputKernel)
        let cacheBytes = options.engine.cacheBytes(perSampleBytes: perSampleBytes, samples: n + (m ?? 0), localRanks: localRanksForPlan)
        func memoryPlan(_ solver: EigenSolver, outOfCore: Bool = false) -> MemoryPlan {
            MemoryPlan.estimate(n: n, m: m, inputWidth: inputs.inputWidth, outputs: k, outputKernel: options.outputKernel,
                                eigen: m == nil ? options.eigen : .none, solver: solver, top: options.eigenTop,
                                density: m == nil ? options.density.map { ($0.probes, $0.steps, $0.deflationCount(order: n * entry)) } : nil,
                                outOfCore: outOfCore, ranks: world.size, tileSize: tileSize,
                                perSampleBytes: perSampleBytes, cacheBytes: cacheBytes,
                                inputBytes: inputs.bytes)
        }
        var solver = options.eigenSolver.resolved(order: n * entry, top: options.eigenTop)
        if options.eigenSolver == .auto && solver == .lapack && m == nil && options.eigen != .none && world.size > 1 {
            // LAPACK on rank 0 while the kernel fits there (its memory plan on rank 0's node
            // and LAPACK's 32-bit sizes); otherwise a distributed solver (docs/cluster.md,
            // "Eigensolvers"). Rank 0 decides: only it reads the available memory.
            var choice: [Int32] = [0]  // an index into EigenSolver.allCases
            if world.isRoot {
                let automatic = EigenSolver.automaticFullSpectrum(
                    order: n * entry, vectors: options.eigen == .vectors, top: options.eigenTop, ranks: world.size,
                    lapackNodeBytes: memoryPlan(.lapack).nodeBytes(localRanks: localRanksForPlan),
                    available: options.engine.memoryBudget ?? MemoryPlan.availableBytes())
                choice[0] = Int32(EigenSolver.allCases.firstIndex(of: automatic)!)
            }
            try agreement.stage { () throws(NTKError) in
                do { try world.broadcast(&choice, root: 0) } catch { throw NTKError(.software, "MPI: \(error)") }
            }
            solver = EigenSolver.allCases[Int(choice[0])]
        }
        try agreement.stage { () throws(NTKError) in
            if solver == .elpa && (options.eigenTop != nil || m != nil || options.eigen == .none) {
                throw NTKError(.usage, "--eigen-solver elpa computes the whole spectrum of a symmetric kernel: give --eigen values or vectors, no --eigen-top (use krylov or scalapack for the top K) and no --data2")
            }
            if solver == .krylov && (options.eigenTop == nil || m != nil) {
                throw NTKError(.usage, "--eigen-solver krylov computes the top K eigenpairs of a symmetric kernel: give --eigen-top K (and no --data2)")
            }
            if m == nil && options.eigen != .none && solver == .lapack {
                // LAPACK's 32-bit integers: the matrix index n² and, with vectors, dsyevd's
                // workspace 1 + 6n + 2n² must fit.
                let order = n * entry
                let limit = options.eigen == .vectors ? EigenSolver.lapackVectorsLimit : EigenSolver.lapackValuesLimit
                if order > limit {
                    throw NTKError(.usage, "--eigen \(options.eigen.rawValue) on a \(order) x \(order) kernel exceeds LAPACK's 32-bit limit (order \(limit)); use --eigen \(options.eigen == .vectors ? "values (up to 46340) or none" : "none")")
                }
            }
            if tileSize * entry > 46_340 {
                throw NTKError(.usage, "--tile \(tileSize) with \(k) outputs in full mode (--output-kernel full) makes tiles of over 2^31 values; use --tile \(46_340 / entry) or less")
            }
        }

        // Out of core: a distributed solver (block Lanczos, the density) whose tiles would not
        // fit rank 0's node leaves the kernel in kernel.npy, each rank streaming its panels
        // for every product (`KernelFileOperator`). Rank 0 decides: only it reads the
        // available memory.
        let usesOperator = m == nil && (options.density != nil || (options.eigen != .none && solver == .krylov))
        try agreement.stage { () throws(NTKError) in
            if options.kernelStorage != .auto && !usesOperator {
                throw NTKError(.usage, "--kernel-storage \(options.kernelStorage.rawValue) applies to the distributed solvers of a symmetric kernel: --eigen-top K with the krylov solver, or --eigen density")
            }
        }
        var outOfCore = options.kernelStorage == .disk
        if options.kernelStorage == .auto && usesOperator {
            var choice: [Int32] = [0]
            if world.isRoot, let available = options.engine.memoryBudget ?? MemoryPlan.availableBytes(),
               memoryPlan(solver).nodeBytes(localRanks: localRanksForPlan) > available,
               memoryPlan(solver, outOfCore: true).nodeBytes(localRanks: localRanksForPlan) <= available {
                choice[0] = 1
                Report.warning("the kernel's tiles do not fit the memory of rank 0's node (\(MemoryPlan.format(memoryPlan(solver).nodeBytes(localRanks: localRanksForPlan))) needed, \(MemoryPlan.format(available)) available): out of core, each rank streams its panels of kernel.npy from disk for every product")
            }
            try agreement.stage { () throws(NTKError) in
                do { try world.broadcast(&choice, root: 0) } catch { throw NTKError(.software, "MPI: \(error)") }
            }
            outOfCore = choice[0] == 1
        }

        // Memory: refuse before any work what cannot fit on rank 0's node.
        let memory = memoryPlan(solver, outOfCore: outOfCore)
        try agreement.stage { () throws(NTKError) in
            guard world.isRoot, let available = options.engine.memoryBudget ?? MemoryPlan.availableBytes() else { return }
            let needed = memory.nodeBytes(localRanks: localRanksForPlan)
            if needed > available {
                var hints: [String] = []
                if inputs.bytes > Double(available) / 2 {
                    hints.append("a smaller network or data set (the inputs alone: \(inputs.describe))")
                } else if options.eigen == .vectors {
                    hints.append("--eigen values or none (the vectors need 8·(3R² + 6R) more bytes)")
                } else if options.eigen == .values && m == nil {
                    hints.append("--eigen none (saves a copy of the kernel)")
                }
                if usesOperator && !outOfCore { hints.append("--kernel-storage disk (the kernel stays in kernel.npy, each rank streaming its panels)") }
                if options.engine.method == .explicit { hints.append("--method structured (explicit gradients take k·P doubles per sample)") }
                if localRanksForPlan > 1 { hints.append("fewer ranks on rank 0's node (each holds its share of the tiles and its inputs)") }
                if options.outputKernel == .full { hints.append("--output-kernel mean (the full kernel is k² times larger)") }
                hints.append("a node with more memory")
                throw NTKError(.usage, "this run needs about \(MemoryPlan.format(needed)) on rank 0's node (rank 0: \(MemoryPlan.format(memory.rank0Bytes)), each other rank: \(MemoryPlan.format(memory.otherRankBytes))) but \(MemoryPlan.format(available)) is available; options that need less: \(hints.joined(separator: "; "))")
            }
        }

        // Inputs: every rank reads them; any rank's failure stops all.
        let loadStart = Clock.now
        let loaded: Loaded = try agreement.stage { () throws(NTKError) -> Loaded in try load(options, inputs: inputs) }
        let loadSeconds = Clock.seconds(since: loadStart)
        let network = loaded.network

        // Output directory and checkpoint: rank 0 creates and checks them before any work.
        var plan = TilePlan(rows: n, columns: m ?? n, tileSize: tileSize, symmetric: m == nil, ranks: world.size)
        let manifest = Checkpoint.Manifest(
            n: n, m: m, inputWidth: loaded.data.width, tileSize: tileSize, tiles: plan.tiles.count,
            outputKernel: options.outputKernel.rawValue, kernel: options.kernel.rawValue,
            method: options.kernel == .empirical ? options.engine.method.rawValue : "none", precision: options.engine.precision.rawValue,
            dataHash: Checkpoint.fingerprint(loaded.data.values), data2Hash: loaded.data2.map { Checkpoint.fingerprint($0.values) },
            modelHash: Checkpoint.fingerprint(loaded.spec.encodeJSON()),
            parametersHash: network.map { Checkpoint.fingerprint($0.flatParameters) } ?? "none")
        // Rank 0 claims both directories for the run (a second run into either is refused).
        let (output, reusable, checkpointLock): (OutputDirectory?, Bool, DirectoryLock?) = try agreement.stage { () throws(NTKError) -> (OutputDirectory?, Bool, DirectoryLock?) in
            guard world.isRoot else { return (nil, false, nil) }
            let output = try OutputDirectory(path: options.output, force: options.force)
            guard options.engine.checkpointing else { return (output, false, nil) }
            let (reusable, lock) = try Checkpoint.prepare(directory: options.effectiveCheckpointDirectory, manifest: manifest, resume: options.engine.resume)
            if options.engine.resume && !reusable { Report.warning("no checkpoint to resume in \(options.effectiveCheckpointDirectory); starting from the beginning") }
            return (output, reusable, lock)
        }
        let reuse = try world.allreduce(Int32(reusable ? 1 : 0), .max) == 1
        // Names of this run's temporary files: rank 0's pid, known to every rank.
        let runToken = try world.allreduce(Int64(world.isRoot ? Int(getpid()) : 0), .sum)
        let checkpoint = options.engine.checkpointing ? Checkpoint(directory: options.effectiveCheckpointDirectory, manifest: manifest) : nil

        // Without an eigendecomposition rank 0 needs no kernel: every rank writes its own
        // tiles into kernel.npy as it finishes them, and no rank ever holds N x N.
        let stream = m != nil || options.eigen == .none || solver.isBlockCyclic || solver == .krylov
        // A symmetric kernel file larger than half the memory (or out of core): the tile loop
        // writes the upper tiles only and `fillLowerTriangle` completes the rows afterwards
        // (mirrored tiles in a file past the page cache are read back page by page).
        var completeLater: [Int32] = [0]
        if stream && m == nil && world.isRoot {
            let fileBytes = 8 * Double(n * entry) * Double(n * entry)
            let available = options.engine.memoryBudget ?? MemoryPlan.availableBytes()
            if outOfCore || available.map({ fileBytes > Double($0) / 2 }) ?? false
                || ProcessInfo.processInfo.environment["NTK_TEST_FILL_LOWER"] != nil {
                completeLater[0] = 1
            }
        }
        try agreement.stage { () throws(NTKError) in
            do { try world.broadcast(&completeLater, root: 0) } catch { throw NTKError(.software, "MPI: \(error)") }
        }
        let fillLower = completeLater[0] == 1
        // kernel.npy under its temporary name, and where its data start (the header depends
        // only on the shape): every rank knows both.
        let kernelShape: [Int] = entry == 1 ? [n, m ?? n] : [n, m ?? n, k, k]
        let kernelPath = options.output + "/" + ParallelKernelFile.temporaryName("kernel.npy", token: runToken)
        let kernelDataOffset = NPYFormat.header(shape: kernelShape, dtype: .float64).count
        var writer: ParallelKernelFile.Writer? = nil
        var stripeFile: StripeKernelFile? = nil
        // Whether the ranks keep their tiles (the distributed eigensolvers and the density).
        let keepTiles = !stream || (!outOfCore && ((m == nil && options.eigen != .none && (solver.isBlockCyclic || solver == .krylov))
                                                   || (m == nil && options.density != nil)))
        var created: (path: String, dataOffset: Int, size: Int)? = nil
        if stream {
            created = try agreement.stage { () throws(NTKError) -> (path: String, dataOffset: Int, size: Int)? in
                guard world.isRoot, let output else { return nil }
                let created = try ParallelKernelFile.create(directory: output.path, shape: kernelShape, name: ParallelKernelFile.temporaryName("kernel.npy", token: runToken))
                // Staged at once: renamed at commit, removed if the run fails.
                output.adopt(temporary: created.path, as: "kernel.npy")
                return created
            }
            // Whole row blocks by direct I/O where they can be (`StripeKernelFile`): the file
            // complete in memory-sized pieces, one node, a file system with O_DIRECT.
            let choice = ProcessInfo.processInfo.environment["NTK_KERNEL_WRITER"]
            var stripes = !fillLower && !keepTiles && choice != "mapped"
                && StripeKernelFile.bufferBytes(plan: plan, entry: entry) <= StripeKernelFile.bufferLimit
                && plan.tiles.count <= world.tagLimit
            // Every rank takes the same branch (the environment may differ between ranks).
            stripes = try world.allreduce(Int32(stripes ? 1 : 0), .min) == 1
            if stripes {
                let nodeRanks = try world.nodeLocal().size
                let probe = ntk_open_write_direct(kernelPath)
                if probe >= 0 { close(probe) }
                stripes = try world.allreduce(Int32(nodeRanks == world.size && probe >= 0 ? 1 : 0), .min) == 1
            }
            if choice == "stripes" && !stripes {
                Report.warning("NTK_KERNEL_WRITER=stripes: this run cannot use the stripe writer; kernel.npy is written through a shared mapping")
            }
            if stripes {
                // Tiles wait for their row block, so they are freed in another order than
                // allocated: keep freed tiles in the heap for the next ones instead of
                // returning them to the system and faulting in fresh zeroed pages for every
                // tile (N = 16000, 1 rank: 1.9 s of system time).
                ntk_keep_heap(64 << 20, 1 << 30)
                plan = TilePlan(rows: n, columns: m ?? n, tileSize: tileSize, symmetric: m == nil, ranks: world.size, dealing: .rows)
                let rowPlan = plan
                stripeFile = try agreement.stage { () throws(NTKError) -> StripeKernelFile in
                    do {
                        return try StripeKernelFile(path: kernelPath, dataOffset: kernelDataOffset, plan: rowPlan, entry: entry,
                                                    fullLayout: options.outputKernel == .full, world: world)
                    } catch let error as NTKError {
                        throw error
                    } catch {
                        throw NTKError(.software, "MPI: \(error)")
                    }
                }
            } else {
                let mappedPlan = plan
                writer = try agreement.stage { () throws(NTKError) -> ParallelKernelFile.Writer in
                    try ParallelKernelFile.Writer(path: kernelPath, dataOffset: kernelDataOffset, plan: mappedPlan, entry: entry,
                                                  fullLayout: options.outputKernel == .full, mirror: !fillLower)
                }
            }
        }
        var sink: TileSink? = nil
        if let writer {
            sink = { (index: Int, values: [Double]) throws(NTKError) in try writer.accept(index: index, values: values) }
        }

        // Tiles: each saved as soon as it is done; a stop request ends the loop at a tile
        // boundary.
        let computer: TileComputer
        if let network {
            computer = TileComputer(network: network, plan: plan, outputKernel: options.outputKernel, method: options.engine.method, forms: options.engine.layerForms,
                                    rowData: loaded.data.values, columnData: loaded.data2?.values,
                                    cacheBytes: cacheBytes)
        } else {
            computer = TileComputer(infinite: loaded.infinite!, kind: options.kernel, outputCount: k, plan: plan,
                                    outputKernel: options.outputKernel, rowData: loaded.data.values, columnData: loaded.data2?.values)
        }

        // Per-sample quantities once across the ranks, in memory each node shares, when
        // they all fit the cache: each rank would otherwise recompute nearly all of them.
        computer.precision = options.engine.precision
        let preloadStart = Clock.now
        if network != nil && options.engine.method == .structured
            && computer.factorBytesPerSample * (n + (m ?? 0)) <= cacheBytes {
            try computer.preload(world: world)
        }
        let preloadSeconds = try world.allreduce(Clock.seconds(since: preloadStart), .max)
        let precomputedOutputs = world.isRoot ? computer.cachedOutputs(columnSet: false) : nil
        let precomputedOutputs2 = world.isRoot && m != nil ? computer.cachedOutputs(columnSet: true) : nil

        var result: DistributedKernel
        do {
            result = try computeKernel(computer: computer, plan: plan, entry: entry, rows: n * entry, columns: (m ?? n) * entry,
                                       checkpoint: checkpoint, reuse: reuse, progress: options.engine.progress, world: world,
                                       assemble: !stream, sink: sink, stream: stripeFile, keepTiles: keepTiles)
        } catch let failure as AgreedFailure {
            // Every rank stops here together: release the shared memory collectively.
            try? computer.release()
            throw failure
        }
        try computer.release()
        var streamed: (path: String, size: Int)? = nil
        var lowerTriangleSeconds: Double? = nil
        var stripeThreadSeconds: Double? = nil
        if stream {
            // Every rank has written its tiles; rank 0 syncs the file and checks its size.
            let syncStart = Clock.now
            let writeSeconds = writer?.seconds ?? stripeFile?.seconds ?? 0
            writer?.finish()
            if let stripeFile { stripeThreadSeconds = try world.allreduce(stripeFile.threadSeconds, .max) }
            try agreement.stage { () throws(NTKError) in
                guard let created else { return }
                try ParallelKernelFile.finish(path: created.path, size: created.size)
            }
            result.gatherSeconds = Clock.seconds(since: syncStart)
            if fillLower {
                let fillStart = Clock.now
                try agreement.stage { () throws(NTKError) in
                    try ParallelKernelFile.fillLowerTriangle(path: kernelPath, dataOffset: kernelDataOffset, samples: n, entry: entry, world: world)
                }
                try agreement.stage { () throws(NTKError) in
                    guard let created else { return }
                    try ParallelKernelFile.finish(path: created.path, size: created.size)
                }
                lowerTriangleSeconds = Clock.seconds(since: fillStart)
            }
            if let created { streamed = (created.path, created.size) }
            result.writeDuringTilesSeconds = try world.allreduce(writeSeconds, .max)
        }

        // The distributed solvers' kernel: the ranks' tiles, or out of core kernel.npy.
        var fileOperator: KernelFileOperator? = nil
        if outOfCore {
            fileOperator = try agreement.stage { () throws(NTKError) -> KernelFileOperator in
                try KernelFileOperator(path: kernelPath, dataOffset: kernelDataOffset, samples: n, entry: entry, world: world,
                                       panelBytes: KernelFileOperator.panelLimit)
            }
        }
        func kernelOperator(_ tiles: [Int: [Double]]) -> any KernelOperator {
            fileOperator ?? TileOperator(plan: plan, entry: entry, tiles: tiles, world: world)
        }

        // ScaLAPACK: every rank hands in its tiles; nobody holds the whole kernel.
        var distributedValues: [Double]? = nil
        var krylovReport: (cycles: Int, products: Int, blockSize: Int, residual: Double)? = nil
        var vectorsStaged = false
        var distributedSeconds: Double? = nil
        var distributedVectors: [Double]? = nil
        if stream && m == nil && options.eigen != .none && solver == .krylov {
            let start = Clock.now
            let tiles = result.tiles
            result.tiles = [:]
            let solved = try agreement.stage(quietly: true) { () throws(NTKError) -> BlockKrylov.Result in
                do {
                    return try kernelOperator(tiles).largest(options.eigenTop!)
                } catch let error as NTKError {
                    throw error
                } catch {
                    throw NTKError(.software, "block Lanczos eigensolver: \(error)")
                }
            }
            distributedValues = solved.values
            if options.eigen == .vectors { distributedVectors = solved.vectors }
            distributedSeconds = Clock.seconds(since: start)
            krylovReport = (solved.cycles, solved.products, solved.blockSize, solved.maxResidual)
        }
        // --eigen density: stochastic Lanczos quadrature on the tiles where the ranks computed
        // them (and the top K by block Lanczos with --eigen-top); no rank gathers the kernel.
        var densityReport: (density: SpectralDensity, seconds: Double)? = nil
        if let density = options.density, m == nil {
            let start = Clock.now
            let op = kernelOperator(result.tiles)
            result.tiles = [:]
            let solved = try agreement.stage(quietly: true) { () throws(NTKError) -> (StochasticLanczos.Result, BlockKrylov.Result?) in
                do {
                    // The top of the spectrum exactly (block Lanczos), the rest by quadrature.
                    let deflate = density.deflationCount(order: op.order)
                    let top = deflate > 0 ? try op.largest(deflate) : nil
                    let rules = try StochasticLanczos.run(n: op.order, probes: density.probes, steps: density.steps, seed: density.seed,
                                                          deflation: top.map { ($0.vectors, $0.values) }) { x, count in
                        try op.apply(x, count: count)
                    }
                    return (rules, density.topK == nil ? nil : top)
                } catch let error as NTKError {
                    throw error
                } catch {
                    throw NTKError(.software, "stochastic Lanczos quadrature: \(error)")
                }
            }
            if let top = solved.1 {
                distributedValues = top.values
                krylovReport = (top.cycles, top.products, top.blockSize, top.maxResidual)
            }
            densityReport = (SpectralDensity(result: solved.0, steps: density.steps), Clock.seconds(since: start))
            distributedSeconds = densityReport!.seconds
        }
        if stream && m == nil && options.eigen != .none && solver.isBlockCyclic {
            let start = Clock.now
            let order = n * entry
            let blocks = result.tiles.map { (row: plan.tiles[$0.key].row, column: plan.tiles[$0.key].column, values: $0.value) }
            result.tiles = [:]
            let solved = try agreement.stage(quietly: true) { () throws(NTKError) -> (values: [Double], vectors: BlockCyclicMatrix?) in
                do {
                    return try ScaLAPACKEigen.solve(n: order, blockSize: tileSize * entry, blocks: blocks,
                                                    vectors: options.eigen == .vectors, top: options.eigenTop,
                                                    library: solver == .elpa ? EigenSolver.elpaLibrary(vectors: options.eigen == .vectors) : .scalapack,
                                                    world: world)
                } catch let error as DistributedEigenError {
                    if case .nonFinite = error { throw NTKError(.dataError, "distributed eigendecomposition: \(error)") }
                    throw NTKError(.software, "distributed eigendecomposition: \(error)")
                } catch {
                    throw NTKError(.software, "distributed eigendecomposition: \(error)")
                }
            }
            distributedValues = solved.values
            if let vectors = solved.vectors {
                let count = solved.values.count
                let shape = [order, count]
                let created: (path: String, dataOffset: Int, size: Int)? = try agreement.stage { () throws(NTKError) -> (path: String, dataOffset: Int, size: Int)? in
                    guard world.isRoot, let output else { return nil }
                    let file = try ParallelKernelFile.create(directory: output.path, shape: shape, name: ParallelKernelFile.temporaryName("eigenvectors.npy", token: runToken))
                    output.adopt(temporary: file.path, as: "eigenvectors.npy")
                    return file
                }
                let dataOffset = NPYFormat.header(shape: shape, dtype: .float64).count
                try agreement.stage(quietly: true) { () throws(NTKError) in
                    do {
                        try ScaLAPACKEigen.writeVectors(vectors, columns: count, path: options.output + "/" + ParallelKernelFile.temporaryName("eigenvectors.npy", token: runToken),
                                                        dataOffset: dataOffset, world: world)
                    } catch {
                        throw NTKError(.ioError, "writing the eigenvectors failed: \(error)")
                    }
                }
                try agreement.stage { () throws(NTKError) in
                    guard let created else { return }
                    try ParallelKernelFile.finish(path: created.path, size: created.size)
                }
                vectorsStaged = true
            }
            distributedSeconds = Clock.seconds(since: start)
        }
        let outOfCoreReport = try fileOperator?.report()
        fileOperator = nil

        // Move the matrix out, so that mirroring it below does not copy it.
        var kernel = result.kernel
        result.kernel = []
        let rowCount = n * entry
        let columnCount = (m ?? n) * entry

        // Rank 0: finish, eigendecompose, write. The others wait quietly, leaving their
        // cores to rank 0's BLAS threads.
        let localRanks = localRanksForPlan
        try agreement.stage(quietly: true) { () throws(NTKError) in
            guard world.isRoot, let output else { return }
            try finish(options: options, loaded: loaded, plan: plan, memory: memory, solver: solver, streamedKernel: streamed?.path,
                       checkpoint: checkpoint.map { ($0, checkpointLock) },
                       distributedEigen: distributedValues.map { ($0, distributedVectors, vectorsStaged, distributedSeconds ?? 0, krylovReport) },
                       density: densityReport, storage: usesOperator ? (outOfCore ? .disk : .memory) : nil, outOfCore: outOfCoreReport,
                       outputs: (precomputedOutputs, precomputedOutputs2),
                       kernel: &kernel, rows: rowCount, columns: columnCount,
                       output: output, ranks: world.size, localRanks: localRanks, tilesReused: result.reused,
                       seconds: ["load": loadSeconds, "gradients": result.gradientSeconds, "tile_products": result.productSeconds,
                                 "tiles": result.tileSeconds, "gather": result.gatherSeconds,
                                 "per_sample_shared": preloadSeconds]
                                 .merging(stream ? ["write_tiles": result.writeDuringTilesSeconds] : [:]) { a, _ in a }
                                 .merging(lowerTriangleSeconds.map { ["lower_triangle": $0] } ?? [:]) { a, _ in a }
                                 .merging(stripeThreadSeconds.map { ["write_thread": $0] } ?? [:]) { a, _ in a },
                       totalStart: totalStart)
        }
    }

    /// Receives each tile of this rank as soon as it is done (or reused).
    typealias TileSink = (Int, [Double]) throws(NTKError) -> Void

    /// A kernel assembled on rank 0, and what it cost.
    struct DistributedKernel {
        /// Row-major (rows, columns) on rank 0 (upper tiles only when symmetric; empty elsewhere).
        var kernel: [Double]
        /// This rank's tiles, when they were not gathered (`assemble: false`).
        var tiles: [Int: [Double]] = [:]
        var reused: Int
        var gradientSeconds: Double
        var productSeconds: Double
        var tileSeconds: Double
        var gatherSeconds: Double
        /// Seconds spent writing tiles into the kernel file inside the tile loop.
        var writeDuringTilesSeconds: Double = 0
    }

    /// Computes this rank's tiles (saving each to `checkpoint`, reusing verified saved
    /// ones when `reuse`), stops at a tile boundary on a stop request (every rank then
    /// throws `AgreedFailure` with status 75), and gathers all tiles on rank 0.
    /// Collective.
    static func computeKernel(computer: TileComputer, plan: TilePlan, entry: Int, rows: Int, columns: Int,
                              checkpoint: Checkpoint?, reuse: Bool, progress progressOption: Bool?,
                              world: Communicator, assemble: Bool = true, sink: TileSink? = nil,
                              stream: TileStream? = nil, keepTiles: Bool = true) throws -> DistributedKernel {
        let agreement = Agreement(world: world)
        let mine = plan.tileIndices(ofRank: world.rank)
        let progress = Progress(enabled: world.isRoot && (progressOption ?? true), explicit: progressOption == true,
                                totalTiles: plan.tiles.count, myTiles: mine.count, ranks: world.size)
        let delay = ProcessInfo.processInfo.environment["NTK_TILE_DELAY_MS"].flatMap { UInt32($0) } ?? 0
        let tilesStart = Clock.now
        var values: [Int: [Double]] = [:]
        var reused = 0
        var stopSignal: Int32? = nil
        var saveError: NTKError? = nil
        var doneCount = 0
        // A stop request on any rank reaches every rank at its next tile boundary.
        let notice = try StopNotice(world: world)
        // Tiles reach the checkpoint from a thread of its own, while the next ones are computed.
        let saver = checkpoint?.backgroundSaver()
        for (done, index) in mine.enumerated() {
            if let signal = Interruption.requested { try notice.raise(code: signal); stopSignal = signal; break }
            if let code = try notice.poll() { stopSignal = code; break }
            let tile = plan.tiles[index]
            let count = plan.rowRange(tile.row).count * plan.columnRange(tile.column).count * entry * entry
            let tileValues: [Double]
            if reuse, let saved = checkpoint?.load(index: index, tile: tile, count: count) {
                tileValues = saved
                reused += 1
            } else {
                tileValues = computer.compute(tile)
                if delay > 0 { usleep(delay * 1000) }
                do { try saver?.submit((index, tile, tileValues)) } catch { saveError = error; break }
            }
            if let sink {
                do { try sink(index, tileValues) } catch { saveError = error; break }
            }
            if let stream {
                do { try stream.accept(index: index, values: tileValues) } catch { saveError = error; break }
            }
            if keepTiles { values[index] = tileValues }
            doneCount += 1
            progress.update(done: done + 1)
        }
        if mine.isEmpty { progress.update(done: 0) }
        // Every queued tile on disk before any rank reports a stop or moves on.
        if let failure = saver?.finish(), saveError == nil { saveError = failure }
        // Ranks that are done wait for the others without a core, passing on a stop
        // request that arrives meanwhile; then every rank knows whether any rank stopped.
        try notice.waitForAll { () throws(MPIError) in
            if let signal = Interruption.requested { try notice.raise(code: signal) }
            try stream?.poll()
        }
        if let code = try notice.close(), stopSignal == nil { stopSignal = code }
        // The stream's messages in flight, and its writes: collective, whatever happened.
        var streamFailure: NTKError? = nil
        if let stream {
            let (failure, incomplete) = try stream.finish()
            streamFailure = failure
            let anyFailure = try world.allreduce(Int32(saveError != nil || stopSignal != nil || failure != nil ? 1 : 0), .max) == 1
            if incomplete > 0 && !anyFailure {
                streamFailure = NTKError(.software, "\(incomplete) row blocks of the kernel file were not complete after every tile was computed")
            }
        }
        try agreement.stage(quietly: true) { () throws(NTKError) in
            if let saveError { throw saveError }
            if let streamFailure, stopSignal == nil { throw streamFailure }
            if let stopSignal {
                let saved = checkpoint == nil
                    ? "nothing was saved (checkpointing is off)"
                    : "the finished tiles are saved in \(checkpoint!.directory): rerun the same command with --resume to continue"
                throw NTKError(.interrupted, "stopped by \(Interruption.name(stopSignal)) after \(doneCount) of this rank's \(mine.count) tiles; \(saved)")
            }
        }
        let reusedTotal = try world.allreduce(Int64(reused), .sum)
        let tileSeconds = Clock.seconds(since: tilesStart)
        let gradientSeconds = try world.allreduce(computer.gradientSeconds, .max)
        let productSeconds = try world.allreduce(computer.productSeconds, .max)
        let tileWallSeconds = try world.allreduce(tileSeconds, .max)

        if !assemble {
            return DistributedKernel(kernel: [], tiles: values, reused: Int(reusedTotal), gradientSeconds: gradientSeconds,
                                     productSeconds: productSeconds, tileSeconds: tileWallSeconds, gatherSeconds: 0)
        }
        // Gather to rank 0.
        let gatherStart = Clock.now
        var kernel: [Double] = world.isRoot ? [Double](repeating: 0, count: rows * columns) : []
        try gather(plan: plan, entry: entry, values: &values, into: &kernel, columns: columns, world: world)
        let gatherSeconds = Clock.seconds(since: gatherStart)
        return DistributedKernel(kernel: kernel, reused: Int(reusedTotal), gradientSeconds: gradientSeconds,
                                 productSeconds: productSeconds, tileSeconds: tileWallSeconds, gatherSeconds: gatherSeconds)
    }


    /// Reads the inputs of `options`, sized by `inputs` (inspected first when nil, and then
    /// checked against this process's available memory: the commands without a tile
    /// memory plan).
    static func load(_ options: GramOptions, inputs planned: InputPlan? = nil) throws(NTKError) -> Loaded {
        let inputs: InputPlan
        if let planned {
            inputs = planned
        } else {
            inputs = try InputPlan.inspect(data: options.data, data2: options.data2, model: options.model,
                                           parameters: options.kernel == .empirical ? options.parameters : nil)
            try inputs.check(available: MemoryPlan.availableBytes())
        }
        let data = try Inputs.dataSet(options.data, role: "--data")
        var data2: DataSet? = nil
        if let path = options.data2 { data2 = try Inputs.dataSet(path, role: "--data2") }
        let spec = inputs.spec
        if options.kernel != .empirical {
            do {
                let infinite = try InfiniteWidthKernel(spec: spec, inputShape: data.sampleShape)
                return Loaded(data: data, data2: data2, spec: spec, network: nil, infinite: infinite)
            } catch {
                throw NTKError(.dataError, "the \(options.kernel.rawValue) kernel of this model is not defined: \(error.message)")
            }
        }
        let network: Network
        switch options.parameters {
        case .seed(let seed): network = Network.initialized(spec: spec, inputShape: data.sampleShape, seed: seed)
        case .file(let path):
            do {
                network = try Inputs.network(spec: spec, inputShape: data.sampleShape, parametersPath: path)
            } catch {
                // Name the likely cause when the first layer's fan-in is what disagrees.
                if error.message.contains("W0 has shape") {
                    throw NTKError(error.status, error.message + " (the data has d = \(data.width) features per sample)")
                }
                throw error
            }
        }
        return Loaded(data: data, data2: data2, spec: spec, network: network, infinite: nil)
    }

    /// Moves every tile to rank 0 in chunks of row blocks. Collective.
    static func gather(plan: TilePlan, entry: Int, values: inout [Int: [Double]], into kernel: inout [Double],
                       columns: Int, world: Communicator) throws {
        for chunk in plan.gatherChunks(entrySize: entry) {
            var send: [Double] = []
            for index in chunk where values[index] != nil {
                send.append(contentsOf: values[index]!)
                values[index] = nil
            }
            var counts = [Int](repeating: 0, count: world.size)
            for index in chunk {
                let tile = plan.tiles[index]
                counts[plan.owner(ofTile: index)] += plan.rowRange(tile.row).count * plan.columnRange(tile.column).count * entry * entry
            }
            if world.isRoot {
                var receive = [Double](repeating: 0, count: counts.reduce(0, +))
                try send.withUnsafeBufferPointer { s in
                    try receive.withUnsafeMutableBufferPointer { r in
                        try world.gatherv(send: s, counts: counts, root: 0, receive: r)
                    }
                }
                // Rank order, then tile order within a rank: the order of `chunk`.
                var offset = 0
                for index in chunk {
                    let tile = plan.tiles[index]
                    let rows = plan.rowRange(tile.row), cols = plan.columnRange(tile.column)
                    let width = cols.count * entry
                    for r in 0..<(rows.count * entry) {
                        let destination = (rows.lowerBound * entry + r) * columns + cols.lowerBound * entry
                        for c in 0..<width { kernel[destination + c] = receive[offset + r * width + c] }
                    }
                    offset += rows.count * entry * width
                }
            } else {
                try send.withUnsafeBufferPointer { s in
                    try world.gatherv(send: s, counts: counts, root: 0, receive: nil)
                }
            }
        }
    }

    /// Rank 0's part after the gather: mirror, check, eigendecompose, write, report.
    static func finish(options: GramOptions, loaded: Loaded, plan: TilePlan, memory: MemoryPlan, solver: EigenSolver, streamedKernel: String?,
                       checkpoint: (Checkpoint, DirectoryLock?)?,
                       distributedEigen: (values: [Double], vectors: [Double]?, vectorsStaged: Bool, seconds: Double,
                                          krylov: (cycles: Int, products: Int, blockSize: Int, residual: Double)?)?,
                       density: (density: SpectralDensity, seconds: Double)? = nil,
                       storage: KernelStorage? = nil, outOfCore: GramSummary.OutOfCore? = nil,
                       outputs precomputed: ([Double]?, [Double]?),
                       kernel: inout [Double], rows: Int, columns: Int,
                       output: OutputDirectory, ranks: Int, localRanks: Int, tilesReused: Int, seconds: [String: Double],
                       totalStart: UInt64) throws(NTKError) {
        var seconds = seconds
        let network = loaded.network
        let k = loaded.spec.outputCount
        let entry = options.outputKernel == .full ? k : 1
        if plan.symmetric && streamedKernel == nil {
            for i in 0..<rows { for j in (i + 1)..<rows { kernel[j * rows + i] = kernel[i * rows + j] } }
        }
        if streamedKernel == nil, let bad = kernel.firstIndex(where: { !$0.isFinite }) {
            throw NTKError(.dataError, "the kernel has a non-finite entry at (\(bad / columns), \(bad % columns)): the network overflows on this data; rescale the inputs or the parameters")
        }

        // Eigendecomposition with the cores of this node's idle ranks.
        var eigen: SymmetricEigen? = nil
        if let distributedEigen {
            eigen = SymmetricEigen(values: distributedEigen.values, vectors: distributedEigen.vectors)
            seconds["eigen"] = distributedEigen.seconds
        } else if plan.symmetric && options.eigen != .none {
            let start = Clock.now
            BLASLibrary.setThreadCount(localRanks)
            defer { BLASLibrary.setThreadCount(1) }
            do {
                eigen = try SymmetricEigen.compute(matrix: kernel, n: rows, vectors: options.eigen == .vectors)
            } catch {
                switch error {
                case .overflow, .nonFinite:
                    throw NTKError(.dataError, "eigendecomposition: \(error): the network's outputs are too large on this data; rescale the inputs or the parameters, or use --eigen none")
                default: throw NTKError(.software, "eigendecomposition: \(error)")
                }
            }
            seconds["eigen"] = Clock.seconds(since: start)
            if let top = options.topCount, var full = eigen, top < full.n {
                // The K largest pairs, still ascending.
                let n = full.n
                let keep = (n - top)..<n
                if let v = full.vectors {
                    var kept = [Double](repeating: 0, count: n * top)
                    for i in 0..<n { for (c, j) in keep.enumerated() { kept[i * top + c] = v[i * n + j] } }
                    full.vectors = kept
                }
                full.values = Array(full.values[keep])
                eigen = full
            }
        }

        let writeStart = Clock.now
        let n = loaded.data.count
        let m = loaded.data2?.count
        let shape: [Int] = entry == 1 ? [n, m ?? n] : [n, m ?? n, k, k]
        var files: [String] = []
        // Arrays are streamed to the files: no copy of the kernel is made to write it.
        func stage(_ name: String, shape: [Int], _ values: [Double]) throws(NTKError) {
            try output.stageNPY(name, shape: shape, values: values)
            files.append(name)
        }
        if streamedKernel != nil {
            files.append("kernel.npy")  // written by every rank, staged already
        } else {
            try stage("kernel.npy", shape: shape, entry == 1 ? kernel : permuteFull(kernel, n: n, m: m ?? n, k: k))
        }
        if let eigen {
            try stage("eigenvalues.npy", shape: [eigen.n], eigen.values)
            if let v = eigen.vectors { try stage("eigenvectors.npy", shape: [v.count / max(1, eigen.n), eigen.n], v) }
            if distributedEigen?.vectorsStaged == true { files.append("eigenvectors.npy") }
            try output.stage("spectrum.csv", SpectralReport.csv(eigenvalues: eigen.values))
            files.append("spectrum.csv")
            files += try output.stagePlot("spectrum", SpectralReport.spectrumPlot(
                eigenvalues: eigen.values, title: options.topCount.map { "NTK spectrum: the top \($0) eigenvalues" } ?? "NTK spectrum"))
        }
        // f(X) comes with the per-sample quantities when they were computed for every
        // sample; otherwise one more forward pass.
        if let network {
            try stage("outputs.npy", shape: [n, k], precomputed.0 ?? network.outputs(loaded.data.values, count: n))
        }
        if let network, let data2 = loaded.data2 {
            try stage("outputs2.npy", shape: [data2.count, k], precomputed.1 ?? network.outputs(data2.values, count: data2.count))
        }
        seconds["write"] = Clock.seconds(since: writeStart)
        seconds["total"] = Clock.seconds(since: totalStart)

        var spectrum: GramSummary.Spectrum? = nil
        if let density {
            try output.stage("spectrum_density.csv", density.density.csv)
            files.append("spectrum_density.csv")
            files += try output.stagePlot("spectrum_density", density.density.plot)
            seconds["density"] = density.seconds
        }
        if let eigen, let lo = eigen.values.first, let hi = eigen.values.last {
            // With --eigen-top only the largest values are known: no condition number.
            spectrum = GramSummary.Spectrum(min: lo, max: hi, trace: eigen.values.reduce(0, +),
                                            conditionNumber: lo > 0 && options.topCount == nil ? hi / lo : nil)
        }
        var summary = GramSummary(method: options.engine.method.rawValue, outputKernel: options.outputKernel.rawValue,
                                  n: n, m: m, inputWidth: loaded.data.width, outputs: k,
                                  parameters: network?.parameterCount ?? 0, parameterization: loaded.spec.parameterization.rawValue,
                                  kernelShape: shape, ranks: ranks, tileSize: plan.tileSize, tiles: plan.tiles.count, tilesReused: tilesReused,
                                  blasCore: BLASLibrary.coreName, seconds: seconds, spectrum: spectrum,
                                  files: files + ["summary.json"])
        summary.kernel = options.kernel.rawValue
        summary.blasCoreChoice = BLASLibrary.coreChoice(environment: ProcessInfo.processInfo.environment)
        if distributedEigen == nil && plan.symmetric && options.eigen != .none { summary.blasThreadsEigen = localRanks }
        if let density {
            summary.density = density.density.summary
            if let top = distributedEigen?.values, top.count >= 2,
               let fit = try? SpectralDiagnostics(eigenvalues: top, decayFitModes: top.count) {
                summary.density?.decayExponent = fit.decayExponent
                summary.density?.decayFitModes = fit.decayFitModes
            }
        }
        summary.kernelStorage = storage?.rawValue
        summary.outOfCore = outOfCore
        if density != nil && distributedEigen != nil { summary.eigenSolver = EigenSolver.krylov.rawValue }
        if plan.symmetric && options.eigen != .none {
            if solver == .elpa, case .elpa(let stage) = EigenSolver.elpaLibrary(vectors: options.eigen == .vectors) {
                summary.eigenSolver = "elpa-\(stage)stage"
            } else {
                summary.eigenSolver = solver.rawValue
            }
        }
        if let krylov = distributedEigen?.krylov {
            summary.krylov = GramSummary.Krylov(cycles: krylov.cycles, blockProducts: krylov.products, blockSize: krylov.blockSize,
                                                maxResidual: krylov.residual)
        }
        if options.engine.precision == .f32 { summary.method += " (float32 products)" }
        summary.memoryEstimate = ["rank0_bytes": Double(memory.rank0Bytes), "other_rank_bytes": Double(memory.otherRankBytes)]
        if let network = loaded.network.map({ TileComputer.effective($0, method: options.engine.method, outputKernel: options.outputKernel,
                                                                      forms: options.engine.layerForms) }) {
            summary.layers = network.geometry.map {
                GramSummary.LayerRecord(layer: $0.path, positions: $0.positions, form: options.engine.method == .explicit ? "explicit" : $0.form.rawValue,
                                        collapsed: $0.collapsed)
            }
            if options.engine.method == .structured && options.outputKernel != .full {
                let work = network.plan.multiplyAdds(outputs: k)
                summary.work = ["pair_multiply_adds": work.perPair, "per_sample_multiply_adds": work.perSample]
            }
        }
        if let eigen, !eigen.values.isEmpty {
            if options.topCount == nil { summary.diagnostics = try? SpectralDiagnostics(eigenvalues: eigen.values) }
            // For the mean kernel every output shares Θ; the loss normalizes by c = N·k.
            let c = Double(loaded.data.count * k)
            if let top = eigen.values.last, top > 0 {
                summary.maxStableLearningRate = GradientDescentMSE.maxStableLearningRate(lambdaMax: top, normalization: c)
            }
        }
        if options.kernel != .empirical { summary.method = "closed form / quadrature" }
        try output.stage("summary.json", try JSONOutput.encode(summary))
        try output.commit()
        if let (checkpoint, lock) = checkpoint {
            checkpoint.remove(directoryToo: options.engine.checkpointDirectory == nil, lock: lock)
        }
        if !options.quiet { Report.summary(summary, directory: output.path) }
    }

    /// (N·k, M·k) with row i·k + a, column j·k + b  →  (N, M, k, k) C order.
    static func permuteFull(_ matrix: [Double], n: Int, m: Int, k: Int) -> [Double] {
        var result = [Double](repeating: 0, count: matrix.count)
        for i in 0..<n { for j in 0..<m { for a in 0..<k { for b in 0..<k {
            result[((i * m + j) * k + a) * k + b] = matrix[(i * k + a) * (m * k) + j * k + b]
        } } } }
        return result
    }
}

/// The empirical kernel computed in this process alone, by the same tiles as a
/// distributed run (for library users and tests).
public enum EmpiricalKernel {
    /// Θ(X, X2) (or Θ(X, X) when `x2` is nil) as a row-major (N·k', M·k') matrix, k' = k
    /// for the full kernel (row i·k + a, column j·k + b) and 1 otherwise. A symmetric
    /// kernel is mirrored from its upper triangle, so it is exactly symmetric.
    public static func compute(network: Network, x: DataSet, x2: DataSet? = nil, outputKernel: OutputKernel = .mean,
                               method: GradientMethod = .structured, precision: Precision = .f64,
                               tileSize: Int = GramOptions.defaultTileSize) -> [Double] {
        let plan = TilePlan(rows: x.count, columns: x2?.count ?? x.count, tileSize: tileSize, symmetric: x2 == nil, ranks: 1)
        let computer = TileComputer(network: network, plan: plan, outputKernel: outputKernel, method: method,
                                    rowData: x.values, columnData: x2?.values, cacheBytes: 1 << 30)
        computer.precision = method == .structured ? precision : .f64
        let entry = computer.entrySize == 1 ? 1 : network.outputCount
        let rows = x.count * entry, columns = (x2?.count ?? x.count) * entry
        var kernel = [Double](repeating: 0, count: rows * columns)
        for tile in plan.tiles {
            let values = computer.compute(tile)
            let r = plan.rowRange(tile.row), c = plan.columnRange(tile.column)
            let width = c.count * entry
            for i in 0..<(r.count * entry) {
                for j in 0..<width { kernel[(r.lowerBound * entry + i) * columns + c.lowerBound * entry + j] = values[i * width + j] }
            }
        }
        if plan.symmetric {
            for i in 0..<rows { for j in (i + 1)..<rows { kernel[j * rows + i] = kernel[i * rows + j] } }
        }
        return kernel
    }
}
