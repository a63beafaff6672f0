import Foundation
import MPI
import Network
import NumPyIO

/// How every command computes its kernels: one value, set once from the command line and
/// passed down unchanged.
public struct EngineOptions: Sendable {
    /// Samples per tile side (when `automaticTile` is off).
    public var tileSize = EngineOptions.defaultTileSize
    /// Choose the tile side from the data's size (no --tile given): see `tileSize(rows:columns:)`.
    public var automaticTile = false
    public var method: GradientMethod = .structured
    /// How the parameterized layers keep their per-sample factors (`FactorForms`; docs/maths.md §6).
    public var layerForms: FactorForms = .auto
    /// float64 (default) or float32 tile products (structured method only).
    public var precision: Precision = .f64
    /// Bound on the per-sample quantities, in MiB.
    public var cacheMegabytes = 2048
    /// No --cache-mb given: the bound grows to hold all per-sample quantities when they fit
    /// comfortably (see `cacheBytes(perSampleBytes:samples:localRanks:)`).
    public var automaticCache = false
    /// Save finished tiles (default on).
    public var checkpointing = true
    /// Where finished tiles go; nil means `<output>/checkpoint`.
    public var checkpointDirectory: String?
    /// Reuse verified tiles of an earlier, interrupted run with the same inputs.
    public var resume = false
    /// The memory the node of rank 0 may use, in bytes; nil reads MemAvailable (and the
    /// cgroup limit).
    public var memoryBudget: Int?
    /// Progress lines on stderr: nil is the default (see `Progress`), true asks for them
    /// every second, false turns them off.
    public var progress: Bool?

    public static let defaultTileSize = 256

    /// The tile side for a kernel of `rows` x `columns` samples: the given one, or
    /// automatically 256, lowered for sets of fewer than `blocks` x 256 samples to about
    /// 1/`blocks` of the larger side, rounded up to a multiple of 16 (whole register blocks
    /// of the tile kernels), so that the ranks get balanced work: N = 400 gets 112 with 4
    /// blocks (10 tiles instead of 3 of 256). Infinite-width kernels, whose tiles cost more
    /// per pair and nothing per sample, ask for 8 blocks. It depends on the sizes only, so a
    /// resumed run at another rank count finds the same tiles.
    public func tileSize(rows: Int, columns: Int, blocks: Int = 4) -> Int {
        guard automaticTile else { return tileSize }
        let larger = Swift.max(rows, columns)
        if larger >= blocks * Self.defaultTileSize { return Self.defaultTileSize }
        return Swift.max(16, ((larger + blocks - 1) / blocks + 15) / 16 * 16)
    }

    public init() {}

    /// The checkpoint directory of a job writing into `output`.
    public func checkpointDirectory(output: String) -> String { checkpointDirectory ?? output + "/checkpoint" }

    /// The memory rank 0's node may use (the budget, else what the system reports).
    var availableBytes: Int? { memoryBudget ?? MemoryPlan.availableBytes() }

    /// The bound on the per-sample quantities of `samples` samples: --cache-mb, or without it
    /// all of them when they take at most 40% of the memory available (one copy the node's
    /// ranks share, or one per rank when /dev/shm has no room), else 2 GiB. Holding them all
    /// means each is computed once instead of once per tile row (a CNN's explicit gradients
    /// take megabytes per sample: at N = 1797 the 2 GiB bound recomputed them for half the run).
    public func cacheBytes(perSampleBytes: Double, samples: Int, localRanks: Int) -> Int {
        let given = cacheMegabytes << 20
        guard automaticCache, let available = availableBytes else { return given }
        let all = perSampleBytes * Double(samples)
        let shared = Double(TileComputer.sharedMemoryRoom() ?? 0) >= all * 1.125
        let copies = Double(shared ? 1 : Swift.max(localRanks, 1))
        guard all * copies <= 0.4 * Double(available) else { return given }
        return Swift.max(given, Int(all.rounded(.up)) + 1)
    }
}

/// The kernels of a job that needs them gathered on rank 0 (`predict`, `train`,
/// `converge`): the same tile loop, per-sample sharing, checkpoints, resume and stop
/// requests as `gram`, one named kernel at a time.
///
/// Each kernel keeps its tiles in a checkpoint of its own, `<checkpoint>/<name>`, bound to
/// a manifest of what it is computed from; `--resume` reuses the verified ones. The
/// checkpoints are removed by `finish` once the job's results are committed.
final class TileEngine {
    let options: EngineOptions
    let world: Communicator
    let output: String
    private var prepared: [(checkpoint: Checkpoint, lock: DirectoryLock?)] = []

