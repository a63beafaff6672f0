import Foundation
import LearningDynamics
import LinearAlgebra
import MPI
import Network
import NumPyIO

/// The spread of an ensemble of empirical kernels, recorded in summary.json.
public struct EnsembleSummary: Codable, Sendable {
    public var seeds: [UInt64]
    /// ‖s‖_F / ‖Θ̄‖_F, with s the entrywise standard deviation over the draws (n − 1 in the
    /// denominator) and Θ̄ their mean: how far one draw's kernel typically is from the mean.
    public var relativeSpread: Double
    /// ‖Θ_s − Θ̄‖_F / ‖Θ̄‖_F for each draw, in the order of `seeds`.
    public var relativeDistances: [Double]

    enum CodingKeys: String, CodingKey {
        case seeds, relativeSpread = "relative_spread", relativeDistances = "relative_distances"
    }
}

/// `ntk gram --seeds S1,S2,…`: the empirical NTK averaged over parameter draws, in one run
/// (neural-tangents' `monte_carlo_kernel_fn`), with the spread across draws.
///
/// Each draw's kernel is computed by the tile engine (checkpoints, resume and stop requests
/// per draw) and gathered on rank 0, which keeps the running mean and the draws' sum of
/// squares (Welford's update, so the spread does not cancel). The mean is written as
/// kernel.npy, its eigendecomposition by LAPACK as for `gram`.
public enum EnsembleJob {
    public static func run(_ options: GramOptions, seeds: [UInt64], world: Communicator) -> ExitStatus {
        JobRunner.run(world: world) { try execute(options, seeds: seeds, world: world) }
    }

