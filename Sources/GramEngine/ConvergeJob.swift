import Foundation
import LinearAlgebra
import MPI
import Network
import NumPyIO
import Plots

/// Everything `ntk converge` needs to know.
public struct ConvergeOptions: Sendable {
    public var data: String
    public var model: ModelSource
    /// Hidden widths to try (every dense layer but the readout gets the width).
    public var widths: [Int]
    /// Seeds per width.
    public var seeds: [UInt64]
    public var output: String
    public var force = false
    public var quiet = false
    /// Tiles, per-sample cache, checkpoints, memory budget, progress (one line per kernel).
    public var engine = EngineOptions()

    public init(data: String, model: ModelSource, widths: [Int], seeds: [UInt64], output: String) {
        self.data = data
        self.model = model
        self.widths = widths
        self.seeds = seeds
        self.output = output
    }
}

/// One measured point: the empirical NTK at `width` with `seed` against the analytic NTK.
public struct ConvergencePoint: Codable, Sendable {
    public var width: Int
    public var seed: UInt64
    /// ‖Θ_width − Θ_∞‖_F / ‖Θ_∞‖_F.
    public var relativeFrobenius: Double
    enum CodingKeys: String, CodingKey { case width, seed, relativeFrobenius = "relative_frobenius" }
}

/// The result of `ntk converge`, written as converge.json.
public struct ConvergenceSummary: Codable, Sendable {
    public var n: Int
    public var parameterization: String
    public var points: [ConvergencePoint]
    /// Per width, the mean distance over seeds.
    public var meanByWidth: [String: Double]
    /// Least-squares slope of log(mean distance) against log(width); theory: about −1/2.
    public var slope: Double?
    public var intercept: Double?
    public var seconds: Double
    /// The result record's marks (see `OutputDirectory`): the tool, and the files it wrote.
    public var tool = "ntk"
    public var files: [String] = []
    enum CodingKeys: String, CodingKey {
        case n, parameterization, points, slope, intercept, seconds, tool, files
        case meanByWidth = "mean_by_width"
    }
}

/// `ntk converge`: how fast the empirical NTK approaches the infinite-width NTK as the
/// network widens.
public enum ConvergeJob {
    /// Runs on every rank; every rank returns the same status.
    public static func run(_ options: ConvergeOptions, world: Communicator) -> ExitStatus {
        JobRunner.run(world: world) { try execute(options, world: world) }
    }

    /// `spec` with every hidden layer set to `width` (see `ModelSpec.widened(to:)`).
    public static func widened(_ spec: ModelSpec, to width: Int) -> ModelSpec { spec.widened(to: width) }