    init(options: EngineOptions, output: String, world: Communicator) {
        self.options = options
        self.output = output
        self.world = world
    }

    /// Refuses (64), on every rank, a job whose rank-0 peak `bytes` exceeds the memory
    /// available to rank 0's node; `what` names the job's large arrays. Collective.
    func checkMemory(_ bytes: Double, what: String) throws {
        let localRanks = (try? world.nodeLocal().size) ?? 1
        let budget = options.availableBytes
        try Agreement(world: world).stage { () throws(NTKError) in
            guard world.isRoot, let available = budget else { return }
            let needed = bytes + Double(max(0, localRanks - 1)) * Double(MemoryPlan.baseline)
            if needed > Double(available) {
                throw NTKError(.usage, "this run needs about \(MemoryPlan.format(needed)) on rank 0's node (\(what)) but \(MemoryPlan.format(Double(available))) is available; use fewer samples, a smaller network, or a node with more memory")
            }
        }
    }

    /// Kernel `name` computed by `computer` over `plan`, gathered on rank 0 (a symmetric
    /// kernel mirrored from its upper tiles; empty on the other ranks). Collective; a stop
    /// request ends it on every rank with status 75, its finished tiles saved.
    /// `entry` is k for the full kernel ((N·k, M·k), row i·k + a), else 1.
    func gathered(_ name: String, computer: TileComputer, plan: TilePlan, entry: Int = 1, manifest: Checkpoint.Manifest) throws -> [Double] {
        var kernel = try compute(name, computer: computer, plan: plan, entry: entry, manifest: manifest, assemble: true).kernel
        if plan.symmetric && world.isRoot {
            let order = plan.rows * entry
            for i in 0..<order { for j in (i + 1)..<order { kernel[j * order + i] = kernel[i * order + j] } }
        }
        return kernel
    }

    /// Kernel `name` as an operator on the tiles where the ranks computed them: no rank
    /// gathers it. Collective, with checkpoints and stop requests as `gathered`.
    func distributed(_ name: String, computer: TileComputer, plan: TilePlan, entry: Int = 1, manifest: Checkpoint.Manifest) throws -> TileOperator {
        let tiles = try compute(name, computer: computer, plan: plan, entry: entry, manifest: manifest, assemble: false).tiles
        return TileOperator(plan: plan, entry: entry, tiles: tiles, world: world)
    }

    /// Kernel `name` out of core: every rank writes its tiles into `<output>/<file>` as it
    /// computes them (keeping none), and the returned operator streams the file back for
    /// every product (`KernelFileOperator`). Rank 0 stages the file in `directory`, so a
    /// failed run removes it; the caller commits it as a result or `drop`s it. Collective,
    /// with checkpoints and stop requests as `gathered`.
    /// A symmetric kernel's file holds its upper tiles only (the operator needs no more)
    /// unless `complete`, when its lower triangle is filled in afterwards
    /// (`ParallelKernelFile.fillLowerTriangle`).
    func streamed(_ name: String, computer: TileComputer, plan: TilePlan, manifest: Checkpoint.Manifest, file: String,
                  directory: OutputDirectory?, complete: Bool) throws -> KernelFileOperator {
        let agreement = Agreement(world: world)
        let token = try world.allreduce(Int64(world.isRoot ? Int(getpid()) : 0), .sum)
        let shape = [plan.rows, plan.columns]
        let temporary = ParallelKernelFile.temporaryName(file, token: token)
        let created = try agreement.stage { () throws(NTKError) -> (path: String, dataOffset: Int, size: Int)? in
            guard world.isRoot, let directory else { return nil }
            let created = try ParallelKernelFile.create(directory: directory.path, shape: shape, name: temporary)
            directory.adopt(temporary: created.path, as: file)
            return created
        }
        let path = output + "/" + temporary
        let dataOffset = NPYFormat.header(shape: shape, dtype: .float64).count
        let writer = try agreement.stage { () throws(NTKError) -> ParallelKernelFile.Writer in
            try ParallelKernelFile.Writer(path: path, dataOffset: dataOffset, plan: plan, entry: 1, fullLayout: false, mirror: !plan.symmetric)
        }
        _ = try compute(name, computer: computer, plan: plan, entry: 1, manifest: manifest, assemble: false,
                        sink: { (index: Int, values: [Double]) throws(NTKError) in try writer.accept(index: index, values: values) },
                        keepTiles: false)
        writer.finish()
        try agreement.stage { () throws(NTKError) in
            guard let created else { return }
            try ParallelKernelFile.finish(path: created.path, size: created.size)
        }
        if plan.symmetric && complete {
            try agreement.stage { () throws(NTKError) in
                try ParallelKernelFile.fillLowerTriangle(path: path, dataOffset: dataOffset, samples: plan.rows, entry: 1, world: world)
            }
            try agreement.stage { () throws(NTKError) in
                guard let created else { return }
                try ParallelKernelFile.finish(path: created.path, size: created.size)
            }
        }
        return try agreement.stage { () throws(NTKError) -> KernelFileOperator in
            try KernelFileOperator(path: path, dataOffset: dataOffset, samples: plan.rows, columnSamples: plan.symmetric ? nil : plan.columns,
                                   entry: 1, world: world, panelBytes: KernelFileOperator.panelLimit)
        }
    }