    static func execute(_ options: GramOptions, seeds: [UInt64], world: Communicator) throws {
        let agreement = Agreement(world: world)
        let start = Clock.now
        BLASLibrary.setThreadCount(1)
        let inputs: InputPlan = try agreement.stage { () throws(NTKError) -> InputPlan in
            try InputPlan.inspect(data: options.data, data2: options.data2, model: options.model, parameters: .seed(0))
        }
        let n = inputs.n, m = inputs.m
        let columns = m ?? n
        let k = inputs.spec.outputCount
        let entry = options.outputKernel == .full ? k : 1
        let engine = TileEngine(options: options.engine, output: options.output, world: world)
        // Rank 0: the mean, the sum of squares, one draw, and LAPACK's copies.
        let kernelBytes = 8 * Double(n * entry) * Double(columns * entry)
        try engine.checkMemory(Double(MemoryPlan.baseline) + inputs.bytes + 5 * kernelBytes,
                               what: "the mean kernel, its sum of squares, one draw and the eigendecomposition's copies")
        var gram = options
        gram.kernel = .empirical
        let loaded: GramJob.Loaded = try agreement.stage { () throws(NTKError) -> GramJob.Loaded in
            try GramJob.load(gram, inputs: inputs)
        }
        let output: OutputDirectory? = try agreement.stage { () throws(NTKError) -> OutputDirectory? in
            guard world.isRoot else { return nil }
            return try OutputDirectory(path: options.output, force: options.force)
        }
        let plan = TilePlan(rows: n, columns: columns, tileSize: options.engine.tileSize(rows: n, columns: columns), symmetric: m == nil, ranks: world.size)
        var mean: [Double] = [], squares: [Double] = []
        var kernels: [[Double]] = []
        for (draw, seed) in seeds.enumerated() {
            let network = Network.initialized(spec: loaded.spec, inputShape: loaded.data.sampleShape, seed: seed)
            let computer = TileComputer(network: network, plan: plan, outputKernel: options.outputKernel, method: options.engine.method, forms: options.engine.layerForms,
                                        rowData: loaded.data.values, columnData: loaded.data2?.values,
                                        cacheBytes: options.engine.cacheMegabytes << 20)
            let manifest = engine.manifest(rows: loaded.data, columns: loaded.data2, spec: loaded.spec, network: network,
                                           kind: .empirical, plan: plan, outputKernel: options.outputKernel)
            let kernel = try engine.gathered("seed-\(seed)", computer: computer, plan: plan, entry: entry, manifest: manifest)
            guard world.isRoot else { continue }
            if draw == 0 {
                mean = kernel
                squares = [Double](repeating: 0, count: kernel.count)
            } else {
                // Welford: mean += (x − mean)/c; M2 += (x − mean_old)(x − mean_new).
                let count = Double(draw + 1)
                for e in kernel.indices {
                    let delta = kernel[e] - mean[e]
                    mean[e] += delta / count
                    squares[e] += delta * (kernel[e] - mean[e])
                }
            }
            kernels.append(kernel)
        }
        // Collective: rank 0's eigendecomposition uses its node's ranks' cores.
        let localRanks = (try? world.nodeLocal().size) ?? 1
        try agreement.stage(quietly: true) { () throws(NTKError) in
            guard world.isRoot, let output else { return }
            if let bad = mean.firstIndex(where: { !$0.isFinite }) {
                throw NTKError(.dataError, "the mean kernel has a non-finite entry (flat \(bad)): the network overflows on this data")
            }
            let norm = mean.reduce(0) { $0 + $1 * $1 }.squareRoot()
            let variance = seeds.count > 1 ? squares.reduce(0, +) / Double(seeds.count - 1) : 0
            let distances = kernels.map { draw in
                zip(draw, mean).reduce(0) { $0 + ($1.0 - $1.1) * ($1.0 - $1.1) }.squareRoot() / max(norm, .leastNormalMagnitude)
            }
            kernels = []
            let shape: [Int] = entry == 1 ? [n, columns] : [n, columns, k, k]
            try output.stageNPY("kernel.npy", shape: shape, values: entry == 1 ? mean : GramJob.permuteFull(mean, n: n, m: columns, k: k))
            var files = ["kernel.npy"]
            var diagnostics: SpectralDiagnostics? = nil
            var spectrum: GramSummary.Spectrum? = nil
            var seconds: [String: Double] = [:]
            if m == nil && options.eigen != .none {
                let eigenStart = Clock.now
                BLASLibrary.setThreadCount(localRanks)
                let eigen: SymmetricEigen
                do { eigen = try SymmetricEigen.compute(matrix: mean, n: n * entry, vectors: options.eigen == .vectors) } catch {
                    throw NTKError(.software, "eigendecomposition of the mean kernel: \(error)")
                }
                BLASLibrary.setThreadCount(1)
                seconds["eigen"] = Clock.seconds(since: eigenStart)
                try output.stageNPY("eigenvalues.npy", shape: [eigen.n], values: eigen.values)
                files.append("eigenvalues.npy")
                if let v = eigen.vectors {
                    try output.stageNPY("eigenvectors.npy", shape: [eigen.n, eigen.n], values: v)
                    files.append("eigenvectors.npy")
                }
                try output.stage("spectrum.csv", SpectralReport.csv(eigenvalues: eigen.values))
                files.append("spectrum.csv")
                diagnostics = try? SpectralDiagnostics(eigenvalues: eigen.values)
                if let lo = eigen.values.first, let hi = eigen.values.last {
                    spectrum = GramSummary.Spectrum(min: lo, max: hi, trace: eigen.values.reduce(0, +), conditionNumber: lo > 0 ? hi / lo : nil)
                }
            }
            seconds["total"] = Clock.seconds(since: start)
            var summary = GramSummary(method: options.engine.method.rawValue, outputKernel: options.outputKernel.rawValue,
                                      n: n, m: m, inputWidth: loaded.data.width, outputs: k, parameters: loaded.network?.parameterCount ?? 0,
                                      parameterization: loaded.spec.parameterization.rawValue, kernelShape: shape, ranks: world.size,
                                      tileSize: plan.tileSize, tiles: plan.tiles.count, tilesReused: 0, blasCore: BLASLibrary.coreName,
                                      seconds: seconds, spectrum: spectrum, files: files + ["summary.json"])
            summary.kernel = "empirical (mean over \(seeds.count) parameter draws)"
            summary.diagnostics = diagnostics
            summary.ensemble = EnsembleSummary(seeds: seeds, relativeSpread: variance.squareRoot() / max(norm, .leastNormalMagnitude),
                                               relativeDistances: distances)
            try output.stage("summary.json", try JSONOutput.encode(summary))
            try output.commit()
            engine.finish()
            if !options.quiet {
                print(String(format: "ntk gram: empirical NTK averaged over %d parameter draws, %@; relative spread %.4g (‖std‖_F / ‖mean‖_F)\n  wrote %@ to %@",
                             seeds.count, shape.map(String.init).joined(separator: " x "), summary.ensemble!.relativeSpread,
                             summary.files.joined(separator: ", "), output.path))
            }
        }
    }
}