    static func execute(_ options: ConvergeOptions, world: Communicator) throws {
        let agreement = Agreement(world: world)
        let start = Clock.now
        BLASLibrary.setThreadCount(1)
        let (data, spec): (DataSet, ModelSpec) = try agreement.stage { () throws(NTKError) -> (DataSet, ModelSpec) in
            let inspected = try InputPlan.inspect(data: options.data, data2: nil, model: options.model, parameters: nil)
            let spec = inspected.spec
            // A layer to widen changes width at 1 or at 2 (it cannot have both).
            if spec.widened(to: 1) == spec && spec.widened(to: 2) == spec {
                throw NTKError(.dataError, "ntk converge needs a model with at least one hidden layer with parameters to widen (all but the readout)")
            }
            if options.widths.isEmpty || options.widths.contains(where: { $0 < 1 }) {
                throw NTKError(.usage, "--widths must list positive integers")
            }
            // The widest network must fit before any data is read or parameter drawn.
            let widest = InputPlan(n: inspected.n, m: nil, inputShape: inspected.inputShape,
                                   spec: widened(spec, to: options.widths.max()!), finite: true, parameterFileBytes: 0)
            try widest.check(available: MemoryPlan.availableBytes())
            let data = try Inputs.dataSet(options.data, role: "--data")
            return (data, spec)
        }
        let output: OutputDirectory? = try agreement.stage { () throws(NTKError) -> OutputDirectory? in
            guard world.isRoot else { return nil }
            return try OutputDirectory(path: options.output, force: options.force, markers: ["converge.json"],
                                       writes: ["converge.csv", "converge.svg", "converge.png", "converge.json"])
        }
        let n = data.count
        let plan = TilePlan(rows: n, columns: n, tileSize: options.engine.tileSize(rows: n, columns: n), symmetric: true, ranks: world.size)
        // Rank 0 holds the analytic kernel and one empirical kernel at a time. Progress is
        // one line per kernel (below), not per tile.
        var perKernel = options.engine
        perKernel.progress = false
        let kernels = TileEngine(options: perKernel, output: options.output, world: world)
        try kernels.checkMemory(Double(MemoryPlan.baseline) + 8 * 2 * Double(n) * Double(n), what: "two N x N kernels")
        var points: [ConvergencePoint] = []
        for width in options.widths {
            let wide = widened(spec, to: width)
            let infinite: InfiniteWidthKernel = try agreement.stage { () throws(NTKError) -> InfiniteWidthKernel in
                do { return try InfiniteWidthKernel(spec: wide, inputShape: data.sampleShape) } catch let error as ModelError {
                    throw NTKError(.dataError, "the analytic kernel of this model is not defined: \(error.message)")
                } catch {
                    throw NTKError(.software, "\(error)")
                }
            }
            let analyticComputer = TileComputer(infinite: infinite, kind: .analytic, outputCount: wide.outputCount, plan: plan,
                                                outputKernel: .mean, rowData: data.values, columnData: nil)
            let analytic = try kernels.gathered("analytic-\(width)", computer: analyticComputer, plan: plan,
                                                manifest: kernels.manifest(rows: data, columns: nil, spec: wide, network: nil, kind: .analytic, plan: plan))
            for seed in options.seeds {
                let network = Network.initialized(spec: wide, inputShape: data.sampleShape, seed: seed)
                let computer = TileComputer(network: network, plan: plan, outputKernel: .mean, method: options.engine.method, forms: options.engine.layerForms,
                                            rowData: data.values, columnData: nil, cacheBytes: options.engine.cacheMegabytes << 20)
                let empirical = try kernels.gathered("width-\(width)-seed-\(seed)", computer: computer, plan: plan,
                                                     manifest: kernels.manifest(rows: data, columns: nil, spec: wide, network: network, kind: .empirical, plan: plan))
                if world.isRoot {
                    // Upper tiles only were gathered: compare the full symmetric matrices.
                    var difference = 0.0, norm = 0.0
                    for i in 0..<n {
                        for j in i..<n {
                            let weight = i == j ? 1.0 : 2.0
                            let a = analytic[i * n + j], e = empirical[i * n + j]
                            difference += weight * (e - a) * (e - a)
                            norm += weight * a * a
                        }
                    }
                    let distance = (difference / norm).squareRoot()
                    points.append(ConvergencePoint(width: width, seed: seed, relativeFrobenius: distance))
                    if !options.quiet && (options.engine.progress ?? (isatty(2) != 0)) {
                        FileHandle.standardError.write(Data(String(format: "ntk converge: width %d seed %llu: %.4g\n", width, seed, distance).utf8))
                    }
                }
            }
        }
        try agreement.stage(quietly: true) { () throws(NTKError) in
            guard world.isRoot, let output else { return }
            try write(points: points, n: n, spec: spec, seconds: Clock.seconds(since: start), output: output, quiet: options.quiet)
            kernels.finish()
        }
    }