    private func compute(_ name: String, computer: TileComputer, plan: TilePlan, entry: Int, manifest: Checkpoint.Manifest,
                         assemble: Bool, sink: GramJob.TileSink? = nil, keepTiles: Bool = true) throws -> GramJob.DistributedKernel {
        let agreement = Agreement(world: world)
        let directory = options.checkpointDirectory(output: output) + "/" + name
        let (reusable, lock): (Bool, DirectoryLock?) = try agreement.stage { () throws(NTKError) -> (Bool, DirectoryLock?) in
            guard world.isRoot, options.checkpointing else { return (false, nil) }
            return try Checkpoint.prepare(directory: directory, manifest: manifest, resume: options.resume)
        }
        let reuse = try world.allreduce(Int32(reusable ? 1 : 0), .max) == 1
        let checkpoint = options.checkpointing ? Checkpoint(directory: directory, manifest: manifest) : nil
        if let checkpoint { prepared.append((checkpoint, lock)) }
        computer.precision = options.precision
        let rows = plan.rows, columns = plan.columns
        let samples = rows + (plan.symmetric ? 0 : columns)
        let localRanks = computer.network == nil ? 1 : try world.nodeLocal().size
        if computer.network != nil && options.method == .structured
            && computer.factorBytesPerSample * samples <= options.cacheBytes(perSampleBytes: Double(computer.factorBytesPerSample),
                                                                               samples: samples, localRanks: localRanks) {
            try computer.preload(world: world)
        }
        let result: GramJob.DistributedKernel
        do {
            result = try GramJob.computeKernel(computer: computer, plan: plan, entry: entry, rows: rows * entry, columns: columns * entry,
                                               checkpoint: checkpoint, reuse: reuse, progress: options.progress, world: world,
                                               assemble: assemble, sink: sink, keepTiles: keepTiles)
        } catch let failure as AgreedFailure {
            try? computer.release()
            throw failure
        }
        try computer.release()
        return result
    }

    /// Removes the kernels' checkpoints (rank 0, after the results are committed), and the
    /// default checkpoint directory when it is left empty.
    func finish() {
        guard world.isRoot else { return }
        for (checkpoint, lock) in prepared { checkpoint.remove(directoryToo: true, lock: lock) }
        prepared = []
        if options.checkpointDirectory == nil { rmdir(options.checkpointDirectory(output: output)) }
    }

    /// The manifest of a kernel of `network` (or of the infinite-width `kind`) between
    /// `rows` and `columns` (nil: symmetric).
    func manifest(rows: DataSet, columns: DataSet?, spec: ModelSpec, network: Network?, kind: KernelKind, plan: TilePlan,
                  outputKernel: OutputKernel = .mean) -> Checkpoint.Manifest {
        Checkpoint.Manifest(
            n: rows.count, m: columns?.count, inputWidth: rows.width, tileSize: plan.tileSize, tiles: plan.tiles.count,
            outputKernel: outputKernel.rawValue, kernel: kind.rawValue,
            method: kind == .empirical ? options.method.rawValue : "none", precision: options.precision.rawValue,
            dataHash: Checkpoint.fingerprint(rows.values), data2Hash: columns.map { Checkpoint.fingerprint($0.values) },
            modelHash: Checkpoint.fingerprint(spec.encodeJSON()),
            parametersHash: network.map { Checkpoint.fingerprint($0.flatParameters) } ?? "none")
    }
}