    static func write(points: [ConvergencePoint], n: Int, spec: ModelSpec, seconds: Double, output: OutputDirectory, quiet: Bool) throws(NTKError) {
        let widths = Array(Set(points.map(\.width))).sorted()
        var means: [(Int, Double)] = []
        for w in widths {
            let d = points.filter { $0.width == w }.map(\.relativeFrobenius)
            means.append((w, d.reduce(0, +) / Double(d.count)))
        }
        var slope: Double? = nil, intercept: Double? = nil
        if means.count >= 2 {
            let xs = means.map { log(Double($0.0)) }, ys = means.map { log($0.1) }
            let mx = xs.reduce(0, +) / Double(xs.count), my = ys.reduce(0, +) / Double(ys.count)
            var sxy = 0.0, sxx = 0.0
            for (x, y) in zip(xs, ys) { sxy += (x - mx) * (y - my); sxx += (x - mx) * (x - mx) }
            slope = sxy / sxx
            intercept = my - slope! * mx
        }
        var summary = ConvergenceSummary(n: n, parameterization: spec.parameterization.rawValue, points: points,
                                         meanByWidth: Dictionary(uniqueKeysWithValues: means.map { (String($0.0), $0.1) }),
                                         slope: slope, intercept: intercept, seconds: seconds)
        var csv = "width,seed,relative_frobenius\n"
        for p in points { csv += "\(p.width),\(p.seed),\(String(format: "%.17g", p.relativeFrobenius))\n" }

        var plot = SVGPlot(title: "Empirical NTK → infinite-width NTK (N = \(n))", xLabel: "hidden width n",
                           yLabel: "‖Θ_n − Θ_∞‖_F / ‖Θ_∞‖_F", xLogarithmic: true, yLogarithmic: true)
        plot.xTicks = means.map { Double($0.0) }
        plot.add("each seed", points.map { (Double($0.width), $0.relativeFrobenius) }, style: .markers, color: "#9ecae1")
        // Bars: the range over seeds at each width.
        let ranges = means.map { width, _ -> (low: Double, high: Double) in
            let values = points.filter { $0.width == width }.map(\.relativeFrobenius)
            return (values.min() ?? .nan, values.max() ?? .nan)
        }
        let seedsPerWidth = means.map { width, _ in points.filter { $0.width == width }.count }.max() ?? 1
        plot.add(seedsPerWidth > 1 ? "mean over seeds (bars: min–max)" : "distance", means.map { (Double($0.0), $0.1) },
                 style: .lineAndMarkers, color: "#1f77b4", errorBars: seedsPerWidth > 1 ? ranges : [])
        if let slope, let intercept {
            plot.add(String(format: "fit: slope %.3f", slope), means.map { (Double($0.0), exp(intercept + slope * log(Double($0.0)))) }, style: .dashed, color: "#d62728")
            let anchor = means[0]
            plot.add("theory: slope −1/2 (n^{−1/2})", means.map { (Double($0.0), anchor.1 * pow(Double($0.0) / Double(anchor.0), -0.5)) }, style: .dashed, color: "#7f7f7f")
        }
        plot.notes = ["\(spec.parameterization.rawValue) parameterization; \(points.count) kernels; relative Frobenius distance to the analytic NTK"]

        try output.stage("converge.csv", Data(csv.utf8))
        let plots = try output.stagePlot("converge", plot)
        summary.files = ["converge.csv"] + plots + ["converge.json"]
        let json = try JSONOutput.encode(summary)
        try output.stage("converge.json", json)
        try output.commitStaged()
        if !quiet {
            var lines = ["ntk converge: relative Frobenius distance of the empirical NTK to the analytic NTK (N = \(n))",
                         "  width   mean distance   seeds"]
            for (w, d) in means { lines.append(String(format: "  %5d   %13.6g   %d", w, d, points.filter { $0.width == w }.count)) }
            if let slope { lines.append(String(format: "  log-log slope %.3f (theory: about -0.5)", slope)) }
            lines.append("  wrote " + summary.files.joined(separator: ", ") + " to \(output.path)")
            print(lines.joined(separator: "\n"))
        }
    }
}
